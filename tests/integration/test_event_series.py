"""Event series carry the SUT's host, and InfluxDB keeps an event's text fields (framework, device, error)."""

from __future__ import annotations

import requests

from conftest import wait_for
from mltelemetry import schema
from mltelemetry.analysis.sources import InfluxSource
from mltelemetry.backends import live_events
from mltelemetry.cliutil import SinkOptions
from mltelemetry.store import Store
from mltelemetry.workload.events import EventRecorder

ERROR = 'RuntimeError: CUDA out of memory ("tried 2 GiB")\nat C:\\train.py line 3'


def test_an_events_text_fields_and_host_reach_influxdb_and_read_back(influxdb, tmp_path):
    assert requests.post(f"{influxdb}/query", params={"q": "CREATE DATABASE lab"}, timeout=10).ok
    options = SinkOptions(influx_url=influxdb, influx_api="v1", influx_bucket="lab", spool_dir=tmp_path / "spool")
    with Store(tmp_path / "s.db") as store, live_events(host="sut-07", options=options) as publishers:
        recorder = EventRecorder(store, "c1", publishers=publishers)
        with recorder.window("create_model", scenario="cnn", run=1) as fields:
            fields.update(params_total=25_716_773, framework="torch", device="cuda:0", reached_target=False,
                          error=ERROR, shapes=[224, 224, 3])
    source = InfluxSource(f"influxdb+{influxdb}/lab")
    [point] = wait_for(lambda: source.influxql(f'SELECT * FROM "{schema.EVENT_MEASUREMENT}"'), 20, "the event")
    row = dict(zip(point["columns"], point["values"][0]))
    assert row["host"] == "sut-07" and row["params_total"] == 25_716_773.0
    assert row["framework"] == "torch" and row["device"] == "cuda:0" and row["reached_target"] is False
    assert row["shapes"] == "[224, 224, 3]"  # anything else as its JSON text
    # a line break cannot be stored verbatim: it reads back as the two characters \n, the rest as written
    assert row["error"] == ERROR.replace("\n", "\\n")
    [event] = source.events("c1")
    assert event.fields["framework"] == "torch" and event.fields["params_total"] == 25_716_773.0
