"""Power-meter emulators on real pseudo-terminals, and the power profiles they measure.

Shared machinery, for every emulated meter:

- **Profiles** give the true power of the emulated load as a function of time (seconds since
  the emulator started) and its exact integral ``energy(t0, t1)`` in joules, so tests can
  compare an exporter's energy with the truth. :func:`parse_profile` reads the spec strings
  ``constant:W``, ``steps:W1/S1,W2/S2,...``, ``csv:PATH`` and ``cpu:IDLE_W,SLOPE_W``.
- :class:`PtyLink` is the "cable": a pty in raw mode whose slave path is symlinked at a chosen
  path; ``unplug()`` closes it and removes the link, ``plug()`` opens a new one.
- :class:`Faults` decides which replies to spoil (garbage, partial, NAN, INF, over-range), at
  seeded random rates or on demand.
- :class:`PtyEmulator` runs the serial loop, in a thread (``start``) or the caller's (``run``).

:class:`Wt300Emulator` is the Yokogawa WT300-series meter on top of it.
"""

from __future__ import annotations

import bisect
import csv
import logging
import math
import os
import random
import re
import select
import threading
import time
import tty
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from mltelemetry.errors import MltelemetryError

log = logging.getLogger(__name__)


# --- profiles ------------------------------------------------------------------------------
class Profile(Protocol):
    def energy(self, t0: float, t1: float) -> float:
        """Exact energy in J drawn between ``t0`` and ``t1`` (seconds since the emulator started)."""
        ...


class PeriodicProfile:
    """Piecewise-linear power, repeated forever: segments of ``(duration_s, start_w, end_w)``.

    A step is a segment with equal start and end; a ramp one with different ends.
    """

    def __init__(self, segments: Sequence[tuple[float, float, float]]) -> None:
        if not segments:
            raise ValueError("a profile needs at least one segment")
        for duration, start_w, end_w in segments:
            if not duration > 0 or not math.isfinite(duration):
                raise ValueError(f"durations must be positive seconds, got {duration}")
            if not all(math.isfinite(w) and w >= 0 for w in (start_w, end_w)):
                raise ValueError(f"power must be finite, non-negative watts, got {start_w}, {end_w}")
        self.segments = list(segments)
        self._starts, self._energies = [0.0], [0.0]  # cumulative time and energy at segment starts
        for duration, start_w, end_w in self.segments:
            self._starts.append(self._starts[-1] + duration)
            self._energies.append(self._energies[-1] + duration * (start_w + end_w) / 2)
        self.period_s = self._starts[-1]

    def _locate(self, t: float) -> tuple[int, float, int]:
        cycles, offset = divmod(t, self.period_s)
        i = min(bisect.bisect_right(self._starts, offset) - 1, len(self.segments) - 1)
        return int(cycles), offset - self._starts[i], i

    def power(self, t: float) -> float:
        """Power in W at ``t`` seconds."""
        _, within, i = self._locate(t)
        duration, start_w, end_w = self.segments[i]
        return start_w + (end_w - start_w) * within / duration

    def _cumulative(self, t: float) -> float:
        cycles, within, i = self._locate(t)
        duration, start_w, end_w = self.segments[i]
        slope = (end_w - start_w) / duration
        return cycles * self._energies[-1] + self._energies[i] + start_w * within + slope * within**2 / 2

    def energy(self, t0: float, t1: float) -> float:
        return self._cumulative(t1) - self._cumulative(t0)


def constant_profile(watts: float) -> PeriodicProfile:
    return PeriodicProfile([(1.0, watts, watts)])


def steps_profile(steps: Sequence[tuple[float, float]]) -> PeriodicProfile:
    """``(watts, seconds)`` steps, cycling."""
    return PeriodicProfile([(seconds, watts, watts) for watts, seconds in steps])


def csv_profile(path: str | Path) -> PeriodicProfile:
    """Rows ``seconds,watts`` (an optional header row, ``#`` comments), replayed and looped.

    Power is linear between rows (a step is two rows at nearly the same time); the replay
    starts at the first row and, after the last row, jumps back to the first one.
    """
    try:
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row and not row[0].lstrip().startswith("#")]
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    points = []
    for n, row in enumerate(rows):
        try:
            points.append((float(row[0]), float(row[1])))
        except (ValueError, IndexError):
            if n == 0:
                continue  # a header
            raise ValueError(f"{path}: row {n + 1} is not 'seconds,watts': {','.join(row)!r}") from None
    if len(points) < 2:
        raise ValueError(f"{path}: needs at least two rows of seconds,watts")
    segments = [(t1 - t0, w0, w1) for (t0, w0), (t1, w1) in zip(points, points[1:])]
    if any(not duration > 0 for duration, _, _ in segments):
        raise ValueError(f"{path}: times must increase from row to row")
    return PeriodicProfile(segments)


