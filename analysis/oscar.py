"""OSCAR interoperability: a campaign as OSCAR's three input files, and those files as a campaign.

OSCAR (the method authors' analysis tool) reads, per measured scenario, three semicolon-separated
files in German number and date formats. The layout written and read here, one folder per
scenario (``DIR/<scenario>/``), all times UTC:

- ``actions.csv`` — the action log: ``Zeitstempel;Aktion``, one line per event start
  (``27.11.2026 10:00:02,000;startTestrun``, then ``prepare_data``, ``epoch 1`` …), and
  ``stopTestrun`` at each run's end. An action lasts until the next line of its run.
- ``power.csv`` — ``Zeitstempel;Wirkleistung [W]``: the meter's mean power over the second that
  starts at the time stamp (``27.11.2026 10:00:02;100,00``), from the energy counter.
- ``collectl.csv`` — collectl's plot format (``collectl -P``): a ``#Date Time [CPU]Totl% …``
  header, space-separated rows ``20261127 10:00:03 …`` describing the second before their time:
  ``[CPU]Totl%``/``[CPU]Idle%``, ``[MEM]Used`` (KB), ``[DSK]ReadKBTot``/``[DSK]WriteKBTot`` and
  ``[NET]RxKBTot``/``[NET]TxKBTot`` (KB in that second).

Import turns power into the meter's energy counter (``meter="oscar"``), collectl into the host
series (gauges at the middle of their second) and the action log into events; the scenarios' files
describe one machine, so their seconds merge into one timeline (a second in two files is taken
from the first). An existing
OSCAR measurement is analysed here like any other campaign. The layout follows OSCAR's published
description (action log, per-second watts, collectl CSV); a file that does not parse gives one
line naming the file, the line and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mltelemetry import schema
from mltelemetry.analysis.campaign import CampaignAnalysis, Series, energy_of, split_series
from mltelemetry.analysis.energy import window_means
from mltelemetry.analysis.sources import Source, open_source
from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

S = 10**9
ACTIONS_FILE, POWER_FILE, COLLECTL_FILE = "actions.csv", "power.csv", "collectl.csv"
ACTIONS_HEADER, POWER_HEADER = "Zeitstempel;Aktion", "Zeitstempel;Wirkleistung [W]"
START_RUN, STOP_RUN = "startTestrun", "stopTestrun"
COLLECTL_COLUMNS = ["[CPU]Totl%", "[CPU]Idle%", "[MEM]Used", "[DSK]ReadKBTot", "[DSK]WriteKBTot", "[NET]RxKBTot",
                    "[NET]TxKBTot"]
MARGIN_S = 10  # seconds of power and usage written before the first run and after the last


def _german_time(ns: int, millis: bool) -> str:
    moment = datetime.fromtimestamp(ns // S, timezone.utc)
    text = moment.strftime("%d.%m.%Y %H:%M:%S")
    return f"{text},{(ns % S) // 10**6:03d}" if millis else text


def _german_number(value: float, digits: int) -> str:
    return "" if not math.isfinite(value) else f"{value:.{digits}f}".replace(".", ",")


def _parse_german_time(text: str) -> int:
    whole, _, fraction = text.strip().partition(",")
    moment = datetime.strptime(whole, "%d.%m.%Y %H:%M:%S").replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * S + (round(float("0." + fraction) * 1e3) * 10**6 if fraction else 0)


def _parse_number(text: str) -> float:
    text = text.strip()
    return float("nan") if text == "" else float(text.replace(",", "."))


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "_"


# --- export ---------------------------------------------------------------------------------------
def export_oscar(source, result: CampaignAnalysis | str, out: str | Path, host: str | None = None) -> list[Path]:
    """Write one folder of OSCAR input files per scenario of the campaign; returns the folders."""
    source: Source = open_source(source)
    campaign = result if isinstance(result, str) else result.campaign
    events = [e for e in source.events(campaign) if e.action != "campaign" and e.end_ns >= e.start_ns]
    if not events:
        raise MltelemetryError(f"no campaign {campaign!r} in {source.description}")
    host_labels = {"host": host} if host else None
    out = Path(out)
    folders = []
    for scenario in dict.fromkeys(e.scenario for e in events):
        mine = [e for e in events if e.scenario == scenario]
        lo = (min(e.start_ns for e in mine) // S - MARGIN_S) * S
        hi = (math.ceil(max(e.end_ns for e in mine) / S) + MARGIN_S) * S
        folder = out / _safe(scenario)
        folder.mkdir(parents=True, exist_ok=True)
        _write_actions(folder / ACTIONS_FILE, mine)
        _write_power(folder / POWER_FILE, source, host_labels, lo, hi, scenario)
        _write_collectl(folder / COLLECTL_FILE, source, host_labels, lo, hi)
        folders.append(folder)
    return folders


def _write_actions(path: Path, events: list[Event]) -> None:
    runs = []
    for run in dict.fromkeys(e.run for e in events):
        of_run = [e for e in events if e.run == run]
        whole = next((e for e in of_run if e.action == "run"), None)
        start = whole.start_ns if whole else min(e.start_ns for e in of_run)
        end = whole.end_ns if whole else max(e.end_ns for e in of_run)
        lines = [(start, 0, START_RUN), (end, 3, STOP_RUN)]
        for e in of_run:
            if e.action == "epoch" and e.epoch is not None:
                lines.append((e.start_ns, 2, f"epoch {e.epoch}"))
            elif e.action != "run":
                lines.append((e.start_ns, 1, e.action))
        # at one instant: the run starts, then an action, then the action's first epoch; the run stops last
        runs.append(sorted(lines, key=lambda x: (x[0], x[1])))
    body = [f"{_german_time(t, True)};{name}" for lines in sorted(runs) for t, _, name in lines]
    path.write_text("\n".join([ACTIONS_HEADER, *body]) + "\n", encoding="utf-8")


def _series(source: Source, metric: str, labels: dict | None, extra: dict, lo: int, hi: int):
    frame = source.query(metric, {**(labels or {}), **extra}, lo - 60 * S, hi + 60 * S)
    return [(s.ts, s.values) for s in split_series(frame)]


def _per_second_increase(series, starts: np.ndarray) -> np.ndarray:
    """The counters' increase over each second from ``starts``, by the analysis' own rules: a second inside a
    gap longer than the max gap, or holding a reset across one, is NaN (an empty cell), never spread evenly."""
    return energy_of([Series({}, ts, v) for ts, v in series], starts, starts + S)


def _write_power(path: Path, source: Source, labels, lo: int, hi: int, scenario: str) -> None:
    starts = np.arange(lo, hi, S, dtype=np.int64)
    meters = _series(source, schema.PM_ENERGY, labels, {}, lo, hi)
    if meters:
        power = _per_second_increase(meters, starts)
    else:
        gauges = _series(source, schema.PM_POWER, labels, {}, lo, hi)
        if not gauges:
            raise MltelemetryError(f"scenario {scenario!r} has no power-meter series: OSCAR needs the power file")
        power = np.sum([window_means(ts, v, starts, starts + S - 1) for ts, v in gauges], axis=0)
    lines = [POWER_HEADER] + [f"{_german_time(int(t), False)};{_german_number(p, 2)}" for t, p in zip(starts, power)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_collectl(path: Path, source: Source, labels, lo: int, hi: int) -> None:
    starts = np.arange(lo, hi, S, dtype=np.int64)
    cpu = (_series(source, schema.HOST_CPU_TOTAL_UTILIZATION, labels, {}, lo, hi)  # as stored before 0.2: ↓
           or _series(source, schema.HOST_CPU_UTILIZATION, labels, {"cpu": "total"}, lo, hi))
    memory = _series(source, schema.HOST_MEMORY_USED, labels, {}, lo, hi)
    # gauges: the samples inside the second (start, end], as collectl averages the interval it reports
    cpu_pct = window_means(*cpu[0], starts + 1, starts + S) * 100 if cpu else np.full(len(starts), np.nan)
    memory_kb = (np.sum([window_means(ts, v, starts + 1, starts + S) for ts, v in memory], axis=0) / 1024
                 if memory else np.full(len(starts), np.nan))
    kb = {c: _per_second_increase(_series(source, m, labels, {}, lo, hi), starts) / 1024 for c, m in (
        ("[DSK]ReadKBTot", schema.HOST_DISK_READ), ("[DSK]WriteKBTot", schema.HOST_DISK_WRITTEN),
        ("[NET]RxKBTot", schema.HOST_NET_RECEIVED), ("[NET]TxKBTot", schema.HOST_NET_TRANSMITTED))}
    columns = {"[CPU]Totl%": cpu_pct, "[CPU]Idle%": 100 - cpu_pct, "[MEM]Used": memory_kb, **kb}
    lines = ["#Date Time " + " ".join(COLLECTL_COLUMNS)]
    for i, start in enumerate(starts):
        end = datetime.fromtimestamp(int(start + S) // S, timezone.utc)
        values = " ".join("nan" if not np.isfinite(columns[c][i]) else f"{columns[c][i]:.6f}".rstrip("0").rstrip(".")
                          for c in COLLECTL_COLUMNS)
        lines.append(f"{end:%Y%m%d %H:%M:%S} {values}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- import ---------------------------------------------------------------------------------------
def scenario_folders(root: Path) -> list[tuple[str, Path]]:
    """(scenario, folder) pairs: ROOT itself when it holds the files, else every sub-folder that does."""
    if (root / ACTIONS_FILE).exists():
        return [(root.name, root)]
    found = [(p.name, p) for p in sorted(root.iterdir()) if p.is_dir() and (p / ACTIONS_FILE).exists()]
    if not found:
        raise MltelemetryError(f"{root} holds no OSCAR input ({ACTIONS_FILE}, {POWER_FILE}, {COLLECTL_FILE}), "
                               "neither itself nor in a sub-folder per scenario")
    return found


def _lines(path: Path, header: str | None) -> Iterable[tuple[int, str]]:
    if not path.exists():
        raise MltelemetryError(f"{path} is missing: OSCAR input needs {ACTIONS_FILE}, {POWER_FILE} and "
                               f"{COLLECTL_FILE}")
    text = path.read_text(encoding="utf-8-sig").splitlines()
    if header is not None and (not text or text[0].strip() != header):
        raise MltelemetryError(f"{path}:1: expected the header {header!r}, found {text[0].strip() if text else ''!r}")
    for number, line in enumerate(text[1:] if header is not None else text, start=2 if header is not None else 1):
        if line.strip():
            yield number, line


def read_actions(path: Path, campaign: str, scenario: str) -> list[Event]:
    """Events from an action log. An ``epoch N`` line ends the epoch before it; any other action line ends the
    open action and epoch; ``stopTestrun`` ends everything of its run (so ``train`` spans its epochs)."""
    events: list[Event] = []
    run, run_start = 0, None
    open_action: tuple[str, int] | None = None
    open_epoch: tuple[int, int] | None = None

    def close_epoch(end: int) -> None:
        nonlocal open_epoch
        if open_epoch is not None:
            events.append(Event(campaign, scenario, run, "epoch", open_epoch[1], end, open_epoch[0]))
            open_epoch = None

    def close_action(end: int) -> None:
        nonlocal open_action
        close_epoch(end)
        if open_action is not None:
            events.append(Event(campaign, scenario, run, open_action[0], open_action[1], end))
            open_action = None

    for number, line in _lines(path, ACTIONS_HEADER):
        try:
            stamp, action = line.split(";", 1)
            t = _parse_german_time(stamp)
        except ValueError:
            raise MltelemetryError(f"{path}:{number}: expected 'DD.MM.YYYY HH:MM:SS,mmm;action', found "
                                   f"{line.strip()!r}") from None
        action = action.strip()
        name, _, number_text = action.partition(" ")
        if action == START_RUN:
            if run_start is not None:
                raise MltelemetryError(f"{path}:{number}: {START_RUN} before the {STOP_RUN} of run {run}")
            run, run_start = run + 1, t
        elif run_start is None:
            raise MltelemetryError(f"{path}:{number}: {action!r} outside a test run ({START_RUN} … {STOP_RUN})")
        elif action == STOP_RUN:
            close_action(t)
            events.append(Event(campaign, scenario, run, "run", run_start, t))
            run_start = None
        elif name == "epoch" and number_text.strip().isdigit():
            close_epoch(t)
            open_epoch = (int(number_text), t)
        else:
            close_action(t)
            open_action = (action, t)
    if run_start is not None:
        raise MltelemetryError(f"{path}: run {run} has no {STOP_RUN}")
    return events


def read_power(path: Path) -> dict[int, float]:
    """Mean watts by the start (UTC ns) of their second."""
    rows: dict[int, float] = {}
    for number, line in _lines(path, POWER_HEADER):
        try:
            stamp, watts = line.split(";", 1)
            rows[_parse_german_time(stamp)] = _parse_number(watts)
        except ValueError:
            raise MltelemetryError(f"{path}:{number}: expected 'DD.MM.YYYY HH:MM:SS;watts', found "
                                   f"{line.strip()!r}") from None
    return rows


def read_collectl(path: Path) -> dict[int, dict[str, float]]:
    """collectl's values by the end (UTC ns) of the second they describe."""
    lines = iter(_lines(path, None))
    try:
        number, header = next(lines)
    except StopIteration:
        raise MltelemetryError(f"{path}: empty; expected collectl's '#Date Time …' header") from None
    names = header.lstrip("#").split()
    if names[:2] != ["Date", "Time"]:
        raise MltelemetryError(f"{path}:{number}: expected collectl's '#Date Time …' header")
    rows: dict[int, dict[str, float]] = {}
    for number, line in lines:
        fields = line.split()
        try:
            t = int(datetime.strptime(f"{fields[0]} {fields[1]}", "%Y%m%d %H:%M:%S")
                    .replace(tzinfo=timezone.utc).timestamp()) * S
            rows[t] = {name: _parse_number(fields[i]) for i, name in enumerate(names) if i >= 2}
        except (ValueError, IndexError):
            raise MltelemetryError(f"{path}:{number}: expected 'YYYYMMDD HH:MM:SS' and one number per column, "
                                   f"found {line.strip()!r}") from None
    return rows


