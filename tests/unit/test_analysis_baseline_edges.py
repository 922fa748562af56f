"""Edges of the baseline choice (analysis/campaign.py) that mutation testing found unchecked (bench/mutation.md)."""

import pytest
from test_analysis import S, meter_store

from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.schema import Event


def test_a_baseline_run_of_no_length_is_neither_the_reference_nor_in_the_baseline_power(tmp_path):
    # baseline run 1 ended where it started (nothing measured: no power); runs 2 and 3 last 10 s at 100 W and
    # 20 s at 103 W (from 100 s on): Σ energy / Σ duration = (1000 + 2060) J / 30 s = 102 W, run 2 the reference
    events = [Event("c", "baseline", 1, "run", 5 * S, 5 * S), Event("c", "baseline", 2, "run", 10 * S, 20 * S),
              Event("c", "baseline", 3, "run", 120 * S, 140 * S), Event("c", "x", 1, "run", 200 * S, 210 * S)]
    with meter_store(tmp_path / "s.db", lambda t: 100.0 if t < 100 else 103.0, 0, 300, events=events) as store:
        result = analyze_campaign(store, "c")
    assert result.baseline_power_w == pytest.approx(102.0)
    assert result.baseline["runs"] == [2, 3] and result.baseline["reference_run"] == 2
    assert result.baseline["reference_power_w"] == pytest.approx(100.0)


def test_a_window_shorter_than_the_meters_sampling_interval_says_so(tmp_path):
    # 1 Hz meter at 100 W; a 0.5-s action inside a 10-s run: its energy is the mean power of that second
    events = [Event("c", "baseline", 1, "run", 10 * S, 20 * S), Event("c", "x", 1, "run", 30 * S, 40 * S),
              Event("c", "x", 1, "step", 32 * S, int(32.5 * S))]
    with meter_store(tmp_path / "s.db", lambda t: 100.0, 0, 60, events=events) as store:
        result = analyze_campaign(store, "c")
    rows = {(r["scenario"], r["action"]): r for r in result.windows.to_dict(orient="records")}
    assert rows[("x", "step")]["energy_wh"] == pytest.approx(100 * 0.5 / 3600)  # 50 J
    assert "shorter than the meter's sampling interval" in rows[("x", "step")]["note"]
    assert "shorter than" not in (rows[("x", "run")]["note"] or "")
