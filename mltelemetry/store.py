"""The embedded store: samples and events in one SQLite file (WAL mode).

Several exporter processes write at once while the analysis reads. Each ``write`` is one
committed transaction, so a writer killed with SIGKILL loses only what it had not yet
written (the sinks flush at least once a second) and the file stays readable.

Layout: recent samples of a series sit in ``samples`` (one row each); once a series has
``CHUNK_SAMPLES`` of them they move, in the same transaction, into one compressed row of
``chunks`` (delta-coded timestamps and byte-shuffled float64 values, zlib). That keeps months
of 1 Hz data small on disk and a window query down to a couple of rows per series.
"""

from __future__ import annotations

import json
import math
import sqlite3
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import Event, Sample

if TYPE_CHECKING:  # pandas only where the store is read: exporters write without it
    import pandas as pd

CHUNK_SAMPLES = 600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, metric TEXT NOT NULL, labels TEXT NOT NULL, UNIQUE (metric, labels));
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL, ts_ns INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (series_id, ts_ns)) WITHOUT ROWID;
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


def labels_key(labels: dict[str, str]) -> str:
    """Canonical text form of a label set (sorted JSON), the identity of a series with its metric."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def _shuffle(array: np.ndarray) -> bytes:
    # Byte-shuffling puts the slowly changing high bytes of neighbouring numbers next to each other.
    return array.view(np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffle(raw: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(raw, np.uint8).reshape(8, -1).T.copy().view(dtype).ravel()


def encode_chunk(ts_ns: np.ndarray, values: np.ndarray) -> bytes:
    deltas = np.diff(ts_ns.astype("<i8"), prepend=ts_ns[0])
    return zlib.compress(_shuffle(deltas) + _shuffle(values.astype("<f8")), 6)


def decode_chunk(data: bytes, t_start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    raw = zlib.decompress(data)
    deltas = _unshuffle(raw[: 8 * n], "<i8")
    values = _unshuffle(raw[8 * n:], "<f8")
    return t_start + np.cumsum(deltas), values


def newest_per_timestamp(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples in write order, sorted by time, a repeated timestamp kept once with its last (newest) value."""
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    last = np.append(ts[1:] != ts[:-1], True) if len(ts) else np.zeros(0, bool)
    return ts[last], values[last]


