"""Issue 15: per-GPU and summed GPU energy, and runs that differ in DDP processes grouped as variants.

Samples are written through the store's real write path with hand-chosen power (GPU 0 at 100 W, GPU 1 at 300 W,
the meter at 500 W), at 1 Hz from 0 to 100 s, so every figure below is hand-computed from the windows' edges.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from mltelemetry import schema
from mltelemetry.analysis import sources
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.analysis.figures.gpus import gpu_key
from mltelemetry.cli import app
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

S = 10**9
WH = 3600.0
LAST_S = 100
METER_W = 500.0
GPU_W = {"0": 100.0, "1": 300.0}
GPU_BUSY = {"0": 0.25, "1": 0.75}  # busy seconds per second: the mean load
GPU_GAUGE = {"0": 0.2, "1": 0.6}  # gpu_utilization_ratio, where the busy counters are absent
GAP_S = range(87, 91)  # GPU 1's energy counter has no samples at 87..90 s: 5 s between 86 and 91, > 3 intervals
# run 3 ends at 88.5 s, inside that gap: GPU 1 has no energy for it. Its coverage stays above 95 % (42 of 43
# expected samples inside 45..88.5 s), so only the per-GPU rule flags it.
EVENTS = [Event("c", "", 0, "campaign", 0, LAST_S * S),
          Event("c", "cnn", 1, "run", int(10.5 * S), int(30.25 * S)),  # 19.75 s
          Event("c", "cnn", 2, "run", 32 * S, 42 * S),  # 10 s
          Event("c", "cnn", 3, "run", 45 * S, int(88.5 * S))]  # 43.5 s


def gpu_labels(gpu: str, host: str = "sut") -> dict[str, str]:
    return {"host": host, "gpu": gpu, "uuid": f"GPU-{host}-{gpu}", "name": "Fake GPU"}


def counter(metric: str, labels: dict[str, str], per_s: float, skip=()) -> list[Sample]:
    """A 1 Hz counter growing by ``per_s`` each second, without samples at the seconds in ``skip``."""
    return [Sample(metric, labels, per_s * t, t * S) for t in range(LAST_S + 1) if t not in skip]


def gauge(metric: str, labels: dict[str, str], value: float) -> list[Sample]:
    return [Sample(metric, labels, value, t * S) for t in range(LAST_S + 1)]


def gpu_store(path, gpus=("0", "1"), host: str = "sut", *, busy: bool = True, counters: bool = True,
              events=EVENTS) -> Store:
    samples = counter(schema.PM_ENERGY, {"host": host, "meter": "wt310"}, METER_W)
    for gpu in gpus:
        labels = gpu_labels(gpu, host)
        if counters:
            samples += counter(schema.GPU_ENERGY, {**labels, "method": "nvml_counter"}, GPU_W[gpu],
                               skip=GAP_S if gpu == "1" else ())
        else:  # no energy counter: the analysis integrates the power
            samples += gauge(schema.GPU_POWER, {**labels, "kind": "instant"}, GPU_W[gpu])
        if busy:
            samples += counter(schema.GPU_BUSY_SECONDS, labels, GPU_BUSY[gpu])
        samples += gauge(schema.GPU_UTILIZATION, labels, GPU_GAUGE[gpu])
    store = Store(path)
    store.write(samples)
    store.write_events(events)
    return store


def run_row(result, run: int, scenario: str = "cnn") -> pd.Series:
    w = result.windows
    return w[(w.scenario == scenario) & (w.run == run) & (w.action == "run")].iloc[0]


def test_each_gpu_has_its_energy_power_and_load_and_the_sum_stays(tmp_path):
    with gpu_store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "c")
    assert result.gpus == ["gpu0", "gpu1"]
    run = run_row(result, 1)  # 10.5 .. 30.25 s = 19.75 s
    assert run["gpu_energy_wh[gpu0]"] == pytest.approx(1975 / WH)  # 100 W × 19.75 s
    assert run["gpu_energy_wh[gpu1]"] == pytest.approx(5925 / WH)  # 300 W × 19.75 s
    assert run.gpu_energy_wh == pytest.approx(7900 / WH)  # the sum, as before
    assert run["gpu_mean_power_w[gpu0]"] == pytest.approx(100.0)
    assert run["gpu_mean_power_w[gpu1]"] == pytest.approx(300.0) and run.gpu_mean_power_w == pytest.approx(400.0)
    # load from the busy counters (0.25 and 0.75 s per s), not the gauges (0.2, 0.6); the summed figure is the mean
    assert run["gpu_utilization[gpu0]"] == pytest.approx(0.25)
    assert run["gpu_utilization[gpu1]"] == pytest.approx(0.75) and run.gpu_utilization == pytest.approx(0.5)
    assert not run.flagged and run.energy_wh == pytest.approx(500 * 19.75 / WH)
    assert run_row(result, 2)["gpu_energy_wh[gpu1]"] == pytest.approx(3000 / WH)  # 300 W × 10 s

    # run 3 (45 .. 88.5 s) ends inside GPU 1's gap: its column is NaN, GPU 0's stays, no sum over fewer GPUs
    late = run_row(result, 3)
    assert late["gpu_energy_wh[gpu0]"] == pytest.approx(4350 / WH)  # 100 W × 43.5 s
    assert pd.isna(late["gpu_energy_wh[gpu1]"]) and pd.isna(late["gpu_mean_power_w[gpu1]"])
    assert pd.isna(late.gpu_energy_wh) and late.flagged
    assert ("gpu1: no GPU energy (a gap in its samples at an edge, or a restart inside the window): no GPU energy "
            "summed over the GPUs") in late.note
    assert late["gpu_utilization[gpu1]"] == pytest.approx(0.75)  # its busy counter has no gap
    assert late.energy_wh == pytest.approx(500 * 43.5 / WH)  # the meter's figure stays in the table

    # the statistics per GPU over runs 1 and 2 (run 3 flagged)
    summary = result.summary.set_index(["scenario", "action"]).loc[("cnn", "run")]
    assert summary.n == 2 and summary.n_flagged == 1
    assert summary["gpu_energy_wh[gpu0]_mean"] == pytest.approx((1975 + 1000) / 2 / WH)
    assert summary["gpu_energy_wh[gpu1]_mean"] == pytest.approx((5925 + 3000) / 2 / WH)
    assert summary["gpu_mean_power_w[gpu1]_mean"] == pytest.approx(300.0)
    assert summary["gpu_utilization[gpu0]_mean"] == pytest.approx(0.25)


def test_gauges_and_integrated_power_per_gpu(tmp_path):
    """No energy or busy counters: each GPU's power integrated here, its load the mean of its gauge."""
    with gpu_store(tmp_path / "s.db", busy=False, counters=False) as store:
        result = analyze_campaign(store, "c")
    run = run_row(result, 1)
    assert run.gpu_energy_method == "∫ GPU power (analysis)"
    # constant power: the trapezoids are exact, 100 W and 300 W × 19.75 s
    assert run["gpu_energy_wh[gpu0]"] == pytest.approx(1975 / WH)
    assert run["gpu_energy_wh[gpu1]"] == pytest.approx(5925 / WH) and run.gpu_energy_wh == pytest.approx(7900 / WH)
    assert run["gpu_utilization[gpu0]"] == pytest.approx(0.2) and run["gpu_utilization[gpu1]"] == pytest.approx(0.6)
    assert run.gpu_utilization == pytest.approx(0.4)  # (0.2 + 0.6) / 2
    assert not run_row(result, 3).flagged  # no gap in the power series


