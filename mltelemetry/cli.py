"""The ``mltelemetry`` command: one root composing the sub-apps of each part."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from mltelemetry import __version__
from mltelemetry.analysis.cli import analyze_command
from mltelemetry.demo import demo_command
from mltelemetry.deploy import app as deploy_app
from mltelemetry.exporters.cli import app as exporter_app
from mltelemetry.exporters.pm.cli import app as pm_app
from mltelemetry.workload.cli import app as campaign_app

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Measure the energy and hardware cost of training ML models.")
app.add_typer(exporter_app, name="exporter", help="Run one exporter (host, pm, gpu).")
app.add_typer(pm_app, name="pm", help="Power-meter tools: meter emulators and the clock-alignment check.")
app.add_typer(campaign_app, name="campaign", help="Run workload campaigns.")
app.add_typer(deploy_app, name="deploy", help="Deployment files: compose, Prometheus alerts, units, dashboards.")
app.command("analyze")(analyze_command)
app.command("demo")(demo_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mltelemetry {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    log_level: Annotated[str, typer.Option(help="Logging level: debug, info, warning, error.")] = "info",
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    app()
