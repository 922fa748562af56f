import json

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from mltelemetry import schema
from mltelemetry.analysis import stats
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.analysis.energy import coverages, increases, integral_counter, monotonic
from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

S = 10**9


def test_counter_interpolated_inside_a_sampling_interval():
    ts = np.array([0, 1, 2, 3]) * S
    counter = np.array([0.0, 100.0, 350.0, 450.0])
    starts, ends = np.array([0, int(0.5 * S), -1, 0]), np.array([int(1.2 * S), int(2.5 * S), 2 * S, int(3.1 * S)])
    got = increases(ts, counter, starts, ends, max_gap_ns=3 * S)
    assert got[0] == pytest.approx(150.0)  # 100 + 0.2 × 250
    assert got[1] == pytest.approx(400 - 50)
    assert np.isnan(got[2])  # the window starts before the first sample
    assert np.isnan(got[3])  # it ends after the last


def test_counter_reset_is_undone():
    values = np.array([0.0, 100.0, 200.0, 50.0, 150.0])  # the exporter restarted between 2 and 3
    assert monotonic(values).tolist() == [0.0, 100.0, 200.0, 250.0, 350.0]
    got = increases(np.arange(5) * S, values, np.array([int(0.5 * S)]), np.array([int(3.5 * S)]), max_gap_ns=3 * S)
    assert got[0] == pytest.approx(300 - 50)  # samples 1 s apart: a reset, undone


def test_coverage_of_many_windows():
    ts = np.array([0, 1, 2, 5, 6, 7, 8, 9, 10]) * S  # 3 and 4 missing
    got = coverages(ts, np.array([0, 0, 0, int(2.5 * S)]), np.array([10 * S, 2 * S, int(0.5 * S), int(4.5 * S)]), S)
    assert got.tolist() == pytest.approx([9 / 10, 1.0, 1.0, 0.0])  # 3 of 2 capped; shorter than 1 s; none of 2


def power_at(t):
    """The crafted SUT: 100 W, except 250 W from t=30 s to t=50 s and 160 W from t=70 s to t=80 s."""
    return 250.0 if 30 <= t < 50 else 160.0 if 70 <= t < 80 else 100.0


def crafted_store(path, meters=("wt310",)):
    """1 Hz meter counters and CPU ratios for 0..120 s, and a campaign of two baseline and two cpu runs."""
    energy, samples = 0.0, []
    for t in range(121):
        for meter in meters:
            samples.append(Sample(schema.PM_ENERGY, {"host": "sut", "meter": meter}, energy, t * S))
        samples.append(Sample(schema.HOST_CPU_UTILIZATION, {"host": "sut", "cpu": "total"},
                              0.9 if power_at(t) > 100 else 0.1, t * S))
        energy += power_at(t)  # energy over [t, t+1]
    events = [
        Event("c", "baseline", 1, "run", 2 * S, 12 * S), Event("c", "baseline", 1, "baseline", 2 * S, 12 * S),
        Event("c", "baseline", 2, "run", int(14.5 * S), int(24.5 * S)),
        Event("c", "cpu", 1, "run", 30 * S, 50 * S),
        Event("c", "cpu", 1, "compute", int(35.5 * S), int(45.5 * S)),
        Event("c", "cpu", 2, "run", int(65.5 * S), int(85.5 * S)),
        Event("c", "*", 0, "campaign", 0, 90 * S),
    ]
    with Store(path) as store:
        store.write(samples)
        store.write_events(events)


def test_figures_against_hand_computed_values(tmp_path):
    crafted_store(tmp_path / "s.db")
    with Store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "c")
    assert result.baseline_power_w == pytest.approx(100.0)
    rows = {(r["scenario"], r["run"], r["action"]): r for r in result.windows.to_dict(orient="records")}
    assert ("*", 0, "campaign") not in rows
    cpu1 = rows[("cpu", 1, "run")]
    assert cpu1["duration_s"] == 20.0
    assert cpu1["energy_wh"] == pytest.approx(20 * 250 / 3600)
    assert cpu1["mean_power_w"] == pytest.approx(250.0)
    assert cpu1["induced_wh"] == pytest.approx((5000 - 100 * 20) / 3600)
    # run 2 straddles the 160 W step: 4.5 s at 100 W, 10 s at 160 W, 5.5 s at 100 W
    cpu2 = rows[("cpu", 2, "run")]
    assert cpu2["energy_wh"] == pytest.approx((4.5 * 100 + 10 * 160 + 5.5 * 100) / 3600)
    assert cpu2["induced_wh"] == pytest.approx(10 * 60 / 3600)
    compute = rows[("cpu", 1, "compute")]
    assert compute["energy_wh"] == pytest.approx(10 * 250 / 3600)
    assert compute["cpu_utilization"] == pytest.approx(0.9)
    assert rows[("baseline", 2, "run")]["induced_wh"] == pytest.approx(0.0)
    assert rows[("baseline", 1, "run")]["coverage"] == 1.0

    summary = result.summary.set_index(["scenario", "action"])
    runs = summary.loc[("cpu", "run")]
    assert runs["n"] == 2
    assert runs["energy_wh_mean"] == pytest.approx((5000 + 2600) / 2 / 3600)
    assert runs["energy_wh_std"] == pytest.approx(np.std([5000 / 3600, 2600 / 3600], ddof=1))
    assert summary.loc[("baseline", "run")]["mean_power_w_std"] == pytest.approx(0.0)


