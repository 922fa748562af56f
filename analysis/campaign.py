"""Figures of one campaign: per run, per action and per epoch, then statistics per scenario.

Energy is a counter difference at each event's edges (interpolated inside a sampling interval):
wall energy from the power meter's ``pm_energy_joules_total`` (summed over meters when a SUT has
several), GPU energy from ``gpu_energy_joules_total`` (summed over GPUs), CPU and DRAM energy from
the RAPL package and dram zones. Where a series has power but no energy counter, power integrated
by the analysis stands in and the method column says so. Induced energy is the method paper's
"energy induced by the software": energy − mean baseline power × duration, the baseline power
being the mean over every second of the campaign's ok, unflagged ``baseline`` runs (their energy / their duration).

Hardware indicators (paper table 2) are the mean of the samples inside the window (gauges, mean
over GPUs; memory sums over GPUs) or the counter's increase (disk and network bytes, summed over
devices). A window whose samples do not cover it gets no figure and a note, never a padded one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mltelemetry import schema
from mltelemetry.analysis import stats
from mltelemetry.analysis.energy import (
    coverages,
    increases,
    integral_counter,
    sampling_interval_ns,
    unknown_intervals,
    window_means,
    windows_holding,
)
from mltelemetry.analysis.sources import Source, StoreSource, open_source
from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import Event

J_PER_WH = 3600.0
MIN_COVERAGE = 0.95
BASELINE_SCENARIO = "baseline"
_MARGIN_NS = 60 * 10**9  # samples this far outside the campaign still bracket its first and last edges

METHOD_METER = "meter counter"
METHOD_METER_INTEGRAL = "∫ meter power (analysis)"
METHOD_GPU_INTEGRAL = "∫ GPU power (analysis)"
METHOD_RAPL = "RAPL counter"

# Hardware indicators of paper table 2: column, metric, label filter, how series combine.
GAUGES: list[tuple[str, str, dict[str, str], str]] = [
    ("cpu_utilization", schema.HOST_CPU_UTILIZATION, {"cpu": "total"}, "mean"),
    ("memory_used_bytes", schema.HOST_MEMORY_USED, {}, "sum"),
    ("gpu_utilization", schema.GPU_UTILIZATION, {}, "mean"),
    ("gpu_memory_utilization", schema.GPU_MEMORY_UTILIZATION, {}, "mean"),
    ("gpu_memory_used_bytes", schema.GPU_MEMORY_USED, {}, "sum"),
    ("gpu_temperature_c", schema.GPU_TEMPERATURE, {}, "mean"),
    ("gpu_performance_state", schema.GPU_PSTATE, {}, "mean"),
    ("gpu_pcie_link_generation", schema.GPU_PCIE_GENERATION, {}, "mean"),
    ("gpu_clock_sm_hz", schema.GPU_CLOCK, {"clock": "sm"}, "mean"),
    ("gpu_clock_memory_hz", schema.GPU_CLOCK, {"clock": "memory"}, "mean"),
    ("gpu_clock_graphics_hz", schema.GPU_CLOCK, {"clock": "graphics"}, "mean"),
]
COUNTERS: list[tuple[str, str]] = [
    ("disk_read_bytes", schema.HOST_DISK_READ), ("disk_written_bytes", schema.HOST_DISK_WRITTEN),
    ("net_received_bytes", schema.HOST_NET_RECEIVED), ("net_transmitted_bytes", schema.HOST_NET_TRANSMITTED),
]
TRAINING_FIELDS = [schema.FIELD_LOSS, schema.FIELD_ACCURACY, schema.FIELD_VAL_LOSS, schema.FIELD_VAL_ACCURACY,
                   schema.FIELD_CORRECT]
ENERGY_FIGURES = ["energy_wh", "mean_power_w", "induced_wh", "gpu_energy_wh", "gpu_mean_power_w", "gpu_share",
                  "cpu_energy_wh", "dram_energy_wh", "sensors_wh", "sensors_ratio", "codecarbon_wh",
                  "codecarbon_ratio"]
FIGURES = (["duration_s"] + ENERGY_FIGURES + [g[0] for g in GAUGES] + [c[0] for c in COUNTERS]
           + TRAINING_FIELDS + ["efficiency_acc_per_wh", "correct_per_wh", "coverage", "sensor_coverage",
                                "meter_gap_s"])
# Figures compared between scenarios (and campaigns) with tests.
TESTED_FIGURES = ["energy_wh", "induced_wh", "mean_power_w", "duration_s", "gpu_energy_wh",
                  "efficiency_acc_per_wh"]
CORRELATED = ["gpu_temperature_c", schema.FIELD_LOSS, schema.FIELD_ACCURACY, schema.FIELD_VAL_LOSS,
              schema.FIELD_VAL_ACCURACY]
ACTION_ORDER = {"campaign": 0, "run": 1}

Progress = Callable[[str, float, float], None]  # (what, done, total)


@dataclass
class Series:
    labels: dict[str, str]
    ts: np.ndarray
    values: np.ndarray


@dataclass
class CampaignAnalysis:
    campaign: str
    baseline_power_w: float | None
    windows: pd.DataFrame  # one row per run / action / epoch
    summary: pd.DataFrame  # one row per scenario and action: n and statistics of each figure
    tests: pd.DataFrame = field(default_factory=pd.DataFrame)  # scenario against scenario, per figure
    correlations: pd.DataFrame = field(default_factory=pd.DataFrame)  # energy per epoch against indicators
    sensors: pd.DataFrame = field(default_factory=pd.DataFrame)  # meter against sensors and trackers
    notes: list[str] = field(default_factory=list)  # what could not be computed, and why
    source: str = ""
    host: str | None = None
    traces: pd.DataFrame | None = None  # per-second meter power of every ok run (for the report)

    def to_dict(self) -> dict:
        return {"campaign": self.campaign, "source": self.source, "host": self.host,
                "baseline_power_w": self.baseline_power_w, "notes": self.notes,
                "windows": records(self.windows), "summary": records(self.summary), "tests": records(self.tests),
                "correlations": records(self.correlations), "meter_vs_sensors": records(self.sensors)}


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with NaN as None and numpy scalars as Python numbers (JSON-ready)."""
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, (float, np.floating)) and not np.isfinite(v):
                v = None
            elif isinstance(v, np.generic):
                v = v.item()
            elif v is pd.NA or v is pd.NaT:
                v = None
            clean[k] = v
        out.append(clean)
    return out


