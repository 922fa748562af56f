"""MCP39F511N: frames against the verified bytes, the parsers on random bytes, the emulator's protocol
and the driver against it on a real pty (faults, restart of the energy counter, unplugging), and the
exporter counting every injected fault."""

from __future__ import annotations

import math
import os
import struct
import time
import tty

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ticks_on_deadlines
from mltelemetry import schema
from mltelemetry.exporters.pm.collector import PmCollector
from mltelemetry.exporters.pm.emulator import Faults, constant_profile, steps_profile
from mltelemetry.exporters.pm.mcp39f511 import (
    ACK,
    BLOCK_SIZE,
    CSFAIL,
    MAX_POWER_W,
    NAK,
    Mcp39f511,
    checksum,
    decode_block,
    parse_ack,
    parse_read_reply,
    read_request,
    write_request,
)
from mltelemetry.exporters.pm.mcp39f511_emulator import Mcp39f511Emulator
from mltelemetry.exporters.pm.meter import InvalidReading, MeterDisconnected, MeterError
from mltelemetry.exporters.runtime import Exporter


# --- frames --------------------------------------------------------------------------------
def test_requests_match_the_verified_bytes():
    # reference/power-meters.md §2: bytes verified against the forum packet and GMT's source
    assert read_request(0x0016, 8) == bytes.fromhex("a5 08 41 00 16 4e 08 5a")
    assert read_request(0x0006, 2) == bytes.fromhex("a5 08 41 00 06 4e 02 44")
    assert read_request(0x002E, 16) == bytes.fromhex("a5 08 41 00 2e 4e 10 7a")
    assert write_request(0x00A8, bytes([1, 0])) == bytes.fromhex("a5 0a 41 00 a8 4d 02 01 00 e8")


def test_read_reply_of_the_verified_bytes():
    data = parse_read_reply(bytes.fromhex("06 0b 39 30 00 00 00 00 00 00 7a"), 8)
    assert struct.unpack("<II", data) == (12345, 0)  # P1 = 123.45 W, P2 = 0


@pytest.mark.parametrize(("reply", "message"), [
    (b"", "no reply"),
    (bytes([NAK]), "NAK"),
    (bytes([CSFAIL]), "checksum failed"),
    (bytes.fromhex("07 0b 39 30 00 00 00 00 00 00 7a"), "garbage"),
    (bytes([ACK]), "short read"),
    (bytes.fromhex("06 0b 39 30 00 00"), "short read"),
    (bytes.fromhex("06 0b 39 30 00 00 00 00 00 00 7b"), "bad checksum"),
    (bytes.fromhex("06 0b 39 30 00 00 00 00 00 00 7a 00"), "after the frame"),
    (bytes.fromhex("06 07 39 30 76"), "reply of 7 bytes"),
])
def test_read_reply_rejects(reply, message):
    with pytest.raises(InvalidReading, match=message):
        parse_read_reply(reply, 8)


def test_write_reply():
    parse_ack(bytes([ACK]))
    for bad in (b"", bytes([NAK]), bytes([CSFAIL]), b"\x06\x06", b"\x00"):
        with pytest.raises(InvalidReading):
            parse_ack(bad)


def _block(status=0x50, volts=2300, amps1=8696, watts1=20000, watts2=0) -> bytes:
    return struct.pack("<HHHHhhIIII", status, 0x5216, volts, 50000, 31130, 0, amps1, 0, watts1, watts2)


def test_decode_block_scaling_and_sign():
    reading = decode_block(_block(), 1)
    assert (reading.power_w, reading.voltage_v, reading.current_a) == (200.0, 230.0, 0.8696)
    assert decode_block(_block(status=0x40), 1).power_w == -200.0  # sign bit 4 clear: export
    assert decode_block(_block(watts2=1234, status=0x40), 2).power_w == 12.34
    assert decode_block(_block(watts2=1234, status=0x10), 2).power_w == -12.34
    impossible = decode_block(_block(volts=60000, watts1=2**32 - 1), 1)
    assert impossible.voltage_v is None and impossible.power_w is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40), st.integers(1, 32))
