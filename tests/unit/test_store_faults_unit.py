"""The store under faults in one process: threads sharing an annotator, foreign and unwritable files, empty names
(a full disk and killed processes: tests/integration/test_store_faults.py)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import Event
from mltelemetry.store import Store
from mltelemetry.workload.instrument import Annotator


def test_one_annotator_shared_by_two_threads_loses_no_window(tmp_path):
    # main: 81 of 600 windows lost, each raising "cannot start a transaction within a transaction"
    errors: list[BaseException] = []
    with Annotator(tmp_path / "s.db", campaign="c") as ann:
        def windows(action: str) -> None:
            try:
                for k in range(300):
                    with ann.window(action, epoch=k):
                        pass
            except BaseException as e:  # noqa: B036 (collected for the assertion)
                errors.append(e)

        threads = [threading.Thread(target=windows, args=(a,)) for a in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    with Store(tmp_path / "s.db") as store:
        assert len(store.events("c")) == 600


def test_a_foreign_sqlite_file_is_refused_by_a_writer_and_left_untouched(tmp_path):
    foreign = tmp_path / "other.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(MltelemetryError, match="not an mltelemetry store"):
        Store(foreign)  # as `exporter --store` opens it
    db = sqlite3.connect(foreign)
    assert [n for (n,) in db.execute("SELECT name FROM sqlite_master")] == ["t"]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    Store(tmp_path / "empty.db").close()  # an empty (new) file is still made a store


def test_an_unwritable_store_path_says_why(tmp_path):
    with pytest.raises(MltelemetryError, match=r"cannot open the store .*missing/s\.db: No such file or directory"):
        Store(tmp_path / "missing" / "s.db")


def test_an_empty_campaign_name_is_refused(tmp_path):
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(MltelemetryError, match="needs a campaign name"):
            store.write_events([Event(" ", "cpu", 1, "run", 1, 2)])
        assert store.events() == []
