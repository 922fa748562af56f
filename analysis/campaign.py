"""Figures of one campaign: per run, per action and per epoch, then statistics per scenario.

Energy is a counter difference at each event's edges (interpolated inside a sampling interval):
wall energy from the power meter's ``pm_energy_joules_total`` (summed over meters when a SUT has
several), GPU energy from ``gpu_energy_joules_total`` (summed over GPUs), CPU and DRAM energy from
the RAPL package and dram zones. Where a series has power but no energy counter, power integrated
by the analysis stands in and the method column says so. Induced energy is the method paper's
"energy induced by the software": energy − mean baseline power × duration, the baseline power
being the mean over every second of the campaign's ok, unflagged ``baseline`` runs (their energy / their duration)
that lie within ``baseline_margin`` of the first one (:func:`choose_baseline`).

Runs are grouped by scenario and variant (:func:`run_variants`); the statistics use the ok, unflagged windows
inside ok runs (:func:`_ok`).

Hardware indicators (paper table 2) are the mean of the samples inside the window (gauges, mean
over GPUs; memory sums over GPUs) or the counter's increase (disk and network bytes, summed over
devices). A window whose samples do not cover it gets no figure and a note, never a padded one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mltelemetry import schema
from mltelemetry.analysis import stats
from mltelemetry.analysis.energy import (
    coverages,
    increases,
    integral_counter,
    monotonic,
    sampling_interval_ns,
    unknown_intervals,
    window_means,
    windows_holding,
)
from mltelemetry.analysis.sources import (
    METHOD_NODE_EXPORTER,
    SENSOR_EXPORTERS,
    Source,
    StoreSource,
    dcgm_gpu_energy,
    node_rapl_energy,
    open_source,
)
from mltelemetry.errors import MltelemetryError
from mltelemetry.safety import printable, printable_list
from mltelemetry.schema import Event

J_PER_WH = 3600.0
MIN_COVERAGE = 0.95
BASELINE_SCENARIO = "baseline"
BASELINE_MARGIN = 0.05  # the campaign runner's --settle margin: a baseline further from the first one has drifted
_MARGIN_NS = 60 * 10**9  # samples this far outside the campaign still bracket its first and last edges

METHOD_METER = "meter counter"
METHOD_METER_INTEGRAL = "∫ meter power (analysis)"
METHOD_GPU_INTEGRAL = "∫ GPU power (analysis)"
METHOD_RAPL = "RAPL counter"

# Hardware indicators of paper table 2: column, metric, label filter, how series combine.
GAUGES: list[tuple[str, str, dict[str, str], str]] = [
    ("cpu_utilization", schema.HOST_CPU_TOTAL_UTILIZATION, {}, "mean"),
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
# Series recorded before the whole-machine totals had names of their own (0.1), read where the new name is absent.
LEGACY_GAUGES: dict[str, tuple[str, dict[str, str]]] = {
    "cpu_utilization": (schema.HOST_CPU_UTILIZATION, {"cpu": "total"}),
}
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
                                "meter_gap_s", "time_to_target_s", "energy_to_target_wh"]
           + ["tokens", "energy_per_token_j", "induced_per_token_j", "gpu_energy_per_token_j",
              "cpu_energy_per_token_j", "time_per_token_ms", "tokens_per_wh"])
# Figures compared between scenarios and variants (and campaigns) with tests.
TESTED_FIGURES = ["energy_wh", "induced_wh", "mean_power_w", "duration_s", "gpu_energy_wh",
                  "efficiency_acc_per_wh", "energy_to_target_wh", "time_to_target_s", "energy_per_token_j",
                  "gpu_energy_per_token_j"]
SETTINGS = (schema.FIELD_BATCH_SIZE, schema.FIELD_PRECISION)  # recorded settings that make a variant
CORRELATED = ["gpu_temperature_c", schema.FIELD_LOSS, schema.FIELD_ACCURACY, schema.FIELD_VAL_LOSS,
              schema.FIELD_VAL_ACCURACY]
ACTION_ORDER = {"campaign": 0, "run": 1}
OUTSIDE_RUNS = ("cooldown", "settle")  # actions recorded between runs: in no statistic, never "stray"
OPEN_STATUSES = ("running", "lost")  # a run claimed at its start whose process died (end = start)

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
    hosts: list[str] = field(default_factory=list)  # several hosts analysed as one (their sum); [] for one host
    traces: pd.DataFrame | None = None  # per-second meter power of every ok run (for the report)
    baseline: dict = field(default_factory=dict)  # how the baseline power was chosen (see choose_baseline)
    variants: pd.DataFrame = field(default_factory=pd.DataFrame)  # per scenario and variant, with the Pareto front

    def to_dict(self) -> dict:
        return {"campaign": self.campaign, "source": self.source, "host": self.host, "hosts": self.hosts,
                "baseline_power_w": self.baseline_power_w, "baseline": self.baseline, "notes": self.notes,
                "windows": records(self.windows), "summary": records(self.summary), "tests": records(self.tests),
                "variants": records(self.variants),
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
    """Reads every series of a metric once for the campaign's span and keeps it for the figures.

    ``hosts``: None (every series; an error where a metric was recorded on several hosts), one host (its series),
    or several (the series of each of them, each keeping its ``host`` label: :meth:`view` reads one of them)."""

    def __init__(self, source: Source, hosts: list[str] | None, lo: int, hi: int, progress: Progress | None,
                 total: int) -> None:
        self.source, self.hosts, self.lo, self.hi = source, hosts, lo, hi
        self.host = hosts[0] if hosts and len(hosts) == 1 else None  # the one host a query filters on
        self.progress, self.total, self.done = progress, total, 0
        self._cache: dict[str, list[Series]] = {}

    @property
    def several(self) -> bool:
        return bool(self.hosts) and len(self.hosts) > 1

    def get(self, metric: str, labels: dict[str, str] | None = None) -> list[Series]:
        if metric not in self._cache:
            if self.progress:
                self.progress(f"reading {metric.removeprefix(schema.PREFIX)}", self.done, self.total)
            frame = self.source.query(metric, {"host": self.host} if self.host else None, self.lo, self.hi)
            if self.several:  # the named hosts' series only, each keeping its host label
                frame = frame[frame["host"].isin(self.hosts)] if "host" in frame else frame.iloc[0:0]
            elif self.host is None and "host" in frame:  # summing two SUTs' meters would make one figure of both
                hosts = sorted({str(h) for h in frame["host"].dropna().unique()})
                if len(hosts) > 1:
                    raise MltelemetryError(f"{metric} was recorded on {len(hosts)} hosts ({', '.join(hosts)}): "
                                           "name one with --host")
            self._cache[metric] = split_series(frame)
            self.done += 1
        return [s for s in self._cache[metric] if all(s.labels.get(k) == v for k, v in (labels or {}).items())]

    def foreign(self, read: Callable[[Source, str | None, int, int], pd.DataFrame]) -> list[Series]:
        """Series another exporter published, read by ``read`` (analysis.sources) as ours."""
        key = f"{read.__module__}.{read.__name__}"
        if key not in self._cache:
            if self.several:
                frames = [read(self.source, h, self.lo, self.hi) for h in self.hosts or []]
                self._cache[key] = [s for frame in frames for s in split_series(frame)]
            else:
                self._cache[key] = split_series(read(self.source, self.host, self.lo, self.hi))
        return self._cache[key]

    def hosts_of(self, metric: str) -> list[str]:
        """The hosts ``metric`` was recorded for during the campaign, whatever ``--host`` says."""
        frame = self.source.query(metric, None, self.lo, self.hi)
        return sorted({str(h) for h in frame["host"].dropna().unique()}) if "host" in frame else []

    def nothing_for_host(self) -> list[str]:
        """The named hosts not one series read so far is recorded for (a misspelt ``--host``)."""
        if not self.hosts:
            return []
        seen = {s.labels.get("host") for series in self._cache.values() for s in series}
        if not self.several:
            return [] if any(self._cache.values()) else list(self.hosts)
        return [h for h in self.hosts if h not in seen]

    def view(self, host: str) -> _HostView:
        return _HostView(self, host)


class _HostView:
    """One host's series among those of a several-host reader: what a one-host figure reads."""

    def __init__(self, reader: _Reader, host: str) -> None:
        self.reader, self.host = reader, host

    def get(self, metric: str, labels: dict[str, str] | None = None) -> list[Series]:
        return self.reader.get(metric, {**(labels or {}), "host": self.host})

    def foreign(self, read: Callable[[Source, str | None, int, int], pd.DataFrame]) -> list[Series]:
        return [s for s in self.reader.foreign(read) if s.labels.get("host") == self.host]

    def hosts_of(self, metric: str) -> list[str]:
        return self.reader.hosts_of(metric)


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