class _Reader:
    """Reads every series of a metric once for the campaign's span and keeps it for the figures."""

    def __init__(self, source: Source, host: str | None, lo: int, hi: int, progress: Progress | None,
                 total: int) -> None:
        self.source, self.host, self.lo, self.hi = source, host, lo, hi
        self.progress, self.total, self.done = progress, total, 0
        self._cache: dict[str, list[Series]] = {}

    def get(self, metric: str, labels: dict[str, str] | None = None) -> list[Series]:
        if metric not in self._cache:
            if self.progress:
                self.progress(f"reading {metric.removeprefix(schema.PREFIX)}", self.done, self.total)
            frame = self.source.query(metric, {"host": self.host} if self.host else None, self.lo, self.hi)
            if self.host is None and "host" in frame:  # summing two SUTs' meters would make one figure of both
                hosts = sorted({str(h) for h in frame["host"].dropna()})
                if len(hosts) > 1:
                    raise MltelemetryError(f"{metric} was recorded on {len(hosts)} hosts ({', '.join(hosts)}): "
                                           "name one with --host")
            self._cache[metric] = split_series(frame)
            self.done += 1
        return [s for s in self._cache[metric] if all(s.labels.get(k) == v for k, v in (labels or {}).items())]


def split_series(frame: pd.DataFrame) -> list[Series]:
    """A Store-shaped frame (ts_ns, value, label columns) as one Series per label set."""
    if frame.empty:
        return []
    label_columns = [c for c in frame.columns if c not in ("ts_ns", "value")]
    if not label_columns:
        return [Series({}, frame["ts_ns"].to_numpy(np.int64), frame["value"].to_numpy(np.float64))]
    out = []
    for key, group in frame.groupby(label_columns, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        labels = {k: str(v) for k, v in zip(label_columns, key) if isinstance(v, str) or not pd.isna(v)}
        out.append(Series(labels, group["ts_ns"].to_numpy(np.int64), group["value"].to_numpy(np.float64)))
    return out


def _sum_strict(parts: list[np.ndarray], n: int) -> np.ndarray:
    """Sum over series; NaN where any series has no figure (an energy is never silently partial)."""
    return np.sum(parts, axis=0) if parts else np.full(n, np.nan)


def _combine(parts: list[np.ndarray], how: str, n: int) -> np.ndarray:
    if not parts:
        return np.full(n, np.nan)
    stacked = np.vstack(parts)
    finite = np.isfinite(stacked)
    with np.errstate(invalid="ignore"):
        if how == "sum":
            return np.where(finite.any(axis=0), np.nansum(stacked, axis=0), np.nan)
        return np.where(finite.any(axis=0), np.nansum(stacked, axis=0) / np.maximum(finite.sum(axis=0), 1), np.nan)


MAX_GAP_INTERVALS = 3  # an edge inside a longer gap of a counter's samples gets no figure


def _increases(s: Series, starts: np.ndarray, ends: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    return increases(s.ts, s.values if values is None else values, starts, ends,
                     MAX_GAP_INTERVALS * sampling_interval_ns(s.ts))


def energy_of(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Counter increases per window summed over the series (joules for an energy counter), with the max-gap and
    reset rules of ``increases``; NaN where any series has none."""
    return _sum_strict([_increases(s, starts, ends) for s in series], len(starts))


def _integrated(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Joules per window from power series integrated here; NaN for a window holding a gap longer than 3
    intervals (its energy is unknown: nothing integrated it)."""
    parts = []
    for s in series:
        counter = integral_counter(s.ts, s.values, MAX_GAP_INTERVALS * sampling_interval_ns(s.ts))
        part = _increases(s, starts, ends, counter)
        part[_blind(s, starts, ends, counter=False)] = np.nan
        parts.append(part)
    return _sum_strict(parts, len(starts))


def _blind(s: Series, starts: np.ndarray, ends: np.ndarray, counter: bool = True) -> np.ndarray:
    """Per window: whether it holds a stretch of ``s`` whose energy is unknown (see ``unknown_intervals``)."""
    intervals = unknown_intervals(s.ts, s.values, MAX_GAP_INTERVALS * sampling_interval_ns(s.ts), counter)
    return windows_holding(s.ts, intervals, starts, ends)


def _coverage(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Worst coverage over the series (1 where there are none: nothing expected)."""
    if not series:
        return np.ones(len(starts))
    return np.min([coverages(s.ts, starts, ends, sampling_interval_ns(s.ts)) for s in series], axis=0)


def _field(event: Event, name: str) -> float:
    value = event.fields.get(name)
    try:
        return float(value) if value is not None and not isinstance(value, bool) else np.nan
    except (TypeError, ValueError):
        return np.nan


def _codecarbon_wh(event: Event) -> float:
    joules = _field(event, schema.FIELD_CODECARBON_ENERGY)
    if np.isfinite(joules):
        return joules / J_PER_WH
    return _field(event, schema.FIELD_CODECARBON_ENERGY_KWH) * 1000.0


def analyze_campaign(source, campaign: str, host: str | None = None, *, progress: Progress | None = None,
                     traces: bool = False) -> CampaignAnalysis:
    """Every figure of ``campaign`` from ``source`` (a Store, a source, or a ``--source`` text).

    Raises MltelemetryError when the campaign has no events at all, or when ``host`` is None and a
    metric was recorded on several hosts; everything else that is missing gives no figure and a
    note, and the rest is still computed. Several meters of one host are summed.
    """
    source = open_source(source)
    notes: list[str] = []
    all_events = source.events(campaign)
    events = [e for e in all_events if e.action != "campaign"]
    if not events:
        known = source.campaigns()
        raise MltelemetryError(f"no campaign {campaign!r} in {source.description}" +
                               (f"; campaigns there: {', '.join(known)}" if known
                                else "; the store has no events" if isinstance(source, StoreSource)
                                else "; it holds no events"))
    events.sort(key=lambda e: (e.start_ns, -e.end_ns, ACTION_ORDER.get(e.action, 2)))
    n = len(events)
    starts = np.array([e.start_ns for e in events], np.int64)
    ends = np.array([e.end_ns for e in events], np.int64)
    backwards = ends < starts
    if backwards.any():
        notes.append(f"{int(backwards.sum())} event(s) end before they start: no figures for them")
    ends = np.where(backwards, starts, ends)
    lo, hi = int(starts.min()) - _MARGIN_NS, int(ends.max()) + _MARGIN_NS
    reader = _Reader(source, host, lo, hi, progress, total=8 + len({g[1] for g in GAUGES}) + len(COUNTERS))
    duration = (ends - starts) / 1e9
    columns: dict[str, np.ndarray] = {}
    methods: dict[str, np.ndarray] = {}
    where = f" for host {host!r}" if host else ""

    # --- wall energy from the meter -------------------------------------------------------------
    meters = reader.get(schema.PM_ENERGY)
    if meters:
        energy_j = energy_of(meters, starts, ends)
        meter_method = METHOD_METER
        meter_series = meters
    else:
        meter_series = reader.get(schema.PM_POWER)
        energy_j = _integrated(meter_series, starts, ends)
        meter_method = METHOD_METER_INTEGRAL
        notes.append(f"no power-meter energy counter ({schema.PM_ENERGY}) during the campaign{where}: " +
                     ("wall energy integrated from pm_power_watts by the analysis" if meter_series
                      else "no wall energy, mean power or induced energy"))
    columns["energy_wh"] = energy_j / J_PER_WH
    with np.errstate(invalid="ignore", divide="ignore"):
        columns["mean_power_w"] = np.where(duration > 0, energy_j / duration, np.nan)
    methods["energy_method"] = np.where(np.isfinite(energy_j), meter_method, "")
    gaps = reader.get(schema.PM_GAP)
    columns["meter_gap_s"] = energy_of(gaps, starts, ends) if gaps else np.full(n, np.nan)
    columns["coverage"] = _coverage(meter_series, starts, ends) if meter_series else np.zeros(n)
    meter_interval = max((sampling_interval_ns(s.ts) for s in meter_series), default=1e9)
    meter_blind = np.zeros(n, bool)
    for s in meter_series:
        meter_blind |= _blind(s, starts, ends, counter=meter_method == METHOD_METER)

    # --- GPU and RAPL energy ------------------------------------------------------------------------
    gpus = reader.get(schema.GPU_ENERGY)
    if gpus:
        gpu_j = energy_of(gpus, starts, ends)
        gpu_method = "GPU counter (" + ", ".join(sorted({s.labels.get("method") or "?" for s in gpus})) + ")"
    else:
        power = reader.get(schema.GPU_POWER)
        kinds = {s.labels.get("kind") for s in power}
        kind = "instant" if "instant" in kinds else "average" if "average" in kinds else None
        power = [s for s in power if s.labels.get("kind") == kind] if kind else power
        gpu_j = _integrated(power, starts, ends) if power else np.full(n, np.nan)
        gpu_method = METHOD_GPU_INTEGRAL
        if power:
            notes.append("no GPU energy counter: GPU energy integrated from gpu_power_watts by the analysis")
    columns["gpu_energy_wh"] = gpu_j / J_PER_WH
    methods["gpu_energy_method"] = np.where(np.isfinite(gpu_j), gpu_method, "")
    rapl = reader.get(schema.HOST_RAPL_ENERGY)
    packages = [s for s in rapl if s.labels.get("zone", "").startswith("package")]
    drams = [s for s in rapl if s.labels.get("zone", "").startswith("dram")]
    columns["cpu_energy_wh"] = energy_of(packages, starts, ends) / J_PER_WH
    columns["dram_energy_wh"] = energy_of(drams, starts, ends) / J_PER_WH
    methods["rapl_method"] = np.where(np.isfinite(columns["cpu_energy_wh"]), METHOD_RAPL, "")

    # --- hardware indicators ----------------------------------------------------------------------
    for column, metric, labels, how in GAUGES:
        series = reader.get(metric, labels)
        columns[column] = _combine([window_means(s.ts, s.values, starts, ends) for s in series], how, n)
    for column, metric in COUNTERS:
        series = reader.get(metric)
        columns[column] = _combine([_increases(s, starts, ends) for s in series], "sum", n)
    sensor_series = {"host": reader.get(schema.HOST_CPU_UTILIZATION, {"cpu": "total"}),
                     "GPU": reader.get(schema.GPU_ENERGY) or reader.get(schema.GPU_TEMPERATURE), "RAPL": rapl}
    sensor_cov = {name: _coverage(series, starts, ends) for name, series in sensor_series.items() if series}
    columns["sensor_coverage"] = (np.min(list(sensor_cov.values()), axis=0) if sensor_cov else np.full(n, np.nan))
    if progress:
        progress("computing figures", reader.total, reader.total)

    # --- training fields and efficiency ------------------------------------------------------------
    for name in TRAINING_FIELDS:
        columns[name] = np.array([_field(e, name) for e in events])
    epochs_of: dict[tuple[str, int], list[Event]] = {}
    for e in sorted((e for e in events if e.action == "epoch" and e.epoch is not None), key=lambda e: e.epoch):
        epochs_of.setdefault((e.scenario, e.run), []).append(e)
    for i, e in enumerate(events):  # a run or train window without its own figures takes its last epoch's,
        if e.action in ("run", "train"):  # among the epochs that start inside it (a resumed run repeats its key)
            last: dict[str, float] = {}
            for epoch in epochs_of.get((e.scenario, e.run), []):
                if e.start_ns <= epoch.start_ns <= e.end_ns:
                    last.update({name: _field(epoch, name) for name in TRAINING_FIELDS
                                 if np.isfinite(_field(epoch, name))})
            for name, value in last.items():
                if not np.isfinite(columns[name][i]):
                    columns[name][i] = value
    with np.errstate(invalid="ignore", divide="ignore"):
        energy_wh = columns["energy_wh"]
        columns["efficiency_acc_per_wh"] = np.where(energy_wh > 0, columns[schema.FIELD_VAL_ACCURACY] / energy_wh,
                                                    np.nan)
        columns["correct_per_wh"] = np.where(energy_wh > 0, columns[schema.FIELD_CORRECT] / energy_wh, np.nan)
        columns["gpu_mean_power_w"] = np.where(duration > 0, gpu_j / duration, np.nan)
        columns["gpu_share"] = columns["gpu_energy_wh"] / energy_wh
        sensor_parts = np.vstack([columns["gpu_energy_wh"], columns["cpu_energy_wh"], columns["dram_energy_wh"]])
        recorded = np.isfinite(sensor_parts).any(axis=0)
        columns["sensors_wh"] = np.where(recorded, np.nansum(sensor_parts, axis=0), np.nan)
        columns["sensors_ratio"] = columns["sensors_wh"] / energy_wh
        columns["codecarbon_wh"] = np.array([_codecarbon_wh(e) for e in events])
        columns["codecarbon_ratio"] = columns["codecarbon_wh"] / energy_wh

    # --- notes per window -------------------------------------------------------------------------
    row_notes: list[list[str]] = [[] for _ in events]
    flagged = np.zeros(n, bool)
    for i, e in enumerate(events):
        notes_i = row_notes[i]
        if backwards[i]:
            notes_i.append(f"ends {(e.start_ns - e.end_ns) / 1e9:.3f} s before it starts: no figures")
            flagged[i] = True
            continue
        if meter_blind[i]:
            notes_i.append(f"the meter's samples stop for more than {MAX_GAP_INTERVALS} sampling intervals inside "
                           "the window" + (" and its counter restarts after" if meter_method == METHOD_METER else "")
                           + ": the energy of that stretch is unknown, no wall energy")
            flagged[i] = True
        elif meter_series and not np.isfinite(energy_j[i]):
            notes_i.append("no meter samples around the window's edges (outside the samples or in a gap)")
            flagged[i] = True
        if meter_series and e.end_ns - e.start_ns < meter_interval:
            notes_i.append("shorter than the meter's sampling interval: mean power of that interval")
        if meter_series and columns["coverage"][i] < MIN_COVERAGE:
            notes_i.append(f"meter coverage {columns['coverage'][i]:.0%} below {MIN_COVERAGE:.0%}")
            flagged[i] = True
        if columns["meter_gap_s"][i] > 0:
            notes_i.append(f"the meter gave no valid reading for {columns['meter_gap_s'][i]:.1f} s: "
                           "wall energy under-counted")
            flagged[i] = True
        for name, cov in sensor_cov.items():
            if cov[i] < MIN_COVERAGE:
                notes_i.append(f"{name} coverage {cov[i]:.0%} below {MIN_COVERAGE:.0%}")
                flagged[i] = True
    all_figures = set(FIGURES)
    for column in list(columns):
        if column in all_figures:
            columns[column] = np.where(backwards, np.nan, columns[column])
    for column in methods:
        methods[column] = np.where(backwards, "", methods[column])

    windows = pd.DataFrame({
        "scenario": [e.scenario for e in events], "run": [e.run for e in events],
        "action": [e.action for e in events],
        "epoch": pd.array([e.epoch for e in events], dtype="Int64").astype("float64"),
        "status": [e.status for e in events],
        "start": [pd.Timestamp(e.start_ns, unit="ns", tz="UTC").isoformat() for e in events],
        "duration_s": np.where(backwards, np.nan, duration),
    })
    for column in FIGURES[1:]:
        if column in columns:
            windows[column] = np.asarray(columns[column], np.float64)
    for column, values in methods.items():
        windows[column] = values
    windows["flagged"] = flagged
    # the status of the run each window lies in (its own for a run, and where none encloses it): a failed
    # run's epochs and actions are left out of the statistics with it
    runs_of: dict[tuple[str, int], list[Event]] = {}
    for e in events:
        if e.action == "run":
            runs_of.setdefault((e.scenario, e.run), []).append(e)
    run_status = []
    for i, e in enumerate(events):
        enclosing = e if e.action == "run" else next(
            (r for r in runs_of.get((e.scenario, e.run), []) if r.start_ns <= e.start_ns <= r.end_ns), e)
        run_status.append(enclosing.status)
        if enclosing is not e and enclosing.status != "ok":
            row_notes[i].append(f"inside a run that is not ok ({enclosing.status}): left out of the statistics")
    windows["run_status"] = run_status

    # --- baseline and induced energy --------------------------------------------------------------
    # time-weighted over every second of the ok baseline runs: Σ energy / Σ duration, so the baseline's own
    # induced energy sums to zero whatever the runs' lengths
    # (a flagged baseline run, e.g. one with a meter gap, would drag the baseline down: it is left out)
    measured = windows[(windows.scenario == BASELINE_SCENARIO) & (windows.action == "run")
                       & (windows.status == "ok") & windows.energy_wh.notna() & (windows.duration_s > 0)]
    baseline_runs = measured[~measured.flagged]
    if len(baseline_runs) < len(measured):
        notes.append(f"{len(measured) - len(baseline_runs)} flagged {BASELINE_SCENARIO!r} run(s) left out of the "
                     "baseline power")
    baseline_power_w = (float(baseline_runs.energy_wh.sum() * J_PER_WH / baseline_runs.duration_s.sum())
                        if len(baseline_runs) else None)
    if baseline_power_w is None:
        notes.append(f"no {BASELINE_SCENARIO!r} runs with wall energy and no flag in the campaign: induced energy "
                     "not computed")
        windows["induced_wh"] = np.nan
    else:
        windows["induced_wh"] = windows.energy_wh - baseline_power_w * windows.duration_s / J_PER_WH

    # --- outlier runs (median absolute deviation of run energy, per scenario) ----------------------
    windows["outlier"] = False
    for _, group in windows[(windows.action == "run") & (windows.status == "ok")].groupby("scenario"):
        flags, _ = stats.mad_outliers(group.energy_wh.to_numpy())
        windows.loc[group.index[flags], "outlier"] = True
        for i in group.index[flags]:
            row_notes[i].append("outlier run (median absolute deviation of energy)")
    windows["note"] = ["; ".join(x) for x in row_notes]
    failed = windows[(windows.action == "run") & (windows.status != "ok")]
    if len(failed):
        notes.append(f"{len(failed)} run(s) not ok ({', '.join(sorted(set(failed.status)))}): shown, left out "
                     "of the statistics")
    flagged_runs = windows[(windows.action == "run") & windows.flagged]
    if len(flagged_runs):
        notes.append(f"{len(flagged_runs)} run(s) flagged (coverage below {MIN_COVERAGE:.0%}, meter gaps or "
                     "missing samples): see their notes")

    notes += getattr(source, "time_notes", list)()  # which time the energy counters carried
    result = CampaignAnalysis(campaign, baseline_power_w, windows, summarize(windows), notes=notes,
                              source=source.description, host=host)
    result.tests = scenario_tests(windows)
    result.correlations = epoch_correlations(windows)
    result.sensors = meter_vs_sensors(windows)
    if not (windows.action == "epoch").any():
        notes.append("no epoch events: no per-epoch figures or correlations")
    if traces and meter_series:
        result.traces = power_traces(meter_series, windows, events, meter_method == METHOD_METER)
    return result


def _ok(windows: pd.DataFrame) -> pd.DataFrame:
    """The windows the statistics use: ok, with a duration, and inside an ok run (when that is known)."""
    ok = (windows.status == "ok") & windows.duration_s.notna()
    if "run_status" in windows:
        ok &= windows.run_status == "ok"
    return windows[ok]


def summarize(windows: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and action, over the ok windows (every epoch of every run for ``epoch``): n, the number
    flagged, and for each figure mean, standard deviation (ddof=1), 95 % CI, median, min, max, Shapiro–Wilk p.
    The columns are there even when no window is ok (no rows then)."""
    statistics = [k for k in stats.describe(np.array([])) if k != "n"]
    columns = ["scenario", "action", "n", "n_flagged"] + [f"{figure}_{statistic}" for figure in FIGURES
                                                          if figure in windows for statistic in statistics]
    rows = []
    for (scenario, action), group in _ok(windows).groupby(["scenario", "action"], sort=False):
        row: dict = {"scenario": scenario, "action": action, "n": len(group),
                     "n_flagged": int(group.flagged.sum()) if "flagged" in group else 0}
        for figure in FIGURES:
            if figure not in group:
                continue
            for statistic, value in stats.describe(group[figure].to_numpy()).items():
                if statistic != "n":
                    row[f"{figure}_{statistic}"] = value
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _recorded(frame: pd.DataFrame, figure: str) -> bool:
    return figure in frame and frame[figure].notna().any()


def scenario_tests(windows: pd.DataFrame, action: str = "run") -> pd.DataFrame:
    """Every pair of scenarios (a before b in the campaign), per figure recorded: Welch's t, Mann–Whitney U and
    effect sizes over runs; differences read b − a."""
    runs = _ok(windows)[lambda w: w.action == action]
    scenarios = list(dict.fromkeys(runs.scenario))
    rows = []
    for a, b in itertools.combinations(scenarios, 2):
        ra, rb = runs[runs.scenario == a], runs[runs.scenario == b]
        for figure in TESTED_FIGURES:
            if _recorded(ra, figure) or _recorded(rb, figure):
                rows.append({"a": a, "b": b, "action": action, "figure": figure,
                             **stats.compare(ra[figure].to_numpy(), rb[figure].to_numpy())})
    return pd.DataFrame(rows)


def epoch_correlations(windows: pd.DataFrame) -> pd.DataFrame:
    """Per scenario with epochs: Pearson r (and p) of energy per epoch with GPU temperature, loss and accuracy."""
    epochs = _ok(windows)[lambda w: w.action == "epoch"]
    rows = []
    for scenario, group in epochs.groupby("scenario", sort=False):
        for x in CORRELATED:
            result = stats.pearson(group[x].to_numpy(), group.energy_wh.to_numpy())
            if not _recorded(group, x):
                result["reason"] = f"{x} not recorded"
            rows.append({"scenario": scenario, "x": x, "y": "energy_wh", **result})
    return pd.DataFrame(rows)


def meter_vs_sensors(windows: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and over all runs: what fraction of the meter's energy the on-board sensors (GPU + RAPL)
    and CodeCarbon see (ratio mean, spread, 95 % CI) and a linear fit tracker = slope · meter + intercept."""
    runs = _ok(windows)[lambda w: w.action == "run"]
    rows = []
    groups = [(s, g) for s, g in runs.groupby("scenario", sort=False)] + [("all", runs)]
    for tracker, column in (("sensors", "sensors_wh"), ("codecarbon", "codecarbon_wh")):
        for scenario, group in groups:
            if not _recorded(group, column):
                continue
            ratios = stats.describe((group[column] / group.energy_wh).to_numpy())
            fit = stats.linear_fit(group.energy_wh.to_numpy(), group[column].to_numpy())
            rows.append({"scenario": scenario, "tracker": tracker, "n": ratios["n"], "ratio_mean": ratios["mean"],
                         "ratio_std": ratios["std"], "ratio_ci_low": ratios["ci_low"],
                         "ratio_ci_high": ratios["ci_high"], "slope": fit["slope"], "intercept_wh": fit["intercept"],
                         "r2": fit["r2"], "reason": fit["reason"]})
    return pd.DataFrame(rows)


def power_traces(meters: list[Series], windows: pd.DataFrame, events: list[Event], counter: bool,
                 max_points: int = 1200) -> pd.DataFrame:
    """Per-second mean meter power of every ok run (scenario, run, t_s since the run's start, power_w)."""
    frames = []
    runs = windows[(windows.action == "run") & (windows.status == "ok") & windows.duration_s.notna()]
    for i in runs.index:
        e = events[i]
        step_ns = max(10**9, (e.end_ns - e.start_ns) // max_points)
        edges = np.arange(e.start_ns, e.end_ns + 1, step_ns, dtype=np.int64)
        if len(edges) < 2:
            continue
        parts = []
        for s in meters:
            values = s.values if counter else integral_counter(
                s.ts, s.values, MAX_GAP_INTERVALS * sampling_interval_ns(s.ts))
            parts.append(_increases(s, edges[:-1], edges[1:], values))
        power = _sum_strict(parts, len(edges) - 1) / (step_ns / 1e9)
        frames.append(pd.DataFrame({"scenario": e.scenario, "run": e.run,
                                    "t_s": (edges[:-1] - e.start_ns) / 1e9, "power_w": power}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["scenario", "run", "t_s", "power_w"])
