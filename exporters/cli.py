"""``mltelemetry exporter ...``: one command per exporter, each defined beside its collector."""

import typer

from mltelemetry.cliutil import OneLineErrorsGroup, with_sink_options
from mltelemetry.exporters.gpu.cli import gpu_command
from mltelemetry.exporters.host import host_command
from mltelemetry.exporters.pm.cli import pm_exporter_command

app = typer.Typer(cls=OneLineErrorsGroup, no_args_is_help=True)
# with_sink_options adds --influx-*, --spool-*, --tls-* and --basic-auth-file to every exporter.
app.command("host")(with_sink_options(host_command))
app.command("pm")(with_sink_options(pm_exporter_command))
app.command("gpu")(with_sink_options(gpu_command))
