"""Figures of one campaign: per run and per action, then mean and spread per scenario.

Energy comes from the power meter's ``pm_energy_joules_total`` counter (summed over meters
when a SUT has several), read at each event's edges. Induced energy is the method paper's
"energy induced by the software": energy − mean baseline power × duration, where the
baseline power is the mean over the campaign's ``baseline`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mltelemetry import schema
from mltelemetry.analysis.energy import coverage, increase
from mltelemetry.errors import MltelemetryError
from mltelemetry.store import Store

J_PER_WH = 3600.0
MIN_COVERAGE = 0.95
BASELINE_SCENARIO = "baseline"
FIGURES = ["duration_s", "energy_wh", "mean_power_w", "induced_wh", "cpu_utilization"]
_MARGIN_NS = 60 * 10**9  # samples this far outside the campaign still bracket its first and last edges


@dataclass
class CampaignAnalysis:
    campaign: str
    baseline_power_w: float | None
    windows: pd.DataFrame  # one row per run / action / epoch
    summary: pd.DataFrame  # one row per scenario and action: n, mean and std of each figure

    def to_dict(self) -> dict:
        def records(frame: pd.DataFrame) -> list[dict]:
            return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
                    for row in frame.to_dict(orient="records")]
        return {"campaign": self.campaign, "baseline_power_w": self.baseline_power_w,
                "windows": records(self.windows), "summary": records(self.summary)}


def _series_arrays(store: Store, metric: str, labels: dict[str, str], lo: int, hi: int):
    frame = store.query(metric, labels, lo, hi)
    label_columns = [c for c in frame.columns if c not in ("ts_ns", "value")]
    if frame.empty:
        return []
    return [(g["ts_ns"].to_numpy(), g["value"].to_numpy())
            for _, g in frame.groupby(label_columns, sort=True)] if label_columns else \
        [(frame["ts_ns"].to_numpy(), frame["value"].to_numpy())]


def _sampling_interval_ns(ts: np.ndarray) -> float:
    return float(np.median(np.diff(ts))) if len(ts) > 1 else 1e9


def analyze_campaign(store: Store, campaign: str, host: str | None = None) -> CampaignAnalysis:
    events = [e for e in store.events(campaign) if e.action != "campaign"]
    if not events:
        known = store.campaigns()
        raise MltelemetryError(f"no campaign {campaign!r} in {store.path}" +
                               (f"; campaigns there: {', '.join(known)}" if known else "; the store has no events"))
    lo = min(e.start_ns for e in events) - _MARGIN_NS
    hi = max(e.end_ns for e in events) + _MARGIN_NS
    host_labels = {"host": host} if host else {}
    meters = _series_arrays(store, schema.PM_ENERGY, host_labels, lo, hi)
    if not meters:
        raise MltelemetryError(f"{store.path} has no power-meter energy ({schema.PM_ENERGY}) during campaign "
                               f"{campaign!r}" + (f" for host {host!r}" if host else ""))
    cpu = _series_arrays(store, schema.HOST_CPU_UTILIZATION, {**host_labels, "cpu": "total"}, lo, hi)
    cpu_ts, cpu_values = cpu[0] if cpu else (np.empty(0, np.int64), np.empty(0))

    rows = []
    for e in events:
        energies = [increase(ts, values, e.start_ns, e.end_ns) for ts, values in meters]
        energy_j = None if any(x is None for x in energies) else sum(energies)
        interval_ns = max(_sampling_interval_ns(ts) for ts, _ in meters)
        covered = min(coverage(ts, e.start_ns, e.end_ns, _sampling_interval_ns(ts)) for ts, _ in meters)
        in_window = (cpu_ts >= e.start_ns) & (cpu_ts <= e.end_ns)
        notes = []
        if energy_j is None:
            notes.append("no meter samples around the window's edges")
        if e.end_ns - e.start_ns < interval_ns:
            notes.append("shorter than the meter's sampling interval: mean power of that interval")
        if covered < MIN_COVERAGE:
            notes.append(f"meter coverage {covered:.0%} below {MIN_COVERAGE:.0%}")
        rows.append({
            "scenario": e.scenario, "run": e.run, "action": e.action, "epoch": e.epoch, "status": e.status,
            "start": pd.Timestamp(e.start_ns, unit="ns", tz="UTC").isoformat(),
            "duration_s": e.duration_s,
            "energy_wh": None if energy_j is None else energy_j / J_PER_WH,
            "mean_power_w": None if energy_j is None or e.duration_s <= 0 else energy_j / e.duration_s,
            "cpu_utilization": float(cpu_values[in_window].mean()) if in_window.any() else None,
            "coverage": covered, "energy_method": "meter counter", "note": "; ".join(notes),
        })
    windows = pd.DataFrame(rows)

    baseline_runs = windows[(windows.scenario == BASELINE_SCENARIO) & (windows.action == "run")
                            & (windows.status == "ok")]["mean_power_w"].dropna()
    baseline_power_w = float(baseline_runs.mean()) if len(baseline_runs) else None
    windows.insert(windows.columns.get_loc("mean_power_w") + 1, "induced_wh",
                   windows.energy_wh - baseline_power_w * windows.duration_s / J_PER_WH
                   if baseline_power_w is not None else np.nan)
    windows = windows.astype({f: float for f in FIGURES})
    return CampaignAnalysis(campaign, baseline_power_w, windows, summarize(windows))


def summarize(windows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) over the ok runs of each scenario and action."""
    ok = windows[(windows.status == "ok") & windows.epoch.isna()]
    grouped = ok.groupby(["scenario", "action"], sort=False)
    summary = grouped.size().rename("n").to_frame()
    for figure in FIGURES:
        summary[f"{figure}_mean"] = grouped[figure].mean()
        summary[f"{figure}_std"] = grouped[figure].std(ddof=1)
    return summary.reset_index()
