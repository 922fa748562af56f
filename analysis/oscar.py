"""OSCAR interoperability: OSCAR measurement folders in as a campaign, a campaign out as OSCAR folders.

OSCAR (the method authors' analysis tool) takes, per measured scenario, one folder holding three
semicolon-separated files under any names:

- the **action log** of the workload generator, no header, local time of the SUT::

      2024-03-05 14:02:11.250;startTestrun
      2024-3-5 14:02:11.370;startAction;  open document
      2024-3-5 14:02:13.500;stopAction
      2024-03-05 14:02:41.800;stopTestrun

  (seen in the wild: no leading zeros, no milliseconds, ``date --rfc-3339=ns`` stamps with an
  offset, a leading ``iteration N;`` field, extra fields after the keyword, ``startTestRun``);
  actions do not nest, and a run's time outside its actions is still the run;
- the **power file** of the power analyser (Janitza GridVis): a title line, the header
  ``Nummer;Zeit;Wert 1-avg[W];Wert 1-min[W];Wert 1-max[W];`` and one row per second
  ``1;05.03.24, 14:02:11;12,345;12,101;12,600;``, the mean watts of the second that starts at the stamp;
- the **hardware file** (collectl, formatted for OSCAR): UTF-8 with a BOM, CRLF, the header
  ``Date Time;[CPU]User%;…;[CPU]Totl%;…;[MEM]Used;…`` in any column order, rows
  ``05.03.2024 14:02:12;3;0;1;…`` describing the interval that ends at the stamp (KB/s rates, KB).

Import finds the three files of each folder by their content, reads every stamp of the measurement
as one clock (the SUT's naive local time, stored as if it were UTC, or converted from ``--timezone``),
takes the folder named ``baseline`` (any case) or ``--baseline NAME`` as the scenario ``baseline``,
checks everything before writing anything and refuses bad input with file, line and what was
expected. Export writes the same formats back (every name sanitised in :func:`path_name` and
:func:`cell`), and :func:`oscar_figures` computes OSCAR's report figures beside the analysis' own.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from mltelemetry import schema
from mltelemetry.analysis.campaign import CampaignAnalysis
from mltelemetry.analysis.energy import window_means
from mltelemetry.analysis.figures.baseline import BASELINE_SCENARIO
from mltelemetry.analysis.figures.context import J_PER_WH
from mltelemetry.analysis.series import Series, energy_of, split_series
from mltelemetry.analysis.sources import Source, open_source
from mltelemetry.errors import MltelemetryError, UsageError
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

S = 10**9
MARGIN_S = 10  # seconds of power and usage exported before a scenario's first run and after its last
MIN_YEAR, MAX_YEAR = 1970, 2261  # nanoseconds since 1970 in a signed 64-bit integer end in 2262
MAX_PLAUSIBLE_W = 100_000.0  # one SUT on one analyser channel: beyond this a reading is garbage, not power
RESERVED_ACTIONS = {"run", "campaign", "epoch"}  # the analysis' own window names
_EPOCH_ACTION = re.compile(r"epoch\s*(\d+)", re.IGNORECASE)  # an action per epoch becomes an epoch window

START_RUN, STOP_RUN, START_ACTION, STOP_ACTION = "startTestrun", "stopTestrun", "startAction", "stopAction"
KEYWORDS = {k.lower(): k for k in (START_RUN, STOP_RUN, START_ACTION, STOP_ACTION)}
POWER_TITLE = "Wert 1 : Wirkleistung (1s) [mltelemetry]"
POWER_HEADER = "Nummer;Zeit;Wert 1-avg[W];Wert 1-min[W];Wert 1-max[W];"
# collectl columns read and written: column -> (metric, extra labels, kind, plausible range)
HARDWARE = {
    "[CPU]Totl%": (schema.HOST_CPU_TOTAL_UTILIZATION, {}, "percent", (0.0, 100.0)),
    "[MEM]Used": (schema.HOST_MEMORY_USED, {}, "kb", (0.0, 1e12)),
    "[DSK]ReadKBTot": (schema.HOST_DISK_READ, {"device": "oscar"}, "kb/s", (0.0, 1e9)),
    "[DSK]WriteKBTot": (schema.HOST_DISK_WRITTEN, {"device": "oscar"}, "kb/s", (0.0, 1e9)),
    "[NET]RxKBTot": (schema.HOST_NET_RECEIVED, {"interface": "oscar"}, "kb/s", (0.0, 1e9)),
    "[NET]TxKBTot": (schema.HOST_NET_TRANSMITTED, {"interface": "oscar"}, "kb/s", (0.0, 1e9)),
}
EXPORTED_HARDWARE = ["[CPU]Totl%", "[CPU]Idle%", "[MEM]Used", "[DSK]ReadKBTot", "[DSK]WriteKBTot", "[NET]RxKBTot",
                     "[NET]TxKBTot"]


# --- time stamps: one clock per measurement -----------------------------------------------------------
_FRACTION = r"(?:[.,](?P<fraction>\d{1,9}))?"
_CLOCK = r"(?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2})" + _FRACTION
_STAMPS = [
    re.compile(r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})[ T]" + _CLOCK
               + r"\s*(?P<offset>Z|[+-]\d{2}:?\d{2})?"),  # 2024-3-5 14:02:11.250123456+01:00
    re.compile(r"(?P<day>\d{1,2})\.(?P<month>\d{1,2})\.(?P<year>\d{4}|\d{2}),?\s+" + _CLOCK),  # 05.03.24, 14:02:11
    re.compile(r"(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})\s+" + _CLOCK),  # collectl's own 20240305 14:02:11
]
_EPOCH_ORIGIN = datetime(1970, 1, 1)
_DST_HINT = " (the night daylight saving time ends? --timezone tells the repeated hour's two passes apart)"


@dataclass(frozen=True)
class Clock:
    """How the stamps of one measurement become UTC nanoseconds.

    Without a zone every stamp is the SUT's wall clock, stored as if it were UTC (an offset in a
    stamp is dropped, so the action log and the analyser's export, which has none, stay one
    clock). With a zone the wall clock is that zone's local time; a stamp's offset must agree.
    """

    zone: ZoneInfo | None = None

    @classmethod
    def named(cls, name: str | None) -> Clock:
        if not name:
            return cls()
        try:
            return cls(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"--timezone {name!r}: not a time zone name such as Europe/Berlin or UTC") \
                from None

    def ns(self, text: str, fold: int = 0) -> int:
        """UTC nanoseconds of a stamp; ValueError saying what is wrong with it. ``fold=1`` takes the second
        pass of a local hour that repeats when daylight saving time ends."""
        text = text.strip()
        match = next((m for m in (p.fullmatch(text) for p in _STAMPS) if m), None)
        if match is None:
            raise ValueError("not a time stamp")
        parts = match.groupdict()
        year = int(parts["year"])
        if len(parts["year"]) == 2:
            year += 2000 if year < 70 else 1900  # as strptime's %y
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise ValueError(f"year {year} is outside {MIN_YEAR}–{MAX_YEAR}")
        wall = datetime(year, int(parts["month"]), int(parts["day"]), int(parts["hour"]), int(parts["minute"]),
                        int(parts["second"]))  # ValueError for month 13, 25 o'clock …
        fraction_ns = int((parts["fraction"] or "0").ljust(9, "0"))
        if self.zone is not None:
            offsets = [wall.replace(tzinfo=self.zone, fold=f).utcoffset() for f in (fold, 1 - fold)]
            local_offset = offsets[0]
            if parts.get("offset"):  # the stamp says which pass of a repeated hour it is
                if _offset(parts["offset"]) not in offsets:
                    raise ValueError(f"its offset {parts['offset']} is not {self.zone.key}'s "
                                     f"({_format_offset(local_offset)}) at that time")
                local_offset = _offset(parts["offset"])
            wall -= local_offset
        seconds = (wall - _EPOCH_ORIGIN) // timedelta(seconds=1)
        return seconds * S + fraction_ns

    def reader(self) -> Callable[[str], int]:
        """``ns`` for the stamps of one file, in order: with a zone, a stamp that would go back in time is
        taken from the second pass of a repeated hour (the night daylight saving time ends) where that
        keeps the order."""
        last = None

        def ns(text: str) -> int:
            nonlocal last
            t = self.ns(text)
            if self.zone is not None and last is not None and t < last:
                t = max(t, self.ns(text, fold=1))
            last = t
            return t

        return ns

    def wall(self, ns: int) -> datetime:
        """The wall-clock time of UTC nanoseconds (whole microseconds), as the files write it."""
        utc = _EPOCH_ORIGIN + timedelta(microseconds=ns // 1000)
        if self.zone is None:
            return utc
        return utc.replace(tzinfo=ZoneInfo("UTC")).astimezone(self.zone).replace(tzinfo=None)


def _offset(text: str) -> timedelta:
    if text == "Z":
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))


def _format_offset(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta(0)).total_seconds() // 60)
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _number(text: str) -> float:
    """A cell as a number: German (``1.234,5``) or English (``1234.5``) notation; blank is NaN."""
    text = text.strip()
    if not text:
        return math.nan
    if "," in text:
        text = text.replace(".", "").replace(",", ".")
    return float(text)


# --- the one sanitiser for names that become paths or cells -----------------------------------------------
def path_name(name: str) -> str:
    """A scenario name as one folder name: letters, digits, ``-_.`` only, never ``.``/``..`` or hidden."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name.strip())[:100]
    return "_" + safe[1:] if safe.startswith(".") else safe or "_"


