"""Edges of the figure providers (analysis/figures/) that mutation testing found unchecked (bench/mutation.md),
each against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import S, meter_store, silent_meter_campaign
from test_analysis_gpus import counter, gpu_labels, gpu_store

from mltelemetry import schema
from mltelemetry.analysis import sources
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
    result = silent_meter_campaign(tmp_path / "s.db", [Event("c", "x", 1, "run", 30 * S, 50 * S),
                                                       Event("c", "x", 1, "mark", 40 * S, 40 * S)])
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


def test_a_window_past_the_last_meter_sample_is_flagged_though_well_covered(tmp_path):
    # 100 W sampled each second up to t = 60 s; a run from 30 s to 60.5 s ends after the last sample: no counter
    # reading brackets its end, so no wall energy; its 31 samples cover 30.5 s at one a second (coverage 1) and the
    # meter reported no gap, so only the missing edge flags it
    events = [Event("c", "x", 1, "run", 30 * S, int(60.5 * S))]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    run = result.windows.iloc[0]
    assert np.isnan(run.energy_wh) and run.coverage == 1.0 and run.flagged
    assert run.note == "no meter samples around the window's edges (outside the samples or in a gap)"


def test_a_named_host_without_a_meter_flags_every_window_and_says_so(tmp_path):
    # host a: 100 W on its meter; host b: only a host exporter (CPU 50 %), no meter series: no sum over the hosts,
    # the window flagged with b named, host a's own energy kept (100 W × 20 s = 2000 J)
    events = [Event("c", "x", 1, "run", 30 * S, 50 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, host="a", events=events) as store:
        store.write([Sample(schema.HOST_CPU_UTILIZATION, {"host": "b", "cpu": "total"}, 0.5, t * S)
                     for t in range(61)])
        result = analyze_campaign(store, "c", ["a", "b"])
    run = result.windows.iloc[0]
    assert np.isnan(run.energy_wh) and run["energy_wh[a]"] == pytest.approx(2000 / 3600) and run.flagged
    assert "host b: no power-meter series: no wall energy summed over the hosts" in run.note
    assert [note for note in result.notes if "no power-meter series" in note] == [
        "no power-meter series of host(s) b during the campaign: no wall energy summed over the hosts (every window "
        "flagged; name the metered hosts with --host to analyse those)"]


def test_two_metered_hosts_name_their_method(tmp_path):
    # both hosts' meters give energy counters: the summed wall energy (100 + 50 W × 20 s = 3000 J) says so
    events = [Event("c", "x", 1, "run", 30 * S, 50 * S)]
    meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, host="a", events=events).close()
    with meter_store(tmp_path / "s.db", lambda t: 50.0, 0, 60, host="b") as store:
        result = analyze_campaign(store, "c", ["a", "b"])
    run = result.windows.iloc[0]
    assert run.energy_wh == pytest.approx(3000 / 3600) and run.energy_method == "meter counter"


def test_sensor_coverage_flags_a_window_below_95_percent_not_at_it(tmp_path):
    # the meter covers both runs fully (100 W); the host's CPU gauge, sampled each second, misses 35 s and 36 s in
    # run 1 (30–50 s: 19 of 21 samples, 20 expected → 19 / 20 = 95 %, not below) and 75–77 s in run 2 (70–90 s:
    # 18 / 20 = 90 %, below)
    events = [Event("c", "x", 1, "run", 30 * S, 50 * S), Event("c", "x", 2, "run", 70 * S, 90 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 100, events=events) as store:
        store.write([Sample(schema.HOST_CPU_TOTAL_UTILIZATION, {"host": "h"}, 0.5, t * S) for t in range(101)
                     if t not in (35, 36, 75, 76, 77)])
        result = analyze_campaign(store, "c")
    run1, run2 = result.windows.iloc[0], result.windows.iloc[1]
    assert run1.sensor_coverage == pytest.approx(0.95) and run2.sensor_coverage == pytest.approx(0.90)
    assert not run1.flagged and not run1.note
    assert run2.flagged and run2.note == "host coverage 90% below 95%"
    assert run1.coverage == run2.coverage == 1.0  # the meter's: not what flags run 2


def test_windows_after_one_that_ends_before_it_starts_keep_their_flags(tmp_path):
    # the backwards window (40 s → 35 s) comes first in start order; the run after it ends past the meter's last
    # sample (60 s) and is flagged for that as if the backwards one were not there
    events = [Event("c", "x", 1, "mark", 40 * S, 35 * S), Event("c", "x", 1, "run", 50 * S, int(60.5 * S))]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    rows = result.windows.set_index("action")
    assert rows.note["mark"].startswith("ends 5.000 s before it starts: no figures") and rows.flagged["mark"]
    assert rows.flagged["run"] and "no meter samples around the window's edges" in rows.note["run"]


def test_a_window_that_ends_days_before_it_starts_says_by_how_much_to_the_millisecond(tmp_path):
    # a clock stepped back between start and end: 1 000 000 s (11.6 days) = 1e15 ns / 1e9, to three decimals
    events = [Event("c", "x", 1, "run", 1_000_030 * S, 30 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    assert result.windows.note.iloc[0] == "ends 1000000.000 s before it starts: no figures"


def counter_samples(metric, labels, per_s, t1=60):
    """A 1 Hz counter from 0 to t1 s growing by ``per_s`` a second."""
    return [Sample(metric, labels, per_s * t, t * S) for t in range(t1 + 1)]


def test_gpu_and_cpu_energy_per_token_against_hand_computed_values(tmp_path):
    # meter 300 W, GPU counter 200 W, RAPL package counter 50 W; the epoch 22–30 s processed 8000 tokens:
    # GPU 200 W × 8 s = 1600 J / 8000 = 0.2 J, CPU 50 × 8 = 400 J / 8000 = 0.05 J a token
    events = [Event("c", "lm", 1, "run", 20 * S, 40 * S),
              Event("c", "lm", 1, "epoch", 22 * S, 30 * S, epoch=1, fields={"tokens": 8_000}),
              Event("c", "lm", 1, "epoch", 30 * S, 38 * S, epoch=2, fields={"tokens": 0})]
    with meter_store(tmp_path / "s.db", lambda t: 300.0, 0, 60, events=events) as store:
        store.write(counter_samples(schema.GPU_ENERGY, {"host": "h", "gpu": "0", "uuid": "GPU-0", "name": "G",
                                                        "method": "nvml_counter"}, 200.0)
                    + counter_samples(schema.HOST_RAPL_ENERGY, {"host": "h", "zone": "package-0"}, 50.0))
        result = analyze_campaign(store, "c")
    epochs = result.windows[result.windows.action == "epoch"].set_index("epoch")
    assert epochs.gpu_energy_per_token_j[1] == pytest.approx(0.2)
    assert epochs.cpu_energy_per_token_j[1] == pytest.approx(0.05)
    # no token processed: no per-token figure of any kind (not 2400 J / 0 = inf), and none per Wh either: 0 / Wh
    assert np.isnan(epochs.energy_per_token_j[2]) and np.isnan(epochs.gpu_energy_per_token_j[2])
    assert np.isnan(epochs.cpu_energy_per_token_j[2]) and np.isnan(epochs.time_per_token_ms[2])
    assert epochs.tokens_per_wh[2] == 0.0


def test_a_window_of_no_energy_has_no_figures_per_wh(tmp_path):
    # an evaluation stamped at one instant (40 s → 40 s) holds 0 J: accuracy, correct answers and tokens per Wh
    # would be x / 0 = inf; they are left out (NaN), while a 10-s run at 100 W (1000 J) has them: 0.8 / (1000 / 3600)
    fields = {"val_accuracy": 0.8, "correct_classifications": 800, "tokens": 500}
    events = [Event("c", "x", 1, "run", 30 * S, 40 * S, fields=fields),
              Event("c", "x", 1, "evaluate", 40 * S, 40 * S, fields=fields)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    rows = result.windows.set_index("action")
    assert rows.energy_wh["evaluate"] == 0.0
    assert np.isnan(rows.efficiency_acc_per_wh["evaluate"]) and np.isnan(rows.correct_per_wh["evaluate"])
    assert np.isnan(rows.tokens_per_wh["evaluate"])
    assert rows.efficiency_acc_per_wh["run"] == pytest.approx(0.8 * 3600 / 1000)  # 2.88 per Wh
    assert rows.correct_per_wh["run"] == pytest.approx(800 * 3600 / 1000)  # 2880
    assert rows.tokens_per_wh["run"] == pytest.approx(500 * 3600 / 1000)  # 1800


def test_a_run_with_its_own_target_reaches_it_at_its_first_epoch_that_does(tmp_path):
    # the run records its target (0.7) itself (its train window has none); epochs of 10 s from the run's start at
    # 20 s reach 0.5, 0.75, 0.8: the target is reached at the end of epoch 2 (40 s), 20 s after the start (not at
    # epoch 3's end, 30 s); energy to target 100 W × 20 s = 2000 J; the run's own accuracy is its last epoch's
    events = [Event("c", "x", 1, "run", 20 * S, 50 * S, fields={"target_accuracy": 0.7}),
              Event("c", "x", 1, "train", 20 * S, 50 * S)] + [
        Event("c", "x", 1, "epoch", (10 + 10 * k) * S, (20 + 10 * k) * S, epoch=k, fields={"val_accuracy": acc})
        for k, acc in ((1, 0.5), (2, 0.75), (3, 0.8))]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    run = result.windows.set_index("action").loc["run"]
    assert run.time_to_target_s == pytest.approx(20.0)  # a train window without a target leaves the run's
    assert run.energy_to_target_wh == pytest.approx(2000 / 3600)
    assert run.val_accuracy == pytest.approx(0.8)


def test_the_target_is_reached_at_the_first_epoch_in_time_numbered_or_not(tmp_path):
    # run 20–50 s, target 0.7: epoch 1 (20–30 s) reaches 0.75, an epoch without a number (30–40 s, as an
    # instrumented loop may record) 0.8. The first in time is epoch 1: 10 s to target, 100 W × 10 s = 1000 J
    # (ordered by number with none taken as 0, the unnumbered one came first: 20 s)
    events = [Event("c", "x", 1, "run", 20 * S, 50 * S, fields={"target_accuracy": 0.7}),
              Event("c", "x", 1, "epoch", 20 * S, 30 * S, epoch=1, fields={"val_accuracy": 0.75}),
              Event("c", "x", 1, "epoch", 30 * S, 40 * S, fields={"val_accuracy": 0.8})]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    run = result.windows.set_index("action").loc["run"]
    assert run.time_to_target_s == pytest.approx(10.0)
    assert run.energy_to_target_wh == pytest.approx(1000 / 3600)


def test_a_train_window_takes_the_figures_of_the_epoch_that_starts_with_it(tmp_path):
    # train 20–30 s holds one epoch, 20–30 s, starting at the same instant: its accuracy (0.6) is the train's
    events = [Event("c", "x", 1, "run", 10 * S, 40 * S), Event("c", "x", 1, "train", 20 * S, 30 * S),
              Event("c", "x", 1, "epoch", 20 * S, 30 * S, epoch=1, fields={"val_accuracy": 0.6})]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    rows = result.windows.set_index("action")
    assert rows.val_accuracy["train"] == pytest.approx(0.6) and rows.val_accuracy["run"] == pytest.approx(0.6)


def test_gpus_are_ordered_by_host_then_by_index_as_a_number(tmp_path):
    # GPUs 10 and 2 of one host: 2 before 10 (as numbers, not as text: "gpu10" < "gpu2")
    with gpu_store(tmp_path / "s.db", gpus=()) as store:
        store.write(counter(schema.GPU_ENERGY, {**gpu_labels("10"), "method": "nvml_counter"}, 100.0)
                    + counter(schema.GPU_ENERGY, {**gpu_labels("2"), "method": "nvml_counter"}, 300.0))
        assert analyze_campaign(store, "c").gpus == ["gpu2", "gpu10"]
    # host a's GPU 1 before host b's GPU 0: by host first
    with gpu_store(tmp_path / "t.db", gpus=("1",), host="a") as store:
        store.write(counter(schema.PM_ENERGY, {"host": "b", "meter": "wt310"}, 500.0)
                    + counter(schema.GPU_ENERGY, {**gpu_labels("0", "b"), "method": "nvml_counter"}, 100.0))
        assert analyze_campaign(store, "c", ["a", "b"]).gpus == ["a/gpu1", "b/gpu0"]


def test_each_gpus_mean_power_over_half_a_second(tmp_path):
    # a 0.5-s run: the 1 Hz counters read at its edges give GPU 0 100 W × 0.5 s = 50 J → 100 W, GPU 1 300 W
    with gpu_store(tmp_path / "s.db", events=[Event("c", "cnn", 1, "run", 20 * S, int(20.5 * S))]) as store:
        run = analyze_campaign(store, "c").windows.iloc[0]
    assert run["gpu_mean_power_w[gpu0]"] == pytest.approx(100.0)
    assert run["gpu_mean_power_w[gpu1]"] == pytest.approx(300.0)
    assert run.gpu_mean_power_w == pytest.approx(400.0)  # both GPUs: 200 J over 0.5 s


def sensors_store(path, *, ours=True, theirs=True, events=()):
    """100 W on the meter, 10–30 s run; ours: GPU counter 200 W, RAPL package 50 W and DRAM 5 W; theirs:
    dcgm-exporter's GPU counter 150 W (in mJ), node_exporter's RAPL package 40 W and DRAM 4 W."""
    store = meter_store(path, lambda t: 100.0, 0, 60, events=events or [Event("c", "x", 1, "run", 10 * S, 30 * S)])
    gpu = {"host": "h", "gpu": "0", "uuid": "GPU-0", "name": "G"}
    if ours:
        store.write(counter_samples(schema.GPU_ENERGY, {**gpu, "method": "nvml_counter"}, 200.0)
                    + counter_samples(schema.HOST_RAPL_ENERGY, {"host": "h", "zone": "package-0"}, 50.0)
                    + counter_samples(schema.HOST_RAPL_ENERGY, {"host": "h", "zone": "dram-0"}, 5.0))
    if theirs:
        node = {"instance": "h:9100", "index": "0"}
        store.write(counter_samples(sources.DCGM_ENERGY, {"gpu": "0", "UUID": "GPU-0", "modelName": "G",
                                                          "Hostname": "h"}, 150.0 * 1000)
                    + counter_samples("node_rapl_package_joules_total", node, 40.0)
                    + counter_samples("node_rapl_dram_joules_total", node, 4.0))
    return store


@pytest.mark.parametrize(("ours", "theirs", "choice", "expected"), [
    # 20-s run: ours 200 W × 20 = 4000 J GPU, 50 × 20 = 1000 J package, 100 J DRAM; theirs 3000, 800, 80 J
    (True, True, "auto", (4000, 1000, 100, "GPU counter (nvml_counter)", "RAPL counter")),
    (True, True, "mltelemetry", (4000, 1000, 100, "GPU counter (nvml_counter)", "RAPL counter")),
    (True, True, "standard", (3000, 800, 80, "GPU counter (dcgm-exporter)", "RAPL counter (node_exporter)")),
    (False, True, "auto", (3000, 800, 80, "GPU counter (dcgm-exporter)", "RAPL counter (node_exporter)")),
    (True, False, "standard", None),
    (False, True, "mltelemetry", None),
])
def test_sensor_exporters_pick_whose_gpu_and_rapl_counters(tmp_path, ours, theirs, choice, expected):
    with sensors_store(tmp_path / "s.db", ours=ours, theirs=theirs) as store:
        run = analyze_campaign(store, "c", sensor_exporters=choice).windows.iloc[0]
    if expected is None:  # the chosen exporters recorded nothing: no device figures, no method
        assert np.isnan(run.gpu_energy_wh) and np.isnan(run.cpu_energy_wh) and np.isnan(run.dram_energy_wh)
        assert np.isnan(run.sensors_wh) and run.gpu_energy_method == "" and run.rapl_method == ""
        return
    gpu_j, cpu_j, dram_j, gpu_method, rapl_method = expected
    assert run.gpu_energy_wh * 3600 == pytest.approx(gpu_j) and run.cpu_energy_wh * 3600 == pytest.approx(cpu_j)
    assert run.dram_energy_wh * 3600 == pytest.approx(dram_j)
    assert (run.gpu_energy_method, run.rapl_method) == (gpu_method, rapl_method)
    assert run.gpu_mean_power_w == pytest.approx(gpu_j / 20)
    assert run.sensors_wh * 3600 == pytest.approx(gpu_j + cpu_j + dram_j)
    assert run.gpu_share == pytest.approx(gpu_j / 2000)  # of the meter's 100 W × 20 s


def test_gpu_power_integrated_from_its_instant_readings_before_the_averaged(tmp_path):
    # no GPU energy counter: the instant power (150 W) is integrated, not the driver's average (250 W), and the
    # campaign says so; 150 W × 20 s = 3000 J
    def power(kind, watts):
        labels = {"host": "h", "gpu": "0", "uuid": "GPU-0", "kind": kind}
        return [Sample(schema.GPU_POWER, labels, watts, t * S) for t in range(61)]

    with sensors_store(tmp_path / "s.db", ours=False, theirs=False) as store:
        store.write(power("instant", 150.0) + power("average", 250.0))
        result = analyze_campaign(store, "c")
    run = result.windows.iloc[0]
    assert run.gpu_energy_wh * 3600 == pytest.approx(3000) and run.gpu_energy_method == "∫ GPU power (analysis)"
    assert "no GPU energy counter: GPU energy integrated from gpu_power_watts by the analysis" in result.notes
    with sensors_store(tmp_path / "t.db", ours=False, theirs=False) as store:
        store.write(power("average", 250.0))
        result = analyze_campaign(store, "c")
    assert result.windows.iloc[0].gpu_energy_wh * 3600 == pytest.approx(5000)  # only the average: 250 W × 20 s
    with sensors_store(tmp_path / "u.db", ours=False, theirs=False) as store:  # beside a series without a kind
        store.write(power("average", 250.0) + [Sample(schema.GPU_POWER, {"host": "h", "gpu": "0", "uuid": "GPU-0"},
                                                      150.0, t * S) for t in range(61)])
        result = analyze_campaign(store, "c")
    assert result.windows.iloc[0].gpu_energy_wh * 3600 == pytest.approx(5000)  # the labelled average alone


def test_hosts_without_a_gpu_add_none_and_are_named(tmp_path):
    # host a: meter 100 W, GPU 200 W, RAPL 50 W; host b: meter 100 W and RAPL 50 W, no GPU: the GPU energy is
    # a's (4000 J in the 20-s run), RAPL summed (2000 J), a note names b
    events = [Event("c", "x", 1, "run", 10 * S, 30 * S)]
    meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, host="a", events=events).close()
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, host="b") as store:
        store.write(counter_samples(schema.GPU_ENERGY, {"host": "a", "gpu": "0", "uuid": "GPU-0", "name": "G",
                                                        "method": "nvml_counter"}, 200.0)
                    + [s for h in ("a", "b")
                       for s in counter_samples(schema.HOST_RAPL_ENERGY, {"host": h, "zone": "package-0"}, 50.0)])
        result = analyze_campaign(store, "c", ["a", "b"])
    run = result.windows.iloc[0]
    assert run.gpu_energy_wh * 3600 == pytest.approx(4000) and run.cpu_energy_wh * 3600 == pytest.approx(2000)
    assert run.gpu_energy_method == "GPU counter (nvml_counter)" and run.rapl_method == "RAPL counter"
    assert "GPU energy summed over host(s) a; b recorded none" in result.notes
    assert not any(note.startswith("RAPL package energy summed") for note in result.notes)
    assert np.isnan(run.dram_energy_wh)  # neither recorded DRAM


def test_a_one_second_window_without_a_valid_reading_has_no_coverage(tmp_path):
    # the meter read nothing in second 35 (gap counter +1 s, no reading counted): the window 35–36 s expects one
    # reading (1 s × 1 a second) and got none: coverage 0, no wall energy, flagged
    events = [Event("c", "x", 1, "run", 30 * S, 50 * S), Event("c", "x", 1, "mark", 35 * S, 36 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, gap_at=lambda t: 1.0 if t == 35 else 0.0,
                     events=events) as store:
        result = analyze_campaign(store, "c")
    mark = result.windows.set_index("action").loc["mark"]
    assert mark.coverage == 0.0 and np.isnan(mark.energy_wh) and mark.flagged


def test_power_traces_of_a_short_run_and_of_a_meter_giving_power_only(tmp_path):
    # pm_power_watts only (no energy counter), 100 W at 1 Hz with the sample at 35 s missing: a 2-s hole, under
    # the 3 sampling intervals that make a gap, is bridged, so each second of the 20-s run holds 100 J: 100 W
    # exactly (whole joules over whole seconds); a 1.5-s run has one point, its first second's 100 W
    events = [Event("c", "x", 1, "run", 30 * S, 50 * S), Event("c", "x", 2, "run", 52 * S, int(53.5 * S))]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, metric=schema.PM_POWER, skip=lambda t: t == 35,
                     events=events) as store:
        result = analyze_campaign(store, "c", traces=True)
    first, short = result.traces[result.traces.run == 1], result.traces[result.traces.run == 2]
    assert list(first.t_s) == [float(t) for t in range(20)] and list(first.power_w) == [100.0] * 20
    assert list(short.t_s) == [0.0] and list(short.power_w) == [100.0]


def test_a_run_takes_its_last_epochs_figures_not_those_of_another_action_of_that_epoch(tmp_path):
    # epoch 1 (20–30 s) reached 0.6; an evaluation after it (30–32 s) labelled with its epoch number recorded 0.9:
    # the run's accuracy is its last epoch's, 0.6
    events = [Event("c", "x", 1, "run", 10 * S, 40 * S),
              Event("c", "x", 1, "epoch", 20 * S, 30 * S, epoch=1, fields={"val_accuracy": 0.6}),
              Event("c", "x", 1, "evaluate", 30 * S, 32 * S, epoch=1, fields={"val_accuracy": 0.9})]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    assert result.windows.set_index("action").val_accuracy["run"] == pytest.approx(0.6)
