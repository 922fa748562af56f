"""``python -m mltelemetry.exporters.gpu``: the GPU exporter alone, without the rest of the CLI."""

import logging

import typer

from .cli import gpu_command

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
typer.run(gpu_command)
