"""WT300 driver: the reply parsers on hand-written and random lines, and the driver against the emulator
over a real pty (RS-232), the same pty opened as a USB-TMC device path, and a real TCP socket:
synchronised reads, the meter's integrator, faults, unplugging."""

from __future__ import annotations

import logging
import os
import struct
import time
import tty

import pytest

from conftest import wait_for
from mltelemetry.exporters.pm.collector import InvalidReading, MeterDisconnected, MeterError, MeterReading
from mltelemetry.exporters.pm.emulator import TcpServerLink, constant_profile, steps_profile
from mltelemetry.exporters.pm.wt300 import (
    Wt300,
)
from mltelemetry.exporters.pm.wt300_emulator import Wt300Emulator


# --- driver on a real pty ------------------------------------------------------------------
@pytest.fixture
def emulator(tmp_path):
    with Wt300Emulator(steps_profile([(100.0, 0.5), (250.0, 0.5)]), tmp_path / "wt310",
                       update_interval_s=0.25) as emu:
        wait_for(lambda: emu.latest, 10, "the meter's first update", interval_s=0.01)
        yield emu


def _open(emu, **kwargs) -> Wt300:
    return Wt300(str(emu.port.link), **{"rate_s": 0.25, "timeout_s": 0.2, **kwargs})


def test_driver_initialises_and_reads(emulator, caplog):
    with caplog.at_level(logging.INFO), _open(emulator) as meter:
        assert meter.rate_s == 0.25
        assert meter.identity.model == "WT310" and meter.identity.serial == "EMU00001"
        assert meter.identity.firmware == "F1.03"
        for _ in range(4):
            reading = meter.read()  # set commands have no reply: the emulator has seen them once this returns
            assert emulator.items == {1: "P,1", 2: "U,1", 3: "I,1", 4: "WH,1", 5: "TIME"}
            assert emulator.item_count == 5 and emulator.filter_upd and emulator.integration == "START"
            served = emulator.served
            assert reading.power_w == pytest.approx(served.power_w, rel=5e-5)
            assert reading.voltage_v == pytest.approx(230.0)
            assert reading.current_a == pytest.approx(served.power_w / 230.0, rel=5e-5)
            assert reading.meter_energy_j == pytest.approx(emulator.served_integration.energy_j, rel=1e-5, abs=1e-3)
    assert "YOKOGAWA,WT310,EMU00001,F1.03" in caplog.text


def test_plain_reads_without_sync_or_integration(emulator):
    with _open(emulator, sync=False, integration=False) as meter:
        reading = meter.read()
        assert emulator.items == {1: "P,1", 2: "U,1", 3: "I,1"} and emulator.item_count == 3
        assert not emulator.filter_upd and emulator.integration == "RESET"
        assert reading.power_w == pytest.approx(emulator.served.power_w, rel=5e-5)
        assert reading.meter_energy_j is None


def _served_updates(emulator, meter, reads: int, pause) -> list:
    served = []
    for k in range(reads):
        emulator.served = None
        meter.read()
        served.append(emulator.served.end_s)
        time.sleep(pause(k))
    return served


def test_synchronised_reads_get_every_update_exactly_once(emulator):
    """Reads at random moments, always sooner than the next update: each read waits for it."""
    import random

    rng = random.Random(3)
    with _open(emulator) as meter:
        ends = _served_updates(emulator, meter, 12, lambda k: rng.uniform(0, 0.2))
    steps = [round((b - a) / 0.25, 6) for a, b in zip(ends, ends[1:])]
    assert steps == [1.0] * 11, steps  # consecutive updates: none read twice, none skipped


def test_unsynchronised_reads_at_the_same_moments_repeat_updates(emulator):
    """The same read pattern without the update event reads stale values (why sync exists)."""
    import random

    rng = random.Random(3)
    with _open(emulator, sync=False) as meter:
        ends = _served_updates(emulator, meter, 12, lambda k: rng.uniform(0, 0.2))
    assert len(set(ends)) < len(ends)


def test_synchronised_reads_near_update_edges(emulator):
    """Reads every update interval, timed a few ms around the moment an update finishes."""
    import random

    rng = random.Random(11)
    with _open(emulator) as meter:
        meter.read()
        time.sleep(emulator.seconds_to_next_update() - 0.004)
        ends = _served_updates(emulator, meter, 10, lambda k: 0.25 - 0.012 + rng.uniform(-0.008, 0.008))
    steps = [round((b - a) / 0.25, 6) for a, b in zip(ends, ends[1:])]
    assert steps == [1.0] * 9, steps