def test_two_meters_on_one_sut_are_summed(tmp_path):
    crafted_store(tmp_path / "s.db", meters=("psu1", "psu2"))
    with Store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "c")
    cpu1 = result.windows[(result.windows.scenario == "cpu") & (result.windows.action == "run")].iloc[0]
    assert cpu1.energy_wh == pytest.approx(2 * 5000 / 3600)


def test_window_outside_the_recorded_samples_gets_no_figure(tmp_path):
    crafted_store(tmp_path / "s.db")
    with Store(tmp_path / "s.db") as store:
        store.write_events([Event("late", "cpu", 1, "run", 118 * S, 130 * S)])
        row = analyze_campaign(store, "late").windows.iloc[0]
    assert np.isnan(row.energy_wh) and "no meter samples" in row.note


def test_errors_are_one_line(tmp_path):
    crafted_store(tmp_path / "s.db")
    with Store(tmp_path / "s.db") as store, pytest.raises(MltelemetryError, match="no campaign 'nope'.*: c$"):
        analyze_campaign(store, "nope")
    runner = CliRunner()
    result = runner.invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "missing.db")])
    assert result.exit_code == 1 and result.output.strip() == f"error: no store at {tmp_path / 'missing.db'}"
    Store(tmp_path / "empty.db").close()
    result = runner.invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "empty.db")])
    assert result.exit_code == 1 and "the store has no events" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_json_and_csv(tmp_path):
    crafted_store(tmp_path / "s.db")
    runner = CliRunner()
    result = runner.invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db"), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["baseline_power_w"] == pytest.approx(100.0)
    assert len(data["windows"]) == 6
    result = runner.invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db"), "--format", "csv"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and lines[0].startswith("scenario,run,action")
    assert len(lines) == 1 + 6 + 2 * 4  # windows, then mean and std rows of the four (scenario, action) groups
    result = runner.invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db")])
    assert result.exit_code == 0 and "baseline power 100.00 W" in result.output


def meter_store(path, power_at, t0, t1, *, metric=schema.PM_ENERGY, skip=lambda t: False, gap_at=None,
                host="h", meter="m", events=()):
    """1 Hz samples of one meter from t0 to t1 s: its energy counter (or power), and when ``gap_at`` (seconds
    without a valid reading, per second) is given its gap counter and its count of valid readings (one per second
    without a gap); samples at ``skip(t)`` are missing."""
    energy, gap, readings, samples = 0.0, 0.0, 0, []
    for t in range(t0, t1 + 1):
        if t > t0:
            energy += power_at(t - 1)
            gap += gap_at(t - 1) if gap_at else 0.0
            readings += 1 if gap_at and not gap_at(t - 1) else 0
        if skip(t):
            continue
        labels = {"host": host, "meter": meter}
        samples.append(Sample(metric, labels, energy if metric == schema.PM_ENERGY else power_at(t), t * S))
        if gap_at:
            samples += [Sample(schema.PM_GAP, labels, gap, t * S), Sample(schema.PM_SAMPLES, labels, readings, t * S)]
    store = Store(path)
    store.write(samples)
    store.write_events(list(events))
    return store


def test_flagged_baseline_runs_are_left_out_of_the_baseline_power(tmp_path):
    # 100 W; the meter reads nothing from 150 s to 200 s (the counter stays flat, the gap counter grows);
    # 200 W from 300 s on
    events = [Event("c", "baseline", 1, "run", 10 * S, 110 * S), Event("c", "baseline", 2, "run", 120 * S, 220 * S),
              Event("c", "x", 1, "run", 300 * S, 400 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 0.0 if 150 <= t < 200 else 200.0 if t >= 300 else 100.0, 0, 500,
                     gap_at=lambda t: 1.0 if 150 <= t < 200 else 0.0, events=events) as store:
        result = analyze_campaign(store, "c")
    # only baseline run 1 counts: 10 000 J / 100 s (with run 2's 5 000 J / 100 s it was 75 W)
    assert result.baseline_power_w == pytest.approx(100.0)
    x = result.windows[result.windows.scenario == "x"].iloc[0]
    assert x.induced_wh == pytest.approx((20_000 - 10_000) / 3600)  # was (20 000 − 7 500) / 3600
    assert any("1 flagged 'baseline' run(s) left out" in note for note in result.notes)


def test_several_hosts_without_host_is_an_error(tmp_path):
    meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 300, host="sut",
                events=[Event("c", "x", 1, "run", 50 * S, 150 * S)]).close()
    with meter_store(tmp_path / "s.db", lambda t: 300.0, 0, 300, host="other") as store:
        # without --host the two hosts' meters were summed: 100 W + 300 W = 400 W
        with pytest.raises(MltelemetryError, match=r"on 2 hosts \(other, sut\): name one with --host$"):
            analyze_campaign(store, "c")
        assert analyze_campaign(store, "c", host="sut").windows.mean_power_w.iloc[0] == pytest.approx(100.0)
        assert analyze_campaign(store, "c", host="other").windows.mean_power_w.iloc[0] == pytest.approx(300.0)
    result = CliRunner().invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db")])
    assert result.exit_code == 1 and "--host" in result.output and len(result.output.strip().splitlines()) == 1


