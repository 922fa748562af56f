"""The campaign's series: read once per metric for its span, one :class:`Series` per label set, and the counter
arithmetic the figures share (a window's increase, power integrated here, coverage), all over lists of series.

Several hosts: a :class:`Reader` given several hosts reads each of their series with its ``host`` label kept, and
:meth:`Reader.view` is one host's share of it, read as the only host would be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mltelemetry import schema
from mltelemetry.analysis.energy import (
    coverages,
    increases,
    integral_counter,
    sampling_interval_ns,
    unknown_intervals,
    windows_holding,
)
from mltelemetry.analysis.sources import Source
from mltelemetry.errors import MltelemetryError

Progress = Callable[[str, float, float], None]  # (what, done, total)
MAX_GAP_INTERVALS = 3  # an edge inside a longer gap of a counter's samples gets no figure


@dataclass
class Series:
    labels: dict[str, str]
    ts: np.ndarray
    values: np.ndarray


class Reader:
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

    def view(self, host: str) -> HostView:
        return HostView(self, host)


class HostView:
    """One host's series among those of a several-host reader: what a one-host figure reads."""

    def __init__(self, reader: Reader, host: str) -> None:
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


def sum_strict(parts: list[np.ndarray], n: int) -> np.ndarray:
    """Sum over series; NaN where any series has no figure (an energy is never silently partial)."""
    return np.sum(parts, axis=0) if parts else np.full(n, np.nan)


def combine(parts: list[np.ndarray], how: str, n: int) -> np.ndarray:
    if not parts:
        return np.full(n, np.nan)
    stacked = np.vstack(parts)
    finite = np.isfinite(stacked)
    with np.errstate(invalid="ignore"):
        if how == "sum":
            return np.where(finite.any(axis=0), np.nansum(stacked, axis=0), np.nan)
        return np.where(finite.any(axis=0), np.nansum(stacked, axis=0) / np.maximum(finite.sum(axis=0), 1), np.nan)


def increases_of(s: Series, starts: np.ndarray, ends: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    return increases(s.ts, s.values if values is None else values, starts, ends,
                     MAX_GAP_INTERVALS * sampling_interval_ns(s.ts))


def energy_of(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Counter increases per window summed over the series (joules for an energy counter), with the max-gap and
    reset rules of ``increases``; NaN where any series has none."""
    return sum_strict([increases_of(s, starts, ends) for s in series], len(starts))


def integrated(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Joules per window from power series integrated here; NaN for a window holding a gap longer than 3
    intervals (its energy is unknown: nothing integrated it)."""
    parts = []
    for s in series:
        counter = integral_counter(s.ts, s.values, MAX_GAP_INTERVALS * sampling_interval_ns(s.ts))
        part = increases_of(s, starts, ends, counter)
        part[blind_windows(s, starts, ends, counter=False)] = np.nan
        parts.append(part)
    return sum_strict(parts, len(starts))


def blind_windows(s: Series, starts: np.ndarray, ends: np.ndarray, counter: bool = True) -> np.ndarray:
    """Per window: whether it holds a stretch of ``s`` whose energy is unknown (see ``unknown_intervals``)."""
    intervals = unknown_intervals(s.ts, s.values, MAX_GAP_INTERVALS * sampling_interval_ns(s.ts), counter)
    return windows_holding(s.ts, intervals, starts, ends)


def worst_coverage(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Worst coverage over the series (1 where there are none: nothing expected)."""
    if not series:
        return np.ones(len(starts))
    return np.min([coverages(s.ts, starts, ends, sampling_interval_ns(s.ts)) for s in series], axis=0)