def test_meter_integration_is_kept_running_across_reconnects(emulator):
    with _open(emulator) as meter:
        first = meter.read()
        assert first.meter_restarted  # the driver started the integrator
        time.sleep(0.3)
        second = meter.read()
        assert not second.meter_restarted and second.meter_energy_j > first.meter_energy_j
    time.sleep(0.3)
    with _open(emulator, rate_s=0.5) as meter:  # the integrator runs: the rate cannot change
        assert meter.rate_s == 0.25 and emulator.update_interval_s == 0.25
        third = meter.read()
        assert not third.meter_restarted and third.meter_energy_j > second.meter_energy_j
        assert third.meter_energy_j == pytest.approx(emulator.served_integration.energy_j, rel=1e-5)


def test_a_reset_of_the_meter_integrator_is_reported(emulator):
    with _open(emulator) as meter:
        meter.read()
        time.sleep(1.3)  # TIME counts whole seconds
        before = meter.read()
        assert before.meter_energy_j > 0
        emulator.front_panel(":INTEG:STOP", ":INTEG:RES", ":INTEG:STAR")
        after = meter.read()
        assert after.meter_restarted and after.meter_energy_j < before.meter_energy_j


def test_usbtmc_path_reads_like_a_character_device(emulator):
    """``usbtmc://PATH`` on a pty: the kernel's USB-TMC ioctls are refused, so it is read as a tty."""
    with Wt300(f"usbtmc://{emulator.port.link}", rate_s=0.25, timeout_s=0.2) as meter:
        assert not meter._link.native
        for _ in range(3):
            reading = meter.read()
            assert reading.power_w == pytest.approx(emulator.served.power_w, rel=5e-5)
        emulator.inject("garbage")
        with pytest.raises(InvalidReading):
            meter.read()
        assert meter.read().power_w == pytest.approx(emulator.served.power_w, rel=5e-5)


def test_tcp_transport():
    with Wt300Emulator(steps_profile([(100.0, 0.5), (250.0, 0.5)]), TcpServerLink("127.0.0.1", 0),
                       update_interval_s=0.25) as emu:
        assert emu.address.startswith("tcp://127.0.0.1:")
        with Wt300(emu.address, rate_s=0.25, timeout_s=0.2) as meter:
            for _ in range(3):
                reading = meter.read()
                assert reading.power_w == pytest.approx(emu.served.power_w, rel=5e-5)
            emu.unplug()
            with pytest.raises(MeterDisconnected):
                meter.read()
        with pytest.raises(MeterDisconnected):
            Wt300(emu.address)
        emu.plug()
        with Wt300(emu.address, rate_s=0.25, timeout_s=0.2) as meter:
            assert meter.read().power_w == pytest.approx(emu.served.power_w, rel=5e-5)


def test_vxi11_transport_as_a_wt310e_on_ethernet():
    from mltelemetry.exporters.pm.vxi11 import Vxi11ServerLink

    with Wt300Emulator(steps_profile([(100.0, 0.5), (250.0, 0.5)]), Vxi11ServerLink(), update_interval_s=0.25) as emu:
        assert emu.address.startswith("vxi11://127.0.0.1:")
        with Wt300(emu.address, rate_s=0.25, timeout_s=0.3) as meter:
            assert meter.identity.model == "WT310"
            ends = []
            for _ in range(4):  # synchronised: the VXI-11 read waits while :COMM:WAIT holds the reply
                reading = meter.read()
                assert reading.power_w == pytest.approx(emu.served.power_w, rel=5e-5)
                ends.append(emu.served.end_s)
            assert [round(b - a, 6) for a, b in zip(ends, ends[1:])] == [0.25] * 3
            for kind in ("garbage", "partial"):
                emu.inject(kind)
                with pytest.raises(InvalidReading):
                    meter.read()
            assert meter.read().power_w == pytest.approx(emu.served.power_w, rel=5e-5)
            emu.unplug()
            with pytest.raises(MeterDisconnected):
                meter.read()
        with pytest.raises(MeterDisconnected):
            Wt300(emu.address)
        emu.plug()
        with Wt300(emu.address, rate_s=0.25, timeout_s=0.3) as meter:
            assert meter.read().power_w == pytest.approx(emu.served.power_w, rel=5e-5)