IDLE_CPU_MODES = ("idle", "iowait")


def cpu_utilization_from_counters(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean CPU utilisation of each window from the CPU-time counters (``host_cpu_seconds_total``, one series per
    core and mode): 1 − Δ(idle + iowait) / Δ(all modes), summed over the cores, each counter read at the window's
    edges as energy is. Exact however rarely the counters were scraped; NaN where they do not bracket the window."""
    if not series:
        return np.full(len(starts), np.nan)
    total = energy_of(series, starts, ends)
    idle = energy_of([s for s in series if s.labels.get("mode") in IDLE_CPU_MODES], starts, ends)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - idle / total, np.nan)


def gpu_utilization_from_counters(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean GPU load of each window from the busy-time counters (``gpu_busy_seconds_total``, one per GPU): each
    GPU's increase over the window's length, averaged over the GPUs. NaN where they do not bracket the window."""
    duration_s = (ends - starts) / 1e9
    with np.errstate(invalid="ignore", divide="ignore"):
        return _combine([np.where(duration_s > 0, _increases(s, starts, ends) / duration_s, np.nan) for s in series],
                        "mean", len(starts))


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


def _reading_coverage(readings: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per window, from the meter exporter's count of valid readings (``pm_samples_total``): the worst over meters
    of the readings counted against those the meter's usual rate gives (1 for a window shorter than one reading);
    NaN where the counter does not bracket the window. A frozen energy counter keeps being written through an
    outage, so the stored samples alone cannot see it (the gap counter flags the window besides)."""
    duration_s = (ends - starts) / 1e9
    parts = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for s in readings:
            rates = np.diff(monotonic(s.values)) / (np.diff(s.ts) / 1e9)
            rate = float(np.median(rates)) if len(rates) else 0.0  # readings per second, outages aside
            if rate <= 0:  # not one valid reading over the campaign: nothing in any window
                parts.append(np.where(duration_s > 0, 0.0, 1.0))
                continue
            expected = np.floor(duration_s * rate)
            parts.append(np.where(expected < 1, 1.0, np.minimum(1.0, _increases(s, starts, ends) / expected)))
    return np.fmin.reduce(parts) if parts else np.full(len(starts), np.nan)


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


@dataclass
class WallEnergy:
    """One host's wall energy per window from its meter(s), with what the window flags need to know."""

    series: list[Series]  # the meter series the energy comes from (counters, or power integrated here)
    counter: bool  # True: the meter's energy counter; False: its power integrated by the analysis
    energy_j: np.ndarray  # NaN where unknown (no samples at the edges, a blind gap, a silent meter)
    gap_s: np.ndarray  # seconds without a valid reading (the meter's gap counter), NaN where not recorded
    coverage: np.ndarray  # worst of sample and reading coverage; 0 where there is no meter
    silent: np.ndarray  # the meter gave no valid reading in the window
    blind: np.ndarray  # the window holds a stretch whose energy is unknown
    interval_ns: float  # the meter's sampling interval

    @property
    def method(self) -> str:
        return METHOD_METER if self.counter else METHOD_METER_INTEGRAL

    def energy(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Wall energy (J) of other windows [starts, ends], by the same method as the events'."""
        return energy_of(self.series, starts, ends) if self.counter else _integrated(self.series, starts, ends)


def wall_energy(reader: _Reader | _HostView, starts: np.ndarray, ends: np.ndarray, notes: list[str]) -> WallEnergy:
    """Wall energy of one host (or of the only host) per window: the meters' energy counters summed, else their
    power integrated here (with a note)."""
    n = len(starts)
    duration = (ends - starts) / 1e9
    meters = reader.get(schema.PM_ENERGY)
    if meters:
        series, counter = meters, True
        energy_j = energy_of(meters, starts, ends)
    else:
        series, counter = reader.get(schema.PM_POWER), False
        energy_j = _integrated(series, starts, ends)
        one_host = reader.host if isinstance(reader, _Reader) else None  # a host's view: the note names it before
        where = f" for host {one_host!r}" if one_host else ""
        elsewhere = reader.hosts_of(schema.PM_ENERGY) if one_host else []
        notes.append(f"no power-meter energy counter ({schema.PM_ENERGY}) during the campaign{where}"
                     + (f" (it is recorded for {', '.join(elsewhere)})" if elsewhere else "") + ": "
                     + ("wall energy integrated from pm_power_watts by the analysis" if series
                        else "no wall energy, mean power or induced energy"))
    gaps = reader.get(schema.PM_GAP)
    gap_s = energy_of(gaps, starts, ends) if gaps else np.full(n, np.nan)
    readings = _reading_coverage(reader.get(schema.PM_SAMPLES), starts, ends) if series else np.zeros(n)
    coverage = np.fmin(_coverage(series, starts, ends), readings) if series else np.zeros(n)
    # a meter that gave no valid reading in a window (disconnected throughout) says nothing of its energy: its
    # counter stood still because nobody measured, not because nothing was drawn
    silent = (readings == 0) & (duration > 0) & np.isfinite(energy_j) if series else np.zeros(n, bool)
    energy_j = np.where(silent, np.nan, energy_j)
    blind = np.zeros(n, bool)
    for s in series:
        blind |= _blind(s, starts, ends, counter=counter)
    interval_ns = max((sampling_interval_ns(s.ts) for s in series), default=1e9)
    return WallEnergy(series, counter, energy_j, gap_s, coverage, silent, blind, interval_ns)


def wall_notes(wall: WallEnergy, i: int, e: Event, prefix: str = "") -> tuple[list[str], bool]:
    """Why window ``i`` of one host's meter is not trusted (or how to read it), and whether it is flagged."""
    notes: list[str] = []
    flagged = False
    if wall.blind[i]:
        notes.append(f"{prefix}the meter's samples stop for more than {MAX_GAP_INTERVALS} sampling intervals inside "
                     "the window" + (" and its counter restarts after" if wall.counter else "")
                     + ": the energy of that stretch is unknown, no wall energy")
        flagged = True
    elif wall.silent[i]:
        notes.append(f"{prefix}the meter gave no valid reading in the window: no wall energy")
        flagged = True
    elif wall.series and not np.isfinite(wall.energy_j[i]):
        notes.append(f"{prefix}no meter samples around the window's edges (outside the samples or in a gap)")
        flagged = True
    if wall.series and e.end_ns - e.start_ns < wall.interval_ns:
        notes.append(f"{prefix}shorter than the meter's sampling interval: mean power of that interval")
    if wall.series and wall.coverage[i] < MIN_COVERAGE:
        notes.append(f"{prefix}meter coverage {wall.coverage[i]:.0%} below {MIN_COVERAGE:.0%}")
        flagged = True
    if wall.gap_s[i] > 0:
        notes.append(f"{prefix}the meter gave no valid reading for {wall.gap_s[i]:.1f} s: wall energy under-counted")
        flagged = True
    return notes, flagged


@dataclass
class DeviceEnergy:
    """One host's GPU and RAPL energy per window (J; NaN where not recorded) and where each came from."""

    gpus: list[Series]  # energy counters (ours or dcgm-exporter's); empty where power was integrated
    gpu_series: list[Series]  # what gpu_j came from: the counters, or the power series
    gpu_j: np.ndarray
    gpu_method: str
    rapl: list[Series]
    packages: list[Series]
    drams: list[Series]
    cpu_j: np.ndarray
    dram_j: np.ndarray
    rapl_method: str


def device_energy(reader: _Reader | _HostView, starts: np.ndarray, ends: np.ndarray, sensor_exporters: str,
                  notes: list[str]) -> DeviceEnergy:
    """GPU energy (ours, else dcgm-exporter's counter, else GPU power integrated here) and RAPL package and DRAM
    energy (ours, else node_exporter's) of one host (or of the only host)."""
    n = len(starts)
    ours, theirs = sensor_exporters != "standard", sensor_exporters != "mltelemetry"
    gpus = reader.get(schema.GPU_ENERGY) if ours else []
    if not gpus and theirs:
        gpus = reader.foreign(dcgm_gpu_energy)  # method label "dcgm-exporter"
    if gpus:
        gpu_series = gpus
        gpu_j = energy_of(gpus, starts, ends)
        gpu_method = "GPU counter (" + ", ".join(sorted({s.labels.get("method") or "?" for s in gpus})) + ")"
    else:
        power = reader.get(schema.GPU_POWER) if ours else []
        kinds = {s.labels.get("kind") for s in power}
        kind = "instant" if "instant" in kinds else "average" if "average" in kinds else None
        power = [s for s in power if s.labels.get("kind") == kind] if kind else power
        gpu_series = power
        gpu_j = _integrated(power, starts, ends) if power else np.full(n, np.nan)
        gpu_method = METHOD_GPU_INTEGRAL
        if power:
            notes.append("no GPU energy counter: GPU energy integrated from gpu_power_watts by the analysis")
    rapl = reader.get(schema.HOST_RAPL_ENERGY) if ours else []
    rapl_method = METHOD_RAPL
    if not rapl and theirs:
        rapl = reader.foreign(node_rapl_energy)
        rapl_method = f"{METHOD_RAPL} ({METHOD_NODE_EXPORTER})"
    packages = [s for s in rapl if s.labels.get("zone", "").startswith("package")]
    drams = [s for s in rapl if s.labels.get("zone", "").startswith("dram")]
    return DeviceEnergy(gpus, gpu_series, gpu_j, gpu_method, rapl, packages, drams, energy_of(packages, starts, ends),
                        energy_of(drams, starts, ends), rapl_method)


class _HostEnergy:
    """Wall, GPU and RAPL energy of one host per window (or of the only host)."""

    def __init__(self, reader: _Reader | _HostView, starts: np.ndarray, ends: np.ndarray,
                 sensor_exporters: str) -> None:
        self.notes: list[str] = []
        self.wall = wall_energy(reader, starts, ends, self.notes)
        self.device = device_energy(reader, starts, ends, sensor_exporters, self.notes)
        self.walls = [self.wall]
        self.wall_j, self.wall_method = self.wall.energy_j, self.wall.method
        self.gap_s, self.coverage = self.wall.gap_s, self.wall.coverage
        self.gpu_j, self.gpu_method = self.device.gpu_j, self.device.gpu_method
        self.cpu_j, self.dram_j, self.rapl_method = self.device.cpu_j, self.device.dram_j, self.device.rapl_method
        self.gpus, self.rapl = self.device.gpus, self.device.rapl

    def window_notes(self, i: int, e: Event) -> tuple[list[str], bool]:
        return wall_notes(self.wall, i, e)

    def wall_energy_j(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return self.wall.energy(starts, ends)


def _joined(methods: dict[str, str]) -> str:
    """One method where every host used it, else each host's: ``a: meter counter; b: ∫ meter power``."""
    if len(set(methods.values())) == 1:
        return next(iter(methods.values()))
    return "; ".join(f"{h}: {m}" for h, m in methods.items())


class _HostsEnergy:
    """Energy of several hosts analysed as one: per window, the sum over the hosts, and each host's share.

    The wall energy is summed over every named host: a host without any meter series gives no sum (its windows
    are flagged), and a window one host's meter does not cover has no sum either (never a sum over fewer hosts).
    GPU and RAPL energy are summed over the hosts that record them at all (a host without a GPU adds none; a
    campaign note names it), NaN in a window where one of those hosts has no figure."""

    def __init__(self, per_host: dict[str, _HostEnergy], n: int, notes: list[str]) -> None:
        self.per_host = per_host
        walls = {h: p.wall for h, p in per_host.items()}
        metered = [h for h, w in walls.items() if w.series]
        self.unmetered = [h for h, w in walls.items() if not w.series] if metered else []
        if self.unmetered:
            notes.append(f"no power-meter series of host(s) {', '.join(self.unmetered)} during the campaign: no "
                         "wall energy summed over the hosts (every window flagged; name the metered hosts with "
                         "--host to analyse those)")
        self.walls = list(walls.values())
        self.wall_j = _sum_strict([w.energy_j for w in self.walls], n)
        self.wall_method = _joined({h: walls[h].method for h in metered}) if metered else ""
        self.gap_s = _combine([w.gap_s for w in self.walls], "sum", n)
        self.coverage = np.fmin.reduce([w.coverage for w in self.walls])
        self.gpu_j, self.gpu_method = self._device_sum("GPU energy", lambda d: d.gpu_series, lambda d: d.gpu_j,
                                                       lambda d: d.gpu_method, n, notes)
        self.cpu_j, self.rapl_method = self._device_sum("RAPL package energy", lambda d: d.packages,
                                                        lambda d: d.cpu_j, lambda d: d.rapl_method, n, notes)
        self.dram_j, _ = self._device_sum("RAPL DRAM energy", lambda d: d.drams, lambda d: d.dram_j,
                                          lambda d: d.rapl_method, n, notes)
        self.gpus = [s for p in per_host.values() for s in p.gpus]
        self.rapl = [s for p in per_host.values() for s in p.device.rapl]

    def _device_sum(self, what: str, series_of: Callable, joules_of: Callable, method_of: Callable, n: int,
                    notes: list[str]) -> tuple[np.ndarray, str]:
        recorded = [h for h, p in self.per_host.items() if series_of(p.device)]
        if recorded and len(recorded) < len(self.per_host):
            others = [h for h in self.per_host if h not in recorded]
            notes.append(f"{what} summed over host(s) {', '.join(recorded)}; {', '.join(others)} recorded none")
        joules = _sum_strict([joules_of(self.per_host[h].device) for h in recorded], n)
        return joules, (_joined({h: method_of(self.per_host[h].device) for h in recorded}) if recorded else "")

    def window_notes(self, i: int, e: Event) -> tuple[list[str], bool]:
        notes, flagged = [], False
        for h, part in self.per_host.items():
            if h in self.unmetered:
                notes.append(f"host {h}: no power-meter series: no wall energy summed over the hosts")
                flagged = True
                continue
            host_notes, host_flagged = wall_notes(part.wall, i, e, prefix=f"host {h}: ")
            notes += host_notes
            flagged |= host_flagged
        return notes, flagged

    def wall_energy_j(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return _sum_strict([w.energy(starts, ends) for w in self.walls], len(starts))

    def host_columns(self, duration: np.ndarray) -> dict[str, np.ndarray]:
        """Each host's figures, named ``figure[host]``: energy, mean power, GPU, CPU and DRAM energy, coverage."""
        out: dict[str, np.ndarray] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for h, p in self.per_host.items():
                out[host_column("energy_wh", h)] = p.wall.energy_j / J_PER_WH
                out[host_column("mean_power_w", h)] = np.where(duration > 0, p.wall.energy_j / duration, np.nan)
                out[host_column("gpu_energy_wh", h)] = p.device.gpu_j / J_PER_WH
                out[host_column("cpu_energy_wh", h)] = p.device.cpu_j / J_PER_WH
                out[host_column("dram_energy_wh", h)] = p.device.dram_j / J_PER_WH
                out[host_column("coverage", h)] = p.wall.coverage
        return out


def host_column(figure: str, host: str) -> str:
    """The column of one host's share of a figure, when several hosts are analysed as one: ``energy_wh[sut-a]``."""
    return f"{figure}[{host}]"


HOST_METRICS = (schema.PM_ENERGY, schema.PM_POWER, schema.HOST_CPU_UTILIZATION, schema.HOST_CPU_TOTAL_UTILIZATION,
                schema.GPU_ENERGY, schema.GPU_TEMPERATURE, schema.HOST_RAPL_ENERGY)  # where a host shows itself


def hosts_during(source: Source, lo: int, hi: int) -> list[str]:
    """Every host with a meter, host or GPU series of ours between ``lo`` and ``hi`` (ns)."""
    found: set[str] = set()
    for metric in HOST_METRICS:
        frame = source.query(metric, None, lo, hi)
        if "host" in frame:
            found |= {str(h) for h in frame["host"].dropna().unique()}
    return sorted(found)


def analyze_campaign(source, campaign: str, host: str | Sequence[str] | None = None, *,
                     progress: Progress | None = None, traces: bool = False, sensor_exporters: str = "auto",
                     baseline_margin: float | None = BASELINE_MARGIN, all_hosts: bool = False) -> CampaignAnalysis:
    """Every figure of ``campaign`` from ``source`` (a Store, a source, or a ``--source`` text).

    ``host``: one host's series; several (a list) analysed as one: each window's wall, GPU and RAPL energy summed
    over them, with each host's share in ``figure[host]`` columns and the baseline power summed the same way;
    ``all_hosts``: every host with series during the campaign, as if named.

    ``baseline_margin``: baseline runs whose mean power lies further than this fraction from the first baseline's
    are flagged and left out of the baseline power (None: no such check).
    Raises MltelemetryError when the campaign has no events at all, or when ``host`` is None and a
    metric was recorded on several hosts; everything else that is missing gives no figure and a
    note, and the rest is still computed. Several meters of one host are summed.

    ``sensor_exporters``: where GPU and RAPL energy come from: ``auto`` (ours, else dcgm-exporter's and
    node_exporter's counters), ``mltelemetry`` (ours only) or ``standard`` (theirs only).
    """
    if sensor_exporters not in SENSOR_EXPORTERS:
        raise MltelemetryError(f"sensor exporters {sensor_exporters!r}: use one of {', '.join(SENSOR_EXPORTERS)}")
    hosts = [host] if isinstance(host, str) else list(dict.fromkeys(host)) if host else None
    source = open_source(source)
    notes: list[str] = []
    all_events = source.events(campaign)
    events = [e for e in all_events if e.action != "campaign"]
    if not events:
        known = source.campaigns()
        raise MltelemetryError(f"no campaign {printable(campaign)} in {source.description}" +
                               (f"; campaigns there: {printable_list(known)}" if known
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
    if all_hosts:
        hosts = hosts_during(source, lo, hi) or None
    reader = _Reader(source, hosts, lo, hi, progress, total=8 + len({g[1] for g in GAUGES}) + len(COUNTERS))
    duration = (ends - starts) / 1e9
    columns: dict[str, np.ndarray] = {}
    methods: dict[str, np.ndarray] = {}

    # --- wall, GPU and RAPL energy: per host, summed over the hosts ---------------------------------------
    if reader.several:
        per_host = {h: _HostEnergy(reader.view(h), starts, ends, sensor_exporters) for h in hosts}
        for h, part in per_host.items():
            notes.extend(f"host {h}: {note}" for note in part.notes)
        energy = _HostsEnergy(per_host, n, notes)
        columns.update(energy.host_columns(duration))
    else:
        energy = _HostEnergy(reader, starts, ends, sensor_exporters)
        notes.extend(energy.notes)
    energy_j, gpu_j = energy.wall_j, energy.gpu_j
    columns["energy_wh"] = energy_j / J_PER_WH
    with np.errstate(invalid="ignore", divide="ignore"):
        columns["mean_power_w"] = np.where(duration > 0, energy_j / duration, np.nan)
    methods["energy_method"] = np.where(np.isfinite(energy_j), energy.wall_method, "")
    columns["meter_gap_s"] = energy.gap_s
    columns["coverage"] = energy.coverage
    columns["gpu_energy_wh"] = gpu_j / J_PER_WH
    methods["gpu_energy_method"] = np.where(np.isfinite(gpu_j), energy.gpu_method, "")
    columns["cpu_energy_wh"] = energy.cpu_j / J_PER_WH
    columns["dram_energy_wh"] = energy.dram_j / J_PER_WH
    methods["rapl_method"] = np.where(np.isfinite(columns["cpu_energy_wh"]), energy.rapl_method, "")
    gpus, rapl = energy.gpus, energy.rapl

    # --- hardware indicators ----------------------------------------------------------------------
    for column, metric, labels, how in GAUGES:
        series = reader.get(metric, labels)
        if not series and column in LEGACY_GAUGES:
            series = reader.get(*LEGACY_GAUGES[column])
        columns[column] = _combine([window_means(s.ts, s.values, starts, ends) for s in series], how, n)
    for column, metric in COUNTERS:
        series = reader.get(metric)
        columns[column] = _combine([_increases(s, starts, ends) for s in series], "sum", n)
    sensor_series = {"host": (reader.get(schema.HOST_CPU_TOTAL_UTILIZATION)
                              or reader.get(*LEGACY_GAUGES["cpu_utilization"])),
                     "GPU": gpus or reader.get(schema.GPU_TEMPERATURE), "RAPL": rapl}
    sensor_cov = {name: _coverage(series, starts, ends) for name, series in sensor_series.items() if series}
    columns["sensor_coverage"] = (np.min(list(sensor_cov.values()), axis=0) if sensor_cov else np.full(n, np.nan))
    missing = reader.nothing_for_host()
    if missing:  # a misspelt --host: say which hosts there are rather than print empty figures
        there = hosts_during(source, lo, hi)
        if there:
            named = f"host {missing[0]!r}" if not reader.several else f"host(s) {', '.join(missing)}"
            raise MltelemetryError(f"no series of {named} during campaign {campaign!r}; hosts there: "
                                   f"{', '.join(there)}")
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
    enclosing = enclosing_runs(events)
    columns["time_to_target_s"], target_ends = time_to_target(events, enclosing)
    reached = np.isfinite(columns["time_to_target_s"])
    columns["energy_to_target_wh"] = np.full(n, np.nan)
    if reached.any():
        columns["energy_to_target_wh"][reached] = energy.wall_energy_j(starts[reached], target_ends[reached]) / J_PER_WH
    with np.errstate(invalid="ignore", divide="ignore"):
        energy_wh = columns["energy_wh"]
        columns["efficiency_acc_per_wh"] = np.where(energy_wh > 0, columns[schema.FIELD_VAL_ACCURACY] / energy_wh,
                                                    np.nan)
        columns["correct_per_wh"] = np.where(energy_wh > 0, columns[schema.FIELD_CORRECT] / energy_wh, np.nan)
        # per token (lm-train's epochs and train, lm-infer's prefill and decode record the tokens they processed)
        tokens = np.array([_field(e, schema.FIELD_TOKENS) for e in events])
        per_token = np.where(tokens > 0, 1.0 / tokens, np.nan)
        columns["tokens"] = tokens
        columns["energy_per_token_j"] = energy_wh * J_PER_WH * per_token
        columns["gpu_energy_per_token_j"] = columns["gpu_energy_wh"] * J_PER_WH * per_token
        columns["cpu_energy_per_token_j"] = columns["cpu_energy_wh"] * J_PER_WH * per_token
        columns["time_per_token_ms"] = duration * 1e3 * per_token
        columns["tokens_per_wh"] = np.where(energy_wh > 0, tokens / energy_wh, np.nan)
        columns["gpu_mean_power_w"] = np.where(duration > 0, gpu_j / duration, np.nan)
        columns["gpu_share"] = columns["gpu_energy_wh"] / energy_wh
        sensor_parts = np.vstack([columns["gpu_energy_wh"], columns["cpu_energy_wh"], columns["dram_energy_wh"]])
        recorded = np.isfinite(sensor_parts).any(axis=0)
        columns["sensors_wh"] = np.where(recorded, np.nansum(sensor_parts, axis=0), np.nan)
        columns["sensors_ratio"] = columns["sensors_wh"] / energy_wh
        columns["codecarbon_wh"] = np.array([_codecarbon_wh(e) for e in events])
        columns["codecarbon_ratio"] = columns["codecarbon_wh"] / energy_wh
    # CPU utilisation: the CPU-time counters give a window's true mean, read at its edges as energy is; the
    # last-interval gauge (hardware indicators above) stays the figure of data recorded without them
    from_counters = cpu_utilization_from_counters(reader.get(schema.HOST_CPU_SECONDS), starts, ends)
    columns["cpu_utilization"] = np.where(np.isfinite(from_counters), from_counters, columns["cpu_utilization"])
    from_counters = gpu_utilization_from_counters(reader.get(schema.GPU_BUSY_SECONDS), starts, ends)
    columns["gpu_utilization"] = np.where(np.isfinite(from_counters), from_counters, columns["gpu_utilization"])

    # --- notes per window -------------------------------------------------------------------------
    row_notes: list[list[str]] = [[] for _ in events]
    flagged = np.zeros(n, bool)
    for i, e in enumerate(events):
        notes_i = row_notes[i]
        if backwards[i]:
            notes_i.append(f"ends {(e.start_ns - e.end_ns) / 1e9:.3f} s before it starts: no figures")
            flagged[i] = True
            continue
        wall_notes_i, wall_flagged = energy.window_notes(i, e)
        notes_i += wall_notes_i
        flagged[i] |= wall_flagged
        for name, cov in sensor_cov.items():
            if cov[i] < MIN_COVERAGE:
                notes_i.append(f"{name} coverage {cov[i]:.0%} below {MIN_COVERAGE:.0%}")
                flagged[i] = True
    host_figures = [c for c in columns if c not in FIGURES]  # figure[host] columns, several hosts only
    all_figures = set(FIGURES) | set(host_figures)
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
    for column in FIGURES[1:] + host_figures:
        if column in columns:
            windows[column] = np.asarray(columns[column], np.float64)
    for column, values in methods.items():
        windows[column] = values
    windows["flagged"] = flagged
    windows.insert(windows.columns.get_loc("status"), "variant", run_variants(events, enclosing))
    # the status of the run each window lies in: its own for a run, "none" where no run event encloses it (the
    # windows a SIGKILLed run closed before it was claimed); windows of a not-ok run leave the statistics with it
    # A campaign with no run event at all (an Annotator script's own windows) has no strays: each window stands
    # for itself, as its own status says.
    has_runs = any(e.action == "run" for e in events)
    run_status = []
    for i, e in enumerate(events):
        run = enclosing[i]
        run_status.append(run.status if run is not None else ("none" if has_runs else e.status))
        if run is None and has_runs and e.action not in OUTSIDE_RUNS:
            row_notes[i].append("inside no run event: left out of the statistics")
        elif run is not None and run is not e and run.status != "ok":
            row_notes[i].append(f"inside a run that is not ok ({run.status}): left out of the statistics")
    windows["run_status"] = run_status
    stray = sum(1 for i, e in enumerate(events)
                if has_runs and enclosing[i] is None and e.action not in OUTSIDE_RUNS)
    if stray:
        notes.append(f"{stray} window(s) inside no run event (e.g. a run killed before it was claimed): shown, left "
                     "out of the statistics")

    # --- baseline and induced energy --------------------------------------------------------------
    baseline = choose_baseline(windows, baseline_margin)
    for i, note in baseline.pop("run_notes").items():
        row_notes[i].append(note)
        windows.loc[i, "flagged"] = True
    notes.extend(baseline.pop("notes"))
    baseline_power_w = baseline["power_w"]
    if baseline_power_w is None:
        windows["induced_wh"] = np.nan
    else:
        windows["induced_wh"] = windows.energy_wh - baseline_power_w * windows.duration_s / J_PER_WH
    if reader.several:
        host_figures += host_baselines(windows, baseline, hosts)
    with np.errstate(invalid="ignore", divide="ignore"):
        windows["induced_per_token_j"] = np.where(windows.tokens > 0, windows.induced_wh * J_PER_WH / windows.tokens,
                                                  np.nan)

    # --- outlier runs (median absolute deviation of run energy, per scenario) ----------------------
    windows["outlier"] = False
    for _, group in _ok(windows)[lambda w: w.action == "run"].groupby("scenario"):
        flags, _ = stats.mad_outliers(group.energy_wh.to_numpy())
        windows.loc[group.index[flags], "outlier"] = True
        for i in group.index[flags]:
            row_notes[i].append("outlier run (median absolute deviation of energy)")
    windows["note"] = ["; ".join(x) for x in row_notes]
    failed = windows[(windows.action == "run") & (windows.status != "ok")]
    if len(failed):
        notes.append(f"{len(failed)} run(s) not ok ({', '.join(sorted(set(failed.status)))}): shown, left out "
                     "of the statistics")
    flagged_runs = int((windows.flagged & (windows.action == "run")).sum())
    flagged_others = int((windows.flagged & (windows.action != "run")).sum())
    if flagged_runs or flagged_others:
        notes.append(f"{flagged_runs} run(s) flagged, and {flagged_others} action/epoch window(s) (coverage below "
                     f"{MIN_COVERAGE:.0%}, meter gaps or missing samples): left out of the statistics, see their "
                     "notes")

    notes += getattr(source, "time_notes", list)()  # which time the energy counters carried
    result = CampaignAnalysis(campaign, baseline_power_w, windows, summarize(windows, host_figures), notes=notes,
                              source=source.description, host=reader.host, baseline=baseline,
                              hosts=hosts if reader.several else [])
    result.tests = scenario_tests(windows)
    result.variants = compare_variants(windows)
    result.correlations = epoch_correlations(windows)
    result.sensors = meter_vs_sensors(windows)
    if not (windows.action == "epoch").any():
        notes.append("no epoch events: no per-epoch figures or correlations")
    if traces and any(w.series for w in energy.walls):
        result.traces = power_traces(energy.walls, windows, events)
    return result


def time_to_target(events: list[Event], enclosing: list[Event | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per run: seconds from its start to the end of its first epoch whose validation accuracy reached the run's
    target accuracy (its train window's ``target_accuracy``, else the run's own), and that epoch's end (ns); NaN and
    0 for other windows and for runs without a target or that never reached it."""
    index = {id(e): i for i, e in enumerate(events)}
    targets: dict[int, float] = {}  # run position → target accuracy
    epochs: dict[int, list[Event]] = {}
    for e, run in zip(events, enclosing):
        if run is None or run is e:
            if e.action == "run" and np.isfinite(_field(e, schema.FIELD_TARGET_ACCURACY)):
                targets.setdefault(index[id(e)], _field(e, schema.FIELD_TARGET_ACCURACY))
            continue
        if e.action == "train" and np.isfinite(_field(e, schema.FIELD_TARGET_ACCURACY)):
            targets[index[id(run)]] = _field(e, schema.FIELD_TARGET_ACCURACY)
        elif e.action == "epoch":
            epochs.setdefault(index[id(run)], []).append(e)
    seconds, ends = np.full(len(events), np.nan), np.zeros(len(events), np.int64)
    for i, target in targets.items():
        run = events[i]
        for epoch in sorted(epochs.get(i, []), key=lambda e: (e.epoch if e.epoch is not None else 0, e.start_ns)):
            if _field(epoch, schema.FIELD_VAL_ACCURACY) >= target:
                seconds[i], ends[i] = (epoch.end_ns - run.start_ns) / 1e9, epoch.end_ns
                break
    return seconds, ends


def _setting(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 32.0 through a numeric-only backend reads 32, as recorded
    return str(value)


def run_variants(events: list[Event], enclosing: list[Event | None]) -> list[str]:
    """Per event, the variant of the run it lies in: the run's ``variant`` field (a --vary campaign), else the
    recorded settings (precision, batch size) that differ between the runs of its scenario as ``name=value,…``;
    "" where nothing differs (the scenario alone is the group). An event outside runs keeps its own field."""
    runs = [e for e in events if e.action == "run"]
    settings = {id(r): {name: _setting(r.fields[name]) for name in SETTINGS if r.fields.get(name) is not None}
                for r in runs}
    varying = {scenario: [name for name in SETTINGS
                          if len({settings[id(r)][name] for r in runs
                                  if r.scenario == scenario and name in settings[id(r)]}) > 1]
               for scenario in {r.scenario for r in runs}}

    def variant_of(run: Event) -> str:
        if run.fields.get(schema.FIELD_VARIANT):
            return str(run.fields[schema.FIELD_VARIANT])
        return ",".join(f"{name}={settings[id(run)].get(name, '?')}" for name in varying[run.scenario])

    return [variant_of(run) if run is not None else str(e.fields.get(schema.FIELD_VARIANT) or "")
            for e, run in zip(events, enclosing)]


def group_label(scenario: str, variant: str) -> str:
    """How a scenario's variant is named in tables and figures: ``cnn [batch_size=32,precision=bf16]``."""
    return f"{scenario} [{variant}]" if variant else scenario


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


def enclosing_runs(events: list[Event]) -> list[Event | None]:
    """Per event, the run it lies in: itself for a run, else the latest run event of its scenario and run number
    that started at or before it and had not ended yet; a claim still ``running`` or ``lost`` (end = start: its
    process died) holds every window until the next run event of its number. None where no run encloses it, and
    for the actions recorded between runs (cooldown, settle)."""
    runs_of: dict[tuple[str, int], list[Event]] = {}
    # a claim left beside its run's final event (same start) must not win over it: final events sort last
    runs = sorted((e for e in events if e.action == "run"), key=lambda e: (e.start_ns, e.status not in OPEN_STATUSES))
    for e in runs:
        runs_of.setdefault((e.scenario, e.run), []).append(e)
    out: list[Event | None] = []
    for e in events:
        if e.action == "run" or e.action in OUTSIDE_RUNS:
            out.append(e if e.action == "run" else None)
            continue
        started = [r for r in runs_of.get((e.scenario, e.run), []) if r.start_ns <= e.start_ns]
        run = started[-1] if started else None
        out.append(run if run is not None and (run.status in OPEN_STATUSES or e.start_ns <= run.end_ns) else None)
    return out


def _eligible(windows: pd.DataFrame) -> pd.Series:
    """Ok, with a duration, and inside an ok run (when that is known): what the statistics would use unflagged."""
    ok = (windows.status == "ok") & windows.duration_s.notna()
    if "run_status" in windows:
        ok &= windows.run_status == "ok"
    return ok


def _ok(windows: pd.DataFrame) -> pd.DataFrame:
    """The windows the statistics use: eligible and not flagged (a flagged window's figures are not trusted)."""
    ok = _eligible(windows)
    if "flagged" in windows:
        ok &= ~windows.flagged.astype(bool)
    return windows[ok]


def summarize(windows: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Per scenario, variant and action, over the ok windows (every epoch of every run for ``epoch``): n, the number
    flagged and so left out, and for each figure mean, standard deviation (ddof=1), 95 % CI, median, min, max,
    Shapiro–Wilk p. The columns are there even when no window is ok (no rows then). ``extra``: more figure
    columns (each host's, ``energy_wh[host]``, when several are analysed as one)."""
    figures = FIGURES + list(extra)
    statistics = [k for k in stats.describe(np.array([])) if k != "n"]
    columns = ["scenario", "variant", "action", "n", "n_flagged"] + [
        f"{figure}_{statistic}" for figure in figures if figure in windows for statistic in statistics]
    rows = []
    eligible = windows[_eligible(windows)]
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


def _recorded(frame: pd.DataFrame, figure: str) -> bool:
    return figure in frame and frame[figure].notna().any()


def scenario_tests(windows: pd.DataFrame, action: str = "run") -> pd.DataFrame:
    """Every pair of groups (scenario and variant; a before b in the campaign), per figure recorded: Welch's t,
    Mann–Whitney U and effect sizes over runs; differences read b − a."""
    runs = _ok(windows)[lambda w: w.action == action]
    groups = list(dict.fromkeys(zip(runs.scenario, runs.variant)))
    rows = []
    for (a, va), (b, vb) in itertools.combinations(groups, 2):
        ra = runs[(runs.scenario == a) & (runs.variant == va)]
        rb = runs[(runs.scenario == b) & (runs.variant == vb)]
        for figure in TESTED_FIGURES:
            if _recorded(ra, figure) or _recorded(rb, figure):
                rows.append({"a": a, "variant_a": va, "b": b, "variant_b": vb, "action": action, "figure": figure,
                             **stats.compare(ra[figure].to_numpy(), rb[figure].to_numpy())})
    return pd.DataFrame(rows)


VARIANT_FIGURES = ["energy_wh", "duration_s", "energy_to_target_wh", "time_to_target_s"]


def compare_variants(windows: pd.DataFrame) -> pd.DataFrame:
    """One row per group of ok runs (scenario and variant): n, how many reached their target accuracy, and the
    mean and 95 % CI of energy and time per run and to the target. ``pareto`` marks the groups (baseline aside) that
    no other group beats on both mean time and mean energy: to the target where any group reached it (``basis``),
    per run otherwise. The tests between groups are in the scenario tests."""
    runs = _ok(windows)[lambda w: w.action == "run"]
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
    epochs = _ok(windows)[lambda w: w.action == "epoch"]
    rows = []
    for (scenario, variant), group in epochs.groupby(["scenario", "variant"], sort=False):
        for x in CORRELATED:
            result = stats.pearson(group[x].to_numpy(), group.energy_wh.to_numpy())
            if not _recorded(group, x):
                result["reason"] = f"{x} not recorded"
            rows.append({"scenario": scenario, "variant": variant, "x": x, "y": "energy_wh", **result})
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


def power_traces(walls: list[WallEnergy], windows: pd.DataFrame, events: list[Event],
                 max_points: int = 1200) -> pd.DataFrame:
    """Per-second mean meter power of every ok run (scenario with its variant, run, t_s since the run's start,
    power_w), summed over the meters (and the hosts, when several are analysed as one)."""
    frames = []
    runs = windows[(windows.action == "run") & (windows.status == "ok") & windows.duration_s.notna()]
    for i in runs.index:
        e = events[i]
        step_ns = max(10**9, (e.end_ns - e.start_ns) // max_points)
        edges = np.arange(e.start_ns, e.end_ns + 1, step_ns, dtype=np.int64)
        if len(edges) < 2:
            continue
        parts = []
        for wall in walls:
            for s in wall.series:
                values = s.values if wall.counter else integral_counter(
                    s.ts, s.values, MAX_GAP_INTERVALS * sampling_interval_ns(s.ts))
                parts.append(_increases(s, edges[:-1], edges[1:], values))
        power = _sum_strict(parts, len(edges) - 1) / (step_ns / 1e9)
        frames.append(pd.DataFrame({"scenario": group_label(e.scenario, windows.variant[i]), "run": e.run,
                                    "t_s": (edges[:-1] - e.start_ns) / 1e9, "power_w": power}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["scenario", "run", "t_s", "power_w"])
