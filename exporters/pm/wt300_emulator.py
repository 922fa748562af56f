"""The Yokogawa WT300-series meter (WT310) on a pseudo-terminal, TCP or VXI-11: the emulator beside ``wt300.py``.

It speaks the ASCII command set the driver uses (reference/power-meters.md §1): identification, the
update rate, the numeric items, the data-update event and the integrator; see :class:`Wt300Emulator`.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mltelemetry.exporters.pm.emulator import Emulator, Faults, Profile, PtyLink, TcpServerLink, advance_profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """One completed measurement: the averages over [start_s, end_s] (seconds on the meter's clock)."""

    start_s: float
    end_s: float
    power_w: float
    voltage_v: float
    current_a: float


@dataclass(frozen=True)
class Integration:
    """The meter's integrator as a reply showed it: exact joules and seconds since its start."""

    energy_j: float
    seconds: float


_RATE_ARG = re.compile(r"([0-9.]+(?:E[+-]?\d+)?)\s*(MS|S)?", re.IGNORECASE)
_MARKERS = {"nan": "NAN", "inf": "INF", "overrange": "9.91E+37"}
_INTEGRATION_STATES = ("RESET", "START", "STOP")
UPD_BIT = 1
"""The extended event register's bit 0 (UPD): with ``:STAT:FILT1 FALL``, set when an update finishes."""


def nr3(value: float, digits: int = 5) -> str:
    """ASCII NR3 with ``digits`` significant digits, as the meter sends (``8.7654E+01``)."""
    return f"{value:.{digits - 1}E}"


class Wt300Emulator(Emulator):
    """A WT310 measuring ``profile``: one update per ``update_interval_s``, each the exact average
    of the profile over that interval; ``:NUM:NORM:VAL?`` returns the latest completed update.

    Answers ``*IDN?``, ``:RATE?``, ``:RATE <n>S|<n>MS``, ``:NUM:NORM:NUM[?]``,
    ``:NUM:NORM:ITEM<n>[?]`` (functions P, U, I, WH, TIME; others read NAN), ``:NUM:NORM:VAL?``,
    the update event (``:STAT:FILT1 FALL|NEVER``, ``:STAT:EESR?`` read-to-clear, ``:COMM:WAIT <mask>``,
    which holds every later unit and message until an update sets a bit of the mask) and the
    integrator (``:INTEG:MODE``, ``:INTEG:TIM``, ``:INTEG:STAR``, ``:INTEG:STOP``, ``:INTEG:RES``,
    ``:INTEG:STAT?``): WH is the exact integral of the profile from the start of integration to the
    end of the latest update, TIME its seconds (NR1). As on the meter, ``:RATE`` is refused while
    integration is not reset (error 813) and ``:INTEG:RES`` while it runs (error 845).

    Every other set command is accepted silently; unknown queries get no reply (the client
    times out). Units of one message are split on ``;`` and each needs its full header. Before
    the first update completes, values read NAN ("no data").
    """

    IDN = "YOKOGAWA,WT310,EMU00001,F1.03"
    FAULTS = ("garbage", "partial", "nan", "inf", "overrange")
    TITLE = "a WT310"

    def __init__(self, profile: Profile, link: str | Path | PtyLink | TcpServerLink, *, update_interval_s: float = 1.0,
                 voltage_v: float = 230.0, faults: Faults | None = None,
                 clock: Callable[[], float] = time.monotonic, clock_shift_s: float = 0.0) -> None:
        super().__init__(link, clock, faults=faults, clock_shift_s=clock_shift_s)
        self.profile = profile
        self.voltage_v = voltage_v
        self.update_interval_s = update_interval_s
        self.items = {1: "U,1", 2: "I,1", 3: "P,1"}
        self.item_count = 3
        self._schedule_s = 0.0  # time (since origin, unshifted) of the current update schedule's start
        self._completed = 0  # updates completed since _schedule_s
        self.latest: Update | None = None
        self.served: Update | None = None  # what the last VAL? reply carried; None if spoiled or no data
        self.served_integration: Integration | None = None  # the WH/TIME the last VAL? reply carried
        self.updates = 0  # updates completed in all
        self.eesr = 0
        self.filter_upd = False
        self.integration = "RESET"
        self._integ_run_start: float | None = None  # profile time the running integration (re)started
        self._integ_base_j = self._integ_base_s = 0.0  # what earlier runs (before a STOP) integrated
        self._integ_energy_j = self._integ_seconds = 0.0  # what the meter shows: up to the latest update
        self._buffer = b""
        self._held: list[str] | None = None  # units after a :COMM:WAIT still waiting for the event
        self._held_replies: list[str] = []
        self._held_faults: list[str] = []
        self._wait_mask = 0

    def details(self) -> str:
        return f", update every {self.update_interval_s:g} s"

    def connected(self) -> None:
        self._buffer = b""
        self._held, self._held_replies, self._held_faults, self._wait_mask = None, [], [], 0

    def front_panel(self, *commands: str) -> None:
        """Run set commands as the meter's keys would (a user resetting the integrator, say)."""
        with self._lock:
            for command in commands:
                self._unit(command)

    def seconds_to_next_update(self) -> float:
        """Seconds until the meter completes its next update (tests use it to pick a sampling phase)."""
        return self.update_interval_s - (self.clock() - self.origin - self._schedule_s) % self.update_interval_s

    def tick(self, now: float) -> float:
        t = now - self.origin
        n = math.floor((t - self._schedule_s) / self.update_interval_s)
        if n > self._completed:
            advance_profile(self.profile, self._schedule_s + n * self.update_interval_s)
            end = self._schedule_s + n * self.update_interval_s - self.clock_shift_s
            start = end - self.update_interval_s
            power = self.profile.energy(start, end) / self.update_interval_s
            self.latest = Update(start, end, power, self.voltage_v, power / self.voltage_v)
            self.updates += n - self._completed
            self._completed = n
            if self.integration == "START" and self._integ_run_start is not None:
                run_end = max(end, self._integ_run_start)
                self._integ_energy_j = self._integ_base_j + self.profile.energy(self._integ_run_start, run_end)
                self._integ_seconds = self._integ_base_s + run_end - self._integ_run_start
            if self.filter_upd:
                self.eesr |= UPD_BIT
            if self._held is not None and self.eesr & self._wait_mask:
                self._resume()
        return self._schedule_s + (n + 1) * self.update_interval_s - t

    def receive(self, data: bytes) -> bytes:
        self._buffer += data
        out = b""
        while b"\n" in self._buffer and self._held is None:
            message, _, self._buffer = self._buffer.partition(b"\n")
            out += self._message(message.decode("ascii", "replace"))
        if len(self._buffer) > 4096:
            self._buffer = b""  # runaway input without a terminator
        return out

    def _resume(self) -> None:
        """The awaited event came: finish the held message, then the messages queued behind it."""
        units, replies, faults = self._held or [], self._held_replies, self._held_faults
        self._held, self._held_replies, self._held_faults, self._wait_mask = None, [], [], 0
        self.emit(self._run_units(units, replies, faults))
        self.emit(self.receive(b""))

    def _message(self, message: str) -> bytes:
        units = [u.strip() for u in message.split(";") if u.strip()]
        return self._run_units(units, [], [])

    def _run_units(self, units: list[str], replies: list[str], faults: list[str]) -> bytes:
        """Run a message's units; replies and the faults drawn for its VAL? units carry over a WAIT."""
        for k, unit in enumerate(units):
            header, _, arg = unit.partition(" ")
            if header.upper() == ":COMM:WAIT":
                mask = int(arg) if arg.strip().isdigit() else 0
                if mask and not self.eesr & mask:
                    self._held, self._held_replies, self._held_faults = units[k + 1:], replies, faults
                    self._wait_mask = mask
                    return b""
                continue
            fault = None
            if header.upper() == ":NUM:NORM:VAL?":
                fault = self.faults.next()
                if fault:
                    faults.append(fault)
            reply = self._unit(unit, fault)
            if reply is not None:
                replies.append(reply)
        if not replies:
            return b""
        line = (";".join(replies) + "\r\n").encode("ascii")
        if "garbage" in faults:
            return self.faults.garbage()
        if "partial" in faults:
            return line[: max(1, len(line) // 2)]
        return line

    def _unit(self, unit: str, fault: str | None = None) -> str | None:
        header, _, arg = unit.partition(" ")
        header, arg = header.upper(), arg.strip().upper()
        if header == "*IDN?":
            return self.IDN
        if header == ":RATE?":
            return nr3(self.update_interval_s)
        if header == ":RATE":
            self._set_rate(arg)
        elif header == ":STAT:EESR?":
            value, self.eesr = self.eesr, 0
            return str(value)
        elif header == ":STAT:FILT1":
            self.filter_upd = arg.startswith(("FALL", "RISE", "BOTH"))
        elif header.startswith(":INTEG"):
            return self._integration_unit(header, arg)
        elif header == ":NUM:NORM:NUM":
            self.item_count = max(1, min(255, int(arg))) if arg.isdigit() else self.item_count
        elif header == ":NUM:NORM:NUM?":
            return str(self.item_count)
        elif re.fullmatch(r":NUM:NORM:ITEM\d+", header):
            self.items[int(header[14:])] = arg.replace(" ", "")
        elif re.fullmatch(r":NUM:NORM:ITEM\d+\?", header):
            return self.items.get(int(header[14:-1]), "NONE")
        elif header == ":NUM:NORM:VAL?":
            numbers = [int(arg)] if arg.isdigit() else range(1, self.item_count + 1)
            if fault is None:
                self.served = self.latest
                self.served_integration = Integration(self._integ_energy_j, self._integ_seconds)
            else:
                self.served = self.served_integration = None
            if fault in _MARKERS:
                return ",".join(_MARKERS[fault] for _ in numbers)
            return ",".join(self._value(n) for n in numbers)
        elif header.endswith("?"):
            log.debug("unknown query %r: no reply", unit)
        return None

    def _integration_unit(self, header: str, arg: str) -> str | None:
        now = self.profile_time(self.clock())
        if header in (":INTEG:STAT?", ":INTEGRATE:STATE?"):
            return self.integration
        if header in (":INTEG:STAR", ":INTEGRATE:START"):
            if self.integration == "START":
                log.debug("error 842: integration already started")
            else:
                if self.integration == "RESET":
                    self._integ_base_j = self._integ_base_s = 0.0
                self.integration, self._integ_run_start = "START", now
        elif header in (":INTEG:STOP", ":INTEGRATE:STOP"):
            if self.integration == "START" and self._integ_run_start is not None:
                self._integ_base_j += self.profile.energy(self._integ_run_start, now)
                self._integ_base_s += now - self._integ_run_start
                self._integ_energy_j, self._integ_seconds = self._integ_base_j, self._integ_base_s
                self.integration, self._integ_run_start = "STOP", None
            else:
                log.debug("error 844: integration is not running")
        elif header in (":INTEG:RES", ":INTEGRATE:RESET"):
            if self.integration == "START":
                log.debug("error 845: stop integration before resetting it")
            else:
                self.integration, self._integ_run_start = "RESET", None
                self._integ_base_j = self._integ_base_s = self._integ_energy_j = self._integ_seconds = 0.0
        elif header.endswith("?"):
            return None  # :INTEG:MODE? and the like: not emulated
        return None

    def _set_rate(self, arg: str) -> None:
        match = _RATE_ARG.fullmatch(arg)
        if not match:
            log.debug("bad :RATE argument %r ignored", arg)
            return
        if self.integration != "RESET":
            log.debug("error 813: :RATE refused during integration")
            return
        rate = float(match[1]) * (1e-3 if (match[2] or "").upper() == "MS" else 1.0)
        if rate > 0 and rate != self.update_interval_s:  # the meter starts a new update cycle
            self._schedule_s = self.clock() - self.origin
            self._completed = 0
            self.update_interval_s = rate

    def _value(self, number: int) -> str:
        update = self.latest
        function = self.items.get(number, "NONE").split(",")[0]
        if function == "WH":
            return nr3(self._integ_energy_j / 3600, 6)
        if function == "TIME":
            return str(int(self._integ_seconds))
        if update is None or function not in ("P", "U", "I"):
            return "NAN"
        return nr3({"P": update.power_w, "U": update.voltage_v, "I": update.current_a}[function])
