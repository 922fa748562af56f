"""Statistics over the windows: per scenario, variant and action (:func:`summarize`), scenario against scenario
(:func:`scenario_tests`), the variants and their Pareto front (:func:`compare_variants`), energy per epoch against
the indicators (:func:`epoch_correlations`), the meter against the sensors and trackers (:func:`meter_vs_sensors`).

They use the ok, unflagged windows inside ok runs (:func:`~mltelemetry.analysis.windows.ok_windows`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mltelemetry import schema
from mltelemetry.analysis import stats
from mltelemetry.analysis.figures import figure_names
from mltelemetry.analysis.figures.baseline import BASELINE_SCENARIO
from mltelemetry.analysis.windows import eligible_mask, ok_windows

__all__ = ["TESTED_FIGURES", "compare_variants", "epoch_correlations", "meter_vs_sensors", "ok_windows", "recorded",
           "scenario_tests", "summarize"]


# Figures compared between scenarios and variants (and campaigns) with tests.
TESTED_FIGURES = ["energy_wh", "induced_wh", "mean_power_w", "duration_s", "gpu_energy_wh",
                  "efficiency_acc_per_wh", "energy_to_target_wh", "time_to_target_s", "energy_per_token_j",
                  "gpu_energy_per_token_j"]


CORRELATED = ["gpu_temperature_c", schema.FIELD_LOSS, schema.FIELD_ACCURACY, schema.FIELD_VAL_LOSS,
              schema.FIELD_VAL_ACCURACY]


def summarize(windows: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Per scenario, variant and action, over the ok windows (every epoch of every run for ``epoch``): n, the number
    flagged and so left out, and for each figure mean, standard deviation (ddof=1), 95 % CI, median, min, max,
    Shapiro–Wilk p. The columns are there even when no window is ok (no rows then). ``extra``: more figure
    columns (each host's, ``energy_wh[host]``, when several are analysed as one)."""
    figures = figure_names() + list(extra)
    statistics = [k for k in stats.describe(np.array([])) if k != "n"]
    columns = ["scenario", "variant", "action", "n", "n_flagged"] + [
        f"{figure}_{statistic}" for figure in figures if figure in windows for statistic in statistics]
    rows = []
    eligible = windows[eligible_mask(windows)]
    flagged = eligible.flagged.astype(bool) if "flagged" in eligible else pd.Series(False, index=eligible.index)
    for (scenario, variant, action), everything in eligible.groupby(["scenario", "variant", "action"], sort=False):
        group = everything[~flagged[everything.index]]
        row: dict = {"scenario": scenario, "variant": variant, "action": action, "n": len(group),
                     "n_flagged": int(flagged[everything.index].sum())}
        for figure in figures:
            if figure not in group:
                continue
            for statistic, value in stats.describe(group[figure].to_numpy()).items():
                if statistic != "n":
                    row[f"{figure}_{statistic}"] = value
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def recorded(frame: pd.DataFrame, figure: str) -> bool:
    return figure in frame and frame[figure].notna().any()


def scenario_tests(windows: pd.DataFrame, action: str = "run") -> pd.DataFrame:
    """Every pair of groups (scenario and variant; a before b in the campaign), per figure recorded: Welch's t,
    Mann–Whitney U and effect sizes over runs; differences read b − a."""
    runs = ok_windows(windows)[lambda w: w.action == action]
    groups = list(dict.fromkeys(zip(runs.scenario, runs.variant)))
    rows = []
    for (a, va), (b, vb) in itertools.combinations(groups, 2):
        ra = runs[(runs.scenario == a) & (runs.variant == va)]
        rb = runs[(runs.scenario == b) & (runs.variant == vb)]
        for figure in TESTED_FIGURES:
            if recorded(ra, figure) or recorded(rb, figure):
                rows.append({"a": a, "variant_a": va, "b": b, "variant_b": vb, "action": action, "figure": figure,
                             **stats.compare(ra[figure].to_numpy(), rb[figure].to_numpy())})
    return pd.DataFrame(rows)


