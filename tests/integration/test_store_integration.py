"""The store across processes: concurrent writers while reading, and a writer killed with SIGKILL (the in-memory
rest: tests/unit/test_store.py)."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
from test_store import S

from conftest import wait_for
from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import PM_POWER
from mltelemetry.store import Store

WRITER = textwrap.dedent("""
    import sys, time
    from mltelemetry.schema import PM_POWER, Sample
    from mltelemetry.sinks import StoreSink
    sink = StoreSink(sys.argv[1], flush_interval_s=1.0)
    meter, n = sys.argv[2], int(sys.argv[3])
    for i in range(n):
        sink.publish_samples([Sample(PM_POWER, {"host": "sut", "meter": meter}, float(i), time.time_ns())])
        time.sleep(0.01)
    sink.close()
    print("done", flush=True)
""")


def test_concurrent_writers_while_reading(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{i}", "300"]) for i in range(3)]
    reads = 0
    with Store(path) as reader:
        while any(w.poll() is None for w in writers):
            reader.query(PM_POWER)
            reads += 1
        assert [w.wait() for w in writers] == [0, 0, 0]
        for i in range(3):
            assert reader.query(PM_POWER, {"meter": f"w{i}"}).value.tolist() == [float(v) for v in range(300)]
    assert reads > 0


def test_sigkill_loses_at_most_the_last_second(tmp_path):
    path = tmp_path / "s.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "k", "100000"])

    def stored() -> int:
        try:
            with Store(path, create=False) as store:
                return len(store.query(PM_POWER, {"meter": "k"}))
        except MltelemetryError:  # not created yet, or its tables not yet committed
            return 0

    wait_for(lambda: stored() > 100, 120, "the writer to store 100 samples")  # started, at a loaded machine's pace
    time.sleep(random.uniform(0, 1))  # kill at any phase of its 1 s flush cycle
    killed_at = time.time_ns()
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Store(path) as store:
        ts = store.query(PM_POWER, {"meter": "k"}).ts_ns.to_numpy()
    assert len(ts) > 100
    assert killed_at - ts[-1] < 1.3 * S  # flushes once a second; the rest is scheduling slack
    assert np.all(np.diff(ts) > 0)

