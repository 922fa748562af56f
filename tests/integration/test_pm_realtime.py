"""Real-time runs against the emulators through their real transports, side by side in threads (they
are independent and mostly wait: about 40 s in all).

Energy: every driver, 20 s of a stepped load; the exporter's energy counter, and the meter's own
where it has one, within 0.5 % of the profile's exact integral. Each compares counter rises between
two ticks with the exact integral between the ends of the intervals those ticks' replies carried
(the emulators record them); tick 0 connects.

- WT300, synchronised reads at the meter's 1 s rate, ticks placed within ±20 ms of the update
  edges, where unsynchronised reads repeat or skip updates; its integrator (WH) alike.
- MCP39F511N, 320 ms accumulation windows (N=4) read every 320 ms; its energy counter alike.
- PTDaemon over TCP, 1 s samples read every second.

Alignment: a WT300 emulator whose clock runs 300 ms behind, read at 1 Hz into a store beside a GPU
power series of the same load on the true clock (also 1 Hz, another phase); ``mltelemetry pm align``
must find 300 ms within 50 ms.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

from conftest import free_port
from mltelemetry import schema
from mltelemetry.cli import app as root_app
from mltelemetry.exporters.pm.collector import PmCollector
from mltelemetry.exporters.pm.emulator import TcpServerLink, steps_profile
from mltelemetry.exporters.pm.mcp39f511 import Mcp39f511
from mltelemetry.exporters.pm.mcp39f511_emulator import Mcp39f511Emulator
from mltelemetry.exporters.pm.ptd import Ptd
from mltelemetry.exporters.pm.ptd_emulator import PtdEmulator
from mltelemetry.exporters.pm.wt300 import Wt300
from mltelemetry.exporters.pm.wt300_emulator import Wt300Emulator
from mltelemetry.exporters.runtime import Exporter
from mltelemetry.schema import Sample
from mltelemetry.sinks import StoreSink
from mltelemetry.store import Store

PROFILE = steps_profile([(150.0, 3), (420.0, 2), (80.0, 4)])  # a 9 s cycle against the 20 s window


@dataclass
class Run:
    values: list[dict[str, float]] = field(default_factory=list)  # pm_* metric -> value, per tick
    served: list = field(default_factory=list)  # per tick: (start_s, end_s) of what the reply carried, or None
    meter_served: list = field(default_factory=list)  # per tick: the end of what the meter's counter covered
    errors: int = 0


def _tick(exporter: Exporter) -> dict[str, float]:
    return {s.metric: s.value for s in exporter.tick()}


def run_wt300(tmp_path) -> Run:
    run, rng = Run(), random.Random(5)
    with Wt300Emulator(PROFILE, tmp_path / "wt310", update_interval_s=1.0) as emu:
        collector = PmCollector(lambda: Wt300(emu.address, rate_s=1.0, timeout_s=0.5), host="sut", meter="wt")
        exporter = Exporter(collector, sinks=[], interval_s=1.0, host="sut")
        while emu.latest is None:
            time.sleep(0.01)
        start = time.monotonic() + emu.seconds_to_next_update() - 0.02
        for k in range(22):
            time.sleep(max(0.0, start + k + rng.uniform(0, 0.04) - time.monotonic()))
            emu.served = None
            run.values.append(_tick(exporter))
            served = emu.served
            run.served.append((served.start_s, served.end_s) if served else None)
            run.meter_served.append(served.end_s if served else None)
        run.errors = exporter.errors_total
    return run


def run_mcp(tmp_path) -> Run:
    run = Run()
    with Mcp39f511Emulator(PROFILE, tmp_path / "mcp") as emu:
        collector = PmCollector(lambda: Mcp39f511(emu.address, accumulation_n=4), host="sut", meter="mcp")
        exporter = Exporter(collector, sinks=[], interval_s=0.32, host="sut")
        start = time.monotonic() + emu.seconds_to_next_window() + 0.16
        for k in range(65):
            time.sleep(max(0.0, start + k * 0.32 - time.monotonic()))
            emu.served = emu.served_energy = None
            run.values.append(_tick(exporter))
            run.served.append((emu.served.start_s, emu.served.end_s) if emu.served else None)
            run.meter_served.append(emu.served_energy.end_s if emu.served_energy else None)
        run.errors = exporter.errors_total
    return run


def run_ptd() -> Run:
    run = Run()
    with PtdEmulator(PROFILE, TcpServerLink("127.0.0.1", free_port())) as emu:
        collector = PmCollector(lambda: Ptd(emu.address, period_ms=1000, timeout_s=0.5), host="sut", meter="ptd")
        exporter = Exporter(collector, sinks=[], interval_s=1.0, host="sut")
        start = time.monotonic()
        for k in range(22):
            time.sleep(max(0.0, start + k - time.monotonic()))
            emu.served = []
            run.values.append(_tick(exporter))
            served = emu.served
            run.served.append((served[0].start_s, served[-1].end_s) if len(served) == 1 else None)
        run.errors = exporter.errors_total
    return run


ALIGN_PROFILE = steps_profile([(100.0, 4), (300.0, 5), (150.0, 4), (400.0, 6), (80.0, 5)])
SHIFT_S = 0.3


def run_shifted_meter(tmp_path) -> str:
    """36 s of a meter 300 ms late and of a GPU power series on the true clock, in one store; its path."""
    store = tmp_path / "align.db"
    with Wt300Emulator(ALIGN_PROFILE, tmp_path / "wt310", update_interval_s=1.0, clock_shift_s=SHIFT_S) as emu:
        # wall clock of the emulator's (unshifted) time zero
        wall_origin_ns = time.time_ns() - round((time.monotonic() - emu.origin) * 1e9)
        collector = PmCollector(lambda: Wt300(emu.address, rate_s=1.0, timeout_s=0.5), host="sut", meter="wt",
                                wall_ns=time.time_ns)
        exporter = Exporter(collector, sinks=[StoreSink(store)], interval_s=1.0, host="sut")
        stop = threading.Event()
        exporter_thread = threading.Thread(target=exporter.run, args=(stop, 36))
        exporter_thread.start()
        exporter_thread.join(60)
    ends = [0.61 + k for k in range(1, 40)]  # another sampling phase than the meter's
    labels = {"host": "sut", "gpu": "0", "uuid": "GPU-emulated", "name": "emulated", "kind": "average"}
    with Store(store) as db:
        db.write([Sample(schema.GPU_POWER, labels, ALIGN_PROFILE.energy(end - 1, end),
                         wall_origin_ns + round(end * 1e9)) for end in ends])
    return str(store)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with ThreadPoolExecutor(4) as pool:
        futures = {"wt300": pool.submit(run_wt300, tmp_path_factory.mktemp("wt")),
                   "mcp39f511": pool.submit(run_mcp, tmp_path_factory.mktemp("mcp")),
                   "ptd": pool.submit(run_ptd),
                   "align": pool.submit(run_shifted_meter, tmp_path_factory.mktemp("align"))}
        return {name: future.result() for name, future in futures.items()}


def _relative_error(what: str, measured: float, t0: float, t1: float) -> float:
    exact = PROFILE.energy(t0, t1)
    error = (measured - exact) / exact
    print(f"{what}: {t1 - t0:.2f} s, measured {measured:.3f} J, exact {exact:.3f} J, error {100 * error:+.4f} %")
    return error


@pytest.mark.parametrize("driver", ["wt300", "mcp39f511", "ptd"])
def test_exporter_energy_within_half_a_percent(runs, driver):
    run = runs[driver]
    first, last = 1, len(run.values) - 1
    served = run.served[first:last + 1]
    assert None not in served, served
    # every interval read exactly once: each reply carried the interval right after the previous one's
    assert all(b[0] == pytest.approx(a[1], abs=1e-6) for a, b in zip(served, served[1:])), served
    t0, t1 = served[0][1], served[-1][1]
    assert t1 - t0 >= 19.8
    measured = run.values[last][schema.PM_ENERGY] - run.values[first][schema.PM_ENERGY]
    assert abs(_relative_error(f"{driver} pm_energy_joules_total", measured, t0, t1)) < 0.005
    assert [v[schema.PM_SAMPLES] for v in run.values] == list(range(1, len(run.values) + 1))
    assert run.values[last][schema.PM_INVALID] == 0 and run.values[last][schema.PM_GAP] == 0
    assert run.errors == 0


@pytest.mark.parametrize("driver", ["wt300", "mcp39f511"])
def test_meter_energy_within_half_a_percent(runs, driver):
    run = runs[driver]
    first, last = 1, len(run.values) - 1
    t0, t1 = run.meter_served[first], run.meter_served[last]
    assert t0 is not None and t1 is not None and t1 - t0 >= 19.8
    measured = run.values[last][schema.PM_METER_ENERGY] - run.values[first][schema.PM_METER_ENERGY]
    assert abs(_relative_error(f"{driver} pm_meter_energy_joules_total", measured, t0, t1)) < 0.005


def test_sampling_rate_and_identity(runs):
    for driver, rate in (("wt300", 1.0), ("mcp39f511", 1 / 0.32), ("ptd", 1.0)):
        assert runs[driver].values[-1][schema.PM_SAMPLING_RATE] == pytest.approx(rate, rel=0.02), driver
        assert runs[driver].values[-1][schema.PM_INFO] == 1


def test_align_recovers_a_300_ms_clock_shift(runs):
    result = CliRunner().invoke(root_app, ["pm", "align", "--source", runs["align"], "--meter", "wt", "--reference",
                                           "gpu_power_watts", "--label", "gpu=0", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    print(f"offset {found['offset_ms']:.1f} ms from {found['steps']} steps, spread {found['spread_s'] * 1000:.1f} ms")
    assert found["steps"] >= 3
    assert found["offset_ms"] == pytest.approx(SHIFT_S * 1000, abs=50)
    plain = CliRunner().invoke(root_app, ["pm", "align", "--source", runs["align"], "--reference", "gpu_power_watts"])
    assert plain.exit_code == 0 and plain.stdout.startswith("meter wt: the meter's series lags the reference by ")


def test_align_refuses_what_it_cannot_measure(runs, tmp_path):
    runner = CliRunner()
    no_reference = runner.invoke(root_app, ["pm", "align", "--source", runs["align"]])  # no host CPU series here
    assert no_reference.exit_code == 1
    assert "no samples of mltelemetry_host_cpu_total_utilization_ratio" in no_reference.stderr
    short = runner.invoke(root_app, ["pm", "align", "--source", runs["align"], "--reference", "gpu_power_watts",
                                     "--last", "5s"])
    assert short.exit_code == 1 and short.stderr.startswith("error: ")
    bad = runner.invoke(root_app, ["pm", "align", "--source", runs["align"], "--label", "gpu"])
    assert bad.exit_code == 2 and "--label wants K=V" in bad.stderr  # a usage error