def power_samples(rows: dict[int, float], host: str) -> list[Sample]:
    """The meter's energy counter at the edges of every second with a reading, and its power.

    A second whose cell is blank gets no counter sample (its energy is unknown, so the counter has a
    gap there rather than a flat stretch), and when there are such seconds the meter's gap counter
    (``pm_gap_seconds_total``) counts them, so a window holding one is flagged.
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


def collectl_samples(rows: dict[int, dict[str, float]], host: str) -> list[Sample]:
    """Host series: gauges at the middle of their second, byte counters at its edges."""
    counters = {"[DSK]ReadKBTot": (schema.HOST_DISK_READ, {"device": "oscar"}),
                "[DSK]WriteKBTot": (schema.HOST_DISK_WRITTEN, {"device": "oscar"}),
                "[NET]RxKBTot": (schema.HOST_NET_RECEIVED, {"interface": "oscar"}),
                "[NET]TxKBTot": (schema.HOST_NET_TRANSMITTED, {"interface": "oscar"})}
    totals = dict.fromkeys(counters, 0.0)
    samples = []
    times = sorted(rows)
    for i, t in enumerate(times):
        values, middle = rows[t], t - S // 2
        if math.isfinite(values.get("[CPU]Totl%", math.nan)):
            samples.append(Sample(schema.HOST_CPU_TOTAL_UTILIZATION, {"host": host}, values["[CPU]Totl%"] / 100,
                                  middle))
        if math.isfinite(values.get("[MEM]Used", math.nan)):
            samples.append(Sample(schema.HOST_MEMORY_USED, {"host": host}, values["[MEM]Used"] * 1024, middle))
        for column, (metric, extra) in counters.items():
            if column not in values:
                continue
            if i == 0 or times[i - 1] != t - S:
                samples.append(Sample(metric, {"host": host, **extra}, totals[column], t - S))
            if math.isfinite(values[column]):
                totals[column] += values[column] * 1024
            samples.append(Sample(metric, {"host": host, **extra}, totals[column], t))
    return samples


def import_oscar(root: str | Path, store_path: str | Path, campaign: str, host: str = "oscar") -> int:
    """Read OSCAR input files from ``root`` into the embedded store ``store_path`` as ``campaign``.

    Returns the number of events written. A campaign already in the store is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise MltelemetryError(f"--import-oscar {root}: not a directory")
    if "://" in str(store_path):
        raise MltelemetryError("--import-oscar writes into an embedded store: give a file as --source")
    events, power, usage = [], {}, {}
    for scenario, folder in scenario_folders(root):  # one machine: the scenarios' seconds merge into one timeline
        events += read_actions(folder / ACTIONS_FILE, campaign, scenario)
        for t, watts in read_power(folder / POWER_FILE).items():
            power.setdefault(t, watts)
        for t, values in read_collectl(folder / COLLECTL_FILE).items():
            usage.setdefault(t, values)
    with Store(store_path) as store:
        if campaign in store.campaigns():
            raise MltelemetryError(f"campaign {campaign!r} already exists in {store_path}; import under a new name")
        store.write(power_samples(power, host) + collectl_samples(usage, host))
        store.write_events(events)
    return len(events)
