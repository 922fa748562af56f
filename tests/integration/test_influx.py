"""The InfluxDB sink: line protocol and InfluxQL escaping, the spool, and both write paths against real servers."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import requests

from conftest import wait_for
from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.influx import (
    InfluxConfig,
    InfluxSink,
    V1Writer,
    V2Writer,
    event_line,
    influxql_ident,
    influxql_tag_equals,
    read_token,
    sample_line,
    stored_tag_value,
)
from mltelemetry.schema import Event, Sample
from mltelemetry.spool import Spool

# Names a user may type: quotes, commas, spaces, line breaks, backslashes (also where they read as escapes), '='.
HOSTILE = ['quo"te', "apo'strophe", "com,ma", "sp ace", "new\nline", "cr\rlf", "back\\slash", "trail\\",
           "eq=ual", 'mix \\" ,=\\,\n\ttab', "ünïcødé ☃", "\\n literal", "\\\\double", " lead", "#hash",
           "x' OR '1'='1", 'a"b\\"c']


# --- v2 path: influxdb-client → VictoriaMetrics /api/v2/write, read back with its Prometheus API --------

def vm_export(url: str, match: str) -> list[dict]:
    response = requests.get(f"{url}/api/v1/export", params={"match[]": match}, timeout=10)
    response.raise_for_status()
    return [requests.models.complexjson.loads(line) for line in response.text.splitlines() if line]


def test_v2_path_writes_samples_and_events_to_victoria_metrics(victoria_metrics, tmp_path):
    sink = InfluxSink(V2Writer(victoria_metrics, "lab", "mltelemetry"), Spool(tmp_path / "spool"),
                      flush_interval_s=0.2)
    t0 = time.time_ns()
    for k in range(3):
        sink.publish_samples([Sample(schema.PM_POWER, {"host": "sut", "meter": name}, 100.0 + i + k / 10,
                                     t0 + k * 10**9) for i, name in enumerate(HOSTILE)])
    events = [Event(name, "scen ario", 1, "epoch", start_ns=t0, end_ns=t0 + 2 * 10**9, epoch=i,
                    fields={"loss": 0.5 + i, "framework": "torch"}) for i, name in enumerate(HOSTILE)]
    sink.publish_lines([event_line(e) for e in events])
    sink.close()
    assert sink.written_total == 4 * len(HOSTILE) and sink.spool.empty

    def power_series():
        series = vm_export(victoria_metrics, schema.PM_POWER)
        return series if len(series) == len(HOSTILE) else None

    series = {s["metric"]["meter"]: s for s in wait_for(power_series, 15, "the samples in VictoriaMetrics")}
    for i, name in enumerate(HOSTILE):
        s = series[stored_tag_value(name)]
        assert s["metric"] == {"__name__": schema.PM_POWER, "host": "sut", "meter": stored_tag_value(name)}
        assert s["values"] == pytest.approx([100.0 + i, 100.1 + i, 100.2 + i])
        assert s["timestamps"] == [(t0 + k * 10**9) // 10**6 for k in range(3)]
    # events: measurement mltelemetry_event with fields start_seconds/end_seconds → the schema's series
    starts = {s["metric"]["campaign"]: s for s in vm_export(victoria_metrics, schema.EVENT_START)}
    ends = {s["metric"]["campaign"]: s for s in vm_export(victoria_metrics, schema.EVENT_END)}
    losses = {s["metric"]["campaign"]: s for s in vm_export(victoria_metrics, "mltelemetry_event_loss")}
    for i, name in enumerate(HOSTILE):
        stored = stored_tag_value(name)
        assert starts[stored]["metric"] == {"__name__": schema.EVENT_START, "campaign": stored,
                                            "scenario": "scen ario", "run": "1", "action": "epoch",
                                            "epoch": str(i), "status": "ok"}
        # VictoriaMetrics keeps about 15 significant digits: Unix seconds to ~10 µs (approx's default, ±30 min)
        assert starts[stored]["values"] == [pytest.approx(t0 / 1e9, abs=1e-4)]
        assert ends[stored]["values"] == [pytest.approx(t0 / 1e9 + 2, abs=1e-4)]
        assert ends[stored]["timestamps"] == [(t0 + 2 * 10**9) // 10**6]
        assert losses[stored]["values"] == [0.5 + i]


# --- v1 path: /write → InfluxDB 1.6, read back with InfluxQL ------------------------------------------

def influxql(url: str, q: str, db: str | None = "telemetry") -> list[dict]:
    params = {"q": q, "epoch": "ns"} | ({"db": db} if db else {})
    response = requests.post(f"{url}/query", params=params, timeout=10)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    return result.get("series", [])


def test_v1_path_writes_to_influxdb_and_influxql_finds_hostile_names(influxdb, tmp_path):
    influxql(influxdb, "CREATE DATABASE telemetry", db=None)
    sink = InfluxSink(V1Writer(influxdb, "telemetry"), Spool(tmp_path / "spool"), flush_interval_s=0.2)
    t0 = time.time_ns()
    sink.publish_samples([Sample(schema.HOST_MEMORY_USED, {"host": name}, float(i), t0)
                          for i, name in enumerate(HOSTILE)])
    sink.publish_lines([event_line(Event(name, "s", 2, "train", start_ns=t0 - 5 * 10**9, end_ns=t0,
                                         fields={"accuracy": i / 100})) for i, name in enumerate(HOSTILE)])
    sink.close()
    assert sink.written_total == 2 * len(HOSTILE) and sink.rejected_total == 0
    for i, name in enumerate(HOSTILE):
        rows = influxql(influxdb, f"SELECT value FROM {influxql_ident(schema.HOST_MEMORY_USED)} "
                                  f"WHERE {influxql_tag_equals('host', name)}")
        assert rows[0]["values"] == [[t0, float(i)]], name
        rows = influxql(influxdb, f"SELECT start_seconds, end_seconds, accuracy FROM "
                                  f"{influxql_ident(schema.EVENT_MEASUREMENT)} WHERE "
                                  f"{influxql_tag_equals('campaign', name)} AND "
                                  f"{influxql_tag_equals('action', 'train')}")
        # InfluxDB keeps the float64: Unix seconds to ~0.24 µs
        assert rows[0]["values"] == [[t0, pytest.approx(t0 / 1e9 - 5, abs=1e-6), pytest.approx(t0 / 1e9, abs=1e-6),
                                      i / 100]], name
    tags = influxql(influxdb, f'SHOW TAG VALUES FROM {influxql_ident(schema.EVENT_MEASUREMENT)} WITH KEY = "campaign"')
    assert sorted(v for _, v in tags[0]["values"]) == sorted(stored_tag_value(n) for n in HOSTILE)


def test_points_the_server_refuses_are_dropped_and_counted_not_retried(influxdb, tmp_path):
    influxql(influxdb, "CREATE DATABASE telemetry", db=None)
    writer = V1Writer(influxdb, "telemetry")
    writer.write([f"{schema.PM_POWER},host=h value=1i {time.time_ns()}"])  # an integer field: floats now conflict
    sink = InfluxSink(writer, Spool(tmp_path / "spool"), flush_interval_s=0.1)
    t0 = time.time_ns()
    sink.publish_samples([Sample(schema.PM_POWER, {"host": "h"}, 2.0, t0)])
    wait_for(lambda: sink.rejected_total == 1, 10, "the refusal")
    sink.publish_samples([Sample(schema.PM_VOLTAGE, {"host": "h"}, 230.0, t0)])
    wait_for(lambda: sink.written_total == 1, 10, "the next batch to be written")
    sink.close()
    assert sink.spool.empty and sink.errors_total == 0
    assert influxql(influxdb, f"SELECT value FROM {schema.PM_VOLTAGE}")[0]["values"] == [[t0, 230.0]]


def test_a_missing_database_is_spooled_until_it_exists(influxdb, tmp_path):
    sink = InfluxSink(V1Writer(influxdb, "later"), Spool(tmp_path / "spool"), flush_interval_s=0.1,
                      max_backoff_s=0.2)
    t0 = time.time_ns()
    sink.publish_samples([Sample(schema.PM_POWER, {"host": "h"}, float(k), t0 + k) for k in range(5)])
    wait_for(lambda: sink.errors_total >= 1 and sink.spool.lines == 5, 10, "the batch to be spooled")
    health = {s.metric: s.value for s in sink.health({"host": "h", "exporter": "x"}, 0)}
    assert health[schema.EXPORTER_SPOOL_BYTES] > 0 and health[schema.EXPORTER_SINK_WRITTEN] == 0
    influxql(influxdb, "CREATE DATABASE later", db=None)
    wait_for(lambda: sink.spool.empty, 10, "the spool to drain")
    sink.close()
    rows = influxql(influxdb, f"SELECT value FROM {schema.PM_POWER}", db="later")
    assert rows[0]["values"] == [[t0 + k, float(k)] for k in range(5)]


def test_v1_token_is_sent_as_basic_auth_and_a_refused_token_spools(tmp_path, monkeypatch):
    from conftest import RestartableInfluxdb

    server = RestartableInfluxdb(tmp_path)
    config = Path(server.config)
    config.write_text(config.read_text().replace("log-enabled = false", "log-enabled = false\n  auth-enabled = true"))
    server.start()
    try:
        # the first admin may be created without credentials; after that every request needs them
        requests.post(f"{server.url}/query", params={"q": "CREATE USER admin WITH PASSWORD 's3cret' WITH ALL "
                                                           "PRIVILEGES"}, timeout=10).raise_for_status()
        requests.post(f"{server.url}/query", params={"q": "CREATE DATABASE telemetry"}, auth=("admin", "s3cret"),
                      timeout=10).raise_for_status()
        monkeypatch.setenv("INFLUX_TOKEN", "admin:wrong")
        sink = InfluxSink(V1Writer(server.url, "telemetry", read_token()), Spool(tmp_path / "spool"),
                          flush_interval_s=0.1, max_backoff_s=0.2)
        t0 = time.time_ns()
        sink.publish_samples([Sample(schema.PM_POWER, {"host": "h"}, 1.0, t0)])
        wait_for(lambda: sink.errors_total >= 1 and sink.spool.lines == 1, 10, "the refused write to be spooled")
        sink.close()
        assert sink.written_total == 0 and sink.rejected_total == 0  # kept for when the token is fixed
        monkeypatch.setenv("INFLUX_TOKEN", "admin:s3cret")
        fixed = InfluxSink(V1Writer(server.url, "telemetry", read_token()), Spool(tmp_path / "spool"),
                           flush_interval_s=0.1)
        wait_for(lambda: fixed.spool.empty, 10, "the spooled sample to be written")
        fixed.close()
        rows = requests.post(f"{server.url}/query", params={"db": "telemetry", "epoch": "ns", "q":
                             f"SELECT value FROM {schema.PM_POWER}"}, auth=("admin", "s3cret"), timeout=10).json()
        assert rows["results"][0]["series"][0]["values"] == [[t0, 1.0]]
    finally:
        server.stop()


def test_a_batch_that_cannot_be_spooled_is_kept_and_written_later(influxdb, tmp_path):
    spool_dir = tmp_path / "spool"
    sink = InfluxSink(V1Writer(influxdb, "later"), Spool(spool_dir), flush_interval_s=0.1, max_backoff_s=0.2)
    shutil.rmtree(spool_dir)  # the spool cannot take the batch the server refuses (no database yet)
    t0 = time.time_ns()
    sink.publish_samples([Sample(schema.PM_POWER, {"host": "h"}, float(k), t0 + k) for k in range(5)])
    wait_for(lambda: sink.errors_total >= 3, 10, "the write and the spool to fail")
    assert sink.spool.empty and sink.written_total == 0
    spool_dir.mkdir()
    influxql(influxdb, "CREATE DATABASE later", db=None)
    wait_for(lambda: sink.written_total == 5, 10, "the kept batch to be written")
    sink.close()
    rows = influxql(influxdb, f"SELECT value FROM {schema.PM_POWER}", db="later")
    assert rows[0]["values"] == [[t0 + k, float(k)] for k in range(5)]


def test_a_lost_spool_segment_is_dropped_and_counted_not_a_stall(influxdb, tmp_path):
    influxql(influxdb, "CREATE DATABASE telemetry", db=None)
    spool = Spool(tmp_path / "spool")
    t0 = time.time_ns()
    for k in range(4):  # four batches of two points spooled by an earlier run
        spool.append([sample_line(Sample(schema.PM_POWER, {"host": "h"}, float(k), t0 + 10 * k + i)) for i in range(2)])
    segments = sorted((tmp_path / "spool").glob("*.lp"))
    segments[0].unlink()  # the oldest, and one in the middle, are gone
    segments[2].unlink()
    sink = InfluxSink(V1Writer(influxdb, "telemetry"), spool, flush_interval_s=0.1)
    wait_for(lambda: sink.spool.empty, 10, "the spool to drain")
    sink.close()
    assert spool.dropped_lines == 4 and sink.written_total == 4
    rows = influxql(influxdb, f"SELECT value FROM {schema.PM_POWER}")
    assert rows[0]["values"] == [[t0 + 10 * k + i, float(k)] for k in (1, 3) for i in range(2)]


def test_two_exporters_of_one_kind_pushing_to_one_server_get_their_own_default_spools(influxdb, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    config = InfluxConfig(influxdb, "telemetry", api="v1")
    first, second = InfluxSink.open(config, "pm"), InfluxSink.open(config, "pm")  # one per meter
    try:
        assert first.spool.directory != second.spool.directory
        assert second.spool.directory.name == first.spool.directory.name + "-2"
    finally:
        first.close()
        second.close()
    again = InfluxSink.open(config, "pm")  # after a restart the first slot, and its backlog, is taken again
    again.close()
    assert again.spool.directory == first.spool.directory
    explicit = InfluxConfig(influxdb, "telemetry", api="v1", spool_dir=tmp_path / "mine")
    sink = InfluxSink.open(explicit, "pm")
    try:
        with pytest.raises(MltelemetryError, match="in use by another process"):
            InfluxSink.open(explicit, "pm")  # a folder named on the command line is never swapped for another
    finally:
        sink.close()
