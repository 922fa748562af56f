"""An MCP39F511N demo board on a pseudo-terminal: the binary frame protocol over a register map.

The chip measures ``profile`` on channel 1 (channel 2 has no load): every accumulation window of
2^N line cycles (N from the register at 0x00A8, factory 4; ``line_frequency_hz`` 50) it updates
its output registers with the exact averages of the profile over that window, in the factory
scaling, and, while energy accumulation is on (bits 8 and 9 of 0x00A0), adds the window's exact
energy to the import active-energy counters (``energy_unit_j`` joules per count).

Requests are parsed as the chip does: bytes before an ``A5`` header are skipped, a frame whose
checksum fails is answered ``51``, an unknown command, a read over 32 bytes or past the register
map, or a write to a read-only register is answered ``15`` (NAK). Faults (``Faults``) spoil read
replies: ``checksum``, ``nak``, ``csfail``, ``partial`` (a short frame) and ``garbage``.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mltelemetry.exporters.pm.emulator import Emulator, Faults, Profile, PtyLink, TcpServerLink, advance_profile
from mltelemetry.exporters.pm.mcp39f511 import (
    ACK,
    CSFAIL,
    ENERGY_ENABLE_BITS,
    HEADER,
    MAX_READ,
    NAK,
    READ,
    REG_ACCUMULATION,
    REG_CONFIG,
    REG_IMPORT_ENERGY,
    REG_RANGE,
    REG_STATUS,
    SET_POINTER,
    SIGN_BIT,
    WRITE,
    checksum,
)

log = logging.getLogger(__name__)

REGISTER_BYTES = 0x0100
WRITABLE_FROM = 0x0060
"""Registers below this address are the chip's outputs: read-only."""
VERSION = 0x5216


@dataclass(frozen=True)
class Window:
    """One accumulation window: the averages over [start_s, end_s] (seconds on the chip's clock) and
    the exact energy the counter had accumulated by its end (J)."""

    start_s: float
    end_s: float
    power_w: float
    energy_j: float


