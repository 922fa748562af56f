"""The embedded store: samples and events in one SQLite file (WAL mode).

Several exporter processes write at once while the analysis reads. Each ``write`` is one
committed transaction, so a writer killed with SIGKILL loses only what it had not yet
written (the sinks flush at least once a second) and the file stays readable. A write the
file does not take (disk full, read-only, damaged) raises :class:`StoreWriteError` naming the
file and the cause, and nothing of it is stored; the writer's caches only ever hold what was
committed, so the next write cannot file a sample under another series' id. One ``Store`` may be
shared by threads: a lock serialises its use of the one connection.

Layout: recent samples of a series sit in ``samples`` (one row each); once a series has
``CHUNK_SAMPLES`` of them they move, in the same transaction, into one compressed row of
``chunks`` (delta-coded timestamps and byte-shuffled float64 values, zlib). That keeps months
of 1 Hz data small on disk and a window query down to a couple of rows per series.

``samples`` is ordered by time, then series (its primary key): a write, which holds the same few seconds of
every series, adds rows at the end of one B-tree and changes a handful of pages. Ordered by series first (stores
made before 2026-12-02), each series' rows sit on their own page and a host exporter's write of 34 series changed
39 pages of 4 KiB, written to the WAL and again at the checkpoint, on the disk the host exporter measures. Both
orders are read and written by the same statements.

The write path is plain Python (struct, zlib): an exporter writing here imports no numpy, which would double
its memory. numpy and pandas are imported where the store is read.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import sqlite3
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mltelemetry.errors import MltelemetryError, StoreWriteError
from mltelemetry.schema import Event, Sample

if TYPE_CHECKING:  # numpy and pandas only where the store is read: exporters write without them
    import numpy as np
    import pandas as pd

CHUNK_SAMPLES = 600
_row_key = operator.itemgetter(0, 1)  # a head row's (ts_ns, series id): its primary key
_IDS_PER_STATEMENT = 500  # series ids bound in one IN (...): SQLite before 3.32 takes 999 parameters at most
OPEN_WAIT_S = 60.0  # how long opening waits for another process that holds the file (sqlite3's busy timeout)


def _id_groups(ids: Sequence[int]) -> Iterator[tuple[list[int], str]]:
    """``ids`` in groups of at most _IDS_PER_STATEMENT, each with its ``?,?,...`` for an ``IN (...)``."""
    for first in range(0, len(ids), _IDS_PER_STATEMENT):
        group = list(ids[first:first + _IDS_PER_STATEMENT])
        yield group, ",".join("?" * len(group))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, metric TEXT NOT NULL, labels TEXT NOT NULL, UNIQUE (metric, labels));
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL, ts_ns INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (ts_ns, series_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, t_start INTEGER NOT NULL, t_end INTEGER NOT NULL,
    n INTEGER NOT NULL, data BLOB NOT NULL);
DROP INDEX IF EXISTS chunks_by_series_time;
CREATE INDEX IF NOT EXISTS chunks_by_series_span ON chunks (series_id, t_start, t_end);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, campaign TEXT NOT NULL, scenario TEXT NOT NULL, run INTEGER NOT NULL,
    action TEXT NOT NULL, epoch INTEGER, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    status TEXT NOT NULL, fields TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_campaign ON events (campaign, start_ns);
"""
_TABLES = {"series", "samples", "chunks", "events"}


def labels_key(labels: dict[str, str]) -> str:
    """Canonical text form of a label set (sorted JSON), the identity of a series with its metric."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def _shuffle(packed: bytes) -> bytes:
    # Byte-shuffling puts the slowly changing high bytes of neighbouring numbers next to each other: byte 0 of
    # every 8-byte number, then byte 1 of every one, and so on.
    return b"".join(packed[i::8] for i in range(8))


def _unshuffle(raw: bytes, dtype: str) -> np.ndarray:
    import numpy as np

    return np.frombuffer(raw, np.uint8).reshape(8, -1).T.copy().view(dtype).ravel()


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def encode_chunk(ts_ns: Sequence[int], values: Sequence[float]) -> bytes:
    """zlib of the shuffled little-endian int64 deltas of the timestamps (the first 0) and float64 values."""
    ts = [int(t) for t in ts_ns]
    deltas = [0, *(b - a for a, b in zip(ts, ts[1:]))]
    if min(deltas) < _INT64_MIN or max(deltas) > _INT64_MAX:  # timestamps near both ends: wrap as numpy's int64 did
        deltas = [(d - _INT64_MIN) % 2**64 + _INT64_MIN for d in deltas]
    packed_deltas = struct.pack(f"<{len(deltas)}q", *deltas)
    packed_values = struct.pack(f"<{len(values)}d", *values)
    return zlib.compress(_shuffle(packed_deltas) + _shuffle(packed_values), 6)


def decode_chunk(data: bytes, t_start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    raw = zlib.decompress(data)
    deltas = _unshuffle(raw[: 8 * n], "<i8")
    values = _unshuffle(raw[8 * n:], "<f8")
    return t_start + np.cumsum(deltas), values


def newest_per_timestamp(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples in write order, sorted by time, a repeated timestamp kept once with its last (newest) value."""
    import numpy as np

    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    last = np.append(ts[1:] != ts[:-1], True) if len(ts) else np.zeros(0, bool)
    return ts[last], values[last]