class CpuProfile:
    """``idle_w + slope_w × CPU utilisation`` of this machine (psutil, 0 to 1).

    The utilisation is measured over each stretch between two calls of ``energy`` with a new
    end time (the emulator calls it once per update interval), so power is constant within
    each stretch and its integral is exact once recorded. Uses ``psutil.cpu_percent``'s
    process-wide baseline, so nothing else in the process should call it.
    """

    def __init__(self, idle_w: float, slope_w: float, cpu_percent: Callable[[], float] = psutil.cpu_percent):
        if not all(math.isfinite(w) and w >= 0 for w in (idle_w, slope_w)):
            raise ValueError("idle and slope must be finite, non-negative watts")
        self.idle_w, self.slope_w = idle_w, slope_w
        self._cpu_percent = cpu_percent
        self._cpu_percent()  # starts the first measuring stretch
        self._times, self._watts, self._energies = [0.0], [], [0.0]

    def _record(self, t: float) -> None:
        if t > self._times[-1]:
            watts = self.idle_w + self.slope_w * self._cpu_percent() / 100
            self._energies.append(self._energies[-1] + watts * (t - self._times[-1]))
            self._times.append(t)
            self._watts.append(watts)

    def _cumulative(self, t: float) -> float:
        if t <= 0:
            return 0.0
        i = bisect.bisect_right(self._times, t) - 1
        return self._energies[i] + (self._watts[i] * (t - self._times[i]) if i < len(self._watts) else 0.0)

    def energy(self, t0: float, t1: float) -> float:
        self._record(t1)
        return self._cumulative(t1) - self._cumulative(t0)


PROFILE_SYNTAX = "constant:W, steps:W1/S1,W2/S2,..., csv:PATH or cpu:IDLE_W,SLOPE_W"


def parse_profile(spec: str) -> Profile:
    """A profile from its spec string (see ``PROFILE_SYNTAX``); MltelemetryError when malformed."""
    kind, _, arg = spec.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    try:
        if kind == "constant":
            return constant_profile(float(arg))
        if kind == "steps":
            steps = []
            for step in arg.split(","):
                watts, sep, seconds = step.partition("/")
                if not sep:
                    raise ValueError(f"step {step!r} is not WATTS/SECONDS")
                steps.append((float(watts), float(seconds)))
            return steps_profile(steps)
        if kind == "csv":
            return csv_profile(arg)
        if kind == "cpu":
            idle, sep, slope = arg.partition(",")
            if not sep:
                raise ValueError("cpu wants IDLE_W,SLOPE_W")
            return CpuProfile(float(idle), float(slope))
    except ValueError as e:
        raise MltelemetryError(f"bad profile {spec!r}: {e}") from None
    raise MltelemetryError(f"unknown profile {spec!r}; use {PROFILE_SYNTAX}")


# --- faults --------------------------------------------------------------------------------
FAULT_KINDS = ("garbage", "partial", "nan", "inf", "overrange")


