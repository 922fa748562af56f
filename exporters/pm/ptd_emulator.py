"""A SPEC PTDaemon on a TCP port, measuring a power profile through an emulated analyzer.

Answers ``Hello``, ``Identify``, ``RR``, ``SR,V|A,<range|Auto>``, ``Go,<period ms>,<samples>[,<mark>]``,
``Stop``, ``Mark,<mark>``, ``Reset``, ``Watts`` (average, min, max, samples, errors, valid since
``Go``), ``Uncertainty`` and ``RL``. While measuring it takes one sample per period, the exact
average of the profile over it; ``RL`` returns the samples not read yet and, when there is none,
holds the reply for up to one period, as PTDaemon does. Unknown commands get ``Invalid command``.

The uncertainty model is the analyzer's: 0.1 % of the reading plus 0.05 % of the range (volts
range × amps range); with a range on auto it is unknown, as on PTDaemon.

Faults spoil ``RL`` replies: ``garbage`` (line noise instead of the reply), ``partial`` (fewer
sample lines than announced, the last one cut), ``nan`` (a sample whose watts are -1, PTDaemon's
error value) and ``error`` (an ``Error: …`` reply; the samples stay unread). Samples consumed by a
spoiled reply are lost, as on the wire.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mltelemetry.exporters.pm.emulator import Emulator, Faults, Profile, PtyLink, TcpServerLink, advance_profile
from mltelemetry.exporters.pm.ptd import HELLO

log = logging.getLogger(__name__)

VERSION = "1.11.1-e3b2c9a1-20240115"


@dataclass(frozen=True)
class PtdSample:
    """One sample: the averages over [start_s, end_s] (seconds on the emulator's clock) and its uncertainty
    (None: unknown)."""

    start_s: float
    end_s: float
    watts: float
    volts: float
    amps: float
    uncertainty: float | None


def _g(value: float) -> str:
    """Five significant digits, as an analyzer reports."""
    return f"{value:.5g}"


class PtdEmulator(Emulator):
    """PTDaemon with an analyzer measuring ``profile`` (see the module docstring); ``link`` is a
    :class:`TcpServerLink` (default: 127.0.0.1 on a free port)."""

    FAULTS = ("garbage", "partial", "nan", "error")
    MARKERS = ("nan",)  # PTDaemon's one invalid value: a sample of -1 W
    TITLE = "PTDaemon"
    IDENTIFY_MODEL = "WT310"

    def __init__(self, profile: Profile, link: str | Path | PtyLink | TcpServerLink | None = None, *,
                 voltage_v: float = 230.0, power_factor: float = 0.95, faults: Faults | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 clock_shift_s: float = 0.0) -> None:
        super().__init__(link if link is not None else TcpServerLink(), clock, faults=faults,
                         clock_shift_s=clock_shift_s)
        self.profile = profile
        self.voltage_v = voltage_v
        self.power_factor = power_factor
        self.wall = wall
        self.ranges = {"V": 300.0, "A": 5.0}  # None: auto
        self.period_s: float | None = None  # set by Go; None while not measuring
        self.mark = ""
        self._go_at = 0.0  # unshifted seconds since origin of the Go
        self._taken = 0  # samples taken since Go
        self.samples: list[PtdSample] = []
        self.unread = 0  # index of the first sample RL has not returned
        self.served: list[PtdSample] = []  # the samples the last good RL reply carried
        self._pending_rl: float | None = None  # deadline (unshifted) of an RL waiting for a sample
        self._buffer = b""

    def connected(self) -> None:
        self._buffer = b""
        self._pending_rl = None

    def identify(self) -> str:
        return (f"{self.IDENTIFY_MODEL},1000,1,1,1,1,0,0,1,version={VERSION},OS=Linux,mode=power,1,1,1,"
                "no_cal_date,YOKOGAWA WT310 EMU00001 behind the PTDaemon emulator")

    def uncertainty(self, watts: float) -> float | None:
        if self.ranges["V"] is None or self.ranges["A"] is None:
            return None
        return 0.001 + 0.0005 * self.ranges["V"] * self.ranges["A"] / max(watts, 1e-3)

    def tick(self, now: float) -> float:
        t = now - self.origin
        wait = 3600.0
        if self.period_s is not None:
            n = math.floor((t - self._go_at) / self.period_s)
            while self._taken < n:
                self._taken += 1
                real_end = self._go_at + self._taken * self.period_s
                advance_profile(self.profile, real_end)
                end = real_end - self.clock_shift_s
                watts = self.profile.energy(end - self.period_s, end) / self.period_s
                amps = watts / (self.voltage_v * self.power_factor) if self.voltage_v else 0.0
                self.samples.append(PtdSample(end - self.period_s, end, watts, self.voltage_v, amps,
                                              self.uncertainty(watts)))
            wait = self._go_at + (n + 1) * self.period_s - t
        if self._pending_rl is not None and (self.unread < len(self.samples) or t >= self._pending_rl):
            self._pending_rl = None
            self.emit(self._rl_reply())
            self.emit(self.receive(b""))  # commands that queued behind the RL
        if self._pending_rl is not None:
            wait = min(wait, self._pending_rl - t)
        return wait

    def receive(self, data: bytes) -> bytes:
        self._buffer += data
        out = b""
        while b"\n" in self._buffer and self._pending_rl is None:
            line, _, self._buffer = self._buffer.partition(b"\n")
            out += self._command(line.decode("ascii", "replace").strip())
        if len(self._buffer) > 4096:
            self._buffer = b""
        return out

    def _command(self, line: str) -> bytes:
        if not line:
            return b""
        fields = [f.strip() for f in line.split(",")]
        command = fields[0]
        if command == "Hello":
            return self._line(HELLO)
        if command == "Identify":
            return self._line(self.identify())
        if command == "RR":
            return self._line("Ranges," + ",".join(
                "1,-1" if self.ranges[k] is None else f"0,{self.ranges[k]:g}" for k in ("A", "V")))
        if command == "SR" and len(fields) >= 3 and fields[1].upper() in ("V", "A"):
            kind, value = fields[1].upper(), fields[2]
            if value.lower() == "auto":
                self.ranges[kind] = None
            else:
                try:
                    number = float(value)
                except ValueError:
                    return self._line("Error in parameter")
                if not number > 0 or not math.isfinite(number):
                    return self._line("Error in parameter")
                self.ranges[kind] = number
            return self._line(f"Range {kind} changed")
        if command == "Go" and len(fields) >= 3:
            try:
                period_ms = int(fields[1])
            except ValueError:
                return self._line("Error in parameter")
            if period_ms <= 0:
                period_ms = 1000
            if self.period_s is not None:
                return self._line("Error: measurement already running")
            self.period_s, self.mark = period_ms / 1000, fields[3] if len(fields) > 3 else ""
            self._go_at, self._taken = self.clock() - self.origin, 0
            self.samples, self.unread = [], 0
            return self._line(f"Starting untimed measurement, maximum 500000 samples at {period_ms}ms "
                              "with 0 rampup samples")
        if command == "Stop":
            self.period_s = None
            return self._line("Stopping untimed measurement")
        if command == "Mark" and len(fields) >= 2:
            self.mark = fields[1]
            return self._line("Mark changed")
        if command == "Reset":
            return self._line("Reset done")
        if command == "Watts":
            watts = [s.watts for s in self.samples]
            if not watts:
                return self._line("Watts,-1.000000,-1.000000,-1.000000,0,0,0")
            return self._line(f"Watts,{sum(watts) / len(watts):.6f},{min(watts):.6f},{max(watts):.6f},"
                              f"{len(watts)},0,{len(watts)}")
        if command == "Uncertainty":
            return self._line(self._uncertainty_line())
        if command == "RL":
            if self.period_s is None and self.unread >= len(self.samples):
                return self._line("Error: no measurement running")
            if self.unread >= len(self.samples) and self.period_s is not None:
                self._pending_rl = self.clock() - self.origin + self.period_s
                return b""
            return self._rl_reply()
        return self._line("Invalid command")

    @staticmethod
    def _line(text: str) -> bytes:
        return (text + "\r\n").encode("ascii")

    def _uncertainty_line(self) -> str:
        known = [s.uncertainty for s in self.samples if s.uncertainty is not None]
        unknown = len(self.samples) - len(known)
        if not known:
            return f"Uncertainty,-1.000000,-1.000000,-1.000000,{len(self.samples)},0,0,{unknown}"
        invalid = sum(u > 0.01 for u in known)
        return (f"Uncertainty,{sum(known) / len(known):.6f},{min(known):.6f},{max(known):.6f},{len(self.samples)},"
                f"{invalid},{len(known) - invalid},{unknown}")

    def _timestamp(self, sample: PtdSample) -> str:
        wall = self.wall() - (self.clock() - self.origin - self.clock_shift_s - sample.end_s)
        return datetime.datetime.fromtimestamp(wall).strftime("%m-%d-%Y %H:%M:%S.%f")[:-3]

    def _sample_line(self, sample: PtdSample, watts: str | None = None) -> str:
        line = (f"Time,{self._timestamp(sample)},Watts,{watts or _g(sample.watts)},Volts,{_g(sample.volts)},"
                f"Amps,{_g(sample.amps)},PF,{self.power_factor:.4f}")
        return line + (f",Mark,{self.mark}" if self.mark else "")

    def _rl_reply(self) -> bytes:
        fault = self.faults.next()
        if fault == "error":
            self.served = []
            return self._line("Error: the analyzer did not answer")
        new, self.unread = self.samples[self.unread:], len(self.samples)
        if not new:
            self.served = []
            return self._line("No unread samples available")
        lines = [self._sample_line(s) for s in new]
        self.served = [] if fault else new
        if fault == "nan":
            lines[-1] = self._sample_line(new[-1], "-1.000000")
            self.served = new[:-1]
        reply = "".join(line + "\r\n" for line in [f"Last {len(new)} samples", *lines]).encode("ascii")
        if fault == "garbage":
            return self.faults.garbage()
        if fault == "partial":
            return reply[: len(reply) - len(lines[-1]) // 2 - 2]
        return reply
