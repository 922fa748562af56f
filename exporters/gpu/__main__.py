"""``python -m mltelemetry.exporters.gpu``: the GPU exporter alone, without the rest of the CLI."""

import logging

import typer

from mltelemetry.cliutil import with_sink_options

from .cli import gpu_command

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
typer.run(with_sink_options(gpu_command))
