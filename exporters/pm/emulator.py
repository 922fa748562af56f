"""What every power-meter emulator shares: real pseudo-terminals and TCP ports, and the power profiles they measure.

Each meter's emulator sits beside its driver (``wt300_emulator.py``, ``mcp39f511_emulator.py``,
``ptd_emulator.py``) and is found through the meter's plug-in (``registry.py``). Shared here:

- **Profiles** give the true power of the emulated load as a function of time (seconds since
  the emulator started) and its exact integral ``energy(t0, t1)`` in joules, so tests can
  compare an exporter's energy with the truth. :func:`parse_profile` reads the spec strings
  ``constant:W``, ``steps:W1/S1,W2/S2,...``, ``csv:PATH`` and ``cpu:IDLE_W,SLOPE_W``.
- The "cables": :class:`PtyLink`, a pty in raw mode whose slave path is symlinked at a chosen
  path, and :class:`TcpServerLink`, a listening port on loopback; ``unplug()`` closes it (and removes
  the link), ``plug()`` opens a new one.
- :class:`Faults` decides which replies to spoil (garbage, partial, NAN/INF/over-range, bad
  checksum, NAK, error replies), at seeded random rates or on demand.
- :class:`Emulator` runs the loop, in a thread (``start``) or the caller's (``run``), and can
  shift the meter's clock (``clock_shift_s``) to test clock alignment.
"""

from __future__ import annotations

import bisect
import csv
import logging
import math
import os
import random
import select
import socket
import threading
import time
import tty
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import psutil

from mltelemetry.errors import MltelemetryError
from mltelemetry.exporters.pm.transport import shut_socket

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

    def advance(self, t: float) -> None:
        """Record the utilisation up to ``t`` (real seconds since the start), ahead of a shifted clock."""
        self._record(t)


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
FAULT_KINDS = ("garbage", "partial", "nan", "inf", "overrange", "checksum", "nak", "csfail", "error")
"""Every kind of spoiled reply an emulator can send; each emulator supports a subset (its ``FAULTS``):

- ``garbage``: line noise (NULs, non-ASCII bytes) instead of the reply;
- ``partial``: the reply cut short (no terminator, a short frame, fewer sample lines than announced);
- ``nan``, ``inf``, ``overrange``: the meter's no-data and error markers in place of values
  (for PTDaemon: a sample whose watts are -1, its error value);
- ``checksum``: a binary frame with a wrong checksum;
- ``nak``, ``csfail``: the chip refuses the request (NAK, or "your checksum failed");
- ``error``: an error reply (PTDaemon's ``Error: ...``).
"""


class Faults:
    """Which replies to spoil: injected ones first, otherwise at random with seeded rates.

    ``nan_rate`` picks evenly among ``markers`` (NAN, INF, 9.91E+37 for the WT300);
    ``nak_rate`` among NAK and checksum-fail replies. ``counts`` holds how many replies of each
    kind were spoiled.
    """

    def __init__(self, garbage_rate: float = 0.0, partial_rate: float = 0.0, nan_rate: float = 0.0,
                 seed: int | None = None, *, checksum_rate: float = 0.0, nak_rate: float = 0.0,
                 error_rate: float = 0.0, markers: Sequence[str] = ("nan", "inf", "overrange")) -> None:
        rates = (garbage_rate, partial_rate, nan_rate, checksum_rate, nak_rate, error_rate)
        if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1:
            raise MltelemetryError(f"fault rates must lie in [0, 1] and sum to at most 1, got {rates}")
        self.garbage_rate, self.partial_rate, self.nan_rate = garbage_rate, partial_rate, nan_rate
        self.checksum_rate, self.nak_rate, self.error_rate = checksum_rate, nak_rate, error_rate
        self.markers = tuple(markers)
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self._injected: deque[str] = deque()

    def rated_kinds(self) -> set[str]:
        """The kinds the random rates can produce."""
        kinds = set()
        for rate, produces in ((self.garbage_rate, ("garbage",)), (self.partial_rate, ("partial",)),
                               (self.nan_rate, self.markers), (self.checksum_rate, ("checksum",)),
                               (self.nak_rate, ("nak", "csfail")), (self.error_rate, ("error",))):
            if rate > 0:
                kinds.update(produces)
        return kinds

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
            kind = None
            for rate, choices in ((self.garbage_rate, ("garbage",)), (self.partial_rate, ("partial",)),
                                  (self.nan_rate, self.markers), (self.checksum_rate, ("checksum",)),
                                  (self.nak_rate, ("nak", "csfail")), (self.error_rate, ("error",))):
                if x < rate:
                    kind = choices[0] if len(choices) == 1 else self.rng.choice(choices)
                    break
                x -= rate
        if kind:
            self.counts[kind] += 1
        return kind

    def garbage(self, terminator: bytes = b"\r\n") -> bytes:
        """A line of line noise: NULs and non-ASCII bytes, then ``terminator``."""
        noise = bytes(self.rng.choice((0x00, *range(0x80, 0x100))) for _ in range(self.rng.randint(1, 24)))
        return noise + terminator


