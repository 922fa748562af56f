import subprocess
import sys
import threading
import time

from conftest import wait_for
from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.exporters.runtime import Exporter
from mltelemetry.publisher import Capability, Publisher
from mltelemetry.schema import Sample
from mltelemetry.store import Store


class ListSink(Publisher):
    capabilities = frozenset({Capability.SAMPLES})

    def __init__(self):
        self.samples, self.closed = [], False

    def publish_samples(self, samples):
        self.samples.extend(samples)

    def close(self):
        self.closed = True


class Scripted:
    name = "scripted"

    def __init__(self, slow_tick=None, failing_tick=None):
        self.ticks, self.slow_tick, self.failing_tick = 0, slow_tick, failing_tick

    def sample(self, ts_ns):
        self.ticks += 1
        if self.ticks == self.failing_tick:
            raise RuntimeError("device hiccup")
        if self.ticks == self.slow_tick:
            time.sleep(0.35)
        return [Sample(schema.PM_POWER, {"host": "h", "meter": "m"}, float(self.ticks), ts_ns)]


def ticks_of(sink):
    return [s.ts_ns for s in sink.samples if s.metric == schema.PM_POWER]


def test_late_tick_is_counted_not_doubled_and_errors_do_not_stop_the_loop():
    sink, collector = ListSink(), Scripted(slow_tick=3, failing_tick=6)
    exporter = Exporter(collector, [sink], interval_s=0.1, host="h")
    exporter.run(threading.Event(), max_ticks=10)
    ts = ticks_of(sink)
    assert len(ts) == 9  # tick 6 failed, the other 9 published
    assert min(b - a for a, b in zip(ts, ts[1:])) > 0.07e9  # never two ticks back to back to catch up
    assert exporter.missed_ticks_total == 3  # 0.35 s at tick 3 swallowed the deadlines 0.3, 0.4 and 0.5 s
    assert exporter.errors_total == 1
    last = {s.metric: s.value for s in sink.samples}
    assert last[schema.EXPORTER_ERRORS] == 1 and last[schema.EXPORTER_MISSED_TICKS] == 3
    assert last[schema.EXPORTER_SAMPLES] == 9


def test_sigterm_flushes_the_store(tmp_path):
    path = tmp_path / "s.db"
    process = subprocess.Popen([sys.executable, "-m", "mltelemetry", "exporter", "host", "--store", str(path),
                                "--listen", "off", "--interval", "0.2"], stderr=subprocess.PIPE)

    def stored_ticks() -> int:  # the exporter runs (its signal handlers are in place) once it stored ticks
        try:
            with Store(path, create=False) as store:
                return len(store.query(schema.EXPORTER_SAMPLES))
        except MltelemetryError:  # not created yet
            return 0

    # not a fixed sleep: a loaded machine takes seconds to import before the handlers are in place
    wait_for(lambda: stored_ticks() >= 8, 60, "the exporter to store its first ticks")
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert b"stopped after flushing" in stderr
    with Store(path) as store:
        samples = store.query(schema.EXPORTER_SAMPLES)
    assert len(samples) >= 8
