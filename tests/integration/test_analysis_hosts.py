"""Issue 14 item 5: a campaign whose runs span several hosts, analysed as one.

Each host has its own meter (and GPU/RAPL counters); the series carry the host label and meet in one store.
Samples are written through the store's real write path with hand-chosen power, so every figure below is
hand-computed; ``test_two_real_pm_exporters_...`` does the same with two real ``exporter pm`` processes.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import wait_for
from mltelemetry import schema
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
from mltelemetry.exporters.pm.emulator import constant_profile
from mltelemetry.exporters.pm.wt300_emulator import Wt300Emulator
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

S = 10**9
WH = 3600.0
# Power per host (W) before t = 40 s (idle) and from 40 s on (training); host a has no GPU.
POWER = {"a": {"meter": (100.0, 160.0), "package": (30.0, 60.0)},
         "b": {"meter": (50.0, 250.0), "package": (10.0, 40.0), "gpu": (20.0, 180.0)}}
B_METER_STOPS_S = 85  # host b's meter exporter dies at 85 s (the campaign goes on to 100 s)
EVENTS = [Event("c", "", 0, "campaign", 0, 100 * S),
          Event("c", "baseline", 1, "run", 5 * S, 15 * S), Event("c", "baseline", 2, "run", 20 * S, 30 * S),
          Event("c", "cnn", 1, "run", 50 * S, 70 * S), Event("c", "cnn", 2, "run", 75 * S, 95 * S)]


def counter_samples(metric: str, labels: dict[str, str], watts: tuple[float, float], last_s: int = 100) -> list:
    """A 1 Hz energy counter (J) of a device drawing watts[0] before 40 s and watts[1] from 40 s on."""
    energy, samples = 0.0, []
    for t in range(last_s + 1):
        samples.append(Sample(metric, labels, energy, t * S))
        energy += watts[0] if t < 40 else watts[1]  # energy over [t, t + 1]
    return samples


def two_host_store(path, extra_hosts=()) -> Store:
    samples = []
    for host, power in POWER.items():
        last = B_METER_STOPS_S if host == "b" else 100
        samples += counter_samples(schema.PM_ENERGY, {"host": host, "meter": "wt310"}, power["meter"], last)
        samples += counter_samples(schema.HOST_RAPL_ENERGY, {"host": host, "zone": "package-0"}, power["package"])
        if "gpu" in power:
            samples += counter_samples(schema.GPU_ENERGY, {"host": host, "gpu": "0", "uuid": "GPU-0", "name": "G"},
                                       power["gpu"])
    for host in extra_hosts:  # a host with a host exporter and no meter
        samples += [Sample(schema.HOST_CPU_UTILIZATION, {"host": host, "cpu": "total"}, 0.5, t * S)
                    for t in range(101)]
    store = Store(path)
    store.write(samples)
    store.write_events(EVENTS)
    return store


def run_row(result, scenario: str, run: int) -> pd.Series:
    w = result.windows
    return w[(w.scenario == scenario) & (w.run == run) & (w.action == "run")].iloc[0]


def test_two_hosts_are_summed_with_each_hosts_share(tmp_path):
    with two_host_store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "c", ["a", "b"])
    assert result.hosts == ["a", "b"] and result.host is None
    # baseline power: per host Σ energy / Σ duration of the two baseline runs = 100 W and 50 W; summed 150 W
    assert result.baseline_power_w == pytest.approx(150.0)
    assert result.baseline["host_power_w"] == pytest.approx({"a": 100.0, "b": 50.0})
    base = run_row(result, "baseline", 1)  # 10 s: a 1000 J, b 500 J
    assert base["energy_wh[a]"] == pytest.approx(1000 / WH) and base["energy_wh[b]"] == pytest.approx(500 / WH)
    assert base.energy_wh == pytest.approx(1500 / WH) and base.induced_wh == pytest.approx(0.0, abs=1e-12)
    cnn = run_row(result, "cnn", 1)  # 20 s at 160 W on a and 250 W on b
    assert cnn["energy_wh[a]"] == pytest.approx(3200 / WH) and cnn["energy_wh[b]"] == pytest.approx(5000 / WH)
    assert cnn.energy_wh == pytest.approx(8200 / WH) and cnn.mean_power_w == pytest.approx(410.0)
    assert cnn["mean_power_w[a]"] == pytest.approx(160.0) and cnn["mean_power_w[b]"] == pytest.approx(250.0)
    # induced: Σ energy − Σ baseline power × duration = 8200 − 150 × 20 = 5200 J; a 3200 − 2000, b 5000 − 1000
    assert cnn.induced_wh == pytest.approx(5200 / WH)
    assert cnn["induced_wh[a]"] == pytest.approx(1200 / WH) and cnn["induced_wh[b]"] == pytest.approx(4000 / WH)
    # GPU: only b has one (180 W × 20 s); RAPL package on both: (60 + 40) W × 20 s
    assert cnn.gpu_energy_wh == pytest.approx(3600 / WH) and pd.isna(cnn["gpu_energy_wh[a]"])
    assert cnn.cpu_energy_wh == pytest.approx(2000 / WH) and cnn["cpu_energy_wh[a]"] == pytest.approx(1200 / WH)
    assert "GPU energy summed over host(s) b; a recorded none" in result.notes
    assert cnn.energy_method == "meter counter" and not cnn.flagged and cnn.coverage == pytest.approx(1.0)
    # run 2 (75–95 s) ends after b's meter stopped (85 s): no sum over fewer hosts, flagged, a's share kept
    late = run_row(result, "cnn", 2)
    assert pd.isna(late.energy_wh) and pd.isna(late.induced_wh) and late.flagged
    assert late["energy_wh[a]"] == pytest.approx(20 * 160 / WH) and pd.isna(late["energy_wh[b]"])
    assert "host b: no meter samples around the window's edges" in late.note
    # the statistics: cnn run 1 only, per host too
    summary = result.summary.set_index(["scenario", "action"]).loc[("cnn", "run")]
    assert summary.n == 1 and summary.n_flagged == 1
    assert summary["energy_wh[b]_mean"] == pytest.approx(5000 / WH)
    assert summary["induced_wh_mean"] == pytest.approx(5200 / WH)


def test_one_named_host_is_analysed_as_before(tmp_path):
    with two_host_store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "c", "a")
        with pytest.raises(MltelemetryError, match=r"on 2 hosts \(a, b\): name one with --host$"):
            analyze_campaign(store, "c")
    assert result.host == "a" and result.hosts == [] and result.baseline_power_w == pytest.approx(100.0)
    assert run_row(result, "cnn", 1).energy_wh == pytest.approx(3200 / WH)
    assert not any("[" in column for column in result.windows.columns)  # no per-host columns


def test_a_named_host_without_a_meter_leaves_no_sum(tmp_path):
    with two_host_store(tmp_path / "s.db", extra_hosts=["c"]) as store:
        result = analyze_campaign(store, "c", ["a", "b", "c"])
        with pytest.raises(MltelemetryError, match=r"^no series of host\(s\) d during campaign 'c'; hosts there: "
                                                   r"a, b, c$"):
            analyze_campaign(store, "c", ["a", "d"])
    cnn = run_row(result, "cnn", 1)
    assert pd.isna(cnn.energy_wh) and cnn.flagged and cnn["energy_wh[a]"] == pytest.approx(3200 / WH)
    assert "host c: no power-meter series: no wall energy summed over the hosts" in cnn.note
    assert any(note.startswith("no power-meter series of host(s) c during the campaign") for note in result.notes)
    assert result.baseline_power_w is None  # every baseline run is flagged: no induced energy


def test_cli_sums_named_hosts_and_every_host(tmp_path):
    two_host_store(tmp_path / "s.db").close()
    runner = CliRunner()
    source = ["--campaign", "c", "--source", str(tmp_path / "s.db")]
    out = runner.invoke(app, ["analyze", *source, "--host", "a", "--host", "b", "--format", "csv"])
    assert out.exit_code == 0, out.output
    table = pd.read_csv(io.StringIO(out.output))
    cnn = table[(table.scenario == "cnn") & (table.run == 1) & (table.action == "run")].iloc[0]
    assert cnn["energy_wh[b]"] == pytest.approx(5000 / WH) and cnn.energy_wh == pytest.approx(8200 / WH)
    out = runner.invoke(app, ["analyze", *source, "--all-hosts", "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["hosts"] == ["a", "b"] and data["baseline_power_w"] == pytest.approx(150.0)
    assert data["baseline"]["host_power_w"] == pytest.approx({"a": 100.0, "b": 50.0})
    out = runner.invoke(app, ["analyze", *source, "--all-hosts"])
    assert out.exit_code == 0 and "hosts a, b" in out.output and "per host" in out.output
    out = runner.invoke(app, ["analyze", *source, "--all-hosts", "--host", "a"])
    assert out.exit_code == 2 and "--all-hosts" in out.output


def regular_stretch(series_ts: list, after_ns: int, length_ns: int, interval_ns: int = S // 2) -> int:
    """The first time after ``after_ns`` from which every series has a sample at least every 1.2 intervals for
    ``length_ns``."""
    def regular(ts, t0: int) -> bool:
        inside = ts[(ts >= t0 - interval_ns) & (ts <= t0 + length_ns + interval_ns)]
        steps = np.diff(np.concatenate(([t0], inside, [t0 + length_ns])))
        return len(inside) > 1 and bool(np.all(steps <= 1.2 * interval_ns))

    for t0 in range(after_ns, int(min(ts[-1] for ts in series_ts)) - length_ns, interval_ns // 5):
        if all(regular(ts, t0) for ts in series_ts):
            return t0
    pytest.fail("no 10 s in which both exporters sampled every 0.6 s: the machine is too loaded for this test")


def test_two_real_pm_exporters_in_one_store_are_summed(tmp_path):
    """Two `exporter pm` processes, each reading its own WT310 emulator (100 W and 300 W) with its own
    --host-label, write into one store; a baseline and a run, both 4 s long, are analysed over both hosts."""
    store = tmp_path / "lab.db"
    watts = {"a": 100.0, "b": 300.0}
    with Wt300Emulator(constant_profile(watts["a"]), tmp_path / "a", update_interval_s=0.5) as emu_a, \
            Wt300Emulator(constant_profile(watts["b"]), tmp_path / "b", update_interval_s=0.5) as emu_b:
        exporters = [subprocess.Popen(
            [sys.executable, "-m", "mltelemetry", "exporter", "pm", "--port", str(emu.port.link), "--meter", "wt310",
             "--host-label", host, "--listen", "off", "--store", str(store), "--interval", "0.5",
             "--meter-rate", "0.5"], stderr=(tmp_path / f"exporter-{host}.log").open("wb"))
            for host, emu in (("a", emu_a), ("b", emu_b))]
        try:
            def samples_of(host: str) -> pd.DataFrame:
                try:
                    with Store(store, create=False) as s:
                        return s.query(schema.PM_ENERGY, {"host": host})
                except MltelemetryError:  # the exporter is still creating the store
                    return pd.DataFrame({"ts_ns": []})

            wait_for(lambda: store.exists() and all(len(samples_of(h)) > 2 for h in watts), 120,
                     "both exporters to store samples")
            first = max(int(samples_of(h).ts_ns.iloc[0]) for h in watts)
            wait_for(lambda: all(int(samples_of(h).ts_ns.iloc[-1]) > first + 30 * S for h in watts), 180,
                     "30 s of samples from both exporters")
        finally:
            for exporter in exporters:
                exporter.terminate()
            for exporter in exporters:
                exporter.wait(timeout=30)
    # the windows go where both exporters sampled regularly: this checks the sums, not how a loaded machine
    # delays a tick (a window missing samples is flagged for its coverage: test_analysis.py checks that)
    t0 = regular_stretch([samples_of(h).ts_ns.to_numpy() for h in watts], first + 2 * S, 10 * S)
    events = [Event("real", "baseline", 1, "run", t0 + S, t0 + 5 * S), Event("real", "x", 1, "run", t0 + 5 * S,
                                                                             t0 + 9 * S)]
    with Store(store) as s:
        s.write_events(events)
        result = analyze_campaign(s, "real", ["a", "b"])
    run = run_row(result, "x", 1)
    # 4 s at 100 W on a and 300 W on b: 400 J and 1200 J, 1600 J summed; the baseline is the same load
    assert run["energy_wh[a]"] == pytest.approx(400 / WH, rel=0.01)
    assert run["energy_wh[b]"] == pytest.approx(1200 / WH, rel=0.01)
    assert run.energy_wh == pytest.approx(run["energy_wh[a]"] + run["energy_wh[b]"], rel=1e-12)
    assert run.mean_power_w == pytest.approx(400.0, rel=0.01) and not run.flagged, run.note
    assert result.baseline["host_power_w"] == pytest.approx(watts, rel=0.01), run_row(result, "baseline", 1).note
    assert result.baseline_power_w == pytest.approx(400.0, rel=0.01)
    assert run.induced_wh == pytest.approx(0.0, abs=0.01 * 1600 / WH)