# --- the "cables": a pseudo-terminal or a TCP port ----------------------------------------------
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

    @property
    def address(self) -> str:
        """What a driver opens: the symlink's path."""
        return str(self.link)

    @property
    def plugged(self) -> bool:
        return self.master is not None

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

    def fds(self) -> list[int]:
        return [self.master] if self.master is not None else []

    def readable(self, fd: int) -> tuple[bytes, bool]:
        """Data that arrived on ``fd``, and whether a new client connected (never, on a pty)."""
        try:
            return os.read(fd, 4096), False
        except OSError:
            return b"", False

    def send(self, data: bytes) -> None:
        if self.master is None:
            return
        try:
            os.write(self.master, data)
        except BlockingIOError:
            log.debug("client is not reading; reply dropped")
        except OSError:
            pass


class TcpServerLink:
    """A listening TCP port on ``host`` (``port`` 0: the system picks one; ``port`` holds it after
    the first plug). One client at a time: a new connection replaces the current one. Unplugging
    closes the client's connection and stops listening; plugging listens on the same port again."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._listener: socket.socket | None = None
        self.client: socket.socket | None = None

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def link(self) -> str:
        return self.address

    @property
    def plugged(self) -> bool:
        return self._listener is not None

    def plug(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError as e:
            listener.close()
            raise MltelemetryError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        listener.listen(4)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _drop_client(self) -> None:
        if self.client is not None:
            shut_socket(self.client)
            self.client = None

    def unplug(self) -> None:
        self._drop_client()
        if self._listener is not None:
            shut_socket(self._listener)
            self._listener = None

    def fds(self) -> list[int]:
        return [s.fileno() for s in (self._listener, self.client) if s is not None]

    def readable(self, fd: int) -> tuple[bytes, bool]:
        if self._listener is not None and fd == self._listener.fileno():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return b"", False
            self._drop_client()
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.client = client
            return b"", True
        if self.client is None or fd != self.client.fileno():
            return b"", False
        try:
            data = self.client.recv(4096)
        except BlockingIOError:
            return b"", False
        except OSError:
            data = b""
        if not data:
            self._drop_client()
        return data, False

    def send(self, data: bytes) -> None:
        if self.client is None:
            return
        try:
            self.client.sendall(data)
        except BlockingIOError:
            log.debug("client is not reading; reply dropped")
        except OSError:
            self._drop_client()


# --- the serial loop -----------------------------------------------------------------------
class Emulator:
    """The loop of an emulated meter; subclasses implement ``receive`` and ``tick``.

    ``link`` is the cable: a path (a :class:`PtyLink` symlinked there), a :class:`TcpServerLink` or a
    ``vxi11.Vxi11ServerLink``.
    ``clock`` is a monotonic clock in seconds. ``clock_shift_s`` shifts the meter's clock against
    the host's: what it reports lags the load by that many seconds (the profile is evaluated at
    ``t - clock_shift_s``), which is what ``mltelemetry pm align`` measures.

    Use ``start()``/``close()`` (or ``with``) to run it in a thread, or ``run()`` to run it in the
    caller's thread until ``stop()``. Replies that are not answers to input (a query held by
    ``:COMM:WAIT``, PTDaemon's ``RL`` waiting for a sample) are queued with ``emit`` from ``tick``.
    """

    FAULTS: tuple[str, ...] = FAULT_KINDS
    """The fault kinds this meter's protocol has."""
    MARKERS: tuple[str, ...] = ("nan", "inf", "overrange")
    """The invalid-value markers ``--nan-rate`` picks among (see :class:`Faults`)."""
    TITLE = "a power meter"
    """What ``pm emulate`` says it emulates: "emulating <TITLE> on <address>"."""

    def __init__(self, link, clock: Callable[[], float] = time.monotonic, *,
                 faults: Faults | None = None, clock_shift_s: float = 0.0) -> None:
        self.port = PtyLink(link) if isinstance(link, (str, Path)) else link
        self.clock = clock
        self.faults = faults or Faults()
        unsupported = self.faults.rated_kinds() - set(self.FAULTS)
        if unsupported:
            raise MltelemetryError(f"{type(self).__name__} cannot inject {', '.join(sorted(unsupported))}; "
                                   f"its faults are {', '.join(self.FAULTS)}")
        self.clock_shift_s = clock_shift_s
        self.origin = clock()  # profile time zero (before the shift)
        self._lock = threading.Lock()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._outbox = bytearray()

    @property
    def address(self) -> str:
        """What a driver opens: the pty symlink's path or ``tcp://HOST:PORT``."""
        return self.port.address

    def details(self) -> str:
        """Settings for the banner after the profile (", update every 1 s"); none by default."""
        return ""

    def profile_time(self, now: float) -> float:
        """Seconds since the start on the meter's (shifted) clock: where the profile is evaluated."""
        return now - self.origin - self.clock_shift_s

    def inject(self, kind: str, count: int = 1) -> None:
        """Spoil the next ``count`` replies that carry readings with ``kind``."""
        if kind not in self.FAULTS:
            raise ValueError(f"{type(self).__name__} has no fault {kind!r}; one of {self.FAULTS}")
        self.faults.inject(kind, count)

    def tick(self, now: float) -> float:
        """Advance the meter to ``now``; return the seconds until it next wants to run."""
        raise NotImplementedError

    def receive(self, data: bytes) -> bytes:
        """Bytes from the client in, reply bytes out."""
        raise NotImplementedError

    def connected(self) -> None:
        """A new client connected (TCP): start a fresh session. Nothing by default."""

    def emit(self, data: bytes) -> None:
        """Queue bytes for the client outside a reply to input (called with the lock held)."""
        self._outbox += data

    def plug(self) -> None:
        """Connect the cable: a new pty (the link pointing at it) or listen on the TCP port again."""
        with self._lock:
            self.port.plug()
        self._wake()

    def unplug(self) -> None:
        """Pull the cable: close the pty or the connection (the client's port fails), remove the link."""
        with self._lock:
            self.port.unplug()
            self._outbox.clear()
        self._wake()

    def _wake(self) -> None:
        if self._wake_w >= 0:  # not closed yet
            os.write(self._wake_w, b"x")

    def start(self) -> Emulator:
        """Plug in and serve in a thread (which never plugs in itself: a cable pulled meanwhile stays pulled)."""
        self.plug()
        self._thread = threading.Thread(target=self._serve, name=f"emulator {self.port.address}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Make ``run()`` return (safe from a signal handler)."""
        self._stopping = True
        self._wake()

    def run(self) -> None:
        """Plug in and serve until ``stop()``; unplugs (removing the link) on the way out."""
        self.plug()
        self._serve()

    def _serve(self) -> None:
        try:
            while not self._stopping:
                self._step()
        finally:
            self.unplug()

    def _flush(self) -> None:
        if self._outbox:
            self.port.send(bytes(self._outbox))
            self._outbox.clear()

    def _step(self) -> None:
        with self._lock:
            wait = self.tick(self.clock())
            service = getattr(self.port, "service", None)  # a link with its own timeouts (VXI-11 reads)
            if service is not None:
                service(time.monotonic())
                deadline = self.port.next_deadline()
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
            self._flush()
            fds = self.port.fds()
        try:
            ready, _, _ = select.select([self._wake_r, *fds], [], [], max(wait, 0))
        except (OSError, ValueError):
            return  # the link was closed by unplug() meanwhile
        if self._wake_r in ready:
            os.read(self._wake_r, 512)
        for fd in ready:
            if fd == self._wake_r:
                continue
            with self._lock:
                if fd not in self.port.fds():
                    continue
                data, new_client = self.port.readable(fd)
                if new_client:
                    self._outbox.clear()
                    self.connected()
                if not data:
                    continue
                self.tick(self.clock())
                reply = self.receive(data)
                if reply:
                    self.emit(reply)
                self._flush()

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

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def advance_profile(profile: Profile, real_t: float) -> None:
    """Let a profile that measures this machine (``cpu:``) record up to ``real_t`` (unshifted seconds)."""
    advance = getattr(profile, "advance", None)
    if advance is not None:
        advance(real_t)
