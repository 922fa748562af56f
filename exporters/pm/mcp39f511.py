"""Microchip MCP39F511N (the ADM00706 demo board) over its USB serial port: the binary frame protocol.

Protocol (reference/power-meters.md §2; Microchip DS20005473; jkairys/MCP39F511N; GMT's
``psu_energy_ac_mcp_machine``), 115200 8N1, raw:

- request: ``A5 <len> <commands> <checksum>``, ``len`` counting every byte of the frame and the
  checksum the sum of the bytes before it, mod 256. Commands: ``41 <addr hi> <addr lo>`` sets the
  address pointer, ``4E <n>`` reads n bytes there, ``4D <n> <bytes>`` writes them;
- reply to a read: ``06 <len> <n data bytes, little-endian> <checksum>``; to a write: ``06``
  (ACK) alone; ``15`` (NAK) when the chip refuses the request and ``51`` when our checksum was
  wrong.

Each ``read()`` makes two requests: 28 bytes from 0x0002 (system status, version, RMS voltage,
line frequency, power factors, RMS currents and active powers of both channels) and the 8-byte
import active-energy counter of the channel. Factory scaling: V /10, Hz /1000, A /10000, W /100,
power factor /32768; the sign of the active power is bit 4 (channel 1) or 6 (channel 2) of the
status register (set: positive, import). Each value is the average over the chip's last
accumulation window of 2^N line cycles (N=4, 320 ms at 50 Hz, is the factory setting; GMT uses
N=1 and reports that N=0 gives wrong power factors and negative power, so 0 is refused).

On start the driver writes N to the accumulation-interval register (0x00A8; RAM only, nothing is
saved to flash), and, for the energy counter, sets bits 8 and 9 of 0x00A0 (energy accumulation on
both channels) unless they are set already. The counter's unit is not settled in public sources:
1 mWh per count matches the MCP39F521's libraries; GMT halves the raw value "to match Microchip's
tool". ``energy_unit_j`` (default 3.6 J = 1 mWh) sets it; compare ``pm_meter_energy_joules_total``
with ``pm_energy_joules_total`` once on your board.

A frame with a bad checksum, a NAK, a checksum-fail reply, a short read, a length that does not
match the request, or values outside what the board can measure raises :class:`InvalidReading`.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING

from mltelemetry.exporters.pm.meter import InvalidReading, MeterError, MeterIdentity, MeterReading
from mltelemetry.exporters.pm.plugin import Connection, MeterOption, MeterPlugin
from mltelemetry.exporters.pm.transport import Link, open_link, read_exact

if TYPE_CHECKING:
    from mltelemetry.exporters.pm.mcp39f511_emulator import Mcp39f511Emulator

log = logging.getLogger(__name__)

HEADER, ACK, NAK, CSFAIL = 0xA5, 0x06, 0x15, 0x51
SET_POINTER, READ, WRITE = 0x41, 0x4E, 0x4D
MAX_READ = 32
"""The most bytes one read command returns (the chip's reply buffer)."""

REG_STATUS = 0x0002
REG_VERSION = 0x0004
REG_IMPORT_ENERGY = {1: 0x002E, 2: 0x0036}
REG_CONFIG = 0x00A0
REG_ACCUMULATION = 0x00A8
REG_RANGE = {1: 0x00AE, 2: 0x00BE}
ENERGY_ENABLE_BITS = 0x0300  # bits 8 and 9 of the register at 0x00A0
SIGN_BIT = {1: 1 << 4, 2: 1 << 6}
BLOCK_SIZE = 28  # 0x0002 .. 0x001D

MAX_VOLTAGE_V, MAX_CURRENT_A, MAX_POWER_W = 1000.0, 100.0, 100_000.0
"""Beyond these the board cannot measure: a value past them is garbage that passed the checksum."""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def request_frame(commands: bytes) -> bytes:
    """``A5 <len> <commands> <checksum>``."""
    frame = bytes([HEADER, len(commands) + 3]) + commands
    return frame + bytes([checksum(frame)])


def read_request(address: int, count: int) -> bytes:
    """Set the pointer to ``address`` and read ``count`` bytes."""
    if not 0 < count <= MAX_READ:
        raise ValueError(f"a read returns 1 to {MAX_READ} bytes, not {count}")
    return request_frame(bytes([SET_POINTER, address >> 8, address & 0xFF, READ, count]))


def write_request(address: int, data: bytes) -> bytes:
    """Set the pointer to ``address`` and write ``data`` there."""
    return request_frame(bytes([SET_POINTER, address >> 8, address & 0xFF, WRITE, len(data)]) + data)


def _refusal(first: int) -> InvalidReading | None:
    if first == NAK:
        return InvalidReading("the chip answered NAK")
    if first == CSFAIL:
        return InvalidReading("the chip says our frame's checksum failed")
    return None


def parse_read_reply(reply: bytes, count: int) -> bytes:
    """The ``count`` data bytes of a read reply ``06 <len> <data> <checksum>``; InvalidReading otherwise."""
    if not reply:
        raise InvalidReading("no reply")
    refusal = _refusal(reply[0])
    if refusal:
        raise refusal
    if reply[0] != ACK:
        raise InvalidReading(f"garbage reply: {reply[:12].hex(' ')}")
    if len(reply) < 2:
        raise InvalidReading("short read: the reply ends after its ACK")
    length = reply[1]
    if length != count + 3:
        raise InvalidReading(f"reply of {length} bytes to a read of {count}")
    if len(reply) < length:
        raise InvalidReading(f"short read: {len(reply)} of {length} bytes")
    if len(reply) > length:
        raise InvalidReading(f"{len(reply) - length} bytes after the frame")
    if checksum(reply[:-1]) != reply[-1]:
        raise InvalidReading(f"bad checksum {reply[-1]:#04x}, expected {checksum(reply[:-1]):#04x}")
    return reply[2:-1]


def parse_ack(reply: bytes) -> None:
    """A write's reply must be the ACK byte alone."""
    if reply == bytes([ACK]):
        return
    refusal = _refusal(reply[0]) if reply else InvalidReading("no reply")
    raise refusal or InvalidReading(f"garbage reply to a write: {reply[:12].hex(' ')}")


def decode_block(data: bytes, channel: int) -> MeterReading:
    """P (W), V (V) and I (A) of ``channel`` from the 28 bytes at 0x0002; None for impossible values."""
    if len(data) != BLOCK_SIZE:
        raise InvalidReading(f"expected {BLOCK_SIZE} register bytes, got {len(data)}")
    status, _version, volts, _freq, _pf1, _pf2, amps1, amps2, watts1, watts2 = struct.unpack("<HHHHhhIIII", data)
    sign = 1.0 if status & SIGN_BIT[channel] else -1.0
    power = sign * (watts1 if channel == 1 else watts2) / 100 + 0.0  # no -0.0
    voltage = volts / 10
    current = (amps1 if channel == 1 else amps2) / 10000
    return MeterReading(power if abs(power) <= MAX_POWER_W else None,
                   voltage if voltage <= MAX_VOLTAGE_V else None,
                   current if current <= MAX_CURRENT_A else None)


def check_options(channel: int, accumulation_n: int, energy_unit_j: float) -> None:
    """Refuse settings the MCP39F511N cannot take (:class:`MeterError`, one line)."""
    if channel not in (1, 2):
        raise MeterError(f"channel must be 1 or 2 (the MCP39F511N's two channels), not {channel}")
    if not 1 <= accumulation_n <= 8:
        raise MeterError(f"accumulation N must be 1 to 8 (2^N line cycles), not {accumulation_n}")
    if not energy_unit_j > 0:
        raise MeterError(f"the energy unit must be positive joules per count, not {energy_unit_j:g}")


class Mcp39f511:
    """An open MCP39F511N demo board measuring ``channel`` (1 or 2).

    ``accumulation_n`` is N of the 2^N-line-cycle accumulation window set on start (1 to 8);
    ``energy`` reads (and switches on) the chip's import active-energy counter, whose unit is
    ``energy_unit_j`` joules per count. ``timeout_s`` bounds the wait for one reply.
    """

    name = "mcp39f511"

    def __init__(self, port: str, *, baudrate: int = 115200, timeout_s: float = 0.2, channel: int = 1,
                 accumulation_n: int = 4, energy: bool = True, energy_unit_j: float = 3.6) -> None:
        check_options(channel, accumulation_n, energy_unit_j)
        self.port = port
        self.channel = channel
        self.timeout_s = timeout_s
        self.energy = energy
        self.energy_unit_j = energy_unit_j
        self._last_count: int | None = None
        self._fresh_counter = False
        self._link: Link = open_link(port, baudrate=baudrate, timeout_s=timeout_s)
        try:
            self._initialise(accumulation_n)
        except InvalidReading as e:
            self.close()
            raise MeterError(f"{port}: no valid reply from an MCP39F511N ({e}); is it there, at {baudrate} baud?") \
                from e
        except BaseException:
            self.close()
            raise

    def _initialise(self, accumulation_n: int) -> None:
        version = struct.unpack("<H", self._read_registers(REG_VERSION, 2))[0]
        self.identity = MeterIdentity(model="MCP39F511N", firmware=f"{version:04X}",
                                      raw=f"MCP39F511N system version {version:04X}")
        log.info("%s: %s", self.port, self.identity.raw)
        self._write_registers(REG_ACCUMULATION, struct.pack("<H", accumulation_n))
        if struct.unpack("<H", self._read_registers(REG_ACCUMULATION, 2))[0] != accumulation_n:
            raise MeterError(f"{self.port}: the chip did not keep accumulation interval N={accumulation_n}")
        self.accumulation_n = accumulation_n
        ranges = self._read_registers(REG_RANGE[self.channel], 4)
        log.info("%s: accumulation window 2^%d line cycles; channel %d range bytes V=%d I=%d P=%d", self.port,
                 accumulation_n, self.channel, ranges[0], ranges[1], ranges[2])
        if self.energy:
            config = struct.unpack("<I", self._read_registers(REG_CONFIG, 4))[0]
            if config & ENERGY_ENABLE_BITS != ENERGY_ENABLE_BITS:
                self._write_registers(REG_CONFIG, struct.pack("<I", config | ENERGY_ENABLE_BITS))
                self._fresh_counter = True
                log.info("%s: energy accumulation switched on", self.port)

    def _transact(self, frame: bytes, reply_size: int) -> bytes:
        """Send one frame and return the reply: ``reply_size`` bytes, or fewer on a NAK or a timeout."""
        self._link.reset_input()  # a late or partial earlier reply must not prefix this one
        self._link.write(frame)
        first = self._link.read_some(self.timeout_s)
        if not first or first[0] != ACK or len(first) >= reply_size:
            return first
        return first + read_exact(self._link, reply_size - len(first), self.timeout_s)

    def _read_registers(self, address: int, count: int) -> bytes:
        return parse_read_reply(self._transact(read_request(address, count), count + 3), count)

    def _write_registers(self, address: int, data: bytes) -> None:
        parse_ack(self._transact(write_request(address, data), 1))

    def read(self) -> MeterReading:
        """P (W), V (V), I (A) of the last accumulation window; the energy counter in J."""
        reading = decode_block(self._read_registers(REG_STATUS, BLOCK_SIZE), self.channel)
        if not self.energy:
            return reading
        count = struct.unpack("<Q", self._read_registers(REG_IMPORT_ENERGY[self.channel], 8))[0]
        restarted = self._fresh_counter or (self._last_count is not None and count < self._last_count)
        self._fresh_counter, self._last_count = False, count
        return MeterReading(reading.power_w, reading.voltage_v, reading.current_a,
                       meter_energy_j=count * self.energy_unit_j, meter_restarted=restarted)

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> Mcp39f511:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the plug-in: what `exporter pm --driver mcp39f511` and `pm emulate --driver mcp39f511` are built from ---
def _connect(port: str, *, rate_s: float, baudrate: int, channel: int, accumulation: int,
             energy_unit: float) -> Connection:
    check_options(channel, accumulation, energy_unit)  # refuse bad settings now, not on every reconnect

    def open_meter() -> Mcp39f511:
        return Mcp39f511(port, baudrate=baudrate, channel=channel, accumulation_n=accumulation,
                         energy_unit_j=energy_unit)

    return Connection(open_meter)  # rate_s: the chip's window is set by --accumulation instead


def _emulator() -> type[Mcp39f511Emulator]:
    from mltelemetry.exporters.pm.mcp39f511_emulator import Mcp39f511Emulator

    return Mcp39f511Emulator


PLUGIN = MeterPlugin(
    name="mcp39f511",
    meter="Microchip MCP39F511N demo board (ADM00706)",
    transports=("serial", "tcp"),
    max_power_w=5_000.0,  # the board: 15 A at up to 265 V (4 kW)
    connect=_connect,
    emulator=_emulator,
    options=(
        MeterOption("channel", 1, "Channel (outlet) to read: 1 or 2"),
        MeterOption("accumulation", 4, "Accumulation window set on start: 2^N line cycles, N 1..8",
                    default_text="the factory setting: 320 ms at 50 Hz"),
        MeterOption("energy_unit", 3.6, "Joules per count of the chip's energy counter",
                    default_text="1 mWh; check against pm_energy_joules_total on your board"),
    ),
    emulator_options=(
        MeterOption("line_frequency", 50.0, "Mains frequency in Hz (the accumulation window is 2^N cycles)", min=1,
                    keyword="line_frequency_hz"),
    ),
    baudrate=115200,
)
