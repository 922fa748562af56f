"""The exporter runtime on scripted time: tick deadlines, sinks closing (signals and processes:
tests/integration/test_runtime.py)."""

import sqlite3
import threading

import pytest
from test_runtime import ListSink, Scripted, ticks_of

from mltelemetry import schema
from mltelemetry.exporters.runtime import Exporter, next_tick
from mltelemetry.schema import Sample
from mltelemetry.sinks import StoreSink


def test_next_tick_on_time_and_late():
    assert next_tick(start=100.0, interval=1.0, tick=4, now=104.3) == (5, 0)
    assert next_tick(start=100.0, interval=1.0, tick=4, now=105.0) == (5, 0)
    # tick 4 ran until 107.2: ticks 5, 6 and 7 are gone, 8 is next; nothing runs twice
    assert next_tick(start=100.0, interval=1.0, tick=4, now=107.2) == (8, 3)


def test_ticks_on_absolute_deadlines_without_drift():
    # Injected time: each reading costs 13 ms of the clock and the stop event's wait moves it by what the exporter
    # asks for. On absolute deadlines tick k lands on start + k * 50 ms whatever a tick costs; a loop waiting 50 ms
    # after each tick would drift 13 ms a tick (0.5 s after 40 ticks).
    now = [100.0]

    class Stop:
        def is_set(self) -> bool:
            return False

        def wait(self, seconds: float) -> bool:
            now[0] += seconds
            return False

    class CostlyScripted(Scripted):
        def sample(self, ts_ns):
            now[0] += 0.013
            return super().sample(ts_ns)

    sink = ListSink()
    Exporter(CostlyScripted(), [sink], interval_s=0.05, host="h", monotonic=lambda: now[0],
             wall_ns=lambda: round(now[0] * 1e9)).run(Stop(), max_ticks=40)
    ts = ticks_of(sink)
    offsets = [(t - ts[0]) / 1e9 - k * 0.05 for k, t in enumerate(ts)]
    assert len(ts) == 40 and max(abs(o) for o in offsets) < 1e-6  # no accumulated drift after 40 ticks
    assert sink.closed


def test_a_sink_failing_to_close_does_not_stop_the_others_and_the_store_is_closed(tmp_path, caplog):
    # a sample the store cannot take (its time is no number): the flush on close raises
    failing = StoreSink(tmp_path / "bad.db", flush_interval_s=3600)
    failing.publish_samples([Sample(schema.PM_POWER, {"host": "h", "meter": "m"}, 1.0, "not a time")])
    after = ListSink()
    exporter = Exporter(Scripted(), [failing, after], interval_s=0.01, host="h")
    exporter.run(threading.Event(), max_ticks=1)
    assert after.closed  # the later sink still flushed
    assert exporter.errors_total == 1 and "closing sink StoreSink failed" in caplog.text
    with pytest.raises(sqlite3.ProgrammingError):  # the store was closed although its flush raised
        failing.store.query(schema.PM_POWER)