VARIANT_FIGURES = ["energy_wh", "duration_s", "energy_to_target_wh", "time_to_target_s"]


def compare_variants(windows: pd.DataFrame) -> pd.DataFrame:
    """One row per group of ok runs (scenario and variant): n, how many reached their target accuracy, and the
    mean and 95 % CI of energy and time per run and to the target. ``pareto`` marks the groups (baseline aside) that
    no other group beats on both mean time and mean energy: to the target where any group reached it (``basis``),
    per run otherwise. The tests between groups are in the scenario tests."""
    runs = ok_windows(windows)[lambda w: w.action == "run"]
    rows = []
    for (scenario, variant), group in runs.groupby(["scenario", "variant"], sort=False):
        row: dict = {"scenario": scenario, "variant": variant, "n": len(group),
                     "n_reached": int(group.time_to_target_s.notna().sum())}
        for figure in VARIANT_FIGURES:
            d = stats.describe(group[figure].to_numpy())
            row.update({f"{figure}_mean": d["mean"], f"{figure}_ci_low": d["ci_low"],
                        f"{figure}_ci_high": d["ci_high"]})
        rows.append(row)
    table = pd.DataFrame(rows, columns=["scenario", "variant", "n", "n_reached"] + [
        f"{f}_{s}" for f in VARIANT_FIGURES for s in ("mean", "ci_low", "ci_high")])
    candidates = table[table.scenario != BASELINE_SCENARIO]
    to_target = candidates.energy_to_target_wh_mean.notna().any()
    time, energy = ("time_to_target_s_mean", "energy_to_target_wh_mean") if to_target else ("duration_s_mean",
                                                                                            "energy_wh_mean")
    table["basis"] = "to target" if to_target else "per run"
    table["pareto"] = False
    points = candidates[[time, energy]].dropna()
    for i, (t, e) in points.iterrows():
        beaten = ((points[time] <= t) & (points[energy] <= e) & ((points[time] < t) | (points[energy] < e))).any()
        table.loc[i, "pareto"] = not beaten
    return table


def epoch_correlations(windows: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and variant with epochs: Pearson r (and p) of energy per epoch with GPU temperature, loss and
    accuracy."""
    epochs = ok_windows(windows)[lambda w: w.action == "epoch"]
    rows = []
    for (scenario, variant), group in epochs.groupby(["scenario", "variant"], sort=False):
        for x in CORRELATED:
            result = stats.pearson(group[x].to_numpy(), group.energy_wh.to_numpy())
            if not recorded(group, x):
                result["reason"] = f"{x} not recorded"
            rows.append({"scenario": scenario, "variant": variant, "x": x, "y": "energy_wh", **result})
    return pd.DataFrame(rows)


def meter_vs_sensors(windows: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and over all runs: what fraction of the meter's energy the on-board sensors (GPU + RAPL)
    and CodeCarbon see (ratio mean, spread, 95 % CI) and a linear fit tracker = slope · meter + intercept."""
    runs = ok_windows(windows)[lambda w: w.action == "run"]
    rows = []
    groups = [(s, g) for s, g in runs.groupby("scenario", sort=False)] + [("all", runs)]
    for tracker, column in (("sensors", "sensors_wh"), ("codecarbon", "codecarbon_wh")):
        for scenario, group in groups:
            if not recorded(group, column):
                continue
            ratios = stats.describe((group[column] / group.energy_wh).to_numpy())
            fit = stats.linear_fit(group.energy_wh.to_numpy(), group[column].to_numpy())
            rows.append({"scenario": scenario, "tracker": tracker, "n": ratios["n"], "ratio_mean": ratios["mean"],
                         "ratio_std": ratios["std"], "ratio_ci_low": ratios["ci_low"],
                         "ratio_ci_high": ratios["ci_high"], "slope": fit["slope"], "intercept_wh": fit["intercept"],
                         "r2": fit["r2"], "reason": fit["reason"]})
    return pd.DataFrame(rows)
