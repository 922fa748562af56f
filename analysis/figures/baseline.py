"""The baseline power and induced energy (the method paper's "energy induced by the software"): energy − mean
baseline power × duration, the baseline power being Σ energy / Σ duration of the campaign's ok, unflagged
``baseline`` runs that lie within ``baseline_margin`` of the first one (:func:`choose_baseline`). With several
hosts, each host's baseline power and induced energy too (:func:`host_baselines`); they sum to the totals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mltelemetry.analysis.figures.context import J_PER_WH, Context
from mltelemetry.analysis.figures.hosts import host_column

FIGURES = ["induced_wh", "induced_per_token_j"]
BASELINE_SCENARIO = "baseline"
BASELINE_MARGIN = 0.05  # the campaign runner's --settle margin: a baseline further from the first one has drifted


def choose_baseline(windows: pd.DataFrame, margin: float | None) -> dict:
    """The baseline power: Σ energy / Σ duration over every second of the ok, unflagged ``baseline`` runs that lie
    within ``margin`` (a fraction) of the first one's mean power, so the baseline's own induced energy sums to zero
    whatever the runs' lengths. A flagged run (a meter gap drags its power down) and a drifted one (a machine that
    no longer idles as it did, e.g. a GPU context left open) would each bias it: both are left out.

    Returns a JSON-ready dict (power_w, runs used, reference run and power, margin, drifted runs) plus ``notes``
    for the campaign and ``run_notes`` (window index → note) for the drifted runs, which are to be flagged."""
    measured = windows[(windows.scenario == BASELINE_SCENARIO) & (windows.action == "run")
                       & (windows.status == "ok") & windows.energy_wh.notna() & (windows.duration_s > 0)]
    flagged = measured[measured.flagged]
    candidates = measured[~measured.flagged]
    margin = margin if margin is not None and np.isfinite(margin) else None  # inf: no check (and valid JSON)
    out: dict = {"power_w": None, "runs": [], "reference_run": None, "reference_power_w": None, "margin": margin,
                 "drifted": [], "flagged": [int(r) for r in flagged.run], "notes": [], "run_notes": {}}
    if len(flagged):
        out["notes"].append(f"{len(flagged)} flagged {BASELINE_SCENARIO!r} run(s) left out of the baseline power")
    if candidates.empty:
        out["notes"].append(f"no {BASELINE_SCENARIO!r} runs with wall energy and no flag in the campaign: induced "
                            "energy not computed")
        return out
    first = candidates.iloc[0]  # windows are in order of start
    reference_w = float(first.mean_power_w)
    out.update(reference_run=int(first.run), reference_power_w=reference_w)
    drift = candidates.mean_power_w / reference_w - 1
    drifted = candidates[drift.abs() > margin] if margin is not None else candidates.iloc[0:0]
    for i, row in drifted.iterrows():
        out["drifted"].append({"run": int(row.run), "mean_power_w": float(row.mean_power_w),
                               "drift": float(drift[i])})
        out["run_notes"][i] = (f"baseline drift: mean power {row.mean_power_w:.2f} W is {drift[i]:+.1%} from the "
                               f"first baseline's {reference_w:.2f} W (run {first.run}), more than {margin:.0%}: left "
                               "out of the baseline power")
    used = candidates.drop(drifted.index)
    out["power_w"] = float(used.energy_wh.sum() * J_PER_WH / used.duration_s.sum())
    out["runs"] = [int(r) for r in used.run]
    if len(drifted):
        names = ", ".join(str(d["run"]) for d in out["drifted"])
        out["notes"].append(f"{len(drifted)} {BASELINE_SCENARIO!r} run(s) ({names}) drifted more than {margin:.0%} "
                            f"from the first baseline's {reference_w:.2f} W (run {first.run}): flagged, left out of "
                            "the baseline power")
    out["notes"].append(f"baseline power {out['power_w']:.2f} W: Σ energy / Σ duration of {BASELINE_SCENARIO!r} "
                        f"run(s) {run_ranges(out['runs'])}")
    return out


def host_baselines(windows: pd.DataFrame, baseline: dict, hosts: list[str]) -> list[str]:
    """Each host's baseline power (Σ its energy / Σ duration over the baseline runs the summed baseline used) into
    ``baseline["host_power_w"]``, and each host's induced energy as ``induced_wh[host]``: the hosts' baseline powers
    sum to the baseline power, and their induced energies to the window's. Returns the columns added."""
    used = windows[(windows.scenario == BASELINE_SCENARIO) & (windows.action == "run") & (windows.status == "ok")
                   & ~windows.flagged & windows.run.isin(baseline["runs"])]
    baseline["host_power_w"] = {}
    added = []
    for h in hosts:
        power_w = (float(used[host_column("energy_wh", h)].sum() * J_PER_WH / used.duration_s.sum())
                   if baseline["power_w"] is not None else None)
        baseline["host_power_w"][h] = power_w
        column = host_column("induced_wh", h)
        windows[column] = (np.nan if power_w is None
                           else windows[host_column("energy_wh", h)] - power_w * windows.duration_s / J_PER_WH)
        added.append(column)
    return added


def run_ranges(runs: list[int]) -> str:
    """Run numbers as ranges: ``1–3, 5``."""
    parts: list[list[int]] = []
    for run in sorted(runs):
        if parts and run == parts[-1][1] + 1:
            parts[-1][1] = run
        else:
            parts.append([run, run])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in parts)


def provide(ctx: Context) -> None:
    windows = ctx.table
    baseline = choose_baseline(windows, ctx.baseline_margin)
    for i, note in baseline.pop("run_notes").items():
        ctx.row_notes[i].append(note)
        windows.loc[i, "flagged"] = True
    ctx.notes.extend(baseline.pop("notes"))
    if baseline["power_w"] is None:
        windows["induced_wh"] = np.nan
    else:
        windows["induced_wh"] = windows.energy_wh - baseline["power_w"] * windows.duration_s / J_PER_WH
    if ctx.reader.several:
        ctx.host_figures += host_baselines(windows, baseline, ctx.reader.hosts or [])
    with np.errstate(invalid="ignore", divide="ignore"):
        windows["induced_per_token_j"] = np.where(windows.tokens > 0, windows.induced_wh * J_PER_WH / windows.tokens,
                                                  np.nan)
    ctx.baseline = baseline
