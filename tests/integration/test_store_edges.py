"""Edges of the embedded store (mltelemetry/store.py) that mutation testing found unchecked (bench/mutation.md)."""

import math
import subprocess
import sys

from mltelemetry.schema import Sample
from mltelemetry.store import Store

S = 10**9


def test_a_write_with_nothing_to_store_returns_0_and_counts_what_it_dropped(tmp_path):
    with Store(tmp_path / "s.db") as store:
        assert store.write([]) == 0
        assert store.write([Sample("m", {"a": "1"}, math.nan, S), Sample("m", {"a": "1"}, math.inf, 2 * S)]) == 0
        assert store.dropped_non_finite == 2
        assert store.write([Sample("m", {"a": "1"}, 5.0, 3 * S)]) == 1


def test_a_window_without_samples_of_an_existing_series_is_empty(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.write([Sample("m", {"a": "1"}, float(t), t * S) for t in range(10, 21)])
        got = store.query("m", start_ns=100 * S, end_ns=200 * S)
        assert len(got) == 0 and str(got["ts_ns"].dtype) == "int64" and str(got["value"].dtype) == "float64"
        assert store.query("m", start_ns=15 * S, end_ns=16 * S)["value"].tolist() == [15.0, 16.0]


def test_importing_the_store_does_not_import_pandas():
    # the exporters write through the store without pandas (memory: README, exporter overhead); only reading does
    code = "import sys, mltelemetry.store; print('pandas' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_series_spans_count_and_bound_the_samples_in_chunks_and_head_alike(tmp_path):
    with Store(tmp_path / "s.db") as store:
        # 700 samples, 1 per second from t = 5 s: more than a chunk holds, so some are compacted and the rest wait
        # in the head; a second series of 3 samples only in the head
        store.write([Sample("m", {"a": "1"}, float(t), (5 + t) * S) for t in range(700)])
        store.write([Sample("m", {"a": "1"}, 0.0, 1 * S)])  # late, older than the chunk: the head's first
        store.write([Sample("m", {"a": "2"}, 1.0, t * S) for t in (50, 40, 60)])
        spans = {labels["a"]: (n, first, last) for _, labels, n, first, last in store.series_spans()}
    # series 1: the chunk holds 5..604 s (600), the head 605..704 s and 1 s (101)
    assert spans == {"1": (701, 1 * S, 704 * S), "2": (3, 40 * S, 60 * S)}