# Python 3.10 has no sqlite_errorname: the messages SQLite gives for the codes we tell apart.
_ERROR_NAMES = {"database or disk is full": "SQLITE_FULL", "database disk image is malformed": "SQLITE_CORRUPT",
                "file is not a database": "SQLITE_NOTADB"}


def _error_name(e: sqlite3.Error) -> str:
    """SQLite's name of the error (SQLITE_FULL, SQLITE_CORRUPT, ...), "" where unknown."""
    return getattr(e, "sqlite_errorname", None) or _ERROR_NAMES.get(str(e), "")


def _os_reason(path: Path, mode: str) -> str | None:
    """Why ``path`` cannot be opened in ``mode``, as the OS says it (SQLite only says "unable to open");
    None when the OS can open it."""
    try:
        with open(path, mode):
            return None
    except OSError as e:
        return e.strerror or str(e)


class Store:
    """One store file. Open one ``Store`` per process, or share it between threads (a lock serialises them);
    SQLite serialises the writing processes."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise MltelemetryError(f"no store at {self.path}")
        try:
            self._db = sqlite3.connect(self.path, timeout=OPEN_WAIT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as e:  # a missing folder, no permission: say which
            raise MltelemetryError(f"cannot open the store {self.path}: "
                                   f"{_os_reason(self.path, 'ab' if create else 'rb') or e}") from e
        try:
            self._prepare(create)
        except sqlite3.OperationalError as e:  # a missing folder, no permission, locked for a minute
            self._db.close()
            raise MltelemetryError(f"cannot open the store {self.path}: "
                                   f"{_os_reason(self.path, 'ab' if create else 'rb') or e}") from e
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise MltelemetryError(f"{self.path} is not a readable mltelemetry store: {e}") from e
        except BaseException:
            self._db.close()
            raise
        self._lock = threading.RLock()  # one connection, shared by the threads that share this Store
        # Caches of committed facts only: ids of series that exist in the file, and the rows each series has
        # in the head table as far as this writer knows (another writer of the same series only makes the
        # count low, which delays compaction; compaction re-reads the real head).
        # (metric, *labels' items) → series id: labels in the order a sample gives them (another order of the same
        # labels adds a key for the same id)
        self._series_ids: dict[tuple, int] = {}
        self._head_counts: dict[int, int] | None = None  # read at the first write, for every series at once
        self.dropped_non_finite = 0  # samples refused by write() for a NAN or infinite value

    def _prepare(self, create: bool) -> None:
        """Check the file is a store (or empty, to create one), switch it to WAL and create the tables. SQLite
        answers the switch to WAL "database is locked" at once, without its busy wait, while another process
        opens the same new file: that is tried again, for as long as the busy wait would have waited."""
        deadline = time.monotonic() + OPEN_WAIT_S
        while True:
            try:
                tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                # A reader needs the events; a writer refuses a file with tables none of which is ours (another
                # application's database), and changes nothing in it (no tables, no WAL switch).
                if ("events" not in tables) if not create else (tables and not tables & _TABLES):
                    raise MltelemetryError(f"{self.path} is not an mltelemetry store (it has no events table)")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                # One transaction, so a second process opening the new file meanwhile sees no table or all of them.
                self._db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
                return
            except sqlite3.OperationalError as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT under the lock; on any error roll back (unless SQLite already did, as it
        does on a full disk) and raise what the file refused as StoreWriteError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield
                self._db.execute("COMMIT")
            except BaseException as e:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                if type(e) in (sqlite3.OperationalError, sqlite3.DatabaseError):  # not a bug (IntegrityError)
                    raise self._write_error(e) from e
                raise

    def _write_error(self, e: sqlite3.Error) -> StoreWriteError:
        name = _error_name(e)
        if name == "SQLITE_FULL":
            return StoreWriteError(f"cannot write to the store {self.path}: the disk is full", self.path, True)
        if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
            return StoreWriteError(f"cannot write to the store {self.path}: the file is damaged ({e})", self.path)
        return StoreWriteError(f"cannot write to the store {self.path}: {e}", self.path)

    def write(self, samples: Iterable[Sample]) -> int:
        """Write samples in one transaction; returns how many were written.

        All or nothing: on StoreWriteError none of them is stored.
        """
        with self._lock:
            ids = self._series_ids
            rows: list[tuple[int, int, float]] = []  # (ts_ns, series id, value): the head table's key order
            unknown: dict[tuple, list[Sample]] = {}  # samples of series not in the cache, by series
            for s in samples:
                if not math.isfinite(s.value):  # no sink may turn NAN or INF into a stored number
                    self.dropped_non_finite += 1
                    continue
                series = (s.metric, *s.labels.items())
                sid = ids.get(series)
                if sid is None:
                    unknown.setdefault(series, []).append(s)
                else:
                    rows.append((int(s.ts_ns), sid, float(s.value)))
            if not rows and not unknown:
                return 0
            # Ids and head counts learnt inside the transaction join the caches only once it committed: an id
            # created in a rolled-back transaction no longer exists and may be handed to another series next.
            new_ids: dict[tuple, int] = {}
            with self._write_transaction():
                if self._head_counts is None:  # one pass over the head, not one per series
                    self._head_counts = dict(self._db.execute(
                        "SELECT series_id, count(*) FROM samples GROUP BY series_id").fetchall())
                for series, series_samples in unknown.items():
                    first = series_samples[0]
                    sid = new_ids[series] = self._create_series(first.metric, labels_key(first.labels))
                    rows += [(int(s.ts_ns), sid, float(s.value)) for s in series_samples]
                written = len(rows)
                counts = self._head_counts
                new_counts = {sid: counts.get(sid, 0) + n for sid, n in Counter(sid for _, sid, _ in rows).items()}
                full = {sid for sid, n in new_counts.items() if n >= CHUNK_SAMPLES}  # heads this write fills
                if full:
                    due: dict[int, list[tuple[int, float]]] = defaultdict(list)
                    for t, sid, v in rows:
                        if sid in full:
                            due[sid].append((t, v))
                    rows = [row for row in rows if row[1] not in full]
                    new_counts.update(self._compact(due, rows))
                # in key order, appended at the B-tree's end; the sort is stable, so of one series' repeated
                # timestamp the newest (last) row is written last and is the one kept
                rows.sort(key=_row_key)
                self._db.executemany("INSERT OR REPLACE INTO samples (ts_ns, series_id, value) VALUES (?, ?, ?)",
                                     rows)
            ids.update(new_ids)
            counts.update(new_counts)
        return written

    def _create_series(self, metric: str, key: str) -> int:
        """The id of series (metric, labels key), inserted if new; call inside the write transaction."""
        self._db.execute("INSERT OR IGNORE INTO series (metric, labels) VALUES (?, ?)", (metric, key))
        return self._db.execute("SELECT id FROM series WHERE metric=? AND labels=?", (metric, key)).fetchone()[0]

    def _compact(self, full: dict[int, list[tuple[int, float]]],
                 head_rows: list[tuple[int, int, float]]) -> dict[int, int]:
        """Merge each series' head with its ``full[sid]`` rows and move every full chunk out; what stays in the head
        is added to ``head_rows``. Returns the rows left in each series' head. The series' heads are read and
        deleted in one pass over the head table (in its time order a series' rows are spread over all of it)."""
        db = self._db
        merged: dict[int, dict[int, float]] = {sid: {} for sid in full}
        for group, marks in _id_groups(list(full)):
            for sid, t, v in db.execute(f"SELECT series_id, ts_ns, value FROM samples WHERE series_id IN ({marks})",
                                        group):
                merged[sid][t] = v
            db.execute(f"DELETE FROM samples WHERE series_id IN ({marks})", group)
        chunk_rows, left = [], {}
        for sid, rows in full.items():
            merged[sid].update(rows)  # a repeated timestamp keeps the newest value
            ordered = sorted(merged[sid].items())  # by time (unique: the keys of a dict)
            whole = len(ordered) // CHUNK_SAMPLES * CHUNK_SAMPLES
            chunk_rows += [(sid, chunk[0][0], chunk[-1][0], CHUNK_SAMPLES,
                            encode_chunk([t for t, _ in chunk], [v for _, v in chunk]))
                           for chunk in (ordered[i:i + CHUNK_SAMPLES] for i in range(0, whole, CHUNK_SAMPLES))]
            head_rows += [(t, sid, v) for t, v in ordered[whole:]]
            left[sid] = len(ordered) - whole
        db.executemany("INSERT INTO chunks (series_id, t_start, t_end, n, data) VALUES (?, ?, ?, ?, ?)", chunk_rows)
        return left

    def write_events(self, events: Sequence[Event]) -> None:
        """Write events in one transaction: all of them or, on an error, none."""
        for e in events:
            if isinstance(e.campaign, str) and not e.campaign.strip():  # it could never be named to analyse it
                raise MltelemetryError("an event needs a campaign name; got an empty one")
        rows = [(e.campaign, e.scenario, e.run, e.action, e.epoch, e.start_ns, e.end_ns, e.status, e.fields_json())
                for e in events]
        with self._write_transaction():
            self._db.executemany(
                "INSERT INTO events (campaign, scenario, run, action, epoch, start_ns, end_ns, status, fields)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    # --- claims: an event written when its window opens, replaced when it closes ---------------------
    def claim_event(self, event: Event,
                    check: Callable[[list[tuple[int, Event]]], dict | None] | None = None) -> int:
        """Insert ``event`` and return its row id. ``check`` sees the campaign's events (row id, event) first,
        in the same write transaction, so no other process can claim in between; it raises to refuse, or
        returns fields to add to ``event``."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if check is not None:
                event.fields.update(check(self.event_rows(event.campaign)) or {})
            row = self._db.execute(
                "INSERT INTO events (campaign, scenario, run, action, epoch, start_ns, end_ns, status, fields)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (event.campaign, event.scenario, event.run, event.action,
                                                        event.epoch, event.start_ns, event.end_ns, event.status,
                                                        event.fields_json())).lastrowid
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return int(row)

    def replace_event(self, row: int, event: Event) -> None:
        """Overwrite the event in row ``row`` (a claim) with ``event``: one statement, one transaction."""
        self._db.execute("UPDATE events SET campaign=?, scenario=?, run=?, action=?, epoch=?, start_ns=?, end_ns=?,"
                         " status=?, fields=? WHERE id=?", (event.campaign, event.scenario, event.run, event.action,
                                                           event.epoch, event.start_ns, event.end_ns, event.status,
                                                           event.fields_json(), row))

    # --- reading --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Under the lock; a file SQLite cannot read (a damaged page) is a one-line error naming it."""
        with self._lock:
            try:
                yield
            except sqlite3.DatabaseError as e:
                if type(e) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
                    raise
                damaged = _error_name(e).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
                raise MltelemetryError(f"cannot read the store {self.path}: " + (
                    f"the file is damaged ({e}); `sqlite3 {self.path} .recover` may save what is left"
                    if damaged else str(e))) from e

    def series(self, metric: str | None = None, labels: dict[str, str] | None = None) -> list[tuple[int, str, dict]]:
        """Series ``(id, metric, labels)`` of ``metric`` whose labels include every pair of ``labels``."""
        sql, args = "SELECT id, metric, labels FROM series", ()
        if metric is not None:
            sql, args = sql + " WHERE metric=?", (metric,)
        found = []
        with self._reading():
            rows = self._db.execute(sql, args).fetchall()
        for sid, name, key in rows:
            series_labels = json.loads(key)
            if all(series_labels.get(k) == v for k, v in (labels or {}).items()):
                found.append((sid, name, series_labels))
        return found

    def query(self, metric: str, labels: dict[str, str] | None = None,
              start_ns: int | None = None, end_ns: int | None = None) -> pd.DataFrame:
        """Samples of every matching series in [start_ns, end_ns], sorted by series then time.

        Columns: ``ts_ns`` (int, UTC ns), ``value`` (float, base units) and one per label.
        """
        import pandas as pd

        lo = -(2**63) if start_ns is None else int(start_ns)
        hi = 2**63 - 1 if end_ns is None else int(end_ns)
        frames = []
        # One read transaction: a writer compacting the head into a chunk meanwhile is seen before or after, whole.
        with self._reading():
            self._db.execute("BEGIN")
            try:
                found = self.series(metric, labels)
                heads = self._read_heads([sid for sid, _, _ in found], lo, hi)
                for sid, _, series_labels in found:
                    ts, values = self._read_series(sid, lo, hi, heads.get(sid, []))
                    frame = pd.DataFrame({"ts_ns": ts, "value": values})
                    for k, v in series_labels.items():
                        frame[k] = v
                    frames.append(frame)
            finally:
                self._db.execute("COMMIT")
        if not frames:
            return pd.DataFrame({"ts_ns": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64")})
        return pd.concat(frames, ignore_index=True)

    def _read_heads(self, ids: list[int], lo: int, hi: int) -> dict[int, list[tuple[int, float]]]:
        """The head rows in [lo, hi] of the series ``ids``, by series: one pass over the time range for all of them
        (the head is in time order; one query per series would read the range once per series)."""
        heads: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for group, marks in _id_groups(ids):
            for sid, t, v in self._db.execute(
                    "SELECT series_id, ts_ns, value FROM samples WHERE ts_ns BETWEEN ? AND ?"
                    f" AND series_id IN ({marks})", (lo, hi, *group)):
                heads[sid].append((t, v))
        return heads

    def _read_series(self, sid: int, lo: int, hi: int,
                     head: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
        """The series' samples in [lo, hi]: its chunks there, then ``head`` (its head rows there)."""
        import numpy as np

        ts_parts, value_parts = [], []
        for t_start, n, data in self._db.execute(
                "SELECT t_start, n, data FROM chunks WHERE series_id=? AND t_start<=? AND t_end>=?"
                " ORDER BY id", (sid, hi, lo)):  # write order, so a late rewrite of a timestamp wins
            ts, values = decode_chunk(data, t_start, n)
            ts_parts.append(ts)
            value_parts.append(values)
        if head:
            ts_parts.append(np.array([t for t, _ in head], np.int64))
            value_parts.append(np.array([v for _, v in head], np.float64))
        if not ts_parts:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        ts, values = np.concatenate(ts_parts), np.concatenate(value_parts)
        keep = (ts >= lo) & (ts <= hi)
        return newest_per_timestamp(ts[keep], values[keep])

    def events(self, campaign: str | None = None) -> list[Event]:
        return [event for _, event in self.event_rows(campaign)]

    def event_rows(self, campaign: str | None = None) -> list[tuple[int, Event]]:
        """(row id, event) in time order; the row id is what :meth:`replace_event` takes."""
        sql = "SELECT id, campaign, scenario, run, action, epoch, start_ns, end_ns, status, fields FROM events"
        with self._reading():
            rows = self._db.execute(sql + " WHERE campaign=? ORDER BY start_ns, id" if campaign is not None
                                    else sql + " ORDER BY start_ns, id",
                                    (campaign,) if campaign is not None else ()).fetchall()
        return [(i, Event(campaign=c, scenario=s, run=r, action=a, epoch=ep, start_ns=t0, end_ns=t1, status=st,
                          fields=json.loads(f))) for i, c, s, r, a, ep, t0, t1, st, f in rows]

    def campaigns(self) -> list[str]:
        with self._reading():
            return [c for (c,) in self._db.execute("SELECT DISTINCT campaign FROM events ORDER BY campaign")]

    def series_spans(self) -> list[tuple[str, dict, int, int | None, int | None]]:
        """Every series as ``(metric, labels, samples, first ts_ns, last ts_ns)`` (None, None when it has none).

        Counts what is stored: a timestamp rewritten after it moved into a chunk counts twice."""
        spans: dict[int, list] = {sid: [0, None, None] for sid, _, _ in self.series()}
        rows = []
        with self._reading():  # one snapshot of both tables
            for table, count in (("samples", "count(*)"), ("chunks", "sum(n)")):
                lo, hi = ("min(ts_ns)", "max(ts_ns)") if table == "samples" else ("min(t_start)", "max(t_end)")
                rows += self._db.execute(
                    f"SELECT series_id, {count}, {lo}, {hi} FROM {table} GROUP BY series_id").fetchall()
        for sid, n, first, last in rows:
            span = spans.setdefault(sid, [0, None, None])
            span[0] += n
            span[1] = first if span[1] is None else min(span[1], first)
            span[2] = last if span[2] is None else max(span[2], last)
        return [(metric, labels, *spans[sid]) for sid, metric, labels in self.series()]