def cell(name: str) -> str:
    """A name as one cell of OSCAR's ``;``-separated lines: no ``;``, no line breaks or other control
    characters, no leading or trailing spaces (the import strips them)."""
    safe = "".join("_" if ch == ";" or unicodedata.category(ch).startswith("C") else ch for ch in name)
    return safe.strip() or "_"


# --- reading files ------------------------------------------------------------------------------------------
def _text(path: Path, limit: int | None = None) -> str:
    with open(path, "rb") as f:
        raw = f.read() if limit is None else f.read(limit)
    try:
        return raw.decode("utf-8-sig", errors="strict" if limit is None else "replace")  # a head may cut a character
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")  # GridVis on German Windows


def _kind(path: Path) -> str | None:
    """Which of OSCAR's files this is, from its first lines: ``actions``, ``power``, ``hardware`` or None."""
    try:
        head = [line for line in _text(path, 4096).splitlines()[:10] if line.strip()]
    except OSError:
        return None
    if not head:
        return None
    if any(line.lower().startswith("nummer;zeit") for line in head):
        return "power"
    if re.match(r"#?date[ ;]time\b", head[0].lower()):
        return "hardware"
    if any(f.strip().lower() in KEYWORDS for f in head[0].split(";")):
        return "actions"
    return None


@dataclass
class Folder:
    """One scenario's folder and its three files."""

    scenario: str
    path: Path
    actions: Path
    power: Path
    hardware: Path | None


