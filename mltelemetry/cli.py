"""The ``mltelemetry`` command: one root composing the sub-apps of each part, each imported when it is used."""

from __future__ import annotations

import logging
from enum import Enum
from typing import Annotated

import typer

from mltelemetry import __version__
from mltelemetry.cliutil import LazyGroup

ENV_PREFIX = "MLTELEMETRY"

# Every subcommand: (module, its Typer app or command function, the line the root's help lists), imported when
# used (LazyGroup): an exporter's process never imports the analysis (pandas, scipy, matplotlib) nor the workload.
SUBCOMMANDS = {
    "exporter": ("mltelemetry.exporters.cli", "app", "Run one exporter (host, pm, gpu)."),
    "pm": ("mltelemetry.cli", "pm_app", "Power-meter tools: meter emulators and the clock-alignment check."),
    "campaign": ("mltelemetry.workload.cli", "app", "Run workload campaigns and list those recorded."),
    "deploy": ("mltelemetry.deploy", "app", "Deployment files: compose, Prometheus alerts, units, dashboards."),
    "store": ("mltelemetry.storecli", "app", "Look into an embedded store file."),
    "analyze": ("mltelemetry.analysis.cli", "analyze_command",
                "A campaign's baseline-adjusted energy per run, action and epoch, with statistics and an HTML "
                "report (mltelemetry analyze --help)."),
    "demo": ("mltelemetry.demo", "demo_command", "Run the whole chain on emulated hardware (mltelemetry demo --help)."),
}


class RootGroup(LazyGroup):
    subcommands = SUBCOMMANDS


class PmGroup(LazyGroup):
    """``mltelemetry pm``: the emulators (beside the meter drivers) and ``align``, an analysis of stored series
    (analysis/align.py, with numpy and the analysis sources), listed with the meter tools where users look."""

    subcommands = {
        "emulate": ("mltelemetry.exporters.pm.cli", "emulate_command",
                    "Emulate a power meter on a pseudo-terminal or a TCP port, speaking its real protocol."),
        "align": ("mltelemetry.analysis.align", "align_command",
                  "Estimate how far the meter's power series lags a series that moves with it, in milliseconds."),
    }


pm_app = typer.Typer(cls=PmGroup, no_args_is_help=True)


@pm_app.callback()
def pm() -> None:
    """Power-meter tools."""


# auto_envvar_prefix: every option also reads MLTELEMETRY_<COMMAND>_<OPTION> (click's rule), e.g.
# MLTELEMETRY_ANALYZE_SOURCE, MLTELEMETRY_EXPORTER_PM_DRIVER, MLTELEMETRY_LOG_LEVEL.
app = typer.Typer(cls=RootGroup, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  add_completion=True,
                  context_settings={"auto_envvar_prefix": ENV_PREFIX},
                  help="Measure the energy and hardware cost of training ML models.\n\n"
                       f"Every option can also be set in the environment as {ENV_PREFIX}_<COMMAND>_<OPTION>, "
                       f"e.g. {ENV_PREFIX}_ANALYZE_SOURCE=lab.db or {ENV_PREFIX}_LOG_LEVEL=debug.")


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
