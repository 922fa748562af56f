"""Yokogawa WT300-series driver (WT310/WT310E/WT330, element 1) over RS-232, USB-TMC or TCP.

Protocol (reference/power-meters.md §1): LF-terminated commands, CR+LF-terminated replies,
ASCII NR3 numbers. ``read()`` asks ``:NUM:NORM:VAL?`` for the items P, U, I of element 1,
each the average over the meter's update interval (``:RATE``), and, with the meter's integrator
on, WH (its integrated energy, Wh) and TIME (its integration seconds).

Synchronised reads (the default): at start ``:STAT:FILT1 FALL`` makes the end of each data update
set bit 0 (UPD) of the extended event register. Each read sends one message,
``:COMM:WAIT 1;:STAT:EESR?;:NUM:NORM:VAL?``: the meter holds the query until an update has
finished since the register was last read (at once if one already has), then clears the
register and returns the newest values. So no update is read twice, and none is skipped as long
as reads come at least as often as updates (the exporter's interval equals the meter's rate).

The integrator: at start, if ``:INTEG:STAT?`` says it runs (left by an earlier exporter), it is
kept, so the meter's energy counter also covers the time the exporter was away; otherwise the
driver sets the rate, then resets and starts it (normal mode, no timer: it runs until stopped,
10 000 h at most). The rate cannot change while it runs (the meter's error 813). A TIME that goes
backwards means someone reset the integrator: the reading says ``meter_restarted``.

Invalid values never become numbers: ``NAN`` (no data), ``INF`` (over-range, error),
anything with magnitude ≥ 9.9E+37 (the meter's float-mode markers 9.9E+37 and 9.91E+37) and
any non-finite value make that item None. A reply that is garbage, partial (no terminator),
silent or has the wrong number of fields raises :class:`InvalidReading`, and the input buffer
is flushed before the next query. Serial errors become :class:`MeterDisconnected`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from mltelemetry.exporters.pm.meter import NUMBER, InvalidReading, MeterError, MeterIdentity, MeterReading, decode_reply
from mltelemetry.exporters.pm.plugin import Connection, MeterOption, MeterPlugin
from mltelemetry.exporters.pm.transport import Link, open_link, read_line

if TYPE_CHECKING:
    from mltelemetry.exporters.pm.wt300_emulator import Wt300Emulator

log = logging.getLogger(__name__)

RATES_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
"""Update intervals the meter offers, in seconds."""

OVER_RANGE = 9.9e37
"""Values at or above this magnitude are the meter's error markers, never measurements."""

ITEMS = ("P,1", "U,1", "I,1")
"""The items read, in order: active power, RMS voltage, RMS current of element 1."""
INTEGRATION_ITEMS = ("WH,1", "TIME")
"""Read after ``ITEMS`` when the meter integrates: its energy (Wh) and integration time (s)."""
SYNC_QUERY = ":COMM:WAIT 1;:STAT:EESR?;:NUM:NORM:VAL?"

_SPECIAL = {"NAN", "+NAN", "-NAN", "INF", "+INF", "-INF"}
_MAX_REPLY_BYTES = 256


def parse_value(field: str) -> float | None:
    """One NR1/NR2/NR3 field as a float; None for the meter's no-data and over-range markers.

    Raises InvalidReading for anything that is neither a number nor a marker.
    """
    field = field.strip()
    if field.upper() in _SPECIAL:
        return None
    if not NUMBER.fullmatch(field):
        raise InvalidReading(f"not a number: {field[:20]!r}")
    value = float(field)
    if not math.isfinite(value) or abs(value) >= OVER_RANGE:
        return None
    return value


def _fields(text: str, count: int) -> tuple[float | None, ...]:
    fields = text.split(",")
    if len(fields) != count:
        raise InvalidReading(f"expected {count} values, got {len(fields)}: {text[:40]!r}")
    return tuple(parse_value(f) for f in fields)


def parse_reply(line: bytes, count: int) -> tuple[float | None, ...]:
    """``count`` comma-separated values of one reply line, which must end in LF (CR+LF or LF)."""
    return _fields(decode_reply(line), count)


def parse_sync_reply(line: bytes, count: int) -> tuple[int, tuple[float | None, ...]]:
    """The reply to ``SYNC_QUERY``: the extended event register (NR1) and ``count`` values."""
    text = decode_reply(line)
    register, sep, values = text.partition(";")
    if not sep or not register.strip().isdigit() or len(register.strip()) > 5:
        raise InvalidReading(f"not an event register and values: {text[:40]!r}")
    return int(register), _fields(values, count)


