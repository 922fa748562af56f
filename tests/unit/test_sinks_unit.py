"""The store sink in memory: its buffer capped while the store refuses, non-finite values refused (the sinks against
real servers: tests/integration/test_sinks.py)."""

import logging
import os
import resource

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mltelemetry import schema
from mltelemetry.schema import Sample
from mltelemetry.sinks import StoreSink
from mltelemetry.store import Store


def test_store_sink_buffer_is_capped_while_the_store_refuses_and_the_rest_is_written(tmp_path, caplog):
    sink = StoreSink(tmp_path / "s.db", flush_interval_s=0, max_buffered=10)
    labels = {"host": "h", "meter": "m"}
    failures = 0
    for k in range(25):  # the first sample's time is no number: every write fails until it is dropped
        try:
            sink.publish_samples([Sample(schema.PM_POWER, labels, float(k), "not a time" if k == 0 else k)])
        except ValueError:
            failures += 1
        assert len(sink._buffer) <= 10
    sink.close()
    assert failures == 10 and sink.dropped_samples == 1
    assert "dropping the oldest" in caplog.text
    with Store(tmp_path / "s.db") as store:
        assert list(store.query(schema.PM_POWER)["value"]) == [float(k) for k in range(1, 25)]


def test_store_sink_says_when_the_store_refuses_non_finite_values(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    now = [0.0]
    sink = StoreSink(tmp_path / "s.db", flush_interval_s=1.0, clock=lambda: now[0])
    labels = {"host": "h", "meter": "m"}
    for k, value in enumerate([float("nan"), 1.0, float("inf"), 2.0]):  # one flush a second
        now[0] += 1.0
        sink.publish_samples([Sample(schema.PM_POWER, labels, value, k)])
    health = {s.metric: s.value for s in sink.health({"host": "h", "exporter": "pm"}, 0)}
    sink.close()
    assert caplog.text.count("no finite number") == 1  # said once a minute at most, not per flush
    assert health[schema.EXPORTER_SINK_REJECTED] == 2 and health[schema.EXPORTER_SINK_WRITTEN] == 2
    assert "4 samples received, 2 stored, 2 refused as not finite, 0 lost" in caplog.text



def test_values_are_written_as_prometheus_writes_them():
    from mltelemetry.sinks import go_float

    # Go switches to an exponent from 1e21 down and, for positive values, from a seventh digit before the point
    cases = {0.0: "0.0", 7: "7.0", 123456.0: "123456.0", 999999.5: "999999.5", 1e6: "1e+06",
             1234567.0: "1.234567e+06", 4096e6: "4.096e+09", -1234567.5: "-1234567.5", 1e-5: "1e-05",
             0.25: "0.25", float("inf"): "+Inf", float("-inf"): "-Inf", float("nan"): "NaN"}
    assert {value: go_float(value) for value in cases} == cases


@given(st.floats())
def test_values_are_written_as_prometheus_clients_float_to_go_string_writes_them(value):
    from prometheus_client.utils import floatToGoString

    from mltelemetry.sinks import go_float

    assert go_float(value) == floatToGoString(value)


def fixture_procfs(tmp_path, stat_fields: list[str], open_fds: int):
    proc = tmp_path / "proc"
    (proc / "self" / "fd").mkdir(parents=True)
    (proc / "stat").write_text("cpu  1 2 3 4\nbtime 1700000000\nprocesses 5\n")
    # a command name with a space and a parenthesis: the fields are counted from the last ')'
    (proc / "self" / "stat").write_text("4242 (my (exporter) " + " ".join(stat_fields) + "\n")
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    (proc / "self" / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        f"Max open files            {soft}                 {soft}                 files\n")
    for i in range(open_fds):
        (proc / "self" / "fd" / str(i)).write_text("")
    return proc


def test_the_process_series_are_prometheus_clients_process_collectors_in_both_formats(tmp_path):
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

    from mltelemetry.process_metrics import ProcessMetrics
    from mltelemetry.sinks import process_text

    # /proc/PID/stat after the name: state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24 (proc(5))
    fields = ["R"] + ["0"] * 50  # from the state on
    fields[11], fields[12], fields[19], fields[20], fields[21] = "1234", "566", "250000", "123456789", "7000"
    proc = fixture_procfs(tmp_path, fields, open_fds=7)
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry, proc=str(proc))
    ours = ProcessMetrics(str(proc)).values()
    by_family = {family: value for family, _, _, value in ours}
    ticks = os.sysconf("SC_CLK_TCK")
    assert by_family["process_cpu_seconds"] == pytest.approx((1234 + 566) / ticks)
    assert by_family["process_start_time_seconds"] == pytest.approx(1700000000 + 250000 / ticks)
    assert by_family["process_resident_memory_bytes"] == 7000 * resource.getpagesize()
    assert by_family["process_open_fds"] == 7
    assert process_text(ours, openmetrics=False) == generate_latest(registry)
    assert process_text(ours, openmetrics=True) == openmetrics_latest(registry)


def test_no_process_series_where_proc_cannot_be_read(tmp_path):
    from mltelemetry.process_metrics import ProcessMetrics
    from mltelemetry.sinks import process_text

    assert ProcessMetrics(str(tmp_path / "nowhere")).values() == []
    assert process_text([], openmetrics=True) == b"# EOF\n"
