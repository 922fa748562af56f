"""``analyze --compare A B``: two campaigns (or two named scenarios) side by side with the same tests."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as sps
from test_analysis import variant_name, variant_store
from test_analysis_figures import lab_events, lab_samples, lab_store
from typer.testing import CliRunner

from mltelemetry.cli import app
from mltelemetry.store import Store


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("compare") / "lab.db"
    lab_store(path).close()
    with Store(path) as store:  # the same runs recorded again as a second campaign, without its first cnn run
        store.write_events([e for e in lab_events(campaign="again") if not (e.scenario == "cnn" and e.run == 1)])
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, ["analyze", *args])


def test_named_scenarios_against_each_other(store_path):
    result = invoke("--compare", "lab:baseline", "again:cnn", "--source", str(store_path), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["a"], data["b"]) == ("lab", "again")
    row = next(r for r in data["comparison"] if r["figure"] == "energy_wh")
    base, cnn = np.full(3, 1000 / 3600), np.array([7450, 6850]) / 3600
    assert (row["scenario_a"], row["scenario_b"], row["n_a"], row["n_b"]) == ("baseline", "cnn", 3, 2)
    assert row["mean_b"] == pytest.approx(cnn.mean()) and row["std_a"] == pytest.approx(0.0)
    assert row["difference"] == pytest.approx(cnn.mean() - base.mean())  # B − A
    assert row["difference_pct"] == pytest.approx(100 * (cnn.mean() - base.mean()) / base.mean())
    with warnings.catch_warnings():  # the baseline runs are identical: scipy warns about their moments
        warnings.simplefilter("ignore", RuntimeWarning)
        welch = sps.ttest_ind(cnn, base, equal_var=False)
    assert row["welch_p"] == pytest.approx(welch.pvalue) and row["welch_t"] == pytest.approx(welch.statistic)
    assert row["mannwhitney_p"] == pytest.approx(sps.mannwhitneyu(cnn, base, alternative="two-sided").pvalue)
    assert row["rank_biserial"] == pytest.approx(1.0)  # every B run above every A run
    assert row["ci_low_b"] == pytest.approx(cnn.mean() - sps.t.ppf(0.975, 1) * cnn.std(ddof=1) / np.sqrt(2))


def test_shared_scenarios_are_paired_and_shown(store_path):
    result = invoke("--compare", "lab", "again", "--source", str(store_path))
    assert result.exit_code == 0, result.output
    assert "lab (A) against again (B)" in result.output
    lines = [line for line in result.output.splitlines() if line.split()[:3] == ["cnn", "cnn", "energy_wh"]]
    assert len(lines) == 1 and "(3)" in lines[0] and "(2)" in lines[0]  # n of each side


def test_compare_errors_are_one_line(store_path, tmp_path):
    result = invoke("--compare", "lab:nope", "again", "--source", str(store_path))
    assert result.exit_code == 1
    assert result.output.strip() == "error: campaign 'lab' has no scenario 'nope'; it has baseline, cnn"
    result = invoke("--compare", "lab", "again", "--campaign", "lab", "--source", str(store_path))
    assert result.exit_code == 2 and "--compare takes the two campaigns itself" in result.output  # usage
    result = invoke("--source", str(store_path))
    assert result.exit_code == 2
    assert result.output.strip() == "error: say which campaign: --campaign X (or --compare A B)"
    with Store(tmp_path / "other.db") as store:
        store.write(lab_samples())
        store.write_events(lab_events(campaign="x"))
        store.write_events([replace(e, scenario="cnn2") for e in lab_events(campaign="z") if e.scenario == "cnn"])
    result = invoke("--compare", "x", "z", "--source", str(tmp_path / "other.db"))
    assert result.exit_code == 1
    assert result.output.strip() == ("error: campaigns 'x' and 'z' share no scenario; name the two to compare as "
                                     "x:SCENARIO z:SCENARIO")


def test_variants_are_paired_with_the_same_variant(tmp_path):
    variant_store(tmp_path / "v.db").close()
    result = invoke("--compare", "v:cnn", "v:cnn", "--source", str(tmp_path / "v.db"), "--format", "json")
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads(result.output)["comparison"] if r["figure"] == "time_to_target_s"]
    # each variant against itself, never one variant's runs lumped with another's
    assert sorted((r["variant_a"], r["variant_b"], r["n_a"], r["mean_b"]) for r in rows) == [
        (variant_name("V1"), variant_name("V1"), 3, 35.0), (variant_name("V2"), variant_name("V2"), 3, 29.0),
        (variant_name("V3"), variant_name("V3"), 3, 37.0)]
    result = invoke("--compare", "v", "v", "--source", str(tmp_path / "v.db"), "--format", "json")
    pairs = {(r["scenario_a"], r["variant_a"]) for r in json.loads(result.output)["comparison"]}
    assert pairs == {("baseline", ""), *(("cnn", variant_name(k)) for k in ("V1", "V2", "V3"))}