def test_read_reply_random_bytes(data, count):
    try:
        parsed = parse_read_reply(data, count)
    except InvalidReading:
        return
    assert len(parsed) == count and data[0] == ACK and checksum(data[:-1]) == data[-1]


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=BLOCK_SIZE, max_size=BLOCK_SIZE), st.sampled_from([1, 2]))
def test_decoded_registers_are_never_invalid_numbers(data, channel):
    reading = decode_block(data, channel)
    for value, limit in ((reading.power_w, MAX_POWER_W), (reading.voltage_v, 1000), (reading.current_a, 100)):
        assert value is None or (math.isfinite(value) and abs(value) <= limit)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_random_reply_through_the_whole_read_path(data):
    """Random bytes framed with a valid header and checksum still never become an invalid number."""
    frame = bytes([ACK, BLOCK_SIZE + 3]) + (data + bytes(BLOCK_SIZE))[:BLOCK_SIZE]
    frame += bytes([checksum(frame)])
    reading = decode_block(parse_read_reply(frame, BLOCK_SIZE), 1)
    assert all(v is None or math.isfinite(v) for v in (reading.power_w, reading.voltage_v, reading.current_a))


# --- the emulator's protocol on a real pty ---------------------------------------------------
@pytest.fixture
def emulator(tmp_path):
    with Mcp39f511Emulator(steps_profile([(150.0, 0.5), (320.0, 0.5)]), tmp_path / "mcp") as emu:
        yield emu


@pytest.fixture
def port(emulator):
    with serial.serial_for_url(emulator.address, 115200, timeout=0.2) as p:
        yield p


def ask(port, frame: bytes, size: int = 64) -> bytes:
    port.reset_input_buffer()
    port.write(frame)
    return port.read(size)


def test_emulator_answers_reads_and_writes(emulator, port):
    assert ask(port, read_request(0x0004, 2)) == bytes([ACK, 5, 0x16, 0x52, checksum(bytes([ACK, 5, 0x16, 0x52]))])
    assert ask(port, write_request(0x00A8, bytes([2, 0]))) == bytes([ACK])
    assert emulator.accumulation_n == 2 and emulator.window_s == pytest.approx(0.08)
    assert parse_read_reply(ask(port, read_request(0x00A8, 2)), 2) == bytes([2, 0])


def test_emulator_refuses_bad_requests(emulator, port):
    frame = bytearray(read_request(0x0004, 2))
    frame[-1] ^= 0xFF
    assert ask(port, bytes(frame)) == bytes([CSFAIL])
    assert ask(port, read_request(0x0004, 2)[:-3] + b"\x4e\x21" + bytes([0])) in (bytes([NAK]), bytes([CSFAIL]))
    too_long = bytes([0xA5, 8, 0x41, 0x00, 0x02, 0x4E, 33])
    assert ask(port, too_long + bytes([checksum(too_long)])) == bytes([NAK])
    assert ask(port, write_request(0x0016, bytes([1, 2]))) == bytes([NAK])  # an output register
    unknown = bytes([0xA5, 4, 0x99])
    assert ask(port, unknown + bytes([checksum(unknown)])) == bytes([NAK])


def test_emulator_skips_noise_and_joins_split_frames(emulator, port):
    frame = read_request(0x0004, 2)
    port.write(b"\x00\x13noise" + frame[:3])
    time.sleep(0.05)
    port.write(frame[3:])
    assert parse_read_reply(port.read(5), 2) == bytes([0x16, 0x52])


# --- the driver ----------------------------------------------------------------------------
def _open(emu, **kwargs) -> Mcp39f511:
    return Mcp39f511(emu.address, **{"timeout_s": 0.1, **kwargs})


def test_driver_initialises_and_reads(emulator):
    with _open(emulator, accumulation_n=3) as meter:
        assert meter.identity.model == "MCP39F511N" and meter.identity.firmware == "5216"
        assert emulator.accumulation_n == 3 and emulator.accumulating
        time.sleep(0.25)
        for _ in range(5):
            reading = meter.read()
            assert reading.power_w == pytest.approx(emulator.served.power_w, abs=0.006)
            assert reading.voltage_v == 230.0
            assert reading.current_a == pytest.approx(emulator.served.power_w / (230 * 0.95), abs=1e-4)
            assert reading.meter_energy_j == pytest.approx(emulator.served_energy.energy_j, abs=3.6)
            time.sleep(0.17)


