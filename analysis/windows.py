"""The campaign's windows: its events (runs, actions, epochs) with their edges, in order, and what each lies in.

The first stage of the analysis after the source: :func:`load_windows` reads the events, orders them, and keeps
their edges as arrays the figure providers read (``starts``, ``ends``, ``duration``); an event that ends before it
starts keeps its start as its end and gets no figures (``backwards``). :func:`enclosing_runs` finds the run each
window lies in, :func:`run_variants` the variant of that run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mltelemetry import schema
from mltelemetry.analysis.sources import Source, StoreSource
from mltelemetry.errors import MltelemetryError
from mltelemetry.safety import printable, printable_list
from mltelemetry.schema import Event

ACTION_ORDER = {"campaign": 0, "run": 1}
OUTSIDE_RUNS = ("cooldown", "settle")  # actions recorded between runs: in no statistic, never "stray"
OPEN_STATUSES = ("running", "lost")  # a run claimed at its start whose process died (end = start)
# recorded settings that make a variant (processes: DDP processes, one per GPU)
SETTINGS = (schema.FIELD_BATCH_SIZE, schema.FIELD_PRECISION, schema.FIELD_PROCESSES)
MARGIN_NS = 60 * 10**9  # samples this far outside the campaign still bracket its first and last edges


@dataclass
class Windows:
    """The campaign's events but the campaign event itself, ordered by start (longest first), with their edges."""

    events: list[Event]
    starts: np.ndarray  # ns
    ends: np.ndarray  # ns; an event that ends before it starts: its start
    backwards: np.ndarray  # the event ends before it starts: no figures
    enclosing: list[Event | None] = field(default_factory=list)  # the run each window lies in (enclosing_runs)

    @property
    def n(self) -> int:
        return len(self.events)

    @property
    def duration(self) -> np.ndarray:
        """Seconds (0 for a backwards event)."""
        return (self.ends - self.starts) / 1e9

    @property
    def span(self) -> tuple[int, int]:
        """The range the series are read over (ns): the campaign's with a margin either side."""
        return int(self.starts.min()) - MARGIN_NS, int(self.ends.max()) + MARGIN_NS


def load_windows(source: Source, campaign: str, notes: list[str]) -> Windows:
    """The campaign's windows; MltelemetryError (naming the campaigns there are) when it has no events."""
    events = [e for e in source.events(campaign) if e.action != "campaign"]
    if not events:
        known = source.campaigns()
        raise MltelemetryError(f"no campaign {printable(campaign)} in {source.description}" +
                               (f"; campaigns there: {printable_list(known)}" if known
                                else "; the store has no events" if isinstance(source, StoreSource)
                                else "; it holds no events"))
    events.sort(key=lambda e: (e.start_ns, -e.end_ns, ACTION_ORDER.get(e.action, 2)))
    starts = np.array([e.start_ns for e in events], np.int64)
    ends = np.array([e.end_ns for e in events], np.int64)
    backwards = ends < starts
    if backwards.any():
        notes.append(f"{int(backwards.sum())} event(s) end before they start: no figures for them")
    return Windows(events, starts, np.where(backwards, starts, ends), backwards, enclosing_runs(events))


def field_value(event: Event, name: str) -> float:
    """A numeric field of the event; NaN where it is absent or not a number."""
    value = event.fields.get(name)
    try:
        return float(value) if value is not None and not isinstance(value, bool) else np.nan
    except (TypeError, ValueError):
        return np.nan


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


def _setting(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 32.0 through a numeric-only backend reads 32, as recorded
    return str(value)


def run_variants(events: list[Event], enclosing: list[Event | None]) -> list[str]:
    """Per event, the variant of the run it lies in: the run's ``variant`` field (a --vary campaign), else the
    recorded settings (precision, batch size, DDP processes) that differ between the runs of its scenario as
    ``name=value,…``; "" where nothing differs (the scenario alone is the group). An event outside runs keeps its
    own field."""
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


def eligible_mask(windows: pd.DataFrame) -> pd.Series:
    """Ok, with a duration, and inside an ok run (when that is known): what the statistics would use unflagged."""
    ok = (windows.status == "ok") & windows.duration_s.notna()
    if "run_status" in windows:
        ok &= windows.run_status == "ok"
    return ok


def ok_windows(windows: pd.DataFrame) -> pd.DataFrame:
    """The windows the statistics use: eligible and not flagged (a flagged window's figures are not trusted)."""
    ok = eligible_mask(windows)
    if "flagged" in windows:
        ok &= ~windows.flagged.astype(bool)
    return windows[ok]
