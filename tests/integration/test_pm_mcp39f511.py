"""MCP39F511N: frames against the verified bytes, the parsers on random bytes, the emulator's protocol
and the driver against it on a real pty (faults, restart of the energy counter, unplugging), and the
exporter counting every injected fault."""

from __future__ import annotations

import os
import time
import tty

import pytest
import serial

from conftest import ticks_on_deadlines
from mltelemetry import schema
from mltelemetry.exporters.pm.collector import PmCollector
from mltelemetry.exporters.pm.emulator import Faults, constant_profile, steps_profile
from mltelemetry.exporters.pm.mcp39f511 import (
    ACK,
    CSFAIL,
    NAK,
    Mcp39f511,
    checksum,
    parse_read_reply,
    read_request,
    write_request,
)
from mltelemetry.exporters.pm.mcp39f511_emulator import Mcp39f511Emulator
from mltelemetry.exporters.pm.meter import InvalidReading, MeterDisconnected, MeterError
from mltelemetry.exporters.runtime import Exporter


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