def test_dcgm_exporter_counters_per_gpu(tmp_path):
    """Our GPU exporter absent: dcgm-exporter's counters (mJ, its own labels) give each GPU's energy."""
    with Store(tmp_path / "s.db") as store:
        store.write(counter(schema.PM_ENERGY, {"host": "sut", "meter": "wt310"}, METER_W))
        for gpu, watts in GPU_W.items():
            store.write(counter(sources.DCGM_ENERGY, {"gpu": gpu, "UUID": f"GPU-{gpu}", "modelName": "Fake GPU",
                                                      "Hostname": "sut"}, watts * 1000))  # mJ per second
        store.write_events(EVENTS)
        result = analyze_campaign(store, "c")
    run = run_row(result, 1)
    assert result.gpus == ["gpu0", "gpu1"] and run.gpu_energy_method == "GPU counter (dcgm-exporter)"
    assert run["gpu_energy_wh[gpu0]"] == pytest.approx(1975 / WH)  # 100 W × 19.75 s
    assert run["gpu_energy_wh[gpu1]"] == pytest.approx(5925 / WH) and run.gpu_energy_wh == pytest.approx(7900 / WH)


def test_one_gpu_adds_no_columns(tmp_path):
    with gpu_store(tmp_path / "s.db", gpus=("0",)) as store:
        result = analyze_campaign(store, "c")
    assert result.gpus == [] and not any("[" in column for column in result.windows.columns)
    assert not any("[" in column for column in result.summary.columns)
    assert run_row(result, 1).gpu_energy_wh == pytest.approx(1975 / WH)
    assert "gpus" in result.to_dict() and result.to_dict()["gpus"] == []