def test_a_malformed_vxi11_reply_is_an_invalid_reading_and_the_link_recovers():
    from mltelemetry.exporters.pm.vxi11 import Vxi11ServerLink

    class ShortReplies(Vxi11ServerLink):
        """Answers the next ``short`` device_reads with an error code and nothing after it."""

        short = 0

        def _serve_reads(self) -> None:
            while self.short and self._waiting and self._output:
                self.short -= 1
                client, xid, _, _ = self._waiting.pop(0)
                self._reply(client, xid, struct.pack(">i", 0))  # no reason, no data: XDR ends early
            super()._serve_reads()

    cable = ShortReplies()
    with Wt300Emulator(constant_profile(100.0), cable, update_interval_s=0.25) as emu:
        with Wt300(emu.address, rate_s=0.25, timeout_s=0.3) as meter:
            cable.short = 1
            with pytest.raises(InvalidReading, match="malformed VXI-11 reply"):
                meter.read()
            assert meter.read().power_w == pytest.approx(100.0, rel=5e-5)  # device_clear, then a clean read


def test_noise_from_power_up_is_flushed_before_identification(emulator):
    os.write(emulator.port.master, b"\x00\xff\x8c garbage\r\n\x00")
    time.sleep(0.05)
    with _open(emulator) as meter:
        assert meter.identity.model == "WT310"
        assert meter.read().power_w == pytest.approx(emulator.served.power_w, rel=5e-5)


def test_driver_sets_the_update_rate(tmp_path):
    with Wt300Emulator(constant_profile(50), tmp_path / "wt", update_interval_s=1.0) as emu, \
            Wt300(str(emu.port.link), rate_s=0.5, timeout_s=0.2) as meter:
        assert meter.rate_s == 0.5
        assert emu.update_interval_s == 0.5


@pytest.mark.parametrize("kind", ["garbage", "partial", "nan", "inf", "overrange"])
def test_driver_recovers_after_each_fault(emulator, kind):
    with _open(emulator) as meter:
        emulator.inject(kind)
        if kind in ("garbage", "partial"):
            with pytest.raises(InvalidReading):
                meter.read()
        else:
            assert meter.read() == MeterReading(None, None, None)  # every item invalid, never a number
        reading = meter.read()
        assert reading.power_w == pytest.approx(emulator.served.power_w, rel=5e-5)


def test_driver_returns_none_items_for_markers(emulator):
    with _open(emulator) as meter:
        for kind in ("nan", "inf", "overrange"):
            emulator.inject(kind)
            reading = meter.read()
            assert (reading.power_w, reading.voltage_v, reading.current_a) == (None, None, None)


def test_driver_flushes_input_after_an_invalid_reply(emulator):
    stale = b"1.0E+00,2.0E+00,3.0E+00\r\n"
    with _open(emulator) as meter:
        # Without an invalid reply, bytes arriving between queries are read as the next reply.
        os.write(emulator.port.master, b"stale")
        time.sleep(0.05)
        with pytest.raises(InvalidReading):
            meter.read()  # 'stale' + the real reply: garbage; the buffer is flushed next time
        # After an invalid reply, a late stale line is discarded before the next query.
        emulator.inject("nan")
        assert meter.read().power_w is None
        os.write(emulator.port.master, stale)
        time.sleep(0.05)
        reading = meter.read()
        assert reading.power_w == pytest.approx(emulator.served.power_w, rel=5e-5)


def test_unplugged_port_is_meter_disconnected(emulator):
    meter = _open(emulator)
    meter.read()
    emulator.unplug()
    with pytest.raises(MeterDisconnected) as info:
        meter.read()
    assert isinstance(info.value.__cause__, OSError)  # SerialException is an OSError
    meter.close()


def test_silent_port_fails_initialisation():
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        started = time.monotonic()
        with pytest.raises(MeterError, match=r"no reply to \*IDN\?"):
            Wt300(os.ttyname(slave), timeout_s=0.1)
        assert time.monotonic() - started < 1.0
    finally:
        os.close(master)
        os.close(slave)
