"""Edges of the figure providers (analysis/figures/) that mutation testing found unchecked (bench/mutation.md),
each against hand-computed values."""

from __future__ import annotations

import pandas as pd
import pytest

from mltelemetry.analysis.figures.baseline import host_baselines, run_ranges


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