def parse_identity(text: str) -> MeterIdentity:
    """An ``*IDN?`` reply (``YOKOGAWA,WT310,C2PH13047V,F1.03``) as model, serial, firmware."""
    fields = [f.strip() for f in text.strip().split(",")]
    if len(fields) < 2:
        return MeterIdentity(model=text.strip()[:40], raw=text.strip())
    return MeterIdentity(model=fields[1], serial=fields[2] if len(fields) > 2 else "",
                         firmware=fields[3] if len(fields) > 3 else "", raw=text.strip())


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

    ``port`` is a device path, pyserial URL, ``usbtmc://PATH`` or ``/dev/usbtmcN``, or
    ``tcp://HOST:PORT``; 8N1 at ``baudrate`` on serial ports. ``timeout_s`` bounds the wait for one
    reply line (a synchronised read waits one update interval longer). ``rate_s`` is the update
    interval to set (None keeps the meter's); after init it holds the interval the meter reports.
    ``sync`` synchronises reads to the data-update event; ``integration`` reads the meter's
    integrator (and starts it when it is not running).
    """

    name = "wt300"

    def __init__(self, port: str, *, baudrate: int = 9600, timeout_s: float = 0.5, rate_s: float | None = 1.0,
                 sync: bool = True, integration: bool = True) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.sync = sync
        self.integration = integration
        self.items = ITEMS + (INTEGRATION_ITEMS if integration else ())
        self._flush = False
        self._fresh_integration = False  # the next meter-energy reading starts a new integration run
        self._last_integration_s: float | None = None
        self._link: Link = open_link(port, baudrate=baudrate, timeout_s=max(timeout_s, 1.0))
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
        self._link.reset_input()  # noise from power-up, replies nobody read
        idn = self._query("*IDN?")
        if not idn.endswith(b"\n"):
            raise MeterError(f"{self.port}: no reply to *IDN? (is a WT300-series meter there, at this baud rate?)")
        self.identity = parse_identity(idn.decode("ascii", "replace"))
        log.info("%s: %s", self.port, self.identity.raw)
        running = False
        if self.integration:
            state = self._query(":INTEG:STAT?").decode("ascii", "replace").strip().upper()
            running = state.startswith("STAR")
            log.info("%s: integration %s", self.port, state.lower() or "state unknown")
        if rate_s is not None and not running:
            self._send(rate_command(rate_s))
        try:
            self.rate_s: float | None = parse_rate(self._query(":RATE?").decode("ascii", "replace"))
        except InvalidReading as e:
            log.warning("%s: could not read the update rate (%s)", self.port, e)
            self.rate_s = rate_s
            self._flush = True
        if running and rate_s is not None and self.rate_s != rate_s:
            log.warning("%s: the integrator runs, so the update rate stays %s s (not %s s); reset the "
                        "integration to change it", self.port, self.rate_s, rate_s)
        self._send(f":NUM:NORM:NUM {len(self.items)}")
        for i, item in enumerate(self.items, start=1):
            self._send(f":NUM:NORM:ITEM{i} {item}")
        if self.sync:
            self._send(":STAT:FILT1 FALL")
        if self.integration and not running:
            for command in (":INTEG:STOP", ":INTEG:MODE NORM", ":INTEG:TIM 0,0,0", ":INTEG:RES", ":INTEG:STAR"):
                self._send(command)
            time.sleep(0.2)  # the integrator is busy for a moment after starting (yoko-tool)
            self._fresh_integration = True

    def _send(self, command: str) -> None:
        self._link.write(command.encode("ascii") + b"\n")

    def _query(self, command: str, timeout_s: float | None = None) -> bytes:
        """Send a query and return its reply line as received (with terminator unless it timed out)."""
        if self._flush:
            self._link.reset_input()
            self._flush = False
        self._send(command)
        return read_line(self._link, self.timeout_s if timeout_s is None else timeout_s)

    def read(self) -> MeterReading:
        """P (W), U (V), I (A) averaged over the last update interval and, with the integrator, the
        meter's energy (J); None for each invalid item. Synchronised: waits for an unread update."""
        try:
            if self.sync:
                wait_s = (self.rate_s or max(RATES_S)) + self.timeout_s
                _, values = parse_sync_reply(self._query(SYNC_QUERY, wait_s), len(self.items))
            else:
                values = parse_reply(self._query(":NUM:NORM:VAL?"), len(self.items))
        except InvalidReading:
            self._flush = True
            raise
        power, voltage, current = values[:3]
        if None in values[:3]:
            self._flush = True
        meter_energy, restarted = None, False
        if self.integration:
            wh, seconds = values[3:5]
            if wh is not None and seconds is not None:
                meter_energy = wh * 3600.0
                restarted = self._fresh_integration or (
                    self._last_integration_s is not None and seconds < self._last_integration_s - 0.5)
                self._fresh_integration = False
                self._last_integration_s = seconds
        return MeterReading(power, voltage, current, meter_energy_j=meter_energy, meter_restarted=restarted)

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> Wt300:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the plug-in: what `exporter pm --driver wt300` and `pm emulate --driver wt300` are built from ---------
def _connect(port: str, *, rate_s: float, baudrate: int, sync: bool, meter_integration: bool) -> Connection:
    rate_command(rate_s)  # refuse a bad rate now, not on every reconnect

    def open_meter() -> Wt300:
        return Wt300(port, baudrate=baudrate, rate_s=rate_s, sync=sync, integration=meter_integration)

    return Connection(open_meter, synchronised=sync, unsynchronised_hint="use --no-sync")


def _emulator() -> type[Wt300Emulator]:
    from mltelemetry.exporters.pm.wt300_emulator import Wt300Emulator

    return Wt300Emulator


PLUGIN = MeterPlugin(
    name="wt300",
    meter="Yokogawa WT310/WT310E/WT330 (element 1)",
    transports=("serial", "usbtmc", "tcp", "vxi11"),
    max_power_w=24_000.0,  # its 600 V and 20 A ranges, shown up to 140 %: 840 V x 28 A = 23.5 kW
    connect=_connect,
    emulator=_emulator,
    options=(
        MeterOption("sync", True, "Wait for the meter's data-update event before each read, so no update is read "
                                  "twice or skipped"),
        MeterOption("meter_integration", True, "Run the meter's integrator and publish its energy as "
                                               "pm_meter_energy_joules_total"),
    ),
    emulator_options=(
        MeterOption("update_interval", 1.0, "Update interval in seconds (a client's :RATE changes it)", min=0.01,
                    keyword="update_interval_s"),
    ),
    baudrate=9600,
    rate=":RATE",
)
