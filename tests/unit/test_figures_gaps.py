"""Edges of the figure providers (analysis/figures/) that mutation testing found unchecked (bench/mutation.md),
each against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import S, meter_store

from mltelemetry import schema
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.analysis.figures.baseline import choose_baseline, host_baselines, run_ranges
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store


def test_run_numbers_as_ranges():
    assert run_ranges([8, 1, 2, 3, 5, 7]) == "1–3, 5, 7–8"  # sorted first; each range grows from its own end
    assert run_ranges([4]) == "4" and run_ranges([]) == ""


def test_each_hosts_baseline_power_and_induced_energy():
    # two hosts; baseline runs 1 (100 s) and 2 (300 s) are used, run 3 (flagged) is not; x run 1 lasts 200 s
    # host a: baseline 2 Wh + 10 Wh over 400 s = 12 × 3600 J / 400 s = 108 W; host b: (1 + 3) × 3600 / 400 = 36 W
    windows = pd.DataFrame({
        "scenario": ["baseline", "baseline", "baseline", "x"], "action": ["run"] * 4, "status": ["ok"] * 4,
        "flagged": [False, False, True, False], "run": [1, 2, 3, 1], "duration_s": [100.0, 300.0, 100.0, 200.0],
        "energy_wh[a]": [2.0, 10.0, 50.0, 9.0], "energy_wh[b]": [1.0, 3.0, 50.0, 4.0]})
    baseline = {"power_w": 144.0, "runs": [1, 2]}
    assert host_baselines(windows, baseline, ["a", "b"]) == ["induced_wh[a]", "induced_wh[b]"]
    assert baseline["host_power_w"] == pytest.approx({"a": 108.0, "b": 36.0})  # they sum to 144 W
    # x: a 9 Wh − 108 W × 200 s / 3600 = 9 − 6 = 3 Wh; b 4 − 36 × 200 / 3600 = 4 − 2 = 2 Wh
    assert windows["induced_wh[a]"].iloc[3] == pytest.approx(3.0)
    assert windows["induced_wh[b]"].iloc[3] == pytest.approx(2.0)
    # no baseline power: no host's either, and no induced energy
    unknown = {"power_w": None, "runs": []}
    host_baselines(windows, unknown, ["a"])
    assert unknown["host_power_w"] == {"a": None} and windows["induced_wh[a]"].isna().all()


def test_a_baseline_run_under_a_second_counts_in_the_baseline_power():
    # run 1: 0.5 s at 120 W (60 J), run 2: 10 s at 100 W (1000 J); no drift check (margin None):
    # Σ energy / Σ duration = 1060 J / 10.5 s = 100.952… W, run 1 the reference
    windows = pd.DataFrame({"scenario": ["baseline", "baseline"], "action": ["run", "run"], "status": ["ok", "ok"],
                            "flagged": [False, False], "run": [1, 2], "duration_s": [0.5, 10.0],
                            "energy_wh": [60 / 3600, 1000 / 3600], "mean_power_w": [120.0, 100.0]})
    baseline = choose_baseline(windows, None)
    assert baseline["power_w"] == pytest.approx(1060 / 10.5)
    assert baseline["runs"] == [1, 2] and baseline["reference_run"] == 1


def test_a_resumed_baseline_run_counts_only_its_ok_window_in_each_hosts_power():
    # baseline run 1 failed after 50 s (10 Wh on host a) and ran again, ok: 100 s, 3 Wh → 3 × 3600 / 100 = 108 W
    windows = pd.DataFrame({
        "scenario": ["baseline", "baseline"], "action": ["run", "run"], "status": ["failed", "ok"],
        "flagged": [False, False], "run": [1, 1], "duration_s": [50.0, 100.0], "energy_wh[a]": [10.0, 3.0]})
    baseline = {"power_w": 108.0, "runs": [1]}
    host_baselines(windows, baseline, ["a"])
    assert baseline["host_power_w"]["a"] == pytest.approx(108.0)


def test_energy_per_token_of_windows_with_one_token_and_none(tmp_path):
    # 100 W until t = 20 s, then 300 W: baseline 100 W; each epoch lasts 8 s at 300 W: induced 8 × 200 = 1600 J
    events = [Event("c", "baseline", 1, "run", 0, 10 * S), Event("c", "lm", 1, "run", 20 * S, 40 * S),
              Event("c", "lm", 1, "epoch", 22 * S, 30 * S, epoch=1, fields={"tokens": 1}),
              Event("c", "lm", 1, "epoch", 30 * S, 38 * S, epoch=2, fields={"tokens": 0})]
    with meter_store(tmp_path / "s.db", lambda t: 100.0 if t < 20 else 300.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    epochs = result.windows[result.windows.action == "epoch"].set_index("epoch")
    assert epochs.induced_per_token_j[1] == pytest.approx(1600.0)  # 1600 J / 1 token
    assert np.isnan(epochs.induced_per_token_j[2])  # no token: no figure (not 1600 J / 0 = inf)


def test_two_hosts_get_each_their_baseline_power_and_induced_energy(tmp_path):
    # host a 100 W, host b 50 W until t = 20 s, then 300 W and 150 W; baseline run 0–10 s, x run 20–30 s:
    # baseline 150 W (a 100, b 50); x induced a (300 − 100) × 10 s = 2000 J, b (150 − 50) × 10 = 1000 J
    events = [Event("c", "baseline", 1, "run", 0, 10 * S), Event("c", "x", 1, "run", 20 * S, 30 * S)]
    path = tmp_path / "s.db"
    meter_store(path, lambda t: 100.0 if t < 20 else 300.0, 0, 40, host="a", events=events).close()
    with meter_store(path, lambda t: 50.0 if t < 20 else 150.0, 0, 40, host="b") as store:
        result = analyze_campaign(store, "c", ["a", "b"])
    assert result.baseline_power_w == pytest.approx(150.0)
    assert result.baseline["host_power_w"] == pytest.approx({"a": 100.0, "b": 50.0})
    x = result.windows[result.windows.scenario == "x"].iloc[0]
    assert x["induced_wh[a]"] == pytest.approx(2000 / 3600) and x["induced_wh[b]"] == pytest.approx(1000 / 3600)


def test_a_window_of_no_length_is_fully_covered_even_by_a_silent_meter(tmp_path):
    # the meter never gave a reading (its counters published at 0): every window with a length has coverage 0;
    # one of no length expects no reading, so nothing is missing from it: coverage 1 (it is not flagged for that)
    labels = {"host": "h", "meter": "m"}
    samples = [Sample(metric, labels, 0.0, t * S) for t in range(0, 61)
               for metric in (schema.PM_ENERGY, schema.PM_SAMPLES, schema.PM_GAP)]
    events = [Event("c", "x", 1, "run", 30 * S, 50 * S), Event("c", "x", 1, "mark", 40 * S, 40 * S)]
    with Store(tmp_path / "s.db") as store:
        store.write(samples)
        store.write_events(events)
        result = analyze_campaign(store, "c")
    rows = result.windows.set_index("action")
    assert rows.coverage["run"] == 0.0 and rows.coverage["mark"] == 1.0
    assert "coverage" not in (rows.note["mark"] or "")


def test_power_traces_of_a_long_run_keep_to_1200_points(tmp_path):
    # a 2400-s run at 100 W: 2400 s / 1200 points = one point every 2 s, each the mean power of its 2 s
    events = [Event("c", "x", 1, "run", 50 * S, 2450 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 2500, events=events) as store:
        result = analyze_campaign(store, "c", traces=True)
    trace = result.traces[result.traces.run == 1]
    assert len(trace) == 1200
    assert list(trace.t_s[:3]) == [0.0, 2.0, 4.0] and trace.t_s.iloc[-1] == 2398.0
    assert trace.power_w.to_numpy() == pytest.approx(np.full(1200, 100.0))


def test_a_gap_under_a_second_flags_the_window(tmp_path):
    # 100 W; the meter read nothing for 0.5 s in second 35 (gap counter +0.5, no reading counted that second):
    # 19 readings of 20 expected = 95 % coverage (not below the minimum), but the energy is under-counted
    events = [Event("c", "x", 1, "run", 30 * S, 50 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, gap_at=lambda t: 0.5 if t == 35 else 0.0,
                     events=events) as store:
        result = analyze_campaign(store, "c")
    run = result.windows.iloc[0]
    assert run.meter_gap_s == pytest.approx(0.5) and run.coverage == pytest.approx(0.95)
    assert run.flagged and "the meter gave no valid reading for 0.5 s: wall energy under-counted" in run.note


def test_reading_coverage_uses_the_reading_rate_whatever_the_sampling_interval(tmp_path):
    # the counters are sampled every 2 s; the meter reads once a second: +2 readings per 2 s = 1 reading/s,
    # so a 20-s window expects 20 readings and has them all
    events = [Event("c", "x", 1, "run", 30 * S, 50 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, gap_at=lambda t: 0.0, skip=lambda t: t % 2 == 1,
                     events=events) as store:
        result = analyze_campaign(store, "c")
    run = result.windows.iloc[0]
    assert run.coverage == pytest.approx(1.0) and not run.flagged
    assert run.energy_wh == pytest.approx(100 * 20 / 3600)  # 2000 J


def test_a_half_second_window_of_a_silent_meter_has_no_energy(tmp_path):
    labels = {"host": "h", "meter": "m"}
    samples = [Sample(metric, labels, 0.0, t * S) for t in range(0, 61)
               for metric in (schema.PM_ENERGY, schema.PM_SAMPLES, schema.PM_GAP)]
    events = [Event("c", "x", 1, "run", 30 * S, 50 * S), Event("c", "x", 1, "mark", 40 * S, int(40.5 * S))]
    with Store(tmp_path / "s.db") as store:
        store.write(samples)
        store.write_events(events)
        result = analyze_campaign(store, "c")
    mark = result.windows.set_index("action").loc["mark"]
    # half a second expects no whole reading, yet the meter read nothing at all: coverage 0, no wall energy
    assert mark.coverage == 0.0 and np.isnan(mark.energy_wh) and mark.flagged
    assert "no valid reading in the window" in mark.note