def test_several_hosts_name_each_gpu_with_its_host(tmp_path):
    with gpu_store(tmp_path / "s.db", gpus=("0",), host="a") as store:
        store.write(counter(schema.PM_ENERGY, {"host": "b", "meter": "wt310"}, METER_W)
                    + counter(schema.GPU_ENERGY, {**gpu_labels("0", "b"), "method": "nvml_counter"}, GPU_W["1"]))
        result = analyze_campaign(store, "c", ["a", "b"])
    assert result.gpus == ["a/gpu0", "b/gpu0"]
    run = run_row(result, 1)
    assert run["gpu_energy_wh[a/gpu0]"] == pytest.approx(1975 / WH)  # host a's GPU at 100 W
    assert run["gpu_energy_wh[b/gpu0]"] == pytest.approx(5925 / WH)  # host b's at 300 W
    assert run.gpu_energy_wh == pytest.approx(7900 / WH) and run["gpu_energy_wh[b]"] == pytest.approx(5925 / WH)
    assert pd.isna(run["gpu_utilization[b/gpu0]"])  # host b recorded no load


def test_cli_csv_json_table_and_report_carry_the_gpus(tmp_path):
    gpu_store(tmp_path / "s.db").close()
    runner = CliRunner()
    source = ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db")]
    out = runner.invoke(app, [*source, "--format", "csv"])
    assert out.exit_code == 0, out.output
    table = pd.read_csv(io.StringIO(out.output))
    run = table[(table.run == 1) & (table.action == "run")].iloc[0]
    assert run["gpu_energy_wh[gpu1]"] == pytest.approx(5925 / WH) and run["gpu_mean_power_w[gpu0]"] == 100.0
    out = runner.invoke(app, [*source, "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["gpus"] == ["gpu0", "gpu1"]
    assert data["windows"][0]["gpu_energy_wh[gpu0]"] == pytest.approx(1975 / WH)
    out = runner.invoke(app, source)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert any("per GPU" in line for line in lines)
    # the GPU rows: mean of runs 1 and 2, GPU 1 (5925 + 3000) / 2 J = 1.2396 Wh at 300 W and 75 % load
    gpu1 = next(line for line in lines if "gpu1" in line)
    assert "1.240" in gpu1 and "300.0" in gpu1 and "0.75" in gpu1, out.output
    out = runner.invoke(app, [*source, "--report", str(tmp_path / "report")])
    assert out.exit_code == 0, out.output
    windows = pd.read_csv(tmp_path / "report" / "data" / "windows.csv")
    assert windows["gpu_energy_wh[gpu0]"].iloc[0] == pytest.approx(1975 / WH)
    assert "GPUs gpu0, gpu1: each one's energy" in (tmp_path / "report" / "index.html").read_text()
    summary = pd.read_csv(tmp_path / "report" / "data" / "summary.csv")
    assert summary["gpu_utilization[gpu1]_mean"].iloc[0] == pytest.approx(0.75)


def test_runs_that_differ_in_processes_are_two_variants(tmp_path):
    """DDP runs record how many processes (one per GPU) they ran: 1 and 2 are two variants of cnn."""
    events = [Event("c", "", 0, "campaign", 0, LAST_S * S)] + [
        Event("c", "cnn", run, "run", start * S, (start + 10) * S, fields={schema.FIELD_PROCESSES: processes,
                                                                       schema.FIELD_BATCH_SIZE: 32})
        for run, start, processes in ((1, 5, 1), (2, 20, 2), (3, 35, 1), (4, 50, 2))]
    with gpu_store(tmp_path / "s.db", events=events) as store:
        result = analyze_campaign(store, "c")
    assert result.windows.set_index("run").variant.to_dict() == {1: "processes=1", 2: "processes=2",
                                                                  3: "processes=1", 4: "processes=2"}
    summary = result.summary.set_index("variant")
    assert summary.loc["processes=1"].n == 2 and summary.loc["processes=2"].n == 2
    # 10 s runs, both GPUs at 100 + 300 W: 4000 J per run in either variant
    assert summary.loc["processes=2"].gpu_energy_wh_mean == pytest.approx(4000 / WH)
    assert set(result.variants.variant) == {"processes=1", "processes=2"}


def test_a_gpu_is_named_by_its_index_else_its_uuid():
    assert gpu_key({"gpu": "3", "uuid": "GPU-x"}) == ("gpu3", {"gpu": "3"})
    assert gpu_key({"gpu": "", "uuid": "GPU-x"}) == ("GPU-x", {"uuid": "GPU-x"})  # dcgm-exporter without gpu
