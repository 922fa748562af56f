"""``mltelemetry exporter ...``: one command per exporter, each defined beside its collector."""

import typer

from mltelemetry.cliutil import OneLineErrorsGroup
from mltelemetry.exporters.gpu.cli import gpu_command
from mltelemetry.exporters.host import host_command
from mltelemetry.exporters.pm.cli import pm_exporter_command

app = typer.Typer(cls=OneLineErrorsGroup, no_args_is_help=True)
app.command("host")(host_command)
app.command("pm")(pm_exporter_command)
app.command("gpu")(gpu_command)
