"""The ``mltelemetry`` command: one root composing the sub-apps of each part."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from mltelemetry import __version__
from mltelemetry.exporters.cli import app as exporter_app
from mltelemetry.exporters.pm.cli import app as pm_app
from mltelemetry.workload.cli import app as campaign_app

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Measure the energy and hardware cost of training ML models.")
app.add_typer(exporter_app, name="exporter", help="Run one exporter (host, pm, gpu).")
app.add_typer(pm_app, name="pm", help="Power-meter tools: meter emulators and the clock-alignment check.")
app.add_typer(campaign_app, name="campaign", help="Run workload campaigns.")
_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _forward(ctx: typer.Context, command) -> None:
    """Run ``command`` (a Typer command function) on the arguments after its name."""
    sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    sub.command()(command)
    sub(ctx.args, prog_name=ctx.command_path, standalone_mode=True)


# analyze and demo pull in pandas, scipy and matplotlib: imported only when they run, so the exporters,
# the workload and `mltelemetry --help` start without them (each exporter's memory, the SUT's install).
@app.command("analyze", context_settings=_FORWARD, add_help_option=False,
             help="A campaign's baseline-adjusted energy per run, action and epoch, with statistics and an "
                  "HTML report (mltelemetry analyze --help).")
def analyze(ctx: typer.Context) -> None:
    from mltelemetry.analysis.cli import analyze_command

    _forward(ctx, analyze_command)


@app.command("demo", context_settings=_FORWARD, add_help_option=False,
             help="Run the whole chain on emulated hardware (mltelemetry demo --help).")
def demo(ctx: typer.Context) -> None:
    from mltelemetry.demo import demo_command

    _forward(ctx, demo_command)


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
