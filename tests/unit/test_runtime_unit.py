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


class InjectedTime:
    """Monotonic seconds the test moves, and the stop event the exporter waits on: each wait moves the clock by
    what the exporter asks for, plus ``late(n)`` on the n-th wait (a late wake-up)."""

    def __init__(self, start: float = 0.0, late=lambda n: 0.0) -> None:
        self.now, self.waits, self.late = start, 0, late

    def __call__(self) -> float:
        return self.now

    def wall_ns(self) -> int:
        return round(self.now * 1e9)

    def is_set(self) -> bool:
        return False

    def wait(self, seconds: float) -> bool:
        self.waits += 1
        self.now += seconds + self.late(self.waits)
        return False


def test_ticks_on_absolute_deadlines_without_drift():
    # Injected time: each reading costs 13 ms of the clock and the stop event's wait moves it by what the exporter
    # asks for. On absolute deadlines tick k lands on start + k * 50 ms whatever a tick costs; a loop waiting 50 ms
    # after each tick would drift 13 ms a tick (0.5 s after 40 ticks).
    clock = InjectedTime(100.0)

    class CostlyScripted(Scripted):
        def sample(self, ts_ns):
            clock.now += 0.013
            return super().sample(ts_ns)

    sink = ListSink()
    Exporter(CostlyScripted(), [sink], interval_s=0.05, host="h", monotonic=clock,
             wall_ns=clock.wall_ns).run(clock, max_ticks=40)
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



def test_its_own_series_at_most_once_a_second_and_once_more_at_the_end():
    # Ticks every 0.1 s on injected time, 25 of them (t = 0 .. 2.4 s). The exporter's own series are reported at
    # t = 0, 1.0 and 2.0 (a tick 1.0 s after the last report; half an interval of slack) and once when the loop
    # ends: 4 reports. The power series every tick: 25. Tick 12 (t = 1.1 s) takes 0.05 s (the others none): the
    # report at t = 2.0 carries it as the longest tick since the report at t = 1.0.
    clock = InjectedTime(100.0)

    class OneSlowTick(Scripted):
        def sample(self, ts_ns):
            samples = super().sample(ts_ns)
            if self.ticks == 12:
                clock.now += 0.05
            return samples

    sink = ListSink()
    exporter = Exporter(OneSlowTick(), [sink], interval_s=0.1, host="h", monotonic=clock, wall_ns=clock.wall_ns)
    exporter.run(clock, max_ticks=25)
    assert len(ticks_of(sink)) == 25 and exporter.missed_ticks_total == 0
    reports = [s for s in sink.samples if s.metric == schema.EXPORTER_SAMPLES]
    assert [round(s.ts_ns / 1e9 - 100.0, 6) for s in reports] == [0.0, 1.0, 2.0, 2.4]
    assert [s.value for s in reports] == [1, 11, 21, 25]  # the counts at each report: nothing lost between
    durations = [s.value for s in sink.samples if s.metric == schema.EXPORTER_SAMPLE_DURATION]
    assert durations == [0.0, 0.0, pytest.approx(0.05, abs=1e-9), 0.0]


def test_at_one_second_every_tick_reports_even_after_a_late_wake_up():
    # Ticks every 1 s, woken 30 ms late every other time: they begin at 0, 1.03, 2.0, 3.03, 4.0 s, so two reports
    # can be 0.97 s apart. Every tick reports (half an interval of slack), and nothing is left for the end.
    clock = InjectedTime(late=lambda n: 0.03 if n % 2 else 0.0)
    sink = ListSink()
    Exporter(Scripted(), [sink], interval_s=1.0, host="h", monotonic=clock, wall_ns=clock.wall_ns).run(
        clock, max_ticks=5)
    reports = [s for s in sink.samples if s.metric == schema.EXPORTER_SAMPLES]
    assert [round(s.ts_ns / 1e9, 6) for s in reports] == [0.0, 1.03, 2.0, 3.03, 4.0]
    assert [s.value for s in reports] == [1, 2, 3, 4, 5]
