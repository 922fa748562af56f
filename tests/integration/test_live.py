"""Events live: the workload's windows in Prometheus (info gauge, event series), InfluxDB and Grafana annotations."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from typer.testing import CliRunner

from conftest import free_port, wait_for
from mltelemetry import schema
from mltelemetry.annotations import GrafanaAnnotations
from mltelemetry.backends import live_events
from mltelemetry.cli import app
from mltelemetry.influx import stored_tag_value
from mltelemetry.publisher import WindowChange
from mltelemetry.schema import Event
from mltelemetry.sinks import PrometheusSink
from mltelemetry.store import Store
from mltelemetry.workload.events import EventRecorder
from mltelemetry.workload.scenarios import SCENARIOS

HOSTILE_CAMPAIGN = 'lab "A", run=1\\x\nnext'


def live_train(ctx):
    """Two epochs of a pretend training, each with a loss: what the campaign dashboard and annotations show."""
    with ctx.action("train"):
        for epoch in (1, 2):
            with ctx.recorder.window("epoch", scenario=ctx.scenario, run=ctx.run, epoch=epoch) as fields:
                time.sleep(ctx.seconds / 2)
                fields["loss"] = 1.0 / epoch
                fields["framework"] = "none"


def metrics(port: int) -> dict[tuple[str, frozenset], float]:
    """Parsed /metrics: (name, labels) → value."""
    from prometheus_client.parser import text_string_to_metric_families

    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def test_info_gauge_follows_the_innermost_window_and_finished_events_stay(tmp_path):
    sink = PrometheusSink("127.0.0.1", 0, host_label="sut")
    seen = {}
    try:
        with Store(tmp_path / "s.db") as store:
            recorder = EventRecorder(store, HOSTILE_CAMPAIGN, publishers=[sink])
            with recorder.window("run", scenario="mnist", run=3):
                seen["run"] = metrics(sink.port)
                with recorder.window("train", scenario="mnist", run=3):
                    with recorder.window("epoch", scenario="mnist", run=3, epoch=2) as fields:
                        seen["epoch"] = metrics(sink.port)
                        fields.update(loss=0.5, accuracy=0.875, framework="keras", flag=True)
                    seen["after epoch"] = metrics(sink.port)
            seen["end"] = metrics(sink.port)
            events = store.events(HOSTILE_CAMPAIGN)
    finally:
        sink.close()

    def info(snapshot):
        return [dict(labels) for (name, labels) in snapshot if name == schema.WORKLOAD_INFO]

    base = {"host": "sut", "campaign": HOSTILE_CAMPAIGN, "scenario": "mnist", "run": "3"}
    assert info(seen["run"]) == [{**base, "action": "run", "epoch": ""}]
    assert info(seen["epoch"]) == [{**base, "action": "train", "epoch": "2"}]  # an epoch of training
    assert info(seen["after epoch"]) == [{**base, "action": "train", "epoch": ""}]
    assert info(seen["end"]) == []  # nothing runs
    epoch = next(e for e in events if e.action == "epoch")
    labels = frozenset({"host": "sut", "campaign": HOSTILE_CAMPAIGN, "scenario": "mnist", "run": "3",
                        "action": "epoch", "epoch": "2", "status": "ok"}.items())  # host: which SUT ran it
    end = seen["end"]
    # Unix seconds as float64 keep ~0.24 µs; approx's default (rel 1e-6 ≈ ±30 min here) would let start and end swap
    assert end[(schema.EVENT_START, labels)] == pytest.approx(epoch.start_ns / 1e9, abs=1e-6)
    assert end[(schema.EVENT_END, labels)] == pytest.approx(epoch.end_ns / 1e9, abs=1e-6)
    assert epoch.end_ns - epoch.start_ns > 10_000  # > 10 µs (it scraped /metrics): a swap shows
    assert end[(schema.EVENT_FIELD, labels | {("field", "loss")})] == 0.5
    assert end[(schema.EVENT_FIELD, labels | {("field", "accuracy")})] == 0.875
    assert not any(dict(k[1]).get("field") in ("framework", "flag") for k in end)  # numeric fields only
    assert sum(name == schema.EVENT_END for name, _ in end) == 3  # epoch, train, run


def test_campaign_run_publishes_live_to_prometheus_and_influx(prometheus, victoria_metrics, tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "live-train", live_train)
    port = free_port()
    prom = prometheus([f"127.0.0.1:{port}"])
    wait_for(lambda: [t for t in requests.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
                      if not t["lastScrape"].startswith("0001")], 20, "Prometheus to start scraping")
    result = CliRunner().invoke(app, [
        "campaign", "run", "--campaign", HOSTILE_CAMPAIGN, "--store", str(tmp_path / "s.db"),
        "--scenario", "live-train", "--scenario", "baseline", "--runs", "2", "--seconds", "2", "--pause", "0",
        "--listen", f"127.0.0.1:{port}", "--host-label", "sut",
        "--influx-url", victoria_metrics, "--influx-org", "lab", "--influx-bucket", "mltelemetry",
        "--spool-dir", str(tmp_path / "spool")], env={"INFLUX_TOKEN": "unused-by-victoria-metrics"})
    assert result.exit_code == 0, result.output
    with Store(tmp_path / "s.db") as store:
        events = store.events(HOSTILE_CAMPAIGN)
    assert len(events) == 1 + 4 + 2 * 3 + 2 * 1  # campaign, runs, train + 2 epochs per live-train run, baselines

    def key(e):
        return (e.scenario, str(e.run), e.action, "" if e.epoch is None else str(e.epoch))

    expected = {key(e): e for e in events}
    # Prometheus scraped every finished event (the workload waited for a last scrape) ...
    query = f'{schema.EVENT_END}{{campaign="{json.dumps(HOSTILE_CAMPAIGN)[1:-1]}"}}'
    got = wait_for(lambda: requests.get(f"{prom}/api/v1/query", params={"query": query}, timeout=5)
                   .json()["data"]["result"], 10, "the event series in Prometheus")
    assert {(m["metric"]["scenario"], m["metric"]["run"], m["metric"]["action"], m["metric"].get("epoch", "")): float(
        m["value"][1]) for m in got} == {k: pytest.approx(e.end_ns / 1e9, abs=1e-6) for k, e in expected.items()}
    # ... and the info gauge while it ran: both training runs, with their epochs
    info = requests.get(f"{prom}/api/v1/series", params={"match[]": schema.WORKLOAD_INFO, "start": "0"},
                        timeout=5).json()["data"]
    seen = {(s["scenario"], s["run"], s["action"], s.get("epoch", "")) for s in info}  # "" is no label
    assert {("live-train", "1", "train", "1"), ("live-train", "2", "train", "2"),
            ("baseline", "2", "baseline", "")} <= seen
    assert {s["campaign"] for s in info} == {HOSTILE_CAMPAIGN} and {s["host"] for s in info} == {"sut"}

    # VictoriaMetrics got every event through the InfluxDB v2 path, under the documented stored names
    def influx_events():
        r = requests.get(f"{victoria_metrics}/api/v1/export", params={"match[]": schema.EVENT_START}, timeout=5)
        series = [json.loads(line) for line in r.text.splitlines()]
        return series if len(series) == len(events) else None

    series = wait_for(influx_events, 15, "the events in VictoriaMetrics")
    for s in series:
        m = s["metric"]
        assert m["campaign"] == stored_tag_value(HOSTILE_CAMPAIGN)
        e = expected[(m["scenario"], m["run"], m["action"], m.get("epoch", ""))]
        # VictoriaMetrics keeps about 15 significant digits: Unix seconds to ~10 µs
        assert s["values"] == [pytest.approx(e.start_ns / 1e9, abs=1e-4)] and s["timestamps"] == [e.end_ns // 10**6]
    loss = requests.get(f"{victoria_metrics}/api/v1/export", params={"match[]": "mltelemetry_event_loss"},
                        timeout=5).text.splitlines()
    assert sorted(json.loads(line)["values"][0] for line in loss) == [0.5, 0.5, 1.0, 1.0]


class _FakeGrafana(BaseHTTPRequestHandler):
    """Records what a client posts to /api/annotations (there is no Grafana server on the test machines)."""

    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Authorization"], json.loads(body)))
        status = 200 if self.headers["Authorization"] == "Bearer glsa_secret" else 401
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message":"Annotation added","id":1}')

    def log_message(self, *args):
        pass


def test_events_are_posted_as_grafana_annotations(tmp_path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeGrafana.received = []
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with pytest.raises(Exception, match="GRAFANA_TOKEN"):
            GrafanaAnnotations(url, None)
        monkeypatch.setenv("GRAFANA_TOKEN", "glsa_secret")
        with Store(tmp_path / "s.db") as store, live_events(host="sut", grafana_url=url) as publishers:
            recorder = EventRecorder(store, HOSTILE_CAMPAIGN, publishers=publishers)
            with recorder.window("epoch", scenario="mnist", run=1, epoch=4):
                pass
            (event,) = store.events(HOSTILE_CAMPAIGN)
        assert publishers[0].posted == 1 and publishers[0].failed == 0
    finally:
        server.shutdown()
    (path, auth, body), = _FakeGrafana.received
    assert path == "/api/annotations" and auth == "Bearer glsa_secret"
    assert body == {"time": event.start_ns // 10**6, "timeEnd": event.end_ns // 10**6,
                    "tags": ["mltelemetry", f"campaign:{HOSTILE_CAMPAIGN}", "scenario:mnist", "run:1", "action:epoch",
                             "status:ok", "epoch:4"],
                    "text": "epoch · mnist run 1 epoch 4 · ok"}


class _BrokenGrafana(_FakeGrafana):
    """Answers its first post with a body shorter than its Content-Length (IncompleteRead), then as Grafana."""

    def do_POST(self):  # noqa: N802
        if self.received:
            return super().do_POST()
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b'{"mess')
        self.close_connection = True


def test_a_broken_grafana_answer_is_counted_and_later_annotations_still_go(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenGrafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _BrokenGrafana.received = []
    try:
        grafana = GrafanaAnnotations(f"http://127.0.0.1:{server.server_port}", "glsa_secret")
        for run in (1, 2):
            grafana.publish_events(WindowChange(Event("c", "mnist", run, "run", start_ns=run * 10**9,
                                                      end_ns=(run + 1) * 10**9), closed=True))
        grafana.close()
    finally:
        server.shutdown()
    assert grafana.failed == 1 and grafana.posted == 1
    assert _BrokenGrafana.received[1][2]["tags"][3] == "run:2"


def test_finished_events_leave_metrics_after_a_while_so_a_long_campaign_keeps_the_page_small():
    """2 scenarios × 5 runs × 100 epochs of 2 s on a fake clock, scraped every 15 s: every epoch is on the
    page for a few scrapes, and the page never holds more than the last EVENT_KEEP_S of events."""
    from mltelemetry.event_series import EVENT_KEEP_S, EVENT_METRICS

    now = [1000.0]
    sink = PrometheusSink("127.0.0.1", 0, clock=lambda: now[0], keep_s=dict.fromkeys(EVENT_METRICS, EVENT_KEEP_S),
                          host_label="sut")
    seen: dict[tuple[str, str, str], int] = {}  # (scenario, run, epoch) → scrapes that showed its end
    largest, next_scrape = 0, now[0]

    def scrape() -> None:
        nonlocal largest, next_scrape
        next_scrape += 15.0
        lines = [line for line in sink.metrics("").body.decode().splitlines()
                 if line.startswith(schema.PREFIX + "event_")]
        largest = max(largest, len(lines))
        for line in lines:
            if line.startswith(schema.EVENT_END) and 'action="epoch"' in line:
                key = tuple(line.split(f'{k}="')[1].split('"')[0] for k in ("scenario", "run", "epoch"))
                seen[key] = seen.get(key, 0) + 1

    def window(action: str, scenario: str, run: int, seconds: float, epoch: int | None = None) -> None:
        start_ns = int(now[0] * 1e9)
        event = Event("c", scenario, run, action, start_ns, start_ns, epoch=epoch)
        sink.publish_events(WindowChange(event, closed=False, running=(event,)))
        now[0] += seconds
        event.end_ns = int(now[0] * 1e9)
        event.fields = {"loss": 0.5, "accuracy": 0.9, "val_loss": 0.6, "val_accuracy": 0.8}
        sink.publish_events(WindowChange(event, closed=True))
        if now[0] >= next_scrape:
            scrape()

    try:
        for scenario in ("mnist", "cifar"):
            for run in range(5):
                for epoch in range(100):
                    window("epoch", scenario, run, 2.0, epoch)
                window("run", scenario, run, 1.0)
        for _ in range(10):  # the scraper goes on after the campaign
            now[0] = next_scrape
            scrape()
        # 1000 epochs ended, each 2 s: all of them on the page for 120 s, in at least 120 / 15 - 1 = 7 scrapes.
        assert len(seen) == 1000 and min(seen.values()) >= 7
        # At most the epochs of the last 120 s (61, and a run's end), 6 series each (start, end, 4 fields).
        assert largest <= 62 * 6
        # and EVENT_KEEP_S after the campaign ended, they have all left
        body = requests.get(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).text
        assert schema.EVENT_END not in body
    finally:
        sink.close()
