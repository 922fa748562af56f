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
