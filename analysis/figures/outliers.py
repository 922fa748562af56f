"""Outlier runs: a run whose energy lies far from its scenario's others (median absolute deviation) is marked
``outlier`` with a note; it stays in the statistics (it is measured, just unusual)."""

from __future__ import annotations

from mltelemetry.analysis import stats
from mltelemetry.analysis.figures.context import Context
from mltelemetry.analysis.windows import ok_windows

FIGURES: list[str] = []


def provide(ctx: Context) -> None:
    windows = ctx.table
    windows["outlier"] = False
    for _, group in ok_windows(windows)[lambda w: w.action == "run"].groupby("scenario"):
        flags, _ = stats.mad_outliers(group.energy_wh.to_numpy())
        windows.loc[group.index[flags], "outlier"] = True
        for i in group.index[flags]:
            ctx.row_notes[i].append("outlier run (median absolute deviation of energy)")



