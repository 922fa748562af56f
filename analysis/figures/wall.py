"""Wall energy from the power meter: ``pm_energy_joules_total`` increases at each window's edges (summed over
meters when a SUT has several, and over hosts when several are analysed as one), else ``pm_power_watts``
integrated here (the method column says which); mean power; the meter's coverage and gap seconds, and why a
window's wall energy is not trusted (:func:`wall_notes`, read by the flags provider)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mltelemetry import schema
from mltelemetry.analysis.energy import integral_counter, monotonic, sampling_interval_ns
from mltelemetry.analysis.figures.context import J_PER_WH, MIN_COVERAGE, Context
from mltelemetry.analysis.figures.hosts import host_notes, joined, per_host
from mltelemetry.analysis.series import (
    MAX_GAP_INTERVALS,
    HostView,
    Reader,
    Series,
    blind_windows,
    combine,
    energy_of,
    increases_of,
    integrated,
    sum_strict,
    worst_coverage,
)
from mltelemetry.analysis.windows import group_label
from mltelemetry.schema import Event

FIGURES = ["energy_wh", "mean_power_w", "coverage", "meter_gap_s"]
METHOD_METER = "meter counter"
METHOD_METER_INTEGRAL = "∫ meter power (analysis)"


def reading_coverage(readings: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
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
            parts.append(np.where(expected < 1, 1.0, np.minimum(1.0, increases_of(s, starts, ends) / expected)))
    return np.fmin.reduce(parts) if parts else np.full(len(starts), np.nan)


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
        return energy_of(self.series, starts, ends) if self.counter else integrated(self.series, starts, ends)

    @property
    def walls(self) -> list[WallEnergy]:
        return [self]

    def window_notes(self, i: int, e: Event) -> tuple[list[str], bool]:
        return wall_notes(self, i, e)


def wall_energy(reader: Reader | HostView, starts: np.ndarray, ends: np.ndarray, notes: list[str]) -> WallEnergy:
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
        energy_j = integrated(series, starts, ends)
        one_host = reader.host if isinstance(reader, Reader) else None  # a host's view: its notes get its name in front
        where = f" for host {one_host!r}" if one_host else ""
        elsewhere = reader.hosts_of(schema.PM_ENERGY) if one_host else []
        notes.append(f"no power-meter energy counter ({schema.PM_ENERGY}) during the campaign{where}"
                     + (f" (it is recorded for {', '.join(elsewhere)})" if elsewhere else "") + ": "
                     + ("wall energy integrated from pm_power_watts by the analysis" if series
                        else "no wall energy, mean power or induced energy"))
    gaps = reader.get(schema.PM_GAP)
    gap_s = energy_of(gaps, starts, ends) if gaps else np.full(n, np.nan)
    readings = reading_coverage(reader.get(schema.PM_SAMPLES), starts, ends) if series else np.zeros(n)
    coverage = np.fmin(worst_coverage(series, starts, ends), readings) if series else np.zeros(n)
    # a meter that gave no valid reading in a window (disconnected throughout) says nothing of its energy: its
    # counter stood still because nobody measured, not because nothing was drawn
    silent = (readings == 0) & (duration > 0) & np.isfinite(energy_j) if series else np.zeros(n, bool)
    energy_j = np.where(silent, np.nan, energy_j)
    blind = np.zeros(n, bool)
    for s in series:
        blind |= blind_windows(s, starts, ends, counter=counter)
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


class HostsWall:
    """Wall energy of several hosts analysed as one: per window, the sum over every named host.

    A host without any meter series gives no sum (its windows are flagged), and a window one host's meter does not
    cover has no sum either: never a sum over fewer hosts."""

    def __init__(self, per_host: dict[str, WallEnergy], n: int, notes: list[str]) -> None:
        self.per_host = per_host
        metered = [h for h, w in per_host.items() if w.series]
        self.unmetered = [h for h, w in per_host.items() if not w.series] if metered else []
        if self.unmetered:
            notes.append(f"no power-meter series of host(s) {', '.join(self.unmetered)} during the campaign: no "
                         "wall energy summed over the hosts (every window flagged; name the metered hosts with "
                         "--host to analyse those)")
        self.walls = list(per_host.values())
        self.energy_j = sum_strict([w.energy_j for w in self.walls], n)
        self.method = joined({h: per_host[h].method for h in metered}) if metered else ""
        self.gap_s = combine([w.gap_s for w in self.walls], "sum", n)
        self.coverage = np.fmin.reduce([w.coverage for w in self.walls])

    def energy(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return sum_strict([w.energy(starts, ends) for w in self.walls], len(starts))

    def window_notes(self, i: int, e: Event) -> tuple[list[str], bool]:
        notes: list[str] = []
        flagged = False
        for h, wall in self.per_host.items():
            if h in self.unmetered:
                notes.append(f"host {h}: no power-meter series: no wall energy summed over the hosts")
                flagged = True
                continue
            host_window_notes, host_flagged = wall_notes(wall, i, e, prefix=f"host {h}: ")
            notes += host_window_notes
            flagged |= host_flagged
        return notes, flagged


def provide(ctx: Context) -> None:
    w = ctx.windows
    walls = {}
    for host, reader in per_host(ctx.reader).items():
        notes: list[str] = []
        walls[host] = wall_energy(reader, w.starts, w.ends, notes)
        ctx.notes += host_notes(host, notes)
    ctx.wall = wall = walls[None] if None in walls else HostsWall(walls, w.n, ctx.notes)
    duration = w.duration
    ctx.columns["energy_wh"] = wall.energy_j / J_PER_WH
    with np.errstate(invalid="ignore", divide="ignore"):
        ctx.columns["mean_power_w"] = np.where(duration > 0, wall.energy_j / duration, np.nan)
    ctx.methods["energy_method"] = np.where(np.isfinite(wall.energy_j), wall.method, "")
    ctx.columns["meter_gap_s"] = wall.gap_s
    ctx.columns["coverage"] = wall.coverage


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
                parts.append(increases_of(s, edges[:-1], edges[1:], values))
        power = sum_strict(parts, len(edges) - 1) / (step_ns / 1e9)
        frames.append(pd.DataFrame({"scenario": group_label(e.scenario, windows.variant[i]), "run": e.run,
                                    "t_s": (edges[:-1] - e.start_ns) / 1e9, "power_w": power}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["scenario", "run", "t_s", "power_w"])
