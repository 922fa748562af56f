"""Yokogawa WT300-series driver (WT310/WT310E/WT330, element 1) over a serial port or pyserial URL.

Protocol (reference/power-meters.md §1): LF-terminated commands, CR+LF-terminated replies,
ASCII NR3 numbers. ``read()`` asks ``:NUM:NORM:VAL?`` for the items P, U, I of element 1,
each the average over the meter's update interval (``:RATE``).

Invalid values never become numbers: ``NAN`` (no data), ``INF`` (over-range, error),
anything with magnitude ≥ 9.9E+37 (the meter's float-mode markers 9.9E+37 and 9.91E+37) and
any non-finite value make that item None. A reply that is garbage, partial (no terminator),
silent or has the wrong number of fields raises :class:`InvalidReading`, and the input buffer
is flushed before the next query. Serial errors become :class:`MeterDisconnected`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager

import serial

from mltelemetry.exporters.pm.collector import InvalidReading, MeterDisconnected, MeterError, Reading

log = logging.getLogger(__name__)

RATES_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
"""Update intervals the meter offers, in seconds."""

OVER_RANGE = 9.9e37
"""Values at or above this magnitude are the meter's error markers, never measurements."""

ITEMS = ("P,1", "U,1", "I,1")
"""The items read, in order: active power, RMS voltage, RMS current of element 1."""

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)(E[+-]?\d+)?", re.ASCII | re.IGNORECASE)
_SPECIAL = {"NAN", "+NAN", "-NAN", "INF", "+INF", "-INF"}
_MAX_REPLY_BYTES = 256


def parse_value(field: str) -> float | None:
    """One NR1/NR2/NR3 field as a float; None for the meter's no-data and over-range markers.

    Raises InvalidReading for anything that is neither a number nor a marker.
    """
    field = field.strip()
    if field.upper() in _SPECIAL:
        return None
    if not _NUMBER.fullmatch(field):
        raise InvalidReading(f"not a number: {field[:20]!r}")
    value = float(field)
    if not math.isfinite(value) or abs(value) >= OVER_RANGE:
        return None
    return value


def parse_reply(line: bytes, count: int) -> tuple[float | None, ...]:
    """``count`` comma-separated values of one reply line, which must end in LF (CR+LF or LF)."""
    if not line.endswith(b"\n"):
        raise InvalidReading(f"partial reply (no terminator): {line[:40]!r}" if line else "no reply")
    try:
        text = line.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InvalidReading(f"garbage reply: {line[:40]!r}") from None
    fields = text.split(",")
    if len(fields) != count:
        raise InvalidReading(f"expected {count} values, got {len(fields)}: {text[:40]!r}")
    return tuple(parse_value(f) for f in fields)


def rate_command(rate_s: float) -> str:
    """The ``:RATE`` set command for an update interval in seconds (``1S``, ``250MS``)."""
    if rate_s not in RATES_S:
        raise MeterError(f"the WT300 has no update rate of {rate_s} s; choose one of {RATES_S}")
    return f":RATE {rate_s:g}S" if rate_s >= 1 else f":RATE {round(rate_s * 1000)}MS"


def parse_rate(text: str) -> float:
    """A ``:RATE?`` reply in seconds: NR3 (``1.0E+00``) or with a unit (``1S``, ``250MS``)."""
    text = text.strip().upper().removeprefix(":RATE").strip()
    scale = 1.0
    if text.endswith("MS"):
        text, scale = text[:-2], 1e-3
    elif text.endswith("S"):
        text = text[:-1]
    value = parse_value(text)
    if value is None or value <= 0:
        raise InvalidReading(f"bad :RATE? reply {text!r}")
    return value * scale


class Wt300:
    """An open, initialised WT300-series meter.

    ``port`` is a device path or pyserial URL (a pty path works); 8N1 at ``baudrate``;
    ``timeout_s`` bounds the wait for one reply line; ``rate_s`` is the update interval to set
    (None keeps the meter's). ``rate_s`` after init holds the interval the meter reports.
    """

    def __init__(self, port: str, *, baudrate: int = 9600, timeout_s: float = 0.5,
                 rate_s: float | None = 1.0) -> None:
        self.port = port
        self._flush = False
        with self._port_errors():
            self._serial = serial.serial_for_url(port, baudrate=baudrate, bytesize=8, parity="N", stopbits=1,
                                                 timeout=timeout_s, write_timeout=timeout_s)
        try:
            self._initialise(rate_s)
        except BaseException:
            self.close()
            raise

    def _initialise(self, rate_s: float | None) -> None:
        # A leading LF flushes the meter's output queue; the first *CLS can fail with "interrupted".
        self._send("\n*CLS")
        self._send("\n*CLS")
        self._send(":COMM:HEAD OFF")
        self._send(":COMM:VERB ON")
        self._send(":NUM:FORM ASCII")
        idn = self._query("*IDN?")
        if not idn.endswith(b"\n"):
            raise MeterError(f"{self.port}: no reply to *IDN? (is a WT300-series meter there, at this baud rate?)")
        log.info("%s: %s", self.port, idn.decode("ascii", "replace").strip())
        if rate_s is not None:
            self._send(rate_command(rate_s))
        try:
            self.rate_s: float | None = parse_rate(self._query(":RATE?").decode("ascii", "replace"))
        except InvalidReading as e:
            log.warning("%s: could not read the update rate (%s)", self.port, e)
            self.rate_s = rate_s
            self._flush = True
        self._send(f":NUM:NORM:NUM {len(ITEMS)}")
        for i, item in enumerate(ITEMS, start=1):
            self._send(f":NUM:NORM:ITEM{i} {item}")

    @contextmanager
    def _port_errors(self) -> Iterator[None]:
        """The one place serial errors become MeterDisconnected."""
        try:
            yield
        except (serial.SerialException, OSError) as e:
            raise MeterDisconnected(f"{self.port}: {e}") from e

    def _send(self, command: str) -> None:
        with self._port_errors():
            self._serial.write(command.encode("ascii") + b"\n")

    def _query(self, command: str) -> bytes:
        """Send a query and return its reply line as received (with terminator unless it timed out)."""
        with self._port_errors():
            if self._flush:
                self._serial.reset_input_buffer()
                self._flush = False
            self._serial.write(command.encode("ascii") + b"\n")
            return self._read_line()

    def _read_line(self) -> bytes:
        """Bytes up to and including LF, or what came before the timeout.

        pyserial's ``read_until`` makes one select and one read per byte; taking what is waiting
        at once cuts the exporter's CPU time per reading several-fold.
        """
        line = bytearray()
        while not line.endswith(b"\n") and len(line) < _MAX_REPLY_BYTES:
            chunk = self._serial.read(max(1, min(self._serial.in_waiting, _MAX_REPLY_BYTES - len(line))))
            if not chunk:  # timed out
                break
            line += chunk
        return bytes(line)

    def read(self) -> Reading:
        """P (W), U (V), I (A) averaged over the last update interval; None for each invalid item."""
        try:
            power, voltage, current = parse_reply(self._query(":NUM:NORM:VAL?"), len(ITEMS))
        except InvalidReading:
            self._flush = True
            raise
        if None in (power, voltage, current):
            self._flush = True
        return Reading(power, voltage, current)

    def close(self) -> None:
        try:
            self._serial.close()
        except (serial.SerialException, OSError):
            pass  # the port is already gone

    def __enter__(self) -> Wt300:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