def test_power_fallback_window_holding_a_long_gap_gets_no_energy(tmp_path):
    # pm_power_watts only, 100 W, no samples from 501 s to 520 s (a 21 s gap: more than 3 intervals)
    events = [Event("c", "x", 1, "run", 50 * S, 1050 * S), Event("c", "x", 2, "run", 600 * S, 700 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 1100, metric=schema.PM_POWER,
                     skip=lambda t: 500 < t <= 520, events=events) as store:
        windows = analyze_campaign(store, "c").windows.set_index("run")
    # the gap's 21 s added 0 J: (1000 − 21) × 100 J = 27.194 Wh, coverage 98 %, not flagged
    assert np.isnan(windows.loc[1, "energy_wh"]) and windows.loc[1, "flagged"]
    assert "samples stop for more than 3 sampling intervals" in windows.loc[1, "note"]
    assert windows.loc[2, "energy_wh"] == pytest.approx(100 * 100 / 3600) and not windows.loc[2, "flagged"]


def test_counter_reset_across_a_gap_gives_no_energy(tmp_path):
    # the exporter is down from 501 s to 510 s and its counter restarts from 0 at 511 s (100 W throughout)
    samples = [Sample(schema.PM_ENERGY, {"host": "h", "meter": "m"}, 100.0 * (t if t <= 500 else t - 511), t * S)
               for t in range(1101) if not 500 < t < 511]
    with Store(tmp_path / "s.db") as store:
        store.write(samples)
        store.write_events([Event("c", "x", 1, "run", 50 * S, 1050 * S), Event("c", "x", 2, "run", 600 * S, 700 * S)])
        windows = analyze_campaign(store, "c").windows.set_index("run")
    # read as a restart from 0 at 511 s, the 11 s of downtime were lost: (45 000 + 53 900) J = 27.472 Wh
    assert np.isnan(windows.loc[1, "energy_wh"]) and windows.loc[1, "flagged"]
    assert "counter restarts" in windows.loc[1, "note"]
    assert windows.loc[2, "energy_wh"] == pytest.approx(100 * 100 / 3600)


def resumed_events():
    """cnn run 1 fails at epoch 7 (10..100 s), is resumed and ends ok after epoch 3 (200..300 s); epoch i of
    either attempt has val_accuracy 0.2 + 0.1 i."""
    events = [Event("c", "cnn", 1, "run", 10 * S, 100 * S, status="failed")]
    events += [Event("c", "cnn", 1, "epoch", (10 + 10 * i) * S, (20 + 10 * i) * S, i,
                     fields={"val_accuracy": 0.2 + 0.1 * i}) for i in range(1, 8)]
    events += [Event("c", "cnn", 1, "run", 200 * S, 300 * S)]
    events += [Event("c", "cnn", 1, "epoch", (200 + 10 * i) * S, (210 + 10 * i) * S, i,
                     fields={"val_accuracy": 0.2 + 0.1 * i}) for i in range(1, 4)]
    return events


def test_a_run_takes_the_last_epoch_inside_it(tmp_path):
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 400, events=resumed_events()) as store:
        runs = analyze_campaign(store, "c").windows[lambda w: w.action == "run"].set_index("status")
    assert runs.loc["failed", "val_accuracy"] == pytest.approx(0.9)  # its epoch 7
    # the retry's last epoch is 3 (0.5), not the failed attempt's 7 (0.9): 0.5 / (100 × 100 / 3600 Wh)
    assert runs.loc["ok", "val_accuracy"] == pytest.approx(0.5)
    assert runs.loc["ok", "efficiency_acc_per_wh"] == pytest.approx(0.5 / (100 * 100 / 3600))


def test_epochs_of_a_failed_run_are_left_out_of_the_statistics(tmp_path):
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 400, events=resumed_events()) as store:
        result = analyze_campaign(store, "c")
    epochs = result.summary.set_index(["scenario", "action"]).loc[("cnn", "epoch")]
    assert epochs["n"] == 3  # the retry's 3 epochs; with the failed attempt's 7 it was 10
    assert epochs["val_accuracy_mean"] == pytest.approx((0.3 + 0.4 + 0.5) / 3)
    assert epochs["energy_wh_mean"] == pytest.approx(10 * 100 / 3600)
    correlation = result.correlations.set_index("x").loc["val_accuracy"]
    assert correlation["n"] == 3
    failed_epoch = result.windows[(result.windows.action == "epoch") & (result.windows.epoch == 7)].iloc[0]
    assert failed_epoch.run_status == "failed" and "inside a run that is not ok (failed)" in failed_epoch.note


