"""The benchmarks' claims are reproducible: results name their commit and command, comparisons count what they skip."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # bench scripts import their helpers as top-level modules


def test_a_comparison_counts_the_figures_one_source_lacks_instead_of_skipping_them():
    from analysis_bench import compare_windows

    store = [{"scenario": "cnn", "energy_wh": 2.0, "mean_power_w": 100.0, "gpu_energy_wh": None, "induced_wh": 0.0,
              "coverage": 1.0, "epoch": None},
             {"scenario": "idle", "energy_wh": 4.0, "mean_power_w": math.nan, "gpu_energy_wh": 1.0, "induced_wh": 0.5,
              "coverage": 1.0, "epoch": None}]
    other = [{"scenario": "cnn", "energy_wh": 2.1, "mean_power_w": None, "gpu_energy_wh": None, "induced_wh": 0.002,
              "coverage": 1.0, "epoch": None},
             {"scenario": "idle", "energy_wh": 4.0, "mean_power_w": 80.0, "gpu_energy_wh": math.nan,
              "induced_wh": 0.5, "coverage": 1.0, "epoch": None}]
    got = compare_windows(store, other)
    # compared where both are numbers: energy_wh ×2, induced_wh ×2, coverage ×2 = 6
    assert got["compared"] == 6
    assert got["worst_relative_difference"] == pytest.approx(0.05)  # |2.1 − 2.0| / 2.0
    assert got["worst_absolute_difference_at_zero"] == pytest.approx(0.002)  # the store's 0 Wh against 0.002
    assert got["missing_in_other_only"] == 2  # mean_power_w of row 1 (None), gpu_energy_wh of row 2 (NaN)
    assert got["missing_in_store_only"] == 1  # mean_power_w of row 2 (NaN in the store, 80 W in the other)
    assert got["missing_in_both"] == 3  # gpu_energy_wh of row 1, epoch of both rows


def test_provenance_names_the_checked_out_commit_and_the_command():
    from provenance import provenance

    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH, capture_output=True, text=True)
    got = provenance()
    if done.returncode == 0:
        assert got["commit"] == done.stdout.strip() and len(got["commit"]) == 40
    else:  # not a git checkout (an unpacked archive): no commit rather than a made-up one
        assert got["commit"] is None
    assert got["command"].split()[0] == Path(sys.executable).name
    assert isinstance(got["uncommitted_changes"], bool)