def test_driver_refuses_bad_settings(emulator):
    for kwargs, message in (({"channel": 3}, "must be 1 or 2"), ({"accumulation_n": 0}, "1 to 8"),
                            ({"energy_unit_j": 0}, "positive")):
        with pytest.raises(MeterError, match=message):
            _open(emulator, **kwargs)


@pytest.mark.parametrize("kind", ["garbage", "partial", "checksum", "nak", "csfail"])
def test_driver_recovers_after_each_fault(emulator, kind):
    with _open(emulator, accumulation_n=2) as meter:
        time.sleep(0.1)  # one 80 ms window completed
        meter.read()
        emulator.inject(kind)
        with pytest.raises(InvalidReading):
            meter.read()
        assert emulator.faults.counts[kind] == 1
        reading = meter.read()
        assert reading.power_w == pytest.approx(emulator.served.power_w, abs=0.006)


def test_a_restarted_energy_counter_is_reported(emulator):
    with _open(emulator, accumulation_n=2) as meter:
        first = meter.read()
        assert first.meter_restarted  # the driver switched accumulation on
        time.sleep(0.3)
        before = meter.read()
        assert not before.meter_restarted and before.meter_energy_j > 0
        with emulator._lock:
            emulator.energy_j = 0.0  # the board lost power: its counters start again
        time.sleep(0.1)
        after = meter.read()
        assert after.meter_restarted and after.meter_energy_j < before.meter_energy_j


def test_unplugged_and_silent_ports(emulator):
    meter = _open(emulator)
    meter.read()
    emulator.unplug()
    with pytest.raises(MeterDisconnected):
        meter.read()
    meter.close()
    with pytest.raises(MeterDisconnected):
        _open(emulator)
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        started = time.monotonic()
        with pytest.raises(MeterError, match="no valid reply from an MCP39F511N"):
            Mcp39f511(os.ttyname(slave), timeout_s=0.1)
        assert time.monotonic() - started < 1.0
    finally:
        os.close(master)
        os.close(slave)


# --- the exporter ----------------------------------------------------------------------------
def test_exporter_counts_drops_and_survives_every_fault_and_an_unplug(tmp_path):
    """N=2 (80 ms windows), ticks every 80 ms in the middle of a window."""
    faults = Faults(seed=4)
    schedule = {3: "garbage", 6: "partial", 9: "checksum", 12: "nak", 15: "csfail", 18: "checksum"}
    with Mcp39f511Emulator(constant_profile(240.0), tmp_path / "mcp", faults=faults) as emu:
        collector = PmCollector(lambda: Mcp39f511(emu.address, accumulation_n=2, timeout_s=0.05), host="sut",
                                meter="mcp")
        exporter = Exporter(collector, sinks=[], interval_s=0.08, host="sut")
        exporter.tick()  # connects; sets N=2, which starts a new window now
        time.sleep(emu.seconds_to_next_window() + 0.04)
        actions = {**{k: (lambda kind=kind: emu.inject(kind)) for k, kind in schedule.items()},
                   24: emu.unplug, 30: emu.plug}
        ticks = ticks_on_deadlines(exporter, 40, lambda k: actions[k]() if k in actions else None)
    last = ticks[-1]
    assert dict(faults.counts) == {"garbage": 1, "partial": 1, "checksum": 2, "nak": 1, "csfail": 1}
    assert last[schema.PM_INVALID] == 6
    assert [t[schema.PM_CONNECTED] for t in ticks[22:33]] == [1, 1] + [0] * 6 + [1] * 3
    assert all(schema.PM_POWER not in ticks[k] for k in schedule)
    assert all(t[schema.PM_POWER] == pytest.approx(240.0) for t in ticks if schema.PM_POWER in t)
    assert last[schema.PM_SAMPLES] == 1 + 40 - 6 - 6
    assert last[schema.PM_GAP] > 0.4  # the unplugged stretch
    assert last[schema.PM_DISCONNECTS] == 1
    assert last[schema.PM_ENERGY] == pytest.approx(240.0 * collector.integrated_s, rel=1e-4)
    assert last[schema.PM_METER_ENERGY] > 0 and last[schema.PM_SAMPLING_RATE] > 5 and last[schema.PM_INFO] == 1
    assert exporter.errors_total == 0
