"""Pieces every command shares: common option types and the one-line error handling."""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer

from mltelemetry.errors import MltelemetryError

F = TypeVar("F", bound=Callable)

Listen = Annotated[str, typer.Option(help="HOST:PORT to serve Prometheus /metrics on, or 'off'.")]
StorePath = Annotated[Optional[Path], typer.Option("--store", help="Embedded store file to write to.")]  # noqa: UP045
Interval = Annotated[float, typer.Option("--interval", min=0.05, help="Sampling interval in seconds.")]
HostLabel = Annotated[str, typer.Option("--host-label", help="Value of the host label (the SUT's name).")]

DEFAULT_HOST = socket.gethostname()


def one_line_errors(command: F) -> F:
    """Turn the domain error into 'error: ...' on stderr and exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MltelemetryError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