class Faults:
    """Which replies to spoil: injected ones first, otherwise at random with seeded rates.

    ``nan_rate`` covers the three marker kinds (NAN, INF, 9.91E+37), picked evenly.
    ``counts`` holds how many replies of each kind were spoiled.
    """

    def __init__(self, garbage_rate: float = 0.0, partial_rate: float = 0.0, nan_rate: float = 0.0,
                 seed: int | None = None) -> None:
        rates = (garbage_rate, partial_rate, nan_rate)
        if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1:
            raise MltelemetryError(f"fault rates must lie in [0, 1] and sum to at most 1, got {rates}")
        self.garbage_rate, self.partial_rate, self.nan_rate = rates
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self._injected: deque[str] = deque()

    def inject(self, kind: str, count: int = 1) -> None:
        """Spoil the next ``count`` replies with ``kind`` (one of ``FAULT_KINDS``)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        self._injected.extend([kind] * count)

    def next(self) -> str | None:
        """The fault for the next reply, or None for a good one."""
        if self._injected:
            kind: str | None = self._injected.popleft()
        else:
            x = self.rng.random()
            if x < self.garbage_rate:
                kind = "garbage"
            elif x < self.garbage_rate + self.partial_rate:
                kind = "partial"
            elif x < self.garbage_rate + self.partial_rate + self.nan_rate:
                kind = self.rng.choice(("nan", "inf", "overrange"))
            else:
                kind = None
        if kind:
            self.counts[kind] += 1
        return kind

    def garbage(self) -> bytes:
        """A line of line noise: NULs and non-ASCII bytes, CR+LF-terminated."""
        noise = bytes(self.rng.choice((0x00, *range(0x80, 0x100))) for _ in range(self.rng.randint(1, 24)))
        return noise + b"\r\n"


# --- the pty "cable" and the serial loop ---------------------------------------------------
class PtyLink:
    """A raw pseudo-terminal whose slave path is symlinked at ``link`` while plugged in.

    The emulator keeps its own slave fd open, so reads on the master never fail with EIO
    while no client has the port open.
    """

    def __init__(self, link: str | Path) -> None:
        self.link = Path(link)
        self.master: int | None = None
        self._slave: int | None = None
        self.device: str | None = None

    def plug(self) -> None:
        if self.master is not None:
            return
        if self.link.exists() and not self.link.is_symlink():
            raise MltelemetryError(f"{self.link} exists and is not a symlink; refusing to replace it")
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation
        os.set_blocking(master, False)
        self.master, self._slave, self.device = master, slave, os.ttyname(slave)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(self.device, tmp)
        os.replace(tmp, self.link)  # re-points the link atomically

    def unplug(self) -> None:
        if self.master is None:
            return
        if self.link.is_symlink():
            self.link.unlink()
        for fd in (self.master, self._slave):
            os.close(fd)  # type: ignore[arg-type]
        self.master = self._slave = self.device = None


class PtyEmulator:
    """The serial loop of an emulated meter; subclasses implement ``receive`` and ``tick``.

    ``clock`` is a monotonic clock in seconds. Use ``start()``/``close()`` (or ``with``) to run
    it in a thread, or ``run()`` to run it in the caller's thread until ``stop()``.
    """

    def __init__(self, link: str | Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.port = PtyLink(link)
        self.clock = clock
        self._lock = threading.Lock()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    def tick(self, now: float) -> float:
        """Advance the meter to ``now``; return the seconds until it next wants to run."""
        raise NotImplementedError

    def receive(self, data: bytes) -> bytes:
        """Bytes from the client in, reply bytes out."""
        raise NotImplementedError

    def plug(self) -> None:
        """Connect the cable: a new pty, the link pointing at it."""
        with self._lock:
            self.port.plug()
        self._wake()

    def unplug(self) -> None:
        """Pull the cable: close the pty (the client's port fails) and remove the link."""
        with self._lock:
            self.port.unplug()
        self._wake()

    def _wake(self) -> None:
        if self._wake_w >= 0:  # not closed yet
            os.write(self._wake_w, b"x")

    def start(self) -> PtyEmulator:
        self.plug()
        self._thread = threading.Thread(target=self.run, name=f"emulator {self.port.link}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Make ``run()`` return (safe from a signal handler)."""
        self._stopping = True
        self._wake()

    def run(self) -> None:
        """Serve until ``stop()``, plugged in; unplugs (removing the link) on the way out."""
        self.plug()
        try:
            while not self._stopping:
                self._step()
        finally:
            self.unplug()

    def _step(self) -> None:
        with self._lock:
            wait = self.tick(self.clock())
            fd = self.port.master
        try:
            ready, _, _ = select.select([self._wake_r] + ([fd] if fd is not None else []), [], [], max(wait, 0))
        except (OSError, ValueError):
            return  # the pty was closed by unplug() meanwhile
        if self._wake_r in ready:
            os.read(self._wake_r, 512)
        if fd is None or fd not in ready:
            return
        with self._lock:
            if fd != self.port.master:
                return
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            self.tick(self.clock())
            reply = self.receive(data)
            if reply:
                try:
                    os.write(fd, reply)
                except BlockingIOError:
                    log.debug("client is not reading; reply dropped")

    def close(self) -> None:
        """Stop the thread (if any), unplug and release everything; closing twice is harmless."""
        if self._wake_w < 0:
            return
        self.stop()
        if self._thread is not None:
            self._thread.join(5)
        self.unplug()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> PtyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- Yokogawa WT300 series -----------------------------------------------------------------
@dataclass(frozen=True)
class Update:
    """One completed measurement: the averages over [start_s, end_s] (seconds since the start)."""

    start_s: float
    end_s: float
    power_w: float
    voltage_v: float
    current_a: float


_RATE_ARG = re.compile(r"([0-9.]+(?:E[+-]?\d+)?)\s*(MS|S)?", re.IGNORECASE)
_MARKERS = {"nan": "NAN", "inf": "INF", "overrange": "9.91E+37"}


def nr3(value: float) -> str:
    """ASCII NR3 with five significant digits, as the meter sends (``8.7654E+01``)."""
    return f"{value:.4E}"


class Wt300Emulator(PtyEmulator):
    """A WT310 measuring ``profile``: one update per ``update_interval_s``, each the exact average
    of the profile over that interval; ``:NUM:NORM:VAL?`` returns the latest completed update.

    Answers ``*IDN?``, ``:RATE?``, ``:RATE <n>S|<n>MS``, ``:NUM:NORM:NUM[?]``,
    ``:NUM:NORM:ITEM<n>[?]`` (functions P, U, I; others read NAN) and ``:NUM:NORM:VAL?``;
    every other set command is accepted silently, unknown queries get no reply (as on the
    meter, the client times out). Units of one message are split on ``;`` and each needs its
    full header. Before the first update completes, values read NAN ("no data").
    """

    IDN = "YOKOGAWA,WT310,EMU00001,F1.03"

    def __init__(self, profile: Profile, link: str | Path, *, update_interval_s: float = 1.0,
                 voltage_v: float = 230.0, faults: Faults | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(link, clock)
        self.profile = profile
        self.voltage_v = voltage_v
        self.faults = faults or Faults()
        self.update_interval_s = update_interval_s
        self.items = {1: "U,1", 2: "I,1", 3: "P,1"}
        self.item_count = 3
        self.origin = clock()  # profile time zero
        self._schedule_s = 0.0  # profile time of the current update schedule's start
        self._completed = 0  # updates completed since _schedule_s
        self.latest: Update | None = None
        self.served: Update | None = None  # what the last VAL? reply carried; None if spoiled or no data
        self._buffer = b""

    def inject(self, kind: str, count: int = 1) -> None:
        """Spoil the next ``count`` VAL? replies with ``kind`` (garbage, partial, nan, inf, overrange)."""
        self.faults.inject(kind, count)

    def seconds_to_next_update(self) -> float:
        """Seconds until the meter completes its next update (tests use it to pick a sampling phase)."""
        return self.update_interval_s - (self.clock() - self.origin - self._schedule_s) % self.update_interval_s

    def tick(self, now: float) -> float:
        t = now - self.origin
        n = math.floor((t - self._schedule_s) / self.update_interval_s)
        if n > self._completed:
            end = self._schedule_s + n * self.update_interval_s
            start = end - self.update_interval_s
            power = self.profile.energy(start, end) / self.update_interval_s
            self.latest = Update(start, end, power, self.voltage_v, power / self.voltage_v)
            self._completed = n
        return self._schedule_s + (n + 1) * self.update_interval_s - t

    def receive(self, data: bytes) -> bytes:
        self._buffer += data
        out = b""
        while b"\n" in self._buffer:
            message, _, self._buffer = self._buffer.partition(b"\n")
            out += self._message(message.decode("ascii", "replace"))
        if len(self._buffer) > 4096:
            self._buffer = b""  # runaway input without a terminator
        return out

    def _message(self, message: str) -> bytes:
        units = [u.strip() for u in message.split(";") if u.strip()]
        reads_values = any(u.upper().startswith(":NUM:NORM:VAL?") for u in units)
        fault = self.faults.next() if reads_values else None
        replies = [r for r in (self._unit(u, fault) for u in units) if r is not None]
        if not replies:
            return b""
        line = (";".join(replies) + "\r\n").encode("ascii")
        if fault == "garbage":
            return self.faults.garbage()
        if fault == "partial":
            return line[: max(1, len(line) // 2)]
        return line

    def _unit(self, unit: str, fault: str | None) -> str | None:
        header, _, arg = unit.partition(" ")
        header, arg = header.upper(), arg.strip().upper()
        if header == "*IDN?":
            return self.IDN
        if header == ":RATE?":
            return nr3(self.update_interval_s)
        if header == ":RATE":
            self._set_rate(arg)
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
            return ",".join(self._value(n, fault) for n in numbers)
        elif header.endswith("?"):
            log.debug("unknown query %r: no reply", unit)
        return None

    def _set_rate(self, arg: str) -> None:
        match = _RATE_ARG.fullmatch(arg)
        if not match:
            log.debug("bad :RATE argument %r ignored", arg)
            return
        rate = float(match[1]) * (1e-3 if (match[2] or "").upper() == "MS" else 1.0)
        if rate > 0 and rate != self.update_interval_s:  # the meter starts a new update cycle
            self._schedule_s = self.clock() - self.origin
            self._completed = 0
            self.update_interval_s = rate

    def _value(self, number: int, fault: str | None) -> str:
        update = self.latest
        self.served = update if fault is None else None
        if fault in _MARKERS:
            return _MARKERS[fault]
        function = self.items.get(number, "NONE").split(",")[0]
        if update is None or function not in ("P", "U", "I"):
            return "NAN"
        return nr3({"P": update.power_w, "U": update.voltage_v, "I": update.current_a}[function])