class Mcp39f511Emulator(Emulator):
    """The ADM00706 board measuring ``profile`` on channel 1 (see the module docstring)."""

    FAULTS = ("garbage", "partial", "checksum", "nak", "csfail")
    TITLE = "an MCP39F511N"

    def __init__(self, profile: Profile, link: str | Path | PtyLink | TcpServerLink, *, voltage_v: float = 230.0,
                 power_factor: float = 0.95, line_frequency_hz: float = 50.0, energy_unit_j: float = 3.6,
                 faults: Faults | None = None, clock: Callable[[], float] = time.monotonic,
                 clock_shift_s: float = 0.0) -> None:
        super().__init__(link, clock, faults=faults, clock_shift_s=clock_shift_s)
        self.profile = profile
        self.voltage_v = voltage_v
        self.power_factor = power_factor
        self.line_frequency_hz = line_frequency_hz
        self.energy_unit_j = energy_unit_j
        self.registers = bytearray(REGISTER_BYTES)
        struct.pack_into("<HH", self.registers, REG_STATUS, SIGN_BIT[1] | SIGN_BIT[2], VERSION)
        struct.pack_into("<H", self.registers, REG_ACCUMULATION, 4)  # factory N
        for channel in (1, 2):
            self.registers[REG_RANGE[channel]:REG_RANGE[channel] + 3] = bytes([0x12, 0x0C, 0x10])
        self._schedule_s = 0.0  # unshifted time the current window schedule started
        self._completed = 0
        self.energy_j = 0.0  # exact energy accumulated on channel 1
        self.latest: Window | None = None
        self.served: Window | None = None  # the window whose registers the last good read reply carried
        self.served_energy: Window | None = None  # the window whose counter the last good read reply carried
        self._buffer = bytearray()
        self._pointer = 0

    @property
    def accumulation_n(self) -> int:
        return struct.unpack_from("<H", self.registers, REG_ACCUMULATION)[0]

    @property
    def window_s(self) -> float:
        return 2 ** self.accumulation_n / self.line_frequency_hz

    @property
    def accumulating(self) -> bool:
        return struct.unpack_from("<I", self.registers, REG_CONFIG)[0] & ENERGY_ENABLE_BITS != 0

    def connected(self) -> None:
        self._buffer.clear()

    def seconds_to_next_window(self) -> float:
        return self.window_s - (self.clock() - self.origin - self._schedule_s) % self.window_s

    def tick(self, now: float) -> float:
        t, window = now - self.origin, self.window_s
        n = math.floor((t - self._schedule_s) / window)
        while self._completed < n:  # every window counts for the energy, even unread ones
            self._completed += 1
            real_end = self._schedule_s + self._completed * window
            advance_profile(self.profile, real_end)
            end = real_end - self.clock_shift_s
            energy = self.profile.energy(end - window, end)
            if self.accumulating:
                self.energy_j += energy
            if self._completed == n:
                self._publish(Window(end - window, end, energy / window, self.energy_j))
        return self._schedule_s + (n + 1) * window - t

    def _publish(self, window: Window) -> None:
        self.latest = window
        power = window.power_w
        current = power / (self.voltage_v * self.power_factor) if self.voltage_v else 0.0
        status = SIGN_BIT[1] | SIGN_BIT[2]  # both channels import (positive)
        struct.pack_into("<HHHHhhIIII", self.registers, REG_STATUS, status, VERSION, round(self.voltage_v * 10),
                         round(self.line_frequency_hz * 1000), min(32767, round(self.power_factor * 32768)), 0,
                         round(current * 10000), 0, round(power * 100), 0)
        struct.pack_into("<QQ", self.registers, REG_IMPORT_ENERGY[1], int(self.energy_j / self.energy_unit_j), 0)

    def receive(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while self._buffer:
            if self._buffer[0] != HEADER:
                del self._buffer[0]  # noise before a frame
                continue
            if len(self._buffer) < 2:
                break
            length = self._buffer[1]
            if not 5 <= length <= 40:
                del self._buffer[0]
                out.append(NAK)
                continue
            if len(self._buffer) < length:
                break  # the rest of the frame is still on its way
            frame, self._buffer = bytes(self._buffer[:length]), self._buffer[length:]
            if checksum(frame[:-1]) != frame[-1]:
                out.append(CSFAIL)
                continue
            out += self._execute(frame[2:-1])
        return bytes(out)

    def _execute(self, commands: bytes) -> bytes:
        """Run a frame's commands: ``06 <len> <data> <cs>`` for a read, ``06`` otherwise; ``15`` when refused."""
        data: bytes | None = None
        i = 0
        while i < len(commands):
            command = commands[i]
            if command == SET_POINTER and i + 3 <= len(commands):
                self._pointer = commands[i + 1] << 8 | commands[i + 2]
                i += 3
            elif command == READ and i + 2 <= len(commands) and data is None:
                count = commands[i + 1]
                if not 0 < count <= MAX_READ or self._pointer + count > REGISTER_BYTES:
                    return bytes([NAK])
                data = bytes(self.registers[self._pointer:self._pointer + count])
                i += 2
            elif command == WRITE and i + 2 <= len(commands):
                count = commands[i + 1]
                payload = commands[i + 2:i + 2 + count]
                if len(payload) != count or self._pointer < WRITABLE_FROM or self._pointer + count > REGISTER_BYTES:
                    return bytes([NAK])
                self._write(self._pointer, payload)
                i += 2 + count
            else:
                return bytes([NAK])
        if data is None:
            return bytes([ACK])
        return self._read_reply(data)

    def _write(self, address: int, payload: bytes) -> None:
        before = self.accumulation_n
        self.registers[address:address + len(payload)] = payload
        if self.accumulation_n != before:  # a new window length: the chip starts a new window now
            self._schedule_s = self.clock() - self.origin
            self._completed = 0

    def _read_reply(self, data: bytes) -> bytes:
        frame = bytes([ACK, len(data) + 3]) + data
        frame += bytes([checksum(frame)])
        fault = self.faults.next()
        if fault is None:
            reads_power = self._pointer <= REG_STATUS + 20 < self._pointer + len(data)
            reads_energy = self._pointer <= REG_IMPORT_ENERGY[1] < self._pointer + len(data)
            if reads_power:
                self.served = self.latest
            if reads_energy:
                self.served_energy = self.latest
            return frame
        self.served = self.served_energy = None
        if fault == "checksum":
            return frame[:-1] + bytes([frame[-1] ^ 0x5A])
        if fault == "nak":
            return bytes([NAK])
        if fault == "csfail":
            return bytes([CSFAIL])
        if fault == "partial":
            return frame[: max(1, len(frame) // 2)]
        return bytes(self.faults.rng.randrange(256) for _ in range(len(frame)))  # garbage
