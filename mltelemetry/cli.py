"""The ``mltelemetry`` command: one root composing the sub-apps of each part, each imported when it is used."""

from __future__ import annotations

import difflib
import importlib
import logging
from enum import Enum
from typing import Annotated

import typer
from typer.core import TyperCommand

from mltelemetry import __version__
from mltelemetry.cliutil import OneLineErrorsGroup, click_errors

ENV_PREFIX = "MLTELEMETRY"

# Every subcommand: (module, its Typer app or command function, the line the root's help lists). A subcommand's
# module is imported only when that subcommand runs, asks for its help or completes its options: `mltelemetry
# --help` stays fast, and an exporter's process never imports the analysis (pandas, scipy, matplotlib) nor the
# workload's dependencies.
SUBCOMMANDS = {
    "exporter": ("mltelemetry.exporters.cli", "app", "Run one exporter (host, pm, gpu)."),
    "pm": ("mltelemetry.exporters.pm.cli", "app",
           "Power-meter tools: meter emulators and the clock-alignment check."),
    "campaign": ("mltelemetry.workload.cli", "app", "Run workload campaigns and list those recorded."),
    "deploy": ("mltelemetry.deploy", "app", "Deployment files: compose, Prometheus alerts, units, dashboards."),
    "store": ("mltelemetry.storecli", "app", "Look into an embedded store file."),
    "analyze": ("mltelemetry.analysis.cli", "analyze_command",
                "A campaign's baseline-adjusted energy per run, action and epoch, with statistics and an HTML "
                "report (mltelemetry analyze --help)."),
    "demo": ("mltelemetry.demo", "demo_command", "Run the whole chain on emulated hardware (mltelemetry demo --help)."),
}


def load_subcommand(name: str) -> typer.core.TyperCommand | typer.core.TyperGroup:
    """Import subcommand ``name`` and build its click command, as ``add_typer``/``command`` on the root would."""
    module, attribute, help_text = SUBCOMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name, help=help_text)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


class LazyRootGroup(OneLineErrorsGroup):
    """The root group. Its own help and the completion of subcommand names list :data:`SUBCOMMANDS` by their
    help lines without importing them; running a subcommand, its help or the completion of its options
    imports it."""

    _listing = False  # True while the root lists its subcommands (help, completion of their names)

    def list_commands(self, ctx) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in SUBCOMMANDS:
            return None
        if self._listing:
            return TyperCommand(cmd_name, short_help=SUBCOMMANDS[cmd_name][2])
        command = self.commands.get(cmd_name)
        if command is None:
            command = self.commands[cmd_name] = load_subcommand(cmd_name)
        return command

    def _listed(self, method, *args):
        self._listing = True
        try:
            return method(*args)
        finally:
            self._listing = False

    def format_help(self, ctx, formatter) -> None:
        self._listed(super().format_help, ctx, formatter)

    def shell_complete(self, ctx, incomplete: str):
        return self._listed(super().shell_complete, ctx, incomplete)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click_errors.UsageError as e:  # typer suggests only among the commands loaded: all of them here
            matches = difflib.get_close_matches(args[0], SUBCOMMANDS) if args else []
            if matches and "Did you mean" not in e.message:
                e.message = f"{e.message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise


# auto_envvar_prefix: every option also reads MLTELEMETRY_<COMMAND>_<OPTION> (click's rule), e.g.
# MLTELEMETRY_ANALYZE_SOURCE, MLTELEMETRY_EXPORTER_PM_DRIVER, MLTELEMETRY_LOG_LEVEL.
app = typer.Typer(cls=LazyRootGroup, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
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
