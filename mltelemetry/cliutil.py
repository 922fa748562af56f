"""Pieces every command shares: common option types and the one-line error handling."""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import math
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from mltelemetry.errors import MltelemetryError, UsageError

F = TypeVar("F", bound=Callable)

Listen = Annotated[str, typer.Option(help="HOST:PORT to serve Prometheus /metrics on, or 'off'.")]
StorePath = Annotated[Optional[Path], typer.Option("--store", help="Embedded store file to write to.")]  # noqa: UP045


def finite_number(value: float | None) -> float | None:
    """Option callback: NAN and INF pass typer's range checks (every comparison with NAN is false); refuse them."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"want a finite number, got {value}")
    return value


DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
DURATION_UNITS = "units ms, s, m, h, d, w; a plain number is seconds"  # for the options' --help


def parse_duration_s(text: str, option: str) -> float:
    """Seconds from a duration such as ``250ms``, ``90s``, ``15m``, ``12h``, ``31d``, ``2w`` or ``1.5`` (seconds),
    for every option that takes one; anything else, zero, a negative or an infinite one is a usage error."""
    value = text.strip().lower()
    unit = next((u for u in sorted(DURATION_UNITS_S, key=len, reverse=True) if value.endswith(u)), "")
    try:
        seconds = float(value.removesuffix(unit)) * DURATION_UNITS_S.get(unit, 1.0)
    except ValueError:
        raise UsageError(f"{option} wants a duration such as 90s, 15m or 12h ({DURATION_UNITS}), "
                         f"not {text!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{option} wants a finite duration above zero, not {text!r}")
    return seconds


Interval = Annotated[float, typer.Option("--interval", min=0.05, max=86400, callback=finite_number,
                                         help="Sampling interval in seconds.")]
HostLabel = Annotated[str, typer.Option("--host-label", help="Value of the host label (the SUT's name).")]

DEFAULT_HOST = socket.gethostname()


def one_line_errors(command: F) -> F:
    """Turn the domain errors into 'error: ...' on stderr, never a traceback: exit code 2 for a usage error
    (:class:`~mltelemetry.errors.UsageError`), 1 for a runtime one, a file or folder that cannot be read or
    written (``OSError``) included."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MltelemetryError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # a bad path given on the command line: say which and why, in one line
            where = f": {e.filename}" if e.filename is not None else ""
            where += f" -> {e.filename2}" if e.filename2 is not None else ""  # a link or rename: both paths
            typer.echo(f"error: {e.strerror or e}{where}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


try:  # typer 0.2x parses with its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # older typer: click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]


class OneLineErrorsGroup(TyperGroup):
    """A command group whose usage errors are one line on stderr and exit code 2 (not click's boxed usage
    text), as the commands' own errors are (:func:`one_line_errors`)."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as e:  # a bare group: its help
            typer.echo(e.format_message(), err=True)
            sys.exit(e.exit_code)
        except click_errors.UsageError as e:
            typer.echo(f"error: {usage_message(e)}", err=True)
            sys.exit(e.exit_code)
        except click_errors.ClickException as e:
            typer.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class LazyGroup(OneLineErrorsGroup):
    """A group whose subcommands are imported when used. ``subcommands`` maps each name to (module, its Typer
    app or command function, the line the group's help lists); ``wrap`` is applied to a command function.

    The group's help and the completion of subcommand names list them by those lines without importing any;
    running a subcommand, its help or the completion of its options imports it (and only it). So
    `mltelemetry --help` stays fast and an exporter's process imports its own exporter only (each import and
    each of typer's parameter converters costs memory)."""

    subcommands: dict[str, tuple[str, str, str]] = {}
    _listing = False  # True while the group lists its subcommands (help, completion of their names)

    @staticmethod
    def wrap(command: Callable) -> Callable:
        return command

    def load(self, name: str) -> TyperCommand | TyperGroup:
        """Import subcommand ``name`` and build its click command, as ``add_typer``/``command`` would."""
        module, attribute, help_text = self.subcommands[name]
        target = getattr(importlib.import_module(module), attribute)
        holder = typer.Typer()
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=name, help=help_text)
        else:
            holder.command(name)(self.wrap(target))
        return typer.main.get_group(holder).commands[name]

    def list_commands(self, ctx) -> list[str]:
        return list(self.subcommands)

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self.subcommands:
            return None
        if self._listing:
            return TyperCommand(cmd_name, short_help=self.subcommands[cmd_name][2])
        command = self.commands.get(cmd_name)
        if command is None:
            command = self.commands[cmd_name] = self.load(cmd_name)
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
        except click_errors.UsageError as e:  # typer suggests among the commands loaded only: all of them here
            matches = difflib.get_close_matches(args[0], self.subcommands) if args else []
            if matches and "Did you mean" not in e.message:
                e.message = f"{e.message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise


def usage_message(error: Exception) -> str:
    """Click's message, without pydantic's prefix, naming the environment variable a bad value came from."""
    message = error.format_message().replace("Value error, ", "")  # type: ignore[attr-defined]
    ctx, param = getattr(error, "ctx", None), getattr(error, "param", None)
    if ctx is None:
        return message
    source = ctx.get_parameter_source(param.name) if param is not None and param.name else None
    if source is not None and source.name == "ENVIRONMENT":
        envvar = param.envvar or f"{ctx.auto_envvar_prefix}_{param.name.upper()}"
        message += f" (from ${envvar if isinstance(envvar, str) else envvar[0]})"
    return f"{message} (see: {ctx.command_path} --help)"


# --- push sinks and /metrics security: options every exporter (and the workload) shares -------------------

InfluxUrl = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--influx-url", envvar="MLTELEMETRY_INFLUX_URL", rich_help_panel="InfluxDB",
    help="Also push to this InfluxDB (http(s)://HOST:PORT). The token comes from $INFLUX_TOKEN or "
         "--influx-token-file, never from the command line.")]
