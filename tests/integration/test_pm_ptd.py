"""PTDaemon client: the reply parsers on real and random lines, the client against the emulator over a
real TCP socket on 127.0.0.1 (handshake, ranges, samples, uncertainty, faults, the connection dropping),
and the exporter counting every injected fault."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import free_port, ticks_on_deadlines, wait_for
from mltelemetry import schema
from mltelemetry.exporters.pm.collector import PmCollector
from mltelemetry.exporters.pm.emulator import Faults, TcpServerLink, constant_profile, steps_profile
from mltelemetry.exporters.pm.meter import InvalidReading, MeterDisconnected, MeterError
from mltelemetry.exporters.pm.ptd import (
    Ptd,
)
from mltelemetry.exporters.pm.ptd_emulator import PtdEmulator
from mltelemetry.exporters.runtime import Exporter


# --- the client against the emulator over TCP -----------------------------------------------------
@pytest.fixture
def emulator():
    with PtdEmulator(steps_profile([(120.0, 0.5), (340.0, 0.5)]), TcpServerLink("127.0.0.1", free_port())) as emu:
        yield emu


def _open(emu, **kwargs) -> Ptd:
    return Ptd(emu.address, **{"period_ms": 250, "timeout_s": 0.3, **kwargs})


def test_client_handshake_and_samples(emulator):
    with _open(emulator, voltage_range="300", current_range="2", mark="run-1") as meter:
        assert meter.identity.model == "WT310" and meter.identity.firmware.startswith("PTDaemon 1.11.1")
        assert emulator.period_s == 0.25 and emulator.mark == "run-1" and emulator.ranges == {"V": 300.0, "A": 2.0}
        for _ in range(4):
            reading = meter.read()
            served = emulator.served
            assert len(served) == 1  # each read waits for the next sample: one per period
            assert reading.power_w == pytest.approx(served[0].watts, rel=5e-5)
            assert reading.voltage_v == 230.0
            # PTDaemon's running average since Go (0.1 % of reading + 0.05 % of the 600 W range)
            every = [0.001 + 0.0005 * 600 / s.watts for s in emulator.samples]
            assert reading.uncertainty == pytest.approx(sum(every) / len(every), rel=1e-3)
    # close() sent Stop; the emulator handles it in its own thread
    wait_for(lambda: emulator.period_s is None, 5, "the emulator to stop the measurement")


def test_reads_after_a_pause_merge_the_samples(emulator):
    with _open(emulator) as meter:
        meter.read()
        time.sleep(0.6)
        reading = meter.read()
        served = emulator.served
        assert len(served) >= 2
        assert reading.power_w == pytest.approx(sum(s.watts for s in served) / len(served), rel=1e-4)


def test_auto_ranging_gives_no_uncertainty(emulator):
    with _open(emulator, voltage_range="300", current_range="Auto") as meter:
        assert meter.read().uncertainty is None


def test_refusals_and_strangers(emulator):
    with pytest.raises(MeterError, match="refused range V"):
        _open(emulator, voltage_range="-5")
    with pytest.raises(MeterError, match="mark"):
        _open(emulator, mark="two words")
    with socket.socket() as server:  # a TCP service that is not PTDaemon
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def answer() -> None:
            conn, _ = server.accept()
            conn.recv(100)
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n")
            time.sleep(0.2)
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(MeterError, match="is not PTDaemon"):
            Ptd(f"127.0.0.1:{server.getsockname()[1]}", timeout_s=0.3)
    with pytest.raises(MeterDisconnected):
        Ptd(f"tcp://127.0.0.1:{free_port()}")


@pytest.mark.parametrize("kind", ["garbage", "partial", "nan", "error"])
def test_client_recovers_after_each_fault(emulator, kind):
    with _open(emulator) as meter:
        meter.read()
        emulator.inject(kind)
        with pytest.raises(InvalidReading):
            meter.read()
        reading = meter.read()
        assert reading.power_w == pytest.approx(sum(s.watts for s in emulator.served) / len(emulator.served),
                                                rel=1e-4)


def test_connection_drops_and_comes_back(emulator):
    meter = _open(emulator)
    meter.read()
    emulator.unplug()
    with pytest.raises(MeterDisconnected):
        meter.read()
    meter.close()
    with pytest.raises(MeterDisconnected):
        _open(emulator)
    emulator.plug()
    with _open(emulator) as meter:
        assert meter.read().power_w == pytest.approx(emulator.served[0].watts, rel=5e-5)


def test_every_bad_sample_of_a_reply_is_counted_whether_some_or_all_are_bad():
    with PtdEmulator(constant_profile(175.0), TcpServerLink("127.0.0.1", free_port())) as emu:
        collector = PmCollector(lambda: Ptd(emu.address, period_ms=250, timeout_s=0.3), host="sut", meter="ptd")
        collector.sample(0)
        assert collector.invalid_total == 0
        emu._sample_line = lambda sample, watts=None: PtdEmulator._sample_line(emu, sample, "-1.000000")
        wait_for(lambda: len(emu.samples) >= emu.unread + 2, 10, "two new samples", interval_s=0.01)  # bad watts
        collector.sample(1)
        bad = len(emu.served)
        assert bad >= 2 and collector.invalid_total == bad
        collector.close()


# --- the exporter ----------------------------------------------------------------------------
def test_exporter_counts_drops_and_survives_every_fault_and_a_disconnect():
    faults = Faults(seed=2, markers=("nan",))
    schedule = {3: "garbage", 6: "partial", 9: "nan", 12: "error", 15: "nan"}
    with PtdEmulator(constant_profile(175.0), TcpServerLink("127.0.0.1", free_port()), faults=faults) as emu:
        # a generous reply timeout: at 0.1 s a loaded machine (two busy processes) timed out good replies, which
        # counted as invalid readings (7 instead of the 5 injected)
        collector = PmCollector(lambda: Ptd(emu.address, period_ms=250, timeout_s=0.5), host="sut", meter="ptd")
        exporter = Exporter(collector, sinks=[], interval_s=0.25, host="sut")
        actions = {**{k: (lambda kind=kind: emu.inject(kind)) for k, kind in schedule.items()},
                   20: emu.unplug, 25: emu.plug}
        ticks = ticks_on_deadlines(exporter, 34, lambda k: actions[k]() if k in actions else None)
    last = ticks[-1]
    assert dict(faults.counts) == {"garbage": 1, "partial": 1, "nan": 2, "error": 1}
    assert last[schema.PM_INVALID] == 5
    assert [t[schema.PM_CONNECTED] for t in ticks[18:28]] == [1, 1] + [0] * 5 + [1] * 3
    assert all(t[schema.PM_POWER] == pytest.approx(175.0) for t in ticks if schema.PM_POWER in t)
    assert all(schema.PM_POWER not in ticks[k] for k in schedule)
    assert last[schema.PM_GAP] > 1.0  # the disconnected stretch
    assert last[schema.PM_DISCONNECTS] == 1
    assert last[schema.PM_ENERGY] == pytest.approx(175.0 * collector.integrated_s, rel=1e-4)
    assert schema.PM_UNCERTAINTY in last and 0 < last[schema.PM_UNCERTAINTY] < 0.01
    assert last[schema.PM_INFO] == 1 and collector.info_labels["driver"] == "ptd"
    assert exporter.errors_total == 0