def find_folders(root: Path) -> list[Folder]:
    """ROOT itself when it holds an action log, else every sub-folder that does (files found by content)."""
    def files_of(folder: Path) -> dict[str, list[Path]]:
        kinds: dict[str, list[Path]] = {}
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                kind = _kind(p)
                if kind:
                    kinds.setdefault(kind, []).append(p)
        return kinds

    def folder(path: Path, kinds: dict[str, list[Path]]) -> Folder:
        for kind in ("actions", "power", "hardware"):
            if len(kinds.get(kind, [])) > 1:
                raise MltelemetryError(f"{path} holds {len(kinds[kind])} {kind} files "
                                       f"({', '.join(p.name for p in kinds[kind])}): keep one per scenario folder")
        if "power" not in kinds:
            raise MltelemetryError(f"{path} has an action log but no power file (a header 'Nummer;Zeit;Wert 1-avg[W];"
                                   "…')")
        return Folder(path.name, path, kinds["actions"][0], kinds["power"][0], (kinds.get("hardware") or [None])[0])

    top = files_of(root)
    if "actions" in top:
        return [folder(root, top)]
    found = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        kinds = files_of(sub)
        if "actions" in kinds:
            found.append(folder(sub, kinds))
        elif kinds:
            raise MltelemetryError(f"{sub} has a {' and a '.join(kinds)} file but no action log (lines such as "
                                   "'2024-03-05 14:02:11.250;startTestrun')")
    if not found:
        raise MltelemetryError(f"{root} holds no OSCAR measurement: no action log (lines such as "
                               "'2024-03-05 14:02:11.250;startTestrun'), neither in it nor in a sub-folder "
                               "per scenario")
    return found


class _Refusal(ValueError):
    """A line that does not parse, with what was expected."""


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = _text(path)
    except OSError as e:
        raise MltelemetryError(f"{path}: cannot be read: {e.strerror or e}") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


@dataclass
class Run:
    start: int
    stop: int
    line: int
    actions: list[tuple[str, int, int]] = field(default_factory=list)  # (name, start, stop)


def read_actions(path: Path, clock: Clock) -> list[Run]:
    """The runs of an action log, each with its actions."""
    stamp_ns = clock.reader()
    runs: list[Run] = []
    run_start: tuple[int, int] | None = None  # (ns, line)
    action: tuple[str, int] | None = None
    actions: list[tuple[str, int, int]] = []
    previous = None
    for number, line in _lines(path):
        fields = [f.strip() for f in line.split(";")]
        if re.fullmatch(r"iteration\s*\d*", fields[0], re.IGNORECASE):
            fields = fields[1:]
        where = f"{path}:{number}"
        if len(fields) < 2 or fields[1].lower() not in KEYWORDS:
            raise MltelemetryError(f"{where}: expected 'time stamp;startTestrun|startAction;NAME|stopAction|"
                                   f"stopTestrun', found {line.strip()!r}")
        try:
            t = stamp_ns(fields[0])
        except ValueError as e:
            raise MltelemetryError(f"{where}: {fields[0]!r}: {e}; expected a time stamp such as "
                                   "2024-03-05 14:02:11.250") from None
        if previous is not None and t < previous:
            raise MltelemetryError(f"{where}: the time goes back from the line before" + _DST_HINT)
        previous = t
        keyword = KEYWORDS[fields[1].lower()]
        if keyword != START_RUN and run_start is None:
            raise MltelemetryError(f"{where}: {keyword} outside a test run ({START_RUN} … {STOP_RUN})")
        if keyword == START_RUN:
            if run_start is not None:
                raise MltelemetryError(f"{where}: {START_RUN} before the {STOP_RUN} of the run started at line "
                                       f"{run_start[1]}")
            run_start, actions = (t, number), []
        elif keyword == START_ACTION:
            name = next((f for f in fields[2:] if f), "")
            if not name:
                raise MltelemetryError(f"{where}: {START_ACTION} without a name; expected "
                                       f"'time stamp;{START_ACTION};NAME'")
            if action is not None:
                raise MltelemetryError(f"{where}: {START_ACTION} {name!r} while {action[0]!r} is still running "
                                       f"(actions do not nest: expected {STOP_ACTION} first)")
            action = (name, t)
        elif keyword == STOP_ACTION:
            if action is None:
                raise MltelemetryError(f"{where}: {STOP_ACTION} without a {START_ACTION}")
            actions.append((action[0], action[1], t))
            action = None
        else:
            if action is not None:
                raise MltelemetryError(f"{where}: {STOP_RUN} while the action {action[0]!r} is still running "
                                       f"(expected {STOP_ACTION} first)")
            runs.append(Run(run_start[0], t, run_start[1], actions))
            run_start = None
    if run_start is not None:
        raise MltelemetryError(f"{path}:{run_start[1]}: this run has no {STOP_RUN}")
    if not runs:
        raise MltelemetryError(f"{path}: no test run ({START_RUN} … {STOP_RUN})")
    return runs


