"""A fourth power meter, for tests only: driver, emulator and plug-in in this one module.

It proves that a meter is one module plus a registration line (``registry.PLUGINS + (PLUGIN,)``): nothing
else in the code names it, yet ``exporter pm --driver tiny`` and ``pm emulate --driver tiny`` exist.

The protocol: the client sends ``P? <channel>`` (LF); the meter answers the average power in W over its
latest completed update (one every ``period_s``), channel 1 carrying the load and channel 2 none, or ``NAN``
before its first update.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from mltelemetry.exporters.pm.emulator import Emulator, Faults, Profile, advance_profile
from mltelemetry.exporters.pm.meter import NUMBER, InvalidReading, MeterError, MeterIdentity, MeterReading, decode_reply
from mltelemetry.exporters.pm.plugin import Connection, MeterOption, MeterPlugin
from mltelemetry.exporters.pm.transport import open_link, read_line


class Tiny:
    name = "tiny"

    def __init__(self, port: str, *, baudrate: int, channel: int, timeout_s: float = 1.0) -> None:
        self.channel, self.timeout_s = channel, timeout_s
        self.identity = MeterIdentity(model="TINY-1")
        self._link = open_link(port, baudrate=baudrate, timeout_s=timeout_s)

    def read(self) -> MeterReading:
        self._link.reset_input()
        self._link.write(f"P? {self.channel}\n".encode("ascii"))
        text = decode_reply(read_line(self._link, self.timeout_s))
        if text == "NAN":
            return MeterReading(None, None, None)
        if not NUMBER.fullmatch(text):
            raise InvalidReading(f"not a number: {text[:20]!r}")
        return MeterReading(float(text), None, None)

    def close(self) -> None:
        self._link.close()


class TinyEmulator(Emulator):
    FAULTS = ("garbage",)
    TITLE = "a tiny meter"

    def __init__(self, profile: Profile, link, *, period_s: float = 0.25, faults: Faults | None = None,
                 clock: Callable[[], float] = time.monotonic, clock_shift_s: float = 0.0) -> None:
        super().__init__(link, clock, faults=faults, clock_shift_s=clock_shift_s)
        self.profile, self.period_s = profile, period_s
        self.power_w: float | None = None
        self._completed = 0
        self._buffer = b""

    def details(self) -> str:
        return f", update every {self.period_s:g} s"

    def tick(self, now: float) -> float:
        t = now - self.origin
        n = math.floor(t / self.period_s)
        if n > self._completed:
            self._completed = n
            advance_profile(self.profile, n * self.period_s)
            end = n * self.period_s - self.clock_shift_s
            self.power_w = self.profile.energy(end - self.period_s, end) / self.period_s
        return (n + 1) * self.period_s - t

    def receive(self, data: bytes) -> bytes:
        self._buffer += data
        out = b""
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            command, _, channel = line.decode("ascii", "replace").strip().partition(" ")
            if command != "P?":
                continue
            if self.faults.next() == "garbage":
                out += self.faults.garbage(b"\n")
            elif self.power_w is None:
                out += b"NAN\n"
            else:
                out += f"{self.power_w if channel == '1' else 0.0:.6g}\n".encode("ascii")
        return out


def _connect(port: str, *, rate_s: float, baudrate: int, tiny_channel: int) -> Connection:
    if tiny_channel not in (1, 2):
        raise MeterError(f"the tiny meter's channel must be 1 or 2, not {tiny_channel}")
    return Connection(lambda: Tiny(port, baudrate=baudrate, channel=tiny_channel))


PLUGIN = MeterPlugin(
    name="tiny",
    meter="a test-only meter (tests/tiny_meter.py)",
    transports=("serial", "tcp"),
    max_power_w=500.0,
    connect=_connect,
    emulator=lambda: TinyEmulator,
    options=(MeterOption("tiny_channel", 1, "Channel to read: 1 (the load) or 2 (none)"),),
    emulator_options=(MeterOption("tiny_period", 0.25, "Seconds per update", min=0.05, keyword="period_s"),),
    baudrate=9600,
)
