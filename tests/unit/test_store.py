import sqlite3

import pytest

from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import PM_POWER, Event, Sample
from mltelemetry.store import CHUNK_SAMPLES, Store

S = 10**9


def power(ts_s, value, meter="m1", host="sut"):
    return Sample(PM_POWER, {"host": host, "meter": meter}, value, int(ts_s * S))


def test_round_trip_through_head_and_chunks(tmp_path):
    n = CHUNK_SAMPLES * 2 + 37
    with Store(tmp_path / "s.db") as store:
        for first in range(0, n, 7):  # small batches, like an exporter flushing every second
            store.write([power(t, t * 0.5) for t in range(first, min(first + 7, n))])
        chunks = store._db.execute("SELECT count(*), sum(n) FROM chunks").fetchone()
        head = store._db.execute("SELECT count(*) FROM samples").fetchone()[0]
        assert chunks == (2, 2 * CHUNK_SAMPLES) and head == 37
        window = store.query(PM_POWER, {"meter": "m1"}, 595 * S, 605 * S)
    assert window.ts_ns.tolist() == [t * S for t in range(595, 606)]
    assert window.value.tolist() == [t * 0.5 for t in range(595, 606)]
    assert set(window.meter) == {"m1"} and set(window.host) == {"sut"}


def test_label_subset_selects_series_and_newest_duplicate_wins(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.write([power(1, 10.0, "a"), power(1, 20.0, "b"), power(2, 11.0, "a")])
        store.write([power(2, 12.0, "a")])  # same series, same time: replaces
        assert store.query(PM_POWER, {"meter": "a"}).value.tolist() == [10.0, 12.0]
        assert len(store.query(PM_POWER, {"host": "sut"})) == 3
        assert store.query(PM_POWER, {"meter": "zzz"}).empty


def test_of_a_timestamp_repeated_in_one_write_the_last_value_is_kept(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.write([power(1, 5.0, "a")])  # the series exists: its samples take the cached path below
        store.write([power(2, 9.0, "a"), power(2, 1.0, "a"), power(3, 7.0, "b"), power(3, 2.0, "b")])
        assert store.query(PM_POWER, {"meter": "a"}).value.tolist() == [5.0, 1.0]
        assert store.query(PM_POWER, {"meter": "b"}).value.tolist() == [2.0]  # a new series, likewise


def test_events_round_trip(tmp_path):
    event = Event("c1", "cpu", 2, "epoch", 5 * S, 7 * S, epoch=3, fields={"loss": 0.25})
    with Store(tmp_path / "s.db") as store:
        store.write_events([event])
        assert store.events("c1") == [event]
        assert store.campaigns() == ["c1"]
        assert store.events("other") == []


def test_not_a_store_is_a_clear_error(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MltelemetryError, match="not a readable mltelemetry store"):
        Store(tmp_path / "junk.db")
    with pytest.raises(MltelemetryError, match="no store at"):
        Store(tmp_path / "missing.db", create=False)


def test_non_finite_values_are_refused_and_the_rest_written(tmp_path):
    with Store(tmp_path / "s.db") as store:
        assert store.write([power(1, float("nan")), power(2, 5.0), power(3, float("inf"))]) == 1
        assert store.dropped_non_finite == 2
        assert store.query(PM_POWER).value.tolist() == [5.0]
        store.write([power(4, 6.0)])  # the writer is not poisoned
        assert store.query(PM_POWER).value.tolist() == [5.0, 6.0]


def test_events_are_written_all_or_none(tmp_path):
    good = Event("c", "cpu", 1, "run", 1, 2)
    bad = Event("c", "cpu", 2, "run", 3, 4, fields={"x": 1})
    bad.campaign = None  # violates NOT NULL
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.write_events([good, bad])
        assert store.events() == []


def test_a_foreign_sqlite_file_is_left_untouched(tmp_path):
    foreign = tmp_path / "other.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(MltelemetryError, match="not an mltelemetry store"):
        Store(foreign, create=False)
    db = sqlite3.connect(foreign)
    assert [n for (n,) in db.execute("SELECT name FROM sqlite_master")] == ["t"]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_a_late_rewrite_wins_over_an_older_chunk(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.write([power(t, 1.0) for t in range(CHUNK_SAMPLES)])  # one chunk
        store.write([power(0, -1.0)] + [power(t, 2.0) for t in range(CHUNK_SAMPLES, 2 * CHUNK_SAMPLES - 1)])
        assert store._db.execute("SELECT count(*) FROM chunks").fetchone() == (2,)  # overlapping at t=0
        values = store.query(PM_POWER).value.tolist()
    assert values[0] == -1.0 and values[1] == 1.0 and len(values) == 2 * CHUNK_SAMPLES - 1


def test_a_newer_write_wins_over_the_head_row_of_the_same_timestamp_when_it_compacts(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.write([power(t, 1.0) for t in range(10)])  # 10 rows in the head
        # 10 + 590 rows reach CHUNK_SAMPLES: this write compacts, and rewrites t = 3 and t = 9 of the head
        store.write([power(3, 30.0), power(9, 90.0)] + [power(t, 2.0) for t in range(10, CHUNK_SAMPLES + 8)])
        assert store._db.execute("SELECT count(*), sum(n) FROM chunks").fetchone() == (1, CHUNK_SAMPLES)
        assert store._db.execute("SELECT count(*) FROM samples").fetchone() == (8,)  # 608 distinct - 600
        window = store.query(PM_POWER, end_ns=10 * S)
    assert window.ts_ns.tolist() == [t * S for t in range(11)]
    assert window.value.tolist() == [1.0, 1.0, 1.0, 30.0, 1.0, 1.0, 1.0, 1.0, 1.0, 90.0, 2.0]


def test_a_query_sees_one_snapshot_while_another_writer_compacts(tmp_path):
    path = tmp_path / "s.db"
    writer = Store(path)
    writer.write([power(t, float(t)) for t in range(CHUNK_SAMPLES - 1)])  # all in the head
    reader = Store(path, create=False)
    real = reader._db

    class CompactsBetweenReads:  # another process compacts right after the reader fetched the chunks
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, *args):
            cursor = real.execute(sql, *args)
            if sql.startswith("SELECT t_start"):
                rows = cursor.fetchall()
                writer.write([power(CHUNK_SAMPLES - 1, 0.0)])
                return iter(rows)
            return cursor

    reader._db = CompactsBetweenReads()
    assert len(reader.query(PM_POWER)) == CHUNK_SAMPLES - 1  # the snapshot from before the compaction
    reader._db = real
    assert len(reader.query(PM_POWER)) == CHUNK_SAMPLES
    writer.close()
    reader.close()


def _wal_frames(path) -> int:
    page_size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    return (path.with_name(path.name + "-wal").stat().st_size - 32) // (page_size + 24)


def test_a_write_of_many_series_changes_a_few_pages_not_one_per_series(tmp_path):
    """A host exporter's flush: 5 ticks of 34 series. The head table in time order appends them at the end of one
    B-tree; in series order (the old layout) every series' last page changed: 39 pages per commit."""
    path = tmp_path / "s.db"
    with Store(path) as store:
        store.write([power(t, 1.0, meter=f"m{i}") for t in range(300) for i in range(34)])  # half-full heads
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store._db.execute("PRAGMA wal_autocheckpoint=0")  # the WAL keeps every page each commit wrote
        for write in range(20):
            store.write([power(300 + write * 5 + tick, 1.0, meter=f"m{i}") for tick in range(5) for i in range(34)])
        assert _wal_frames(path) / 20 <= 10


@pytest.mark.parametrize("layout", ["time, then series", "series, then time (stores made before 2026-12-02)"])
def test_many_series_through_head_and_chunks_in_either_head_layout(tmp_path, layout):
    path = tmp_path / "s.db"
    if layout.startswith("series"):  # a store file as the earlier versions made it
        from mltelemetry import store as store_module

        old = store_module._SCHEMA.replace("PRIMARY KEY (ts_ns, series_id)", "PRIMARY KEY (series_id, ts_ns)")
        assert old != store_module._SCHEMA
        sqlite3.connect(path, isolation_level=None).executescript(old)
    statements = []
    n = CHUNK_SAMPLES * 2 + 37
    with Store(path) as store:
        store._db.set_trace_callback(statements.append)
        for first in range(0, n, 7):  # every series' head fills at the same write, as an exporter's do
            store.write([power(t, t + i / 10, meter=f"m{i}")
                         for t in range(first, min(first + 7, n)) for i in range(3)])
        compactions = [sql for sql in statements if sql.startswith("DELETE FROM samples")]
        assert len(compactions) == 2  # one pass for the three series each time their heads filled, no more
        assert store._db.execute("SELECT count(*), sum(n) FROM chunks").fetchone() == (6, 6 * CHUNK_SAMPLES)
        assert store._db.execute("SELECT count(*) FROM samples").fetchone() == (3 * 37,)
        window = store.query(PM_POWER, start_ns=595 * S, end_ns=1205 * S)
    for i in range(3):
        mine = window[window.meter == f"m{i}"]
        assert mine.ts_ns.tolist() == [t * S for t in range(595, 1206)]
        assert mine.value.tolist() == [t + i / 10 for t in range(595, 1206)]
