"""Figures of one campaign: per run, per action and per epoch, then statistics per scenario.

The analysis is a pipeline:

1. **source** (:mod:`~mltelemetry.analysis.sources`): the store, a Prometheus-compatible API or InfluxDB;
2. **windows** (:mod:`~mltelemetry.analysis.windows`): the campaign's events with their edges, in order;
3. **figure providers** (:mod:`~mltelemetry.analysis.figures`): one module each (wall energy, device energy, each
   host's share, indicators, training and efficiency, flags; then on the table: baseline and induced energy,
   outliers), each reading the series it needs through one :class:`~mltelemetry.analysis.series.Reader`;
4. **statistics** (:mod:`~mltelemetry.analysis.summary`) over the ok, unflagged windows;
5. **outputs**: :class:`CampaignAnalysis` as tables, JSON and CSV (``analysis.cli``), the HTML report
   (``analysis.report``), OSCAR's files (``analysis.oscar``).

:func:`analyze_campaign` runs it. Energy is a counter difference at each event's edges (interpolated inside a
sampling interval); a window whose samples do not cover it gets no figure and a note, never a padded one.
Several hosts named (or ``all_hosts``) are analysed as one: every energy summed over them, with each host's share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mltelemetry.analysis import figures
from mltelemetry.analysis.figures import indicators
from mltelemetry.analysis.figures.baseline import BASELINE_MARGIN
from mltelemetry.analysis.figures.context import MIN_COVERAGE, Context
from mltelemetry.analysis.figures.wall import power_traces
from mltelemetry.analysis.series import Progress, Reader, hosts_during
from mltelemetry.analysis.sources import SENSOR_EXPORTERS, Source, open_source
from mltelemetry.analysis.summary import (
    compare_variants,
    epoch_correlations,
    meter_vs_sensors,
    scenario_tests,
    summarize,
)
from mltelemetry.analysis.windows import OUTSIDE_RUNS, load_windows, run_variants
from mltelemetry.errors import MltelemetryError


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
    gpus: list[str] = field(default_factory=list)  # several GPUs: their names in figure[gpu] columns; [] for one
    traces: pd.DataFrame | None = None  # per-second meter power of every ok run (for the report)
    baseline: dict = field(default_factory=dict)  # how the baseline power was chosen (see choose_baseline)
    variants: pd.DataFrame = field(default_factory=pd.DataFrame)  # per scenario and variant, with the Pareto front

    def to_dict(self) -> dict:
        return {"campaign": self.campaign, "source": self.source, "host": self.host, "hosts": self.hosts,
                "gpus": self.gpus, "baseline_power_w": self.baseline_power_w, "baseline": self.baseline,
                "notes": self.notes,
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
    windows = load_windows(source, campaign, notes)
    lo, hi = windows.span
    if all_hosts:
        hosts = hosts_during(source, lo, hi) or None
    reader = Reader(source, hosts, lo, hi, progress, total=8 + indicators.SERIES_READ)
    ctx = Context(windows, reader, sensor_exporters, baseline_margin, notes)
    for provider in figures.WINDOW_PROVIDERS:
        provider.provide(ctx)
    _named_hosts_were_recorded(reader, source, campaign)
    if progress:
        progress("computing figures", reader.total, reader.total)
    ctx.table = window_table(ctx)
    for provider in figures.TABLE_PROVIDERS:
        provider.provide(ctx)
    table = ctx.table
    table["note"] = ["; ".join(x) for x in ctx.row_notes]
    failed = table[(table.action == "run") & (table.status != "ok")]
    if len(failed):
        notes.append(f"{len(failed)} run(s) not ok ({', '.join(sorted(set(failed.status)))}): shown, left out "
                     "of the statistics")
    flagged_runs = int((table.flagged & (table.action == "run")).sum())
    flagged_others = int((table.flagged & (table.action != "run")).sum())
    if flagged_runs or flagged_others:
        notes.append(f"{flagged_runs} run(s) flagged, and {flagged_others} action/epoch window(s) (coverage below "
                     f"{MIN_COVERAGE:.0%}, meter gaps or missing samples): left out of the statistics, see their "
                     "notes")

    notes += getattr(source, "time_notes", list)()  # which time the energy counters carried
    summary = summarize(table, ctx.host_figures + ctx.gpu_figures)
    result = CampaignAnalysis(campaign, ctx.baseline["power_w"], table, summary,
                              notes=notes, source=source.description, host=reader.host, baseline=ctx.baseline,
                              hosts=hosts if reader.several else [],
                              gpus=[g.name for g in ctx.gpus.gpus] if ctx.gpus else [])
    result.tests = scenario_tests(table)
    result.variants = compare_variants(table)
    result.correlations = epoch_correlations(table)
    result.sensors = meter_vs_sensors(table)
    if not (table.action == "epoch").any():
        notes.append("no epoch events: no per-epoch figures or correlations")
    if traces and any(w.series for w in ctx.wall.walls):
        result.traces = power_traces(ctx.wall.walls, table, windows.events)
    return result


def _named_hosts_were_recorded(reader: Reader, source: Source, campaign: str) -> None:
    """A misspelt --host: say which hosts there are rather than print empty figures."""
    missing = reader.nothing_for_host()
    if missing:
        lo, hi = reader.lo, reader.hi
        there = hosts_during(source, lo, hi)
        if there:
            named = f"host {missing[0]!r}" if not reader.several else f"host(s) {', '.join(missing)}"
            raise MltelemetryError(f"no series of {named} during campaign {campaign!r}; hosts there: "
                                   f"{', '.join(there)}")


def window_table(ctx: Context) -> pd.DataFrame:
    """The windows as a table: their keys, every figure computed per window (none for a window that ends before
    it starts), where each energy came from, whether it is flagged, and the status of the run it lies in."""
    w = ctx.windows
    events = w.events
    names = figures.figure_names()
    masked = set(names) | set(ctx.host_figures) | set(ctx.gpu_figures)
    columns = {k: np.where(w.backwards, np.nan, v) if k in masked else v for k, v in ctx.columns.items()}
    table = pd.DataFrame({
        "scenario": [e.scenario for e in events], "run": [e.run for e in events],
        "action": [e.action for e in events],
        "epoch": pd.array([e.epoch for e in events], dtype="Int64").astype("float64"),
        "status": [e.status for e in events],
        "start": [pd.Timestamp(e.start_ns, unit="ns", tz="UTC").isoformat() for e in events],
        "duration_s": np.where(w.backwards, np.nan, w.duration),
    })
    for column in names[1:] + ctx.host_figures + ctx.gpu_figures:
        if column in columns:
            table[column] = np.asarray(columns[column], np.float64)
    for column, values in ctx.methods.items():
        table[column] = np.where(w.backwards, "", values)
    table["flagged"] = ctx.flagged
    table.insert(table.columns.get_loc("status"), "variant", run_variants(events, w.enclosing))
    # the status of the run each window lies in: its own for a run, "none" where no run event encloses it (the
    # windows a SIGKILLed run closed before it was claimed); windows of a not-ok run leave the statistics with it
    # A campaign with no run event at all (an Annotator script's own windows) has no strays: each window stands
    # for itself, as its own status says.
    has_runs = any(e.action == "run" for e in events)
    run_status = []
    for i, e in enumerate(events):
        run = w.enclosing[i]
        run_status.append(run.status if run is not None else ("none" if has_runs else e.status))
        if run is None and has_runs and e.action not in OUTSIDE_RUNS:
            ctx.row_notes[i].append("inside no run event: left out of the statistics")
        elif run is not None and run is not e and run.status != "ok":
            ctx.row_notes[i].append(f"inside a run that is not ok ({run.status}): left out of the statistics")
    table["run_status"] = run_status
    stray = sum(1 for i, e in enumerate(events)
                if has_runs and w.enclosing[i] is None and e.action not in OUTSIDE_RUNS)
    if stray:
        ctx.notes.append(f"{stray} window(s) inside no run event (e.g. a run killed before it was claimed): shown, "
                         "left out of the statistics")
    return table
