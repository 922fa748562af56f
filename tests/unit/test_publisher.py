"""The one publishing seam (mltelemetry.publisher): callers hand each publisher only what its capabilities
declare, the store is one more publisher (the record), and the commands hand the sink options on as an argument."""

from __future__ import annotations

import threading

import pytest
import typer
from typer.testing import CliRunner

from mltelemetry import schema
from mltelemetry.cliutil import SinkOptions, with_sink_options
from mltelemetry.errors import StoreWriteError
from mltelemetry.exporters.runtime import Exporter
from mltelemetry.publisher import Capability, Publisher
from mltelemetry.schema import Sample
from mltelemetry.sinks import StoreSink
from mltelemetry.store import Store
from mltelemetry.workload.events import EventRecorder, WindowStack


class Samples(Publisher):
    capabilities = frozenset({Capability.SAMPLES})

    def __init__(self):
        self.samples = []

    def publish_samples(self, samples):
        self.samples.extend(samples)


class EventsOnly(Publisher):
    """Takes events only (as Grafana's annotations): the base class refuses samples."""

    name = "events-only"
    capabilities = frozenset({Capability.EVENTS})

    def __init__(self, fail_with: Exception | None = None):
        self.changes, self.fail_with = [], fail_with

    def publish_events(self, change):
        self.changes.append(("closed" if change.closed else "opened", change.event.action,
                             [e.action for e in change.running]))
        if self.fail_with is not None:
            raise self.fail_with

    def health(self, labels, ts_ns):
        return [Sample(schema.EXPORTER_SINK_WRITTEN, {**labels, "sink": self.name}, 7.0, ts_ns)]


class Collector:
    name = "scripted"

    def sample(self, ts_ns):
        return [Sample(schema.PM_POWER, {"host": "h", "meter": "m"}, 100.0, ts_ns)]

    def close(self):
        pass


def test_the_runtime_hands_samples_only_to_publishers_that_take_them_and_every_ones_health():
    samples, events = Samples(), EventsOnly()
    # the clock stands still: the exporter's own series at the first tick and once more at the end
    exporter = Exporter(Collector(), [samples, events], interval_s=0.001, host="h", wall_ns=lambda: 5,
                        monotonic=lambda: 0.0)
    exporter.run(threading.Event(), max_ticks=2)
    assert exporter.errors_total == 0  # the events-only publisher was never handed samples (it would raise)
    assert events.changes == []
    health = [s for s in samples.samples if s.metric == schema.EXPORTER_SINK_WRITTEN]
    assert [(s.labels["sink"], s.value) for s in health] == [("events-only", 7.0)] * 2  # one per report
    assert sum(s.metric == schema.PM_POWER for s in samples.samples) == 2


def test_the_store_is_one_more_publisher_and_a_claim_is_replaced_by_the_final_record(tmp_path):
    sink = StoreSink(tmp_path / "s.db")
    live = EventsOnly()
    clock = iter([10, 20, 30, 40])  # the run opens at 10, the epoch at 20 and closes at 30, the run closes at 40
    recorder = EventRecorder(sink, "c", clock=lambda: next(clock), publishers=[live])
    try:
        with recorder.window("run", scenario="s", run=1, claim=True):
            [claim] = sink.store.events("c")
            assert (claim.status, claim.start_ns, claim.end_ns) == ("running", 10, 10)
            with recorder.window("epoch", scenario="s", run=1, epoch=1):
                pass
        events = sink.store.events("c")
    finally:
        sink.close()
    # the claim's row now holds the final record: one run event, not two
    assert [(e.action, e.status, e.start_ns, e.end_ns) for e in events] == [("run", "ok", 10, 40),
                                                                            ("epoch", "ok", 20, 30)]
    # the live publisher heard each change after the store, with what runs after it
    assert live.changes == [("opened", "run", ["run"]), ("opened", "epoch", ["run", "epoch"]),
                            ("closed", "epoch", ["run"]), ("closed", "run", [])]


def test_a_record_publishers_failure_stops_the_workload_and_a_live_ones_is_only_logged(tmp_path, caplog):
    class FailingRecord(EventsOnly):
        capabilities = frozenset({Capability.EVENTS, Capability.RECORD})

    with Store(tmp_path / "s.db") as store:
        live = EventsOnly(fail_with=RuntimeError("dashboard away"))
        recorder = EventRecorder(store, "c", publishers=[live])
        with recorder.window("run", scenario="s", run=1):
            pass
        assert [e.action for e in store.events("c")] == ["run"] and "dashboard away" in caplog.text

        record = FailingRecord(fail_with=StoreWriteError("cannot write to the store x: the disk is full", "x", True))
        recorder = EventRecorder(store, "c", publishers=[live, record])  # a record is told first, wherever listed
        with pytest.raises(StoreWriteError, match="disk is full"):
            with recorder.window("train", scenario="s", run=1):
                pass
        assert live.changes[-1] == ("closed", "run", [])  # the live one never heard of the unrecorded window


def test_the_sink_options_reach_the_command_as_one_argument():
    received = []

    @with_sink_options
    def command(listen: str = "off", *, sink_options: SinkOptions) -> None:
        received.append((listen, sink_options))

    app = typer.Typer()
    app.command()(command)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["command", "--listen", "127.0.0.1:0", "--influx-url", "http://influx:8086",
                                      "--influx-api", "v1", "--spool-max-mb", "2"])
    assert result.exit_code == 0, result.output
    assert received == [("127.0.0.1:0", SinkOptions(influx_url="http://influx:8086", influx_api="v1",
                                                     spool_max_mb=2.0))]
    assert CliRunner().invoke(app, ["command", "--sink-options", "x"]).exit_code == 2  # no such option


def test_window_stack_closes_the_innermost_window_of_a_key():
    stack: WindowStack[str] = WindowStack()
    for key, value in (("run", "r"), ("epoch", "e1"), ("epoch", "e2")):
        stack.push(key, value)
    assert stack.innermost() == "epoch" and stack.get("epoch") == "e2"
    assert stack.pop("epoch") == "e2" and stack.values() == ("r", "e1")
    assert stack.pop("train") is None and "run" in stack and "train" not in stack