def read_power(path: Path, clock: Clock) -> dict[int, float]:
    """The power analyser's mean watts by the start (ns) of their second.

    Blank cells are NaN (a gap). Implausible readings (negative, not finite, above
    ``MAX_PLAUSIBLE_W``) are counted and refuse the whole file: none is stored as a number.
    """
    lines, stamp_ns = _lines(path), clock.reader()
    header_at = next((i for i, (_, line) in enumerate(lines[:10]) if line.lower().startswith("nummer;zeit")), None)
    if header_at is None:
        raise MltelemetryError(f"{path}:1: expected the header 'Nummer;Zeit;Wert 1-avg[W];…'")
    header_line, header = lines[header_at]
    columns = [c.strip().lower() for c in header.split(";")]
    watts = [i for i, c in enumerate(columns) if "avg" in c and "[w]" in c] or \
            [i for i, c in enumerate(columns) if "[w]" in c and "min" not in c and "max" not in c]
    if len(watts) != 1:
        raise MltelemetryError(f"{path}:{header_line}: expected one column of mean watts ('Wert 1-avg[W]'), found "
                               f"{len(watts)} in {header.strip()!r}")
    time_column, value_column = 1, watts[0]  # Nummer;Zeit;…
    rows: dict[int, float] = {}
    implausible: list[tuple[int, str]] = []
    last = None
    for number, line in lines[header_at + 1:]:
        fields = line.split(";")
        try:
            stamp, text = fields[time_column], fields[value_column]
        except IndexError:
            raise MltelemetryError(f"{path}:{number}: expected 'number;DD.MM.YY, HH:MM:SS;watts;…', found "
                                   f"{line.strip()!r}") from None
        try:
            t = stamp_ns(stamp)
        except ValueError as e:
            raise MltelemetryError(f"{path}:{number}: {stamp.strip()!r}: {e}; expected a time stamp such as "
                                   "05.03.24, 14:02:11") from None
        try:
            value = _number(text)
        except ValueError:
            raise MltelemetryError(f"{path}:{number}: expected watts such as 12,345, found {text.strip()!r}") from None
        if last is not None and t <= last:
            raise MltelemetryError(f"{path}:{number}: time stamp {stamp.strip()!r} repeats or goes back; expected one "
                                   "row per second, in order" + _DST_HINT)
        if text.strip() and not (math.isfinite(value) and 0.0 <= value <= MAX_PLAUSIBLE_W):
            implausible.append((number, text.strip()))
        rows[t], last = value, t
    if implausible:
        number, text = implausible[0]
        raise MltelemetryError(f"{path}: {len(implausible)} implausible power reading(s) (negative, not finite or "
                               f"above {MAX_PLAUSIBLE_W:g} W), the first at line {number}: {text!r}; nothing imported")
    steps = np.diff(sorted(rows))
    if len(steps) and np.median(steps) != S:
        raise MltelemetryError(f"{path}: rows are {np.median(steps) / S:g} s apart: OSCAR's power file holds one "
                               "row per second")
    return rows


def read_hardware(path: Path, clock: Clock) -> dict[int, dict[str, float]]:
    """collectl's values of the columns in ``HARDWARE`` by the end (ns) of the interval they describe."""
    lines, stamp_ns = _lines(path), clock.reader()
    header_line, header = lines[0]
    names = [c.strip() for c in header.lstrip("\ufeff#").split(";")]
    stamp_fields = 2 if [n.lower() for n in names[:2]] == ["date", "time"] else 1
    if names[0].lower() not in ("date time", "date"):
        raise MltelemetryError(f"{path}:{header_line}: expected collectl's header 'Date Time;[CPU]User%;…'")
    wanted = {name: i for i, name in enumerate(names) if name in HARDWARE}
    rows: dict[int, dict[str, float]] = {}
    last = None
    for number, line in lines[1:]:
        fields = line.split(";")
        stamp = " ".join(fields[:stamp_fields])
        try:
            t = stamp_ns(stamp)
        except ValueError as e:
            raise MltelemetryError(f"{path}:{number}: {stamp.strip()!r}: {e}; expected a time stamp such as "
                                   "05.03.2024 14:02:11") from None
        if last is not None and t <= last:
            raise MltelemetryError(f"{path}:{number}: time stamp {stamp.strip()!r} repeats or goes back" + _DST_HINT)
        values = {}
        for name, i in wanted.items():
            text = fields[i] if i < len(fields) else ""
            try:
                values[name] = _number(text)
            except ValueError:
                raise MltelemetryError(f"{path}:{number}: column {name}: expected a number, found {text.strip()!r}") \
                    from None
            lo, hi = HARDWARE[name][3]
            if text.strip() and not (math.isfinite(values[name]) and lo <= values[name] <= hi):
                raise MltelemetryError(f"{path}:{number}: column {name}: {text.strip()!r} is implausible (expected "
                                       f"{lo:g}–{hi:g}); nothing imported")
        rows[t], last = values, t
    return rows


