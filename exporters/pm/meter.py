"""What every power-meter driver returns and raises: the contract between drivers and the collector.

A driver talks to one meter and has

- ``name``: the driver's name (``wt300``, ``mcp39f511``, ``ptd``), the ``driver`` label of
  ``pm_meter_info``;
- ``identity``: the meter's :class:`MeterIdentity`, read once when the driver opens the meter;
- ``read()``: a :class:`MeterReading` in SI units. It raises :class:`InvalidReading` for a reply that
  must not become a number (garbage, partial, bad checksum, NAK, an error reply) and
  :class:`MeterDisconnected` when the port or connection is gone;
- ``close()``: releases the port.

Vendor errors (pyserial's, socket errors, OSError) become these errors in the driver's transport,
in one place (``transport.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from mltelemetry.errors import MltelemetryError


class MeterError(MltelemetryError):
    """A power meter could not be used (base class of the driver errors)."""


class MeterDisconnected(MeterError):
    """The meter's port is gone or failed (unplugged, EIO, connection refused or closed)."""


class InvalidReading(MeterError):
    """A reply that must not become a number: garbage, partial, silent, bad checksum, NAK, error reply.
    ``samples`` is how many of the meter's samples it spoiled (several where one reply carried several)."""

    def __init__(self, message: str, samples: int = 1) -> None:
        super().__init__(message)
        self.samples = samples


NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([Ee][+-]?\d+)?", re.ASCII)
"""A decimal number as the meters write it (NR1, NR2, NR3): no NAN/INF words, no underscores."""


def decode_reply(line: bytes) -> str:
    """One reply line (as read, with its LF) as text without the terminator; :class:`InvalidReading`
    where it is partial (no LF), not ASCII or not printable."""
    if not line.endswith(b"\n"):
        raise InvalidReading(f"partial reply (no terminator): {line[:40]!r}" if line else "no reply")
    try:
        text = line.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InvalidReading(f"garbage reply: {line[:40]!r}") from None
    if not text.isprintable():
        raise InvalidReading(f"garbage reply: {text[:40]!r}")
    return text


@dataclass(frozen=True)
class MeterReading:
    """One reading, each item averaged over the meter's update interval; None where the meter gave no
    valid value (NAN, INF, over-range, an error marker).

    ``power_w`` in W, ``voltage_v`` in V, ``current_a`` in A.
    ``meter_energy_j`` is the meter's own energy counter in J (its integrator, the chip's accumulator),
    where the meter has one; ``meter_restarted`` says that counter began again from zero since the
    previous reading (a new integration, a reset), so the collector can keep its exported counter
    monotonic. ``uncertainty`` is the relative uncertainty of ``power_w`` (0.01 = 1 %) where the
    meter or PTDaemon reports one.
    """

    power_w: float | None
    voltage_v: float | None
    current_a: float | None
    meter_energy_j: float | None = None
    meter_restarted: bool = False
    uncertainty: float | None = None
    dropped: int = 0


@dataclass(frozen=True)
class MeterIdentity:
    """Who the meter says it is: model, serial number and firmware ("" where unknown), and the raw
    identification text (``*IDN?`` reply, PTDaemon's ``Identify`` line, the chip's version register)."""

    model: str
    serial: str = ""
    firmware: str = ""
    raw: str = ""

    def line(self) -> str:
        """One line for the log: ``model (serial S, firmware F)``."""
        details = ", ".join(f"{k} {v}" for k, v in (("serial", self.serial), ("firmware", self.firmware)) if v)
        return f"{self.model} ({details})" if details else self.model


class Driver(Protocol):
    name: str
    identity: MeterIdentity

    def read(self) -> MeterReading: ...

    def close(self) -> None: ...