def test_csv_when_no_run_is_ok(tmp_path):
    events = [Event("c", "x", 1, "run", 10 * S, 100 * S, status="failed"),
              Event("c", "x", 2, "run", 110 * S, 200 * S, status="aborted")]
    meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 300, events=events).close()
    with Store(tmp_path / "s.db") as store:
        summary = analyze_campaign(store, "c").summary
    assert summary.empty and {"scenario", "action", "n", "energy_wh_mean", "energy_wh_std"} <= set(summary.columns)
    result = CliRunner().invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db"),
                                      "--format", "csv"])
    assert result.exit_code == 0, result.output  # was a KeyError on the summary's missing columns
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("scenario,run,action") and len(lines) == 1 + 2  # the two windows, no summary rows


def test_power_fallback_integrates_by_the_trapezoidal_rule(tmp_path):
    # pm_power_watts only, a ramp p(t) = 100 + t W sampled at 1 Hz
    assert integral_counter(np.arange(4) * S, np.array([0.0, 10.0, 20.0, 30.0]), 3 * S).tolist() == [0, 5, 20, 45]
    events = [Event("c", "x", 1, "run", 10 * S, 60 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0 + t, 0, 100, metric=schema.PM_POWER, events=events) as store:
        run = analyze_campaign(store, "c").windows.iloc[0]
    # ∫ 10..60 (100 + t) dt = 50 × 100 + (60² − 10²) / 2 = 6750 J, exact for a linear ramp; a right-rectangle
    # sum would give 5000 + Σ 11..60 = 6775 J, a left-rectangle one 6725 J
    assert run.energy_wh == pytest.approx(6750 / 3600, rel=1e-9)
    assert run.energy_method == "∫ meter power (analysis)"


def test_baseline_power_is_time_weighted_over_runs_of_unequal_length(tmp_path):
    # 100 W before 100 s, 103 W after; baseline run 1 lasts 10 s at 100 W, run 2 lasts 30 s at 103 W
    events = [Event("c", "baseline", 1, "run", 10 * S, 20 * S), Event("c", "baseline", 2, "run", 120 * S, 150 * S),
              Event("c", "x", 1, "run", 200 * S, 300 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0 if t < 100 else 103.0, 0, 400, events=events) as store:
        result = analyze_campaign(store, "c")
    # Σ energy / Σ duration = (1000 + 3090) J / 40 s = 102.25 W (the mean of the runs' powers would be 101.5 W)
    assert result.baseline_power_w == pytest.approx(102.25)
    x = result.windows[result.windows.scenario == "x"].iloc[0]
    assert x.induced_wh == pytest.approx((10_300 - 102.25 * 100) / 3600)  # 75 J


def killed_and_resumed_events(campaign: str, claims: bool) -> list[Event]:
    """cnn: run 1 is SIGKILLed during its epoch 2 (10..30 s), resumed and ends ok (100..140 s), run 2 ok (150..190 s),
    3 epochs of 10 s each; with ``claims`` the killed run left its claim (status ``lost``, end = start) and run 3 a
    claim still ``running`` (its process died at 215 s), else the killed run left no run event at all."""
    def ev(run, action, a, b, epoch=None, status="ok"):
        return Event(campaign, "cnn", run, action, a * S, b * S, epoch, status)

    events = [ev(1, "prepare_data", 10, 12), ev(1, "epoch", 12, 22, 1)]  # the killed attempt's closed windows
    events += [ev(2, "cooldown", 142, 146), ev(2, "settle", 146, 150)]  # between runs, by design
    for run, a in ((1, 100), (2, 150)):
        events += [ev(run, "run", a, a + 40), ev(run, "prepare_data", a, a + 5)]
        events += [ev(run, "epoch", a + 5 + 10 * k, a + 15 + 10 * k, k + 1) for k in range(3)]
    if claims:
        events += [ev(1, "run", 10, 10, status="lost"), ev(3, "run", 200, 200, status="running"),
                   ev(3, "prepare_data", 200, 205),
                   ev(2, "run", 150, 150, status="running")]  # run 2's claim, left beside its final event
    return events


@pytest.mark.parametrize("claims", [False, True])
def test_windows_of_a_killed_run_leave_the_statistics(tmp_path, claims):
    events = killed_and_resumed_events("c", claims)
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 300, events=events) as store:
        result = analyze_campaign(store, "c")
    summary = result.summary.set_index(["scenario", "action"])
    assert summary.loc[("cnn", "epoch"), "n"] == 6  # 2 × 3 epochs; counting the killed attempt's epoch 1 gave 7
    assert summary.loc[("cnn", "prepare_data"), "n"] == 2
    assert summary.loc[("cnn", "run"), "n"] == 2
    assert not {"cooldown", "settle"} & set(result.summary.action)  # in no statistic, and not counted as stray
    windows = result.windows
    killed = windows[windows.action == "epoch"].sort_values("start").iloc[0]  # the killed attempt's epoch 1
    if claims:
        assert killed.run_status == "lost" and "inside a run that is not ok (lost)" in killed.note
        run3 = windows[(windows.run == 3) & (windows.action == "prepare_data")].iloc[0]
        assert run3.run_status == "running"
        assert any("3 run(s) not ok (lost, running)" in note for note in result.notes)
    else:
        assert killed.run_status == "none" and "inside no run" in killed.note
        assert any(note.startswith("2 window(s) inside no run event") for note in result.notes)


def test_no_percent_difference_against_a_mean_that_is_zero_within_rounding(tmp_path):
    # three 7 s baseline runs at 100, 101.5 and 99.2 W, three 10 s x runs at 150 W
    powers = [100.0, 101.5, 99.2]
    events = ([Event("c", "baseline", k + 1, "run", (100 * k + 10) * S, (100 * k + 17) * S) for k in range(3)]
              + [Event("c", "x", k + 1, "run", (300 + 20 * k) * S, (310 + 20 * k) * S) for k in range(3)])
    with meter_store(tmp_path / "s.db", lambda t: powers[t // 100] if t < 300 else 150.0, 0, 400,
                     events=events) as store:
        result = analyze_campaign(store, "c")
    tests = result.tests.set_index("figure")
    # the baseline's induced energy sums to 0 by construction; in floating point its mean is −9e-18 Wh, and
    # "diff %" against it read 1.5e+18 %
    induced = tests.loc["induced_wh"]
    assert abs(induced.mean_a) < 1e-15 and np.isnan(induced.difference_pct)
    assert "mean of a is zero" in induced.reason
    baseline_w = (100.0 + 101.5 + 99.2) / 3
    assert induced.difference == pytest.approx(10 * (150 - baseline_w) / 3600)  # the difference itself stays
    energy = tests.loc["energy_wh"]  # a mean well away from zero keeps its percentage: 10 × 150 J against 7 × 100.23 J
    assert energy.difference_pct == pytest.approx(100 * (1500 / 3600 - 7 * baseline_w / 3600) / (7 * baseline_w / 3600))
    assert np.isnan(stats.compare([0.3, -0.1, -0.2], [1.0, 2.0])["difference_pct"])  # mean −9e-18 at a scale of 2
    assert stats.compare([1e-6, 2e-6, 3e-6], [1.0, 2.0])["difference_pct"] == pytest.approx(100 * (1.5 - 2e-6) / 2e-6)


def test_windows_with_a_meter_outage_leave_the_statistics(tmp_path):
    # the meter reads 140 W throughout, but gives no valid reading in seconds 52..56 (baseline run 3) and 161..163
    # (x run 4, a 5 s window): the exporter's energy counter stands still there and its gap counter grows, while
    # the frozen counter is still written every second
    outage = lambda t: 52 <= t < 57 or 161 <= t < 164  # noqa: E731
    events = [Event("c", "baseline", k + 1, "run", (10 + 20 * k) * S, (20 + 20 * k) * S) for k in range(3)]
    events += [Event("c", "x", k + 1, "run", (100 + 20 * k) * S, (110 + 20 * k) * S) for k in range(3)]
    events += [Event("c", "x", 4, "run", 160 * S, 165 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 0.0 if outage(t) else 140.0, 0, 300,
                     gap_at=lambda t: 1.0 if outage(t) else 0.0, events=events) as store:
        result = analyze_campaign(store, "c")
    runs = result.windows.set_index(["scenario", "run"])
    # valid readings in 2 of x run 4's 5 s (1 − 3 s / 5 s = 0.4); the stored samples alone said 1.00
    assert runs.loc[("x", 4), "coverage"] == pytest.approx(0.4)
    assert runs.loc[("baseline", 3), "coverage"] == pytest.approx(0.5)  # 5 s of 10
    assert runs.loc[("baseline", 3), "mean_power_w"] == pytest.approx(70.0)  # 5 s × 140 W over 10 s: under-counted
    assert runs.loc[("x", 4), "flagged"] and "wall energy under-counted" in runs.loc[("x", 4), "note"]
    summary = result.summary.set_index(["scenario", "action"])
    # (140 + 140 + 70) / 3 = 116.7 W with the flagged run; 140 W without it
    assert summary.loc[("baseline", "run"), "n"] == 2 and summary.loc[("baseline", "run"), "n_flagged"] == 1
    assert summary.loc[("baseline", "run"), "mean_power_w_mean"] == pytest.approx(140.0)
    assert summary.loc[("x", "run"), "n"] == 3 and summary.loc[("x", "run"), "mean_power_w_mean"] == pytest.approx(140)
    test = result.tests.set_index("figure").loc["mean_power_w"]
    assert (test.n_a, test.n_b) == (2, 3)
    assert result.baseline_power_w == pytest.approx(140.0)
    assert any(note.startswith("2 run(s) flagged") and "left out of the statistics" in note for note in result.notes)


def test_runs_a_fraction_of_a_percent_apart_are_no_outliers():
    # median 100.01, MAD 0.01: 100.1 had z = 0.6745 × 0.09 / 0.01 = 6.1 and was an "outlier run" 0.09 % away;
    # the MAD is floored at 0.5 % of the median (0.5005): z = 0.12
    flags, reason = stats.mad_outliers([100.0, 100.01, 100.1])
    assert not flags.any() and reason == ""
    # a run 10 % away still is one: z = 0.6745 × 9.99 / 0.5005 = 13.5
    assert stats.mad_outliers([100.0, 100.01, 110.0])[0].tolist() == [False, False, True]


def test_a_host_filter_that_matches_nothing_names_the_hosts(tmp_path):
    events = [Event("c", "x", 1, "run", 50 * S, 150 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 300, host="sut", events=events) as store:
        with pytest.raises(MltelemetryError, match=r"^no series of host 'stu' during campaign 'c'; hosts there: sut$"):
            analyze_campaign(store, "c", host="stu")
        store.write([Sample(schema.HOST_CPU_UTILIZATION, {"host": "gpu-box", "cpu": "total"}, 0.5, t * S)
                     for t in range(300)])
        result = analyze_campaign(store, "c", host="gpu-box")  # its CPU load, but the meter is recorded as "sut"
    assert result.windows.cpu_utilization.iloc[0] == pytest.approx(0.5)
    assert any("for host 'gpu-box' (it is recorded for sut)" in note for note in result.notes)


def drifting_baselines(path):
    """Baseline runs 1 (10 s at 100 W), 2 (10 s at 103 W), 3 (10 s at 108 W) and 4 (20 s at 96 W); x: 100 s at 150 W."""
    spans = {1: (10, 20, 100.0), 2: (40, 50, 103.0), 3: (70, 80, 108.0), 4: (100, 120, 96.0)}
    events = [Event("c", "baseline", run, "run", a * S, b * S) for run, (a, b, _) in spans.items()]
    events.append(Event("c", "x", 1, "run", 200 * S, 300 * S))

    def power(t):
        return next((w for a, b, w in spans.values() if a <= t < b), 150.0 if 200 <= t < 300 else 100.0)

    return meter_store(path, power, 0, 400, events=events)


def test_baseline_runs_drifting_from_the_first_are_flagged_and_left_out(tmp_path):
    with drifting_baselines(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "c")
    runs = result.windows[result.windows.action == "run"].set_index(["scenario", "run"])
    # run 3: 108 / 100 − 1 = +8 % > 5 %; run 2 (+3 %) and run 4 (−4 %) stay
    assert runs.flagged.to_dict() == {("baseline", 1): False, ("baseline", 2): False, ("baseline", 3): True,
                                      ("baseline", 4): False, ("x", 1): False}
    assert ("baseline drift: mean power 108.00 W is +8.0% from the first baseline's 100.00 W (run 1), more than 5%"
            in runs.loc[("baseline", 3), "note"])
    # (1000 + 1030 + 1920) J / 40 s = 98.75 W; with run 3 it was (3950 + 1080) / 50 = 100.6 W
    assert result.baseline_power_w == pytest.approx(98.75)
    assert runs.loc[("x", 1), "induced_wh"] == pytest.approx((15_000 - 98.75 * 100) / 3600)
    assert result.baseline["runs"] == [1, 2, 4] and result.baseline["reference_power_w"] == pytest.approx(100.0)
    assert result.baseline["drifted"] == [{"run": 3, "mean_power_w": pytest.approx(108.0),
                                           "drift": pytest.approx(0.08)}]
    assert "baseline power 98.75 W: Σ energy / Σ duration of 'baseline' run(s) 1–2, 4" in result.notes
    summary = result.summary.set_index(["scenario", "action"]).loc[("baseline", "run")]
    assert (summary["n"], summary["n_flagged"]) == (3, 1)


def test_baseline_margin_on_the_command_line(tmp_path):
    drifting_baselines(tmp_path / "s.db").close()
    runner = CliRunner()
    args = ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db"), "--format", "json"]
    result = runner.invoke(app, args + ["--baseline-margin", "0.1"])  # run 3's 8 % is within 10 %
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["baseline_power_w"] == pytest.approx(100.6) and data["baseline"]["runs"] == [1, 2, 3, 4]
    assert data["baseline"]["margin"] == 0.1 and data["baseline"]["drifted"] == []
    for bad in ("-1", "nan"):  # a usage error, never a silently disabled check
        result = runner.invoke(app, args + ["--baseline-margin", bad])
        assert result.exit_code == 2 and "--baseline-margin" in result.output, bad


# --- variants: energy and time to the target accuracy, the Pareto front -----------------------------------------
# cnn variant: (batch size, precision, epoch length s, epoch power W, epochs to reach 0.8); run k of a variant has
# epochs 1 s longer and 10 W more per step of k (k = 1, 2, 3: −1, 0, +1). Each run: 5 s preparing data at 120 W, its
# epochs (training stops at the target), 5 s cleaning up at 110 W. V3's run 4 never reaches the target (5 epochs).
VARIANTS = {"V1": (32, "fp32", 10, 200.0, 3), "V2": (64, "bf16", 6, 260.0, 4), "V3": (64, "fp32", 8, 240.0, 4)}
TARGET = 0.8


def variant_name(key: str) -> str:
    batch, precision = VARIANTS[key][:2]
    return f"batch_size={batch},precision={precision}"


def variant_events(campaign: str = "v", label: bool = True) -> tuple[list[Event], dict[int, float]]:
    """Two 10 s baselines at 100 W, then the cnn runs of every variant; the events, and the meter power per second."""
    power: dict[int, float] = {}
    events = [Event(campaign, "baseline", k, "run", (5 + 15 * (k - 1)) * S, (15 + 15 * (k - 1)) * S) for k in (1, 2)]
    t, run = 40, 0
    for key, (batch, precision, length, watts, reach) in VARIANTS.items():
        for k in (1, 2, 3, 4) if key == "V3" else (1, 2, 3):
            run += 1
            step = k - 2 if k < 4 else 0
            epoch_s, epoch_w, epochs = length + step, watts + 10 * step, reach if k < 4 else 5
            accuracies = ([TARGET - 0.1 * (epochs - e) for e in range(1, epochs + 1)] if k < 4
                          else [0.5 + 0.04 * e for e in range(1, epochs + 1)])  # 0.54 … 0.70: never 0.8
            settings = {"batch_size": batch, "precision": precision}
            extra = {"variant": variant_name(key)} if label else {}
            end = t + 10 + epochs * epoch_s
            events += [Event(campaign, "cnn", run, "run", t * S, end * S, fields={**settings, **extra}),
                       Event(campaign, "cnn", run, "prepare_data", t * S, (t + 5) * S, fields=extra),
                       Event(campaign, "cnn", run, "train", (t + 5) * S, (end - 5) * S,
                             fields={"target_accuracy": TARGET, **extra})]
            for s in range(t, t + 5):
                power[s] = 120.0
            for e in range(epochs):
                a = t + 5 + e * epoch_s
                events.append(Event(campaign, "cnn", run, "epoch", a * S, (a + epoch_s) * S, e + 1,
                                    fields={"val_accuracy": accuracies[e], **extra}))
                for s in range(a, a + epoch_s):
                    power[s] = epoch_w
            for s in range(end - 5, end):
                power[s] = 110.0
            t = end + 5
    return events, power


def variant_store(path, label: bool = True) -> Store:
    events, power = variant_events(label=label)
    return meter_store(path, lambda t: power.get(t, 100.0), 0, max(power) + 20, events=events)


def test_variants_compared_on_energy_and_time_to_target(tmp_path):
    with variant_store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "v")
    table = result.variants.set_index(["scenario", "variant"])
    v1, v2, v3 = (table.loc[("cnn", variant_name(k))] for k in ("V1", "V2", "V3"))
    # V1: epochs of 9, 10, 11 s at 190, 200, 210 W, 3 each: times 5 + 27, 35, 38 s; energies 600 J + 27 × 190,
    # 30 × 200, 33 × 210 W s = 5730, 6600, 7530 J
    energies_v1 = np.array([5730, 6600, 7530]) / 3600
    assert (v1["n"], v1["n_reached"]) == (3, 3)
    assert v1["time_to_target_s_mean"] == pytest.approx(35.0)
    assert v1["energy_to_target_wh_mean"] == pytest.approx(energies_v1.mean())
    half = sps.t.ppf(0.975, 2) * energies_v1.std(ddof=1) / np.sqrt(3)
    assert v1["energy_to_target_wh_ci_low"] == pytest.approx(energies_v1.mean() - half)
    assert v1["energy_to_target_wh_ci_high"] == pytest.approx(energies_v1.mean() + half)
    # V2: 4 epochs of 5, 6, 7 s at 250, 260, 270 W: 25, 29, 33 s; 600 + 5000, 6240, 7560 J
    energies_v2 = np.array([5600, 6840, 8160]) / 3600
    assert v2["time_to_target_s_mean"] == pytest.approx(29.0)
    assert v2["energy_to_target_wh_mean"] == pytest.approx(energies_v2.mean())
    # V3: 4 epochs of 7, 8, 9 s at 230, 240, 250 W: 33, 37, 41 s; 7040, 8280, 9600 J; run 4 never reached 0.8
    assert (v3["n"], v3["n_reached"]) == (4, 3)
    assert v3["time_to_target_s_mean"] == pytest.approx(37.0)
    assert v3["energy_to_target_wh_mean"] == pytest.approx((7040 + 8280 + 9600) / 3 / 3600)
    # run energy includes the cleanup: V3 run 4 ran 5 epochs of 8 s at 240 W, 5 s at 120 W and 5 s at 110 W
    assert v3["energy_wh_mean"] == pytest.approx((7040 + 8280 + 9600 + 3 * 550 + 600 + 9600 + 550) / 4 / 3600)
    # V1 (35 s, 1.839 Wh) is cheaper, V2 (29 s, 1.907 Wh) faster: both on the front; V3 is beaten by V1 on both
    assert (v1["pareto"], v2["pareto"], v3["pareto"]) == (True, True, False)
    assert set(result.variants.basis) == {"to target"}
    assert not table.loc[("baseline", ""), "pareto"]  # the baseline does no work: never on the front
    # the tests between variants: V2 against V1 on energy to the target, as scipy computes it
    tests = result.tests.set_index(["variant_a", "variant_b", "figure"])
    row = tests.loc[(variant_name("V1"), variant_name("V2"), "energy_to_target_wh")]
    welch = sps.ttest_ind(energies_v2, energies_v1, equal_var=False)
    assert row["welch_p"] == pytest.approx(welch.pvalue) and row["difference"] == pytest.approx(
        energies_v2.mean() - energies_v1.mean())
    summary = result.summary.set_index(["scenario", "variant", "action"])
    assert summary.loc[("cnn", variant_name("V3"), "run"), "n"] == 4
    assert summary.loc[("cnn", variant_name("V2"), "epoch"), "n"] == 12
    assert summary.loc[("baseline", "", "run"), "n"] == 2


def test_variants_from_settings_without_a_variant_field(tmp_path):
    # the same campaign recorded without --vary labels: runs differ in batch size and precision, so those group them
    with variant_store(tmp_path / "s.db", label=False) as store:
        result = analyze_campaign(store, "v")
    groups = result.variants.set_index(["scenario", "variant"])
    assert set(groups.index) == {("baseline", ""), *(("cnn", variant_name(k)) for k in VARIANTS)}
    assert groups.loc[("cnn", variant_name("V2")), "time_to_target_s_mean"] == pytest.approx(29.0)
    epochs = result.windows[result.windows.action == "epoch"]
    assert set(epochs.variant) == {variant_name(k) for k in VARIANTS}  # from the run each epoch lies in


def silent_meter_campaign(path, events: list[Event]):
    """Campaign "c" of ``events`` analysed over 60 s of a meter that never gave a reading: its exporter published
    its counters every second (energy 0, valid readings 0, no gap counted before a first reading)."""
    labels = {"host": "h", "meter": "m"}
    samples = [Sample(metric, labels, 0.0, t * S) for t in range(0, 61)
               for metric in (schema.PM_ENERGY, schema.PM_SAMPLES, schema.PM_GAP)]
    with Store(path) as store:
        store.write(samples)
        store.write_events(events)
        return analyze_campaign(store, "c")


def test_a_meter_that_never_gave_a_reading_gives_no_wall_energy(tmp_path):
    """Seen on a real run: the exporter could not open the meter's port all campaign long. Its counters were
    published: that is not 0 W."""
    result = silent_meter_campaign(tmp_path / "s.db", [Event("c", "baseline", 1, "run", 10 * S, 20 * S),
                                                       Event("c", "x", 1, "run", 30 * S, 50 * S)])
    runs = result.windows[result.windows.action == "run"]
    assert runs.energy_wh.isna().all() and runs.mean_power_w.isna().all() and runs.flagged.all()
    assert (runs.coverage == 0).all()
    assert all("no valid reading in the window" in note for note in runs.note)
    assert result.baseline_power_w is None


def test_energy_and_time_per_token_against_hand_computed_values(tmp_path):
    # 100 W until t = 20 s, then 300 W; a baseline run, then lm-train whose epoch processed 8000 tokens in 8 s
    events = [Event("c", "baseline", 1, "run", 0, 10 * S), Event("c", "lm-train", 1, "run", 20 * S, 40 * S),
              Event("c", "lm-train", 1, "train", 22 * S, 38 * S, fields={"tokens": 16_000}),
              Event("c", "lm-train", 1, "epoch", 22 * S, 30 * S, epoch=1, fields={"tokens": 8_000})]
    with meter_store(tmp_path / "s.db", lambda t: 100.0 if t < 20 else 300.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    w = result.windows.set_index("action")
    epoch, train = w.loc["epoch"], w.loc["train"]
    assert result.baseline_power_w == pytest.approx(100.0)
    assert epoch.energy_per_token_j == pytest.approx(8 * 300 / 8_000)  # 2400 J / 8000 = 0.3 J
    assert epoch.induced_per_token_j == pytest.approx((8 * 300 - 8 * 100) / 8_000)  # 1600 J / 8000 = 0.2 J
    assert epoch.time_per_token_ms == pytest.approx(8_000 / 8_000)  # 8 s / 8000 = 1 ms
    assert epoch.tokens_per_wh == pytest.approx(8_000 / (2400 / 3600))  # 12 000 tokens per Wh
    assert train.energy_per_token_j == pytest.approx(16 * 300 / 16_000)
    run = result.windows[(result.windows.action == "run") & (result.windows.scenario == "lm-train")].iloc[0]
    assert np.isnan(run.tokens) and np.isnan(run.energy_per_token_j)
    summary = result.summary.set_index(["scenario", "action"]).loc[("lm-train", "epoch")]
    assert summary.energy_per_token_j_mean == pytest.approx(0.3)
