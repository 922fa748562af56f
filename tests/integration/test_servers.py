"""The real servers the integration tests use start, answer and take data (guards the fixtures)."""

import time

import requests

from conftest import wait_for


def test_victoria_metrics_takes_influx_line_protocol(victoria_metrics):
    now_ns = time.time_ns()
    written = requests.post(f"{victoria_metrics}/api/v2/write", data=f"probe,host=a value=42 {now_ns}", timeout=5)
    assert written.status_code == 204
    requests.get(f"{victoria_metrics}/internal/force_flush", timeout=5)
    result = wait_for(lambda: requests.get(f"{victoria_metrics}/api/v1/query", params={"query": "probe"},
                                           timeout=5).json()["data"]["result"], 20, "the point to be searchable")
    assert float(result[0]["value"][1]) == 42.0


def test_influxdb_answers_influxql(influxdb):
    assert requests.post(f"{influxdb}/query", params={"q": "CREATE DATABASE t"}, timeout=5).ok
    assert requests.post(f"{influxdb}/write", params={"db": "t"}, data="probe,host=a value=7 1000000000",
                         timeout=5).status_code == 204
    result = requests.get(f"{influxdb}/query", params={"db": "t", "q": "SELECT value FROM probe"}, timeout=5).json()
    assert result["results"][0]["series"][0]["values"] == [["1970-01-01T00:00:01Z", 7]]