class Store:
    """One store file. Open one ``Store`` per process (or thread); SQLite serialises the writers."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise MltelemetryError(f"no store at {self.path}")
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            if not create and self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='events'").fetchone() is None:
                self._db.close()  # another application's database: change nothing in it
                raise MltelemetryError(f"{self.path} is not an mltelemetry store (it has no events table)")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise MltelemetryError(f"{self.path} is not a readable mltelemetry store: {e}") from e
        self._series_ids: dict[tuple[str, str], int] = {}
        # Rows each series has in the head table, as far as this writer knows. Another writer of the same
        # series only makes the count low, which delays compaction; compaction re-reads the real head.
        self._head_counts: dict[int, int] = {}
        self._label_keys: dict[tuple[tuple[str, str], ...], str] = {}  # labels_key is most of a write's cost
        self.dropped_non_finite = 0  # samples refused by write() for a NAN or infinite value

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing --------------------------------------------------------------------------
    def _series_id(self, metric: str, key: str) -> int:
        sid = self._series_ids.get((metric, key))
        if sid is None:
            self._db.execute("INSERT OR IGNORE INTO series (metric, labels) VALUES (?, ?)", (metric, key))
            sid = self._db.execute("SELECT id FROM series WHERE metric=? AND labels=?", (metric, key)).fetchone()[0]
            self._series_ids[(metric, key)] = sid
        return sid

    def write(self, samples: Iterable[Sample]) -> int:
        """Write samples in one transaction; returns how many were written."""
        by_series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        keys = self._label_keys
        for s in samples:
            if not math.isfinite(s.value):  # no sink may turn NAN or INF into a stored number
                self.dropped_non_finite += 1
                continue
            items = tuple(s.labels.items())
            key = keys.get(items)
            if key is None:
                key = keys[items] = labels_key(s.labels)
            by_series[(s.metric, key)].append((int(s.ts_ns), float(s.value)))
        if not by_series:
            return 0
        head_rows: list[tuple[int, int, float]] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for (metric, key), rows in by_series.items():
                sid = self._series_id(metric, key)
                in_head = self._head_counts.get(sid)
                if in_head is None:
                    in_head = self._db.execute("SELECT count(*) FROM samples WHERE series_id=?", (sid,)).fetchone()[0]
                if in_head + len(rows) < CHUNK_SAMPLES:
                    head_rows += [(sid, t, v) for t, v in rows]
                    self._head_counts[sid] = in_head + len(rows)
                else:
                    self._head_counts[sid] = self._compact(sid, rows)
            self._db.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", head_rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._series_ids.clear()  # ids created inside the rolled-back transaction are gone
            self._head_counts.clear()
            raise
        return sum(len(rows) for rows in by_series.values())

    def _compact(self, sid: int, rows: list[tuple[int, float]]) -> int:
        """Merge the series' head with ``rows`` and move every full chunk out; returns the rows left in the head."""
        db = self._db
        head = db.execute("SELECT ts_ns, value FROM samples WHERE series_id=?", (sid,)).fetchall()
        db.execute("DELETE FROM samples WHERE series_id=?", (sid,))
        merged = dict(head)
        merged.update(rows)  # a repeated timestamp keeps the newest value
        ts = np.fromiter(merged.keys(), np.int64, len(merged))
        values = np.fromiter(merged.values(), np.float64, len(merged))
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
        full = len(ts) // CHUNK_SAMPLES * CHUNK_SAMPLES
        db.executemany(
            "INSERT INTO chunks (series_id, t_start, t_end, n, data) VALUES (?, ?, ?, ?, ?)",
            [(sid, int(ts[i]), int(ts[i + CHUNK_SAMPLES - 1]), CHUNK_SAMPLES,
              encode_chunk(ts[i:i + CHUNK_SAMPLES], values[i:i + CHUNK_SAMPLES]))
             for i in range(0, full, CHUNK_SAMPLES)])
        db.executemany("INSERT INTO samples VALUES (?, ?, ?)",
                       [(sid, int(t), float(v)) for t, v in zip(ts[full:], values[full:])])
        return len(ts) - full

    def write_events(self, events: Sequence[Event]) -> None:
        """Write events in one transaction: all of them or, on an error, none."""
        rows = [(e.campaign, e.scenario, e.run, e.action, e.epoch, e.start_ns, e.end_ns, e.status, e.fields_json())
                for e in events]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO events (campaign, scenario, run, action, epoch, start_ns, end_ns, status, fields)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # --- reading --------------------------------------------------------------------------
    def series(self, metric: str | None = None, labels: dict[str, str] | None = None) -> list[tuple[int, str, dict]]:
        """Series ``(id, metric, labels)`` of ``metric`` whose labels include every pair of ``labels``."""
        sql, args = "SELECT id, metric, labels FROM series", ()
        if metric is not None:
            sql, args = sql + " WHERE metric=?", (metric,)
        found = []
        for sid, name, key in self._db.execute(sql, args):
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
        self._db.execute("BEGIN")
        try:
            for sid, _, series_labels in self.series(metric, labels):
                ts, values = self._read_series(sid, lo, hi)
                frame = pd.DataFrame({"ts_ns": ts, "value": values})
                for k, v in series_labels.items():
                    frame[k] = v
                frames.append(frame)
        finally:
            self._db.execute("COMMIT")
        if not frames:
            return pd.DataFrame({"ts_ns": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64")})
        return pd.concat(frames, ignore_index=True)

    def _read_series(self, sid: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        ts_parts, value_parts = [], []
        for t_start, n, data in self._db.execute(
                "SELECT t_start, n, data FROM chunks WHERE series_id=? AND t_start<=? AND t_end>=?"
                " ORDER BY id", (sid, hi, lo)):  # write order, so a late rewrite of a timestamp wins
            ts, values = decode_chunk(data, t_start, n)
            ts_parts.append(ts)
            value_parts.append(values)
        head = self._db.execute("SELECT ts_ns, value FROM samples WHERE series_id=? AND ts_ns BETWEEN ? AND ?",
                                (sid, lo, hi)).fetchall()
        if head:
            ts_parts.append(np.array([t for t, _ in head], np.int64))
            value_parts.append(np.array([v for _, v in head], np.float64))
        if not ts_parts:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        ts, values = np.concatenate(ts_parts), np.concatenate(value_parts)
        keep = (ts >= lo) & (ts <= hi)
        return newest_per_timestamp(ts[keep], values[keep])

    def events(self, campaign: str | None = None) -> list[Event]:
        sql = "SELECT campaign, scenario, run, action, epoch, start_ns, end_ns, status, fields FROM events"
        rows = self._db.execute(sql + " WHERE campaign=? ORDER BY start_ns, id" if campaign is not None
                                else sql + " ORDER BY start_ns, id", (campaign,) if campaign is not None else ())
        return [Event(campaign=c, scenario=s, run=r, action=a, epoch=ep, start_ns=t0, end_ns=t1, status=st,
                      fields=json.loads(f)) for c, s, r, a, ep, t0, t1, st, f in rows]

    def campaigns(self) -> list[str]:
        return [c for (c,) in self._db.execute("SELECT DISTINCT campaign FROM events ORDER BY campaign")]
