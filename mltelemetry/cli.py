"""The ``mltelemetry`` command: one root composing the sub-apps of each part."""

from __future__ import annotations

import logging
from enum import Enum
from typing import Annotated

import typer

from mltelemetry import __version__
from mltelemetry.cliutil import OneLineErrorsGroup
from mltelemetry.deploy import app as deploy_app
from mltelemetry.exporters.cli import app as exporter_app
from mltelemetry.exporters.pm.cli import app as pm_app
from mltelemetry.storecli import app as store_app
from mltelemetry.workload.cli import app as campaign_app

ENV_PREFIX = "MLTELEMETRY"

# auto_envvar_prefix: every option also reads MLTELEMETRY_<COMMAND>_<OPTION> (click's rule), e.g.
# MLTELEMETRY_ANALYZE_SOURCE, MLTELEMETRY_EXPORTER_PM_DRIVER, MLTELEMETRY_LOG_LEVEL.
app = typer.Typer(cls=OneLineErrorsGroup, no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=True,
                  context_settings={"auto_envvar_prefix": ENV_PREFIX},
                  help="Measure the energy and hardware cost of training ML models.\n\n"
                       f"Every option can also be set in the environment as {ENV_PREFIX}_<COMMAND>_<OPTION>, "
                       f"e.g. {ENV_PREFIX}_ANALYZE_SOURCE=lab.db or {ENV_PREFIX}_LOG_LEVEL=debug.")
app.add_typer(exporter_app, name="exporter", help="Run one exporter (host, pm, gpu).")
app.add_typer(pm_app, name="pm", help="Power-meter tools: meter emulators and the clock-alignment check.")
app.add_typer(campaign_app, name="campaign", help="Run workload campaigns and list those recorded.")
app.add_typer(deploy_app, name="deploy", help="Deployment files: compose, Prometheus alerts, units, dashboards.")
app.add_typer(store_app, name="store", help="Look into an embedded store file.")
_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _forward(ctx: typer.Context, name: str, command, group: str = "") -> None:
    """Run ``command`` (a Typer command function) on the arguments after its name, with the root's one-line
    usage errors and MLTELEMETRY_[<GROUP>_]<COMMAND>_<OPTION> environment variables."""
    sub = typer.Typer(cls=OneLineErrorsGroup, add_completion=False, pretty_exceptions_enable=False)
    sub.callback()(lambda: None)  # a group, so the command keeps its name in usage lines and variables
    sub.command(name)(command)
    sub([name, *ctx.args], prog_name=f"mltelemetry {group}" if group else "mltelemetry", standalone_mode=True,
        auto_envvar_prefix=f"{ENV_PREFIX}_{group.upper()}" if group else ENV_PREFIX)


# analyze and demo pull in pandas, scipy and matplotlib: imported only when they run, so the exporters,
# the workload and `mltelemetry --help` start without them (each exporter's memory, the SUT's install).
@app.command("analyze", context_settings=_FORWARD, add_help_option=False,
             help="A campaign's baseline-adjusted energy per run, action and epoch, with statistics and an "
                  "HTML report (mltelemetry analyze --help).")
def analyze(ctx: typer.Context) -> None:
    from mltelemetry.analysis.cli import analyze_command

    _forward(ctx, "analyze", analyze_command)


@app.command("demo", context_settings=_FORWARD, add_help_option=False,
             help="Run the whole chain on emulated hardware (mltelemetry demo --help).")
def demo(ctx: typer.Context) -> None:
    from mltelemetry.demo import demo_command

    _forward(ctx, "demo", demo_command)


# pm align analyses stored series (analysis/align.py, with numpy and the analysis sources); it is listed with the
# meter tools, where users look for it.
@pm_app.command("align", context_settings=_FORWARD, add_help_option=False,
                help="Estimate how far the meter's power series lags a series that moves with it, in milliseconds "
                     "(mltelemetry pm align --help).")
def pm_align(ctx: typer.Context) -> None:
    from mltelemetry.analysis.align import align_command

    _forward(ctx, "align", align_command, group="pm")


class LogLevel(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mltelemetry {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False, help="Logging level.")] = LogLevel.info,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          allow_from_autoenv=False)] = False,  # MLTELEMETRY_VERSION=… is common
) -> None:
    logging.basicConfig(level=log_level.value.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    app(prog_name="mltelemetry")