# --- samples from the rows -------------------------------------------------------------------------------
def power_samples(rows: dict[int, float], host: str) -> list[Sample]:
    """The meter's energy counter at the edges of every second with a reading, and its power.

    A second whose cell is blank adds nothing to the counter (its energy is unknown) and the meter's
    gap counter (``pm_gap_seconds_total``) counts it, so a window holding one is flagged as
    under-counted, as the exporter does for a meter that gave no valid reading.
    """
    labels = {"host": host, "meter": "oscar"}
    samples, energy, blank = [], 0.0, 0.0
    counted = any(not math.isfinite(v) for v in rows.values())
    last_edge = None  # the end of the last second with a reading

    def edge(t: int) -> None:
        samples.append(Sample(schema.PM_ENERGY, labels, energy, t))
        if counted:
            samples.append(Sample(schema.PM_GAP, labels, blank, t))

    for t in sorted(rows):
        if not math.isfinite(rows[t]):
            blank += 1.0
            continue
        if last_edge != t:
            edge(t)
        samples.append(Sample(schema.PM_POWER, labels, rows[t], t + S // 2))
        energy += rows[t]
        edge(t + S)
        last_edge = t + S
    return samples


def hardware_samples(rows: dict[int, dict[str, float]], host: str) -> list[Sample]:
    """Host series: gauges at the middle of their interval (a blank cell: no sample); byte counters (rate ×
    interval) at the end of every interval with a number, and at the start of the first. A stretch of blank
    cells (or missing rows) is a gap in the counter's samples: by the analysis' rules a window with an edge
    inside a gap longer than 3 intervals gets no figure, and the gap's bytes, unknown, count as none."""
    if not rows:
        return []
    ts = np.array(sorted(rows), np.int64)
    steps = np.diff(ts)
    typical = int(np.median(steps)) if len(steps) else S
    interval = np.minimum(np.concatenate(([typical], steps)), typical)  # after a pause: one interval, not the pause
    samples = []
    for name in dict.fromkeys(k for t in ts.tolist() for k in rows[t]):
        metric, extra, kind, _ = HARDWARE[name]
        labels = {"host": host, **extra}
        values = np.array([rows[t].get(name, math.nan) for t in ts.tolist()])
        known = np.isfinite(values)
        if kind != "kb/s":
            scale = 1 / 100 if kind == "percent" else 1024.0
            samples += [Sample(metric, labels, v * scale, t) for v, t in
                        zip(values[known].tolist(), (ts - interval // 2)[known].tolist())]
            continue
        added = np.where(known, values * 1024 * interval / S, 0.0)
        after = np.cumsum(added)
        rows_known = np.flatnonzero(known)
        if len(rows_known):
            samples.append(Sample(metric, labels, 0.0, int(ts[rows_known[0]] - interval[rows_known[0]])))
        samples += [Sample(metric, labels, float(after[i]), int(ts[i])) for i in rows_known.tolist()]
    return samples


def _merge(into: dict, sources: dict, rows: dict, path: Path, same: Callable[[object, object], bool],
           clock: Clock) -> None:
    """One machine, one timeline: the scenarios' seconds merge; two files disagreeing on one second is refused."""
    for t, value in rows.items():
        if t in into and not same(into[t], value):
            raise MltelemetryError(f"{path} and {sources[t]} give different values for the same second "
                                   f"({clock.wall(t):%Y-%m-%d %H:%M:%S}): not one measurement; import them as "
                                   "separate campaigns")
        into.setdefault(t, value)
        sources.setdefault(t, path)


def _same_number(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _same_row(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(_same_number(a[k], b[k]) for k in a)


@dataclass
class Imported:
    """What an import wrote: per scenario its folder and number of runs, and the counts of everything."""

    campaign: str
    scenarios: dict[str, tuple[str, int]]  # scenario -> (folder, runs)
    events: int
    power_seconds: int
    hardware_rows: int
    clock: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        scenarios = ", ".join(f"{s} ({folder}, {runs} runs)" if s != folder else f"{s} ({runs} runs)"
                              for s, (folder, runs) in self.scenarios.items())
        return (f"imported campaign {self.campaign}: {scenarios}; {self.events} events, {self.power_seconds} seconds "
                f"of power, {self.hardware_rows} hardware rows; stamps read as {self.clock}")


def import_oscar(root: str | Path, store_path: str | Path, campaign: str, host: str = "oscar",
                 baseline: str | None = None, timezone: str | None = None) -> Imported:
    """Read an OSCAR measurement (a folder per scenario, or one scenario's folder) into the embedded store
    ``store_path`` as ``campaign``: everything is read and checked first, then written, or nothing is."""
    root = Path(root)
    if not root.is_dir():
        raise MltelemetryError(f"--import-oscar {root}: not a directory")
    if "://" in str(store_path):
        raise MltelemetryError("--import-oscar writes into an embedded store: give a file as --source")
    clock = Clock.named(timezone)
    folders = find_folders(root)
    scenario_of = _scenarios(folders, baseline)
    events: list[Event] = []
    power: dict[int, float] = {}
    hardware: dict[int, dict[str, float]] = {}
    power_from: dict[int, Path] = {}
    hardware_from: dict[int, Path] = {}
    runs_at: list[tuple[int, int, str, int, Path]] = []
    notes = []
    counts: dict[str, tuple[str, int]] = {}
    for f in folders:
        scenario = scenario_of[f.scenario]
        runs = read_actions(f.actions, clock)
        _merge(power, power_from, read_power(f.power, clock), f.power, _same_number, clock)
        if f.hardware is not None:
            _merge(hardware, hardware_from, read_hardware(f.hardware, clock), f.hardware, _same_row, clock)
        else:
            notes.append(f"{f.path} has no collectl file: no hardware figures for {scenario!r}")
        counts[scenario] = (f.scenario, len(runs))
        for number, run in enumerate(runs, start=1):
            runs_at.append((run.start, run.stop, scenario, run.line, f.actions))
            events.append(Event(campaign, scenario, number, "run", run.start, run.stop,
                                fields={"oscar_folder": f.path.name}))
            for name, start, stop in run.actions:
                epoch = _EPOCH_ACTION.fullmatch(name)
                if epoch:
                    events.append(Event(campaign, scenario, number, "epoch", start, stop, int(epoch.group(1))))
                else:
                    events.append(Event(campaign, scenario, number, f"{name} (action)"
                                        if name.lower() in RESERVED_ACTIONS else name, start, stop))
    runs_at.sort()
    for (_, stop, scenario, _, path), (start, _, other, line, other_path) in zip(runs_at, runs_at[1:]):
        if start < stop:
            raise MltelemetryError(f"{other_path}:{line}: this run of {other!r} overlaps a run of {scenario!r} "
                                   f"({path}): one machine runs one scenario at a time")
    notes += _runs_without_power(runs_at, power, clock)
    with Store(store_path) as store:
        if campaign in store.campaigns():
            raise MltelemetryError(f"campaign {campaign!r} already exists in {store_path}; import under a new name")
        store.write(power_samples(power, host) + hardware_samples(hardware, host))
        store.write_events(events)
    return Imported(campaign, counts, len(events), sum(math.isfinite(v) for v in power.values()), len(hardware),
                    f"the zone {clock.zone.key}" if clock.zone else "the SUT's local time, stored as UTC", notes)


def _runs_without_power(runs_at: list[tuple[int, int, str, int, Path]], power: dict[int, float],
                        clock: Clock) -> list[str]:
    """Per scenario, the runs with no power reading at all: most often a power file of another day, or one
    exported in another clock (UTC against local time)."""
    seconds = np.array(sorted(t for t, w in power.items() if math.isfinite(w)), np.int64)
    missing: dict[str, list[int]] = {}
    for start, stop, scenario, line, _ in runs_at:
        if np.searchsorted(seconds, stop, "left") == np.searchsorted(seconds, start - S + 1, "left"):
            missing.setdefault(scenario, []).append(line)
    span = (f"{clock.wall(int(seconds[0])):%Y-%m-%d %H:%M:%S} – {clock.wall(int(seconds[-1]) + S):%H:%M:%S}"
            if len(seconds) else "nothing")
    return [f"{len(lines)} run(s) of {scenario!r} have no power reading (the power files cover {span}): another "
            "day's file, or another clock?" for scenario, lines in missing.items()]


def _scenarios(folders: list[Folder], baseline: str | None) -> dict[str, str]:
    """Folder name -> scenario: the baseline folder becomes ``baseline``, the others keep their names."""
    names = [f.scenario for f in folders]
    wanted = baseline or BASELINE_SCENARIO
    matches = [n for n in names if n == wanted] or [n for n in names if n.casefold() == wanted.casefold()]
    if baseline and not matches:
        raise MltelemetryError(f"--baseline {baseline!r}: no such scenario folder (there: {', '.join(names)})")
    if len(matches) > 1:
        raise MltelemetryError(f"folders {', '.join(matches)} could each be the baseline: name one with --baseline")
    mapping = {n: n for n in names}
    if matches:
        others = [n for n in names if n != matches[0] and n.casefold() == BASELINE_SCENARIO]
        if others:
            raise MltelemetryError(f"--baseline {baseline!r}, but the folder {others[0]!r} is named like the baseline: "
                                   "rename one of them")
        mapping[matches[0]] = BASELINE_SCENARIO
    return mapping


# --- per-second power of a stored campaign ---------------------------------------------------------------
def _series(source: Source, metric: str, labels: dict | None, lo: int, hi: int) -> list[Series]:
    return split_series(source.query(metric, labels, lo - 60 * S, hi + 60 * S))


def per_second_watts(source: Source, labels: dict | None, starts: np.ndarray) -> np.ndarray | None:
    """The meter's mean power over each second from ``starts``; None when there is no meter series. NaN where
    unknown: a second inside a gap of the samples, or holding a reset across one (the analysis' own rules), or
    one in which the meter gave no valid reading (its gap counter rose: the energy counter stood still there)."""
    lo, hi = int(starts[0]), int(starts[-1]) + S
    meters = _series(source, schema.PM_ENERGY, labels, lo, hi)
    if meters:
        watts = energy_of(meters, starts, starts + S)
    else:
        gauges = _series(source, schema.PM_POWER, labels, lo, hi)
        if not gauges:
            return None
        watts = np.sum([window_means(s.ts, s.values, starts, starts + S - 1) for s in gauges], axis=0)
    gaps = _series(source, schema.PM_GAP, labels, lo, hi)
    if gaps:
        with np.errstate(invalid="ignore"):
            watts[energy_of(gaps, starts, starts + S) > 0] = np.nan
    return watts


# --- export --------------------------------------------------------------------------------------------------
@dataclass
class Exported:
    folders: list[Path]
    notes: list[str]


def export_oscar(source, result: CampaignAnalysis | str, out: str | Path, host: str | None = None,
                 timezone: str | None = None) -> Exported:
    """Write one folder of OSCAR files (action log, power file, collectl file) per scenario of the campaign's ok
    runs into ``out`` (a new or empty folder); local time of ``timezone``, else UTC."""
    source: Source = open_source(source)
    campaign = result if isinstance(result, str) else result.campaign
    clock = Clock.named(timezone)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MltelemetryError(f"--export-oscar {out}: is a file; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise MltelemetryError(f"--export-oscar {out}: is not empty; give a new or empty folder (an import reads "
                               "every sub-folder)")
    events = source.events(campaign)
    runs = [e for e in events if e.action == "run"]
    if not runs:
        raise MltelemetryError(f"no runs of campaign {campaign!r} in {source.description}")
    notes = []
    not_ok = [r for r in runs if r.status != "ok"]
    if not_ok:
        which = ", ".join(f"{r.scenario} run {r.run}: {r.status}" for r in not_ok)
        notes.append(f"{len(not_ok)} run(s) not ok left out ({which}); OSCAR gets the ok ones")
    runs = sorted((r for r in runs if r.status == "ok" and r.end_ns > r.start_ns), key=lambda r: r.start_ns)
    if not runs:
        raise MltelemetryError(f"campaign {campaign!r} has no ok runs to export")
    epochs = sum(e.action == "epoch" for e in events)
    if epochs:
        notes.append(f"{epochs} epoch window(s) not written: OSCAR's actions do not nest (the actions around them "
                     "are)")
    labels = {"host": host} if host else None
    out.mkdir(parents=True, exist_ok=True)
    folders, taken = [], set()
    for scenario in dict.fromkeys(r.scenario for r in runs):
        name = path_name(scenario)
        unique, k = name, 1
        while unique.casefold() in taken:  # a/b and a_b, or Baseline and baseline on a case-blind disk
            k += 1
            unique = f"{name}-{k}"
        taken.add(unique.casefold())
        if unique != scenario:
            notes.append(f"scenario {scenario!r} written to the folder {unique!r}")
        folder = out / unique
        folder.mkdir()
        mine = [r for r in runs if r.scenario == scenario]
        notes += _write_actions(folder / "actions.csv", mine, events, clock)
        lo = (mine[0].start_ns // S - MARGIN_S) * S
        hi = (max(r.end_ns for r in mine) // S + 1 + MARGIN_S) * S
        starts = np.arange(lo, hi, S, dtype=np.int64)
        watts = per_second_watts(source, labels, starts)
        if watts is None:
            raise MltelemetryError(f"scenario {scenario!r} has no power-meter series: OSCAR needs the power file")
        _write_power(folder / "power.csv", starts, watts, clock)
        _write_hardware(folder / "collectl.csv", source, labels, starts, clock)
        folders.append(folder)
    return Exported(folders, notes)


def _write_actions(path: Path, runs: list[Event], events: list[Event], clock: Clock) -> list[str]:
    """startTestrun, the run's actions (inside it, in order, not overlapping), stopTestrun; returns notes."""
    def stamp(ns: int) -> str:
        return f"{clock.wall(ns):%Y-%m-%d %H:%M:%S.%f}"[:-3]

    lines, notes = [], []
    for run in runs:
        inside = sorted((e for e in events if e.scenario == run.scenario and e.run == run.run
                         and e.action not in RESERVED_ACTIONS and run.start_ns <= e.start_ns <= e.end_ns <= run.end_ns),
                        key=lambda e: e.start_ns)
        lines.append(f"{stamp(run.start_ns)};{START_RUN}")
        free_from = run.start_ns
        for e in inside:
            if e.start_ns < free_from:
                notes.append(f"{run.scenario} run {run.run}: action {e.action!r} overlaps the one before: not written")
                continue
            name = cell(e.action)
            if name != e.action:
                notes.append(f"{run.scenario} run {run.run}: action {e.action!r} written as {name!r}")
            lines += [f"{stamp(e.start_ns)};{START_ACTION};{name}", f"{stamp(e.end_ns)};{STOP_ACTION}"]
            free_from = e.end_ns
        lines.append(f"{stamp(run.end_ns)};{STOP_RUN}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sorted(set(notes), key=notes.index)


def _german(value: float, digits: int, trim: bool = False) -> str:
    """A number with a decimal comma (blank when unknown); ``trim`` drops trailing zeros."""
    if not math.isfinite(value):
        return ""
    text = f"{value:.{digits}f}"
    return (text.rstrip("0").rstrip(".") if trim and "." in text else text).replace(".", ",")


def _write_power(path: Path, starts: np.ndarray, watts: np.ndarray, clock: Clock) -> None:
    """GridVis' layout; min and max per second are not known here, so their cells stay empty."""
    lines = [POWER_TITLE, POWER_HEADER]
    for i, (t, w) in enumerate(zip(starts, watts), start=1):
        lines.append(f"{i};{clock.wall(int(t)):%d.%m.%y, %H:%M:%S};{_german(w, 3)};;;")
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))


def _write_hardware(path: Path, source: Source, labels: dict | None, starts: np.ndarray, clock: Clock) -> None:
    """collectl formatted for OSCAR: each row the second that ends at its stamp (gauges: the samples inside it;
    disk and network: the counter's increase in KB)."""
    lo, hi = int(starts[0]), int(starts[-1]) + S
    ends = starts + S

    def gauge(metric: str, extra: dict) -> np.ndarray:
        series = _series(source, metric, {**(labels or {}), **extra}, lo, hi)
        if not series:
            return np.full(len(starts), np.nan)
        return np.sum([window_means(s.ts, s.values, starts + 1, ends) for s in series], axis=0)

    cpu = gauge(schema.HOST_CPU_TOTAL_UTILIZATION, {})
    if np.isnan(cpu).all():  # as stored before 0.2
        cpu = gauge(schema.HOST_CPU_UTILIZATION, {"cpu": "total"})
    cpu = cpu * 100
    columns = {"[CPU]Totl%": cpu, "[CPU]Idle%": 100 - cpu, "[MEM]Used": gauge(schema.HOST_MEMORY_USED, {}) / 1024}
    for name in EXPORTED_HARDWARE[3:]:
        series = _series(source, HARDWARE[name][0], labels, lo, hi)
        columns[name] = energy_of(series, starts, ends) / 1024 if series else np.full(len(starts), np.nan)
    lines = ["Date Time;" + ";".join(EXPORTED_HARDWARE)]
    for i, end in enumerate(ends):
        values = ";".join(_german(columns[c][i], 6, trim=True) for c in EXPORTED_HARDWARE)
        lines.append(f"{clock.wall(int(end)):%d.%m.%Y %H:%M:%S};{values}")
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))


# --- OSCAR's report figures beside ours ---------------------------------------------------------------------
OSCAR_LABELS = {
    "oscar_energy_wh": "OSCAR: mean over runs of Σ per-second watts / 3600 (the rows whose stamp t has "
                       "start ≤ t < stop)",
    "oscar_mean_power_w": "OSCAR: mean over runs of the mean of those per-second watts",
    "oscar_corrected_wh": "OSCAR: mean run energy − mean baseline run energy (not adjusted for duration)",
    "energy_wh": "mltelemetry: mean run energy (meter counter at the run's edges)",
    "induced_wh": "mltelemetry: mean induced energy (energy − baseline power × the run's duration)",
    "missing_s": "seconds inside the runs without a power reading (left out of OSCAR's sums)",
}


def oscar_figures(source, result: CampaignAnalysis, host: str | None = None) -> pd.DataFrame:
    """Per scenario over its ok runs: OSCAR's mean run energy, mean power and corrected energy, beside the
    analysis' mean energy and duration-adjusted induced energy (``OSCAR_LABELS`` says what each is)."""
    source = open_source(source)
    labels = {"host": host} if host else None
    runs = sorted((e for e in source.events(result.campaign)
                   if e.action == "run" and e.status == "ok" and e.end_ns > e.start_ns), key=lambda e: e.start_ns)
    per_run = []
    for run in runs:
        starts = np.arange(-(-run.start_ns // S) * S, run.end_ns, S, dtype=np.int64)  # whole seconds in [start, stop)
        watts = per_second_watts(source, labels, starts) if len(starts) else np.array([])
        if watts is None:
            continue
        known = watts[np.isfinite(watts)]
        per_run.append({"scenario": run.scenario, "energy": known.sum() / J_PER_WH,
                        "power": known.mean() if len(known) else math.nan, "missing": len(watts) - len(known)})
    frame = pd.DataFrame(per_run, columns=["scenario", "energy", "power", "missing"])
    ours = result.summary[result.summary.action == "run"].set_index("scenario")
    rows = []
    for scenario, group in frame.groupby("scenario", sort=False):
        rows.append({"scenario": scenario, "runs": len(group), "oscar_energy_wh": group.energy.mean(),
                     "oscar_mean_power_w": group.power.mean(), "missing_s": int(group.missing.sum()),
                     "energy_wh": ours["energy_wh_mean"].get(scenario, math.nan),
                     "induced_wh": ours["induced_wh_mean"].get(scenario, math.nan)})
    table = pd.DataFrame(rows, columns=["scenario", "runs", "oscar_energy_wh", "oscar_mean_power_w",
                                        "oscar_corrected_wh", "energy_wh", "induced_wh", "missing_s"])
    baseline = table.loc[table.scenario == BASELINE_SCENARIO, "oscar_energy_wh"]
    table["oscar_corrected_wh"] = table.oscar_energy_wh - (baseline.iloc[0] if len(baseline) else math.nan)
    return table