class InfluxApiChoice(str, Enum):
    v2 = "v2"
    v1 = "v1"


InfluxApi = Annotated[InfluxApiChoice, typer.Option(
    "--influx-api", envvar="MLTELEMETRY_INFLUX_API", rich_help_panel="InfluxDB",
    help="v2 (InfluxDB 2.x/3.x, VictoriaMetrics; needs influxdb-client) or v1 (InfluxDB 1.x /write).")]
InfluxOrg = Annotated[str, typer.Option(
    "--influx-org", envvar="MLTELEMETRY_INFLUX_ORG", rich_help_panel="InfluxDB", help="Organisation (v2).")]
InfluxBucket = Annotated[str, typer.Option(
    "--influx-bucket", envvar="MLTELEMETRY_INFLUX_BUCKET", rich_help_panel="InfluxDB",
    help="Bucket (v2) or database, optionally database/retention-policy (v1).")]
InfluxTokenFile = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--influx-token-file", envvar="MLTELEMETRY_INFLUX_TOKEN_FILE", rich_help_panel="InfluxDB",
    help="File holding the token (v1: user:password); default: $INFLUX_TOKEN.")]
SpoolDir = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--spool-dir", envvar="MLTELEMETRY_SPOOL_DIR", rich_help_panel="InfluxDB",
    help="Folder for samples waiting while InfluxDB is away (default: under $XDG_STATE_HOME/mltelemetry).")]
SpoolMaxMb = Annotated[float, typer.Option(
    "--spool-max-mb", min=0.001, callback=finite_number, rich_help_panel="InfluxDB",
    help="Size limit of the spool in MiB; past it the oldest samples are dropped (and counted).")]
TlsCert = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--tls-cert", rich_help_panel="/metrics security", help="PEM certificate: serve /metrics over HTTPS.")]
TlsKey = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--tls-key", rich_help_panel="/metrics security", help="PEM private key of --tls-cert.")]
BasicAuthFile = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--basic-auth-file", rich_help_panel="/metrics security",
    help="File of user:password lines: /metrics asks for HTTP basic auth.")]


@dataclass(frozen=True)
class SinkOptions:
    """The push-sink and /metrics-security options of one command, as given on its command line."""

    influx_url: str | None = None
    influx_api: str = "v2"
    influx_org: str = ""
    influx_bucket: str = "mltelemetry"
    influx_token_file: Path | None = None
    spool_dir: Path | None = None
    spool_max_mb: float = 512.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    basic_auth_file: Path | None = None


_OPTION_TYPES = {"influx_url": InfluxUrl, "influx_api": InfluxApi, "influx_org": InfluxOrg,
                 "influx_bucket": InfluxBucket, "influx_token_file": InfluxTokenFile, "spool_dir": SpoolDir,
                 "spool_max_mb": SpoolMaxMb, "tls_cert": TlsCert, "tls_key": TlsKey,
                 "basic_auth_file": BasicAuthFile}
_SINK_PARAMETERS = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                      annotation=_OPTION_TYPES[f.name]) for f in fields(SinkOptions)]


def _plain(value: object) -> object:
    """An enum choice as its text (what the sinks compare against)."""
    return value.value if isinstance(value, Enum) else value


def with_sink_options(command: F) -> F:
    """Give a command that takes ``sink_options: SinkOptions`` the ``--influx-*``, ``--spool-*``, ``--tls-*`` and
    ``--basic-auth-file`` options in its place: typer sees them one by one, the command gets them as one
    :class:`SinkOptions` argument (it builds its publishers from them)."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "sink_options"]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        options = SinkOptions(**{p.name: _plain(kwargs.pop(p.name)) for p in _SINK_PARAMETERS if p.name in kwargs})
        return command(*args, sink_options=options, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *_SINK_PARAMETERS])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "sink_options"},
                               **{p.name: p.annotation for p in _SINK_PARAMETERS}}
    return wrapper  # type: ignore[return-value]


def writable_folder(path: Path, option: str) -> Path:
    """Create ``path`` (and its parents) now, before any long work, or say in one line why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".mltelemetry-write-test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise MltelemetryError(f"{option} {path}: cannot write there ({e.strerror or e})") from None
    return path
