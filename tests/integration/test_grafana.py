"""Grafana: the dashboards are current, name only schema metrics, read their datasources from variables, limit every
Prometheus query to mltelemetry's jobs, import through Grafana's import format (``__inputs``), and every panel query
returns data from the real Prometheus and InfluxDB after a short recorded campaign, with the variables substituted
(there is no Grafana server here to render them)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import free_port, require_binary, wait_for
from fakes.fake_nvml import FakeClock, FakeGpu, FakeNvml, Step
from mltelemetry import schema
from mltelemetry.backends import build_publishers, live_events
from mltelemetry.cliutil import SinkOptions
from mltelemetry.exporters.gpu import nvml
from mltelemetry.exporters.gpu.collector import GpuCollector
from mltelemetry.exporters.runtime import Exporter
from mltelemetry.publisher import PublisherSettings
from mltelemetry.workload.campaign import CampaignPlan, run_campaign
from mltelemetry.workload.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"


def dashboards(folder: str = "dashboards") -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / folder).glob("*.json"))}


def queries(dashboard: dict) -> list[tuple[str, dict]]:
    """(where, query) for every panel target, annotation and variable: the things Grafana sends to a datasource."""
    found = [(f"panel {p['title']!r} {t['refId']}", t) for p in dashboard["panels"] for t in p["targets"]]
    found += [(f"annotation {a['name']!r}", a) for a in dashboard["annotations"]["list"] if "expr" in a or "query" in a]
    found += [(f"variable {v['name']}", {"datasource": v["datasource"], "expr": v["query"]["query"]})
              for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def text_of(query: dict) -> str:
    return query.get("expr") or query["query"]


# --- every query against the real backends ------------------------------------------------------------

def fake_rapl(root: Path) -> Path:
    zone = root / "class" / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    (zone / "energy_uj").write_text("1000000\n")
    return zone / "energy_uj"


class WallClock(FakeClock):
    """The fake GPUs follow real time, so their power and energy counter move while Prometheus watches."""

    def __init__(self) -> None:
        super().__init__()
        self._start = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self._start


def dashboard_scenario(hold: threading.Event):
    def train(ctx):
        with ctx.action("train"):
            for epoch in (1, 2):
                with ctx.recorder.window("epoch", scenario=ctx.scenario, run=ctx.run, epoch=epoch) as fields:
                    time.sleep(ctx.seconds)
                    fields.update(loss=1.0 / epoch, accuracy=0.5 + epoch / 10)
        if ctx.run == 2:
            with ctx.action("export"):  # the campaign stays open while the test looks at it
                hold.wait(180)
    return train


ALL = "$__all"  # a variable left at "All": Grafana puts its allValue, .*, in the query


def escape_regex(value: str) -> str:
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


class Backends:
    def __init__(self, prom: str, influx: str, start: float, values: dict[str, str]) -> None:
        self.prom, self.influx, self.start, self.values = prom, influx, start, values

    def substitute(self, text: str) -> str:
        range_s = int(time.time() - self.start) + 1
        text = (text.replace("$__rate_interval", "5s").replace("$__interval_ms", "1000").replace("$__interval", "1s")
                .replace("$__range", f"{range_s}s").replace("$timeFilter", f"time > now() - {range_s}s"))
        for name, value in sorted(self.values.items(), key=lambda item: -len(item[0])):  # $instance before $i...
            text = text.replace(f"${name}", ".*" if value == ALL else escape_regex(value))
        return text

    def label_values(self, query: str) -> list[str]:
        metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", query).groups()
        r = requests.get(f"{self.prom}/api/v1/series", params={"match[]": self.substitute(metric),
                                                               "start": self.start}, timeout=10).json()
        assert r["status"] == "success", r
        return sorted({s[label] for s in r["data"] if label in s})

    def prometheus(self, query: dict) -> list:
        text = self.substitute(text_of(query))
        if query.get("instant"):
            r = requests.post(f"{self.prom}/api/v1/query", data={"query": text}, timeout=30).json()
        else:
            r = requests.post(f"{self.prom}/api/v1/query_range", data={
                "query": text, "start": self.start, "end": time.time(), "step": "1s"}, timeout=30).json()
        assert r["status"] == "success", (text, r)
        return [s for s in r["data"]["result"]
                if any(v[1] != "NaN" for v in s.get("values", [s.get("value", [0, "NaN"])]))]

    def influxql(self, query: dict) -> list:
        text = self.substitute(text_of(query))
        r = requests.post(f"{self.influx}/query", params={"db": "mltelemetry", "q": text}, timeout=30).json()
        assert "error" not in r["results"][0], (text, r)
        return r["results"][0].get("series", [])


def test_every_panel_query_returns_data_after_a_campaign(prometheus, influxdb, tmp_path, monkeypatch):
    requests.post(f"{influxdb}/query", params={"q": "CREATE DATABASE mltelemetry"}, timeout=10).raise_for_status()
    influx_args = ["--influx-url", influxdb, "--influx-api", "v1", "--influx-bucket", "mltelemetry"]
    options = SinkOptions(influx_url=influxdb, influx_api="v1", influx_bucket="mltelemetry")
    ports = {name: free_port() for name in ("pm", "host", "gpu", "workload")}
    prom = prometheus([f"127.0.0.1:{port}" for port in ports.values()])
    processes: list[subprocess.Popen] = []
    stop, hold = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def spawn(*args: str) -> None:
        processes.append(subprocess.Popen([sys.executable, "-m", "mltelemetry", *args], stdout=subprocess.DEVNULL,
                                          stderr=(tmp_path / f"{args[1]}.log").open("wb")))

    try:
        link = tmp_path / "wt310"
        spawn("pm", "emulate", "--link", str(link), "--profile", "constant:150", "--update-interval", "0.5")
        wait_for(link.exists, 20, "the meter emulator")
        spawn("exporter", "pm", "--port", str(link), "--meter", "wt310", "--listen", f"127.0.0.1:{ports['pm']}",
              "--host-label", "sut", "--interval", "1", "--spool-dir", str(tmp_path / "spool-pm"), *influx_args)
        energy_uj = fake_rapl(tmp_path / "sys")
        spawn("exporter", "host", "--sysfs", str(tmp_path / "sys"), "--listen", f"127.0.0.1:{ports['host']}",
              "--host-label", "sut", "--interval", "0.5", "--spool-dir", str(tmp_path / "spool-host"), *influx_args)

        def rapl():  # the package draws 40 W
            uj = 1_000_000
            while not stop.wait(0.25):
                uj += 10_000_000
                energy_uj.write_text(f"{uj}\n")

        fake = FakeNvml([FakeGpu(steps=[Step(0.0, 80.0, temperature_c=40), Step(3.0, 300.0, temperature_c=65,
                                                                                 utilization_pct=97,
                                                                                 memory_utilization_pct=40,
                                                                                 memory_used_bytes=30 * 2**30)],
                                 uuid="GPU-11111111-2222-3333-4444-555555555555", fan_pct=40)], clock=WallClock())
        gpu = Exporter(GpuCollector(nvml.open_nvml(fake), "sut", monotonic=fake.clock),
                       build_publishers(PublisherSettings(SinkOptions(
                           **{**options.__dict__, "spool_dir": tmp_path / "spool-gpu"}),
                           listen=f"127.0.0.1:{ports['gpu']}", name="gpu")),
                       interval_s=0.5, host="sut")
        threads += [threading.Thread(target=rapl), threading.Thread(target=gpu.run, args=(stop,))]
        for thread in threads:
            thread.start()
        wait_for(lambda: len([t for t in requests.get(f"{prom}/api/v1/targets", timeout=5).json()["data"][
            "activeTargets"] if t["health"] == "up"]) >= 3, 30, "Prometheus to scrape the three exporters")
        started = time.time() - 5

        # the campaign: two baselines, then two training runs with two epochs each; run 2 holds in "export"
        monkeypatch.setitem(SCENARIOS, "dash-train", dashboard_scenario(hold))
        workload_options = SinkOptions(**{**options.__dict__, "spool_dir": tmp_path / "spool-workload"})

        def campaign():
            with live_events(listen=f"127.0.0.1:{ports['workload']}", host="sut", options=workload_options,
                             linger_s=3) as publishers:
                run_campaign(tmp_path / "events.db", CampaignPlan("dash-1", ["baseline", "dash-train"], runs=2,
                                                                  seconds=1.5, pause_s=0), show_progress=False,
                             publishers=publishers)

        runner = threading.Thread(target=campaign)
        runner.start()
        threads.append(runner)
        backends = Backends(prom, influxdb, started, {})
        wait_for(lambda: backends.prometheus({"expr": f'{schema.WORKLOAD_INFO}{{action="export"}}', "instant": True}),
                 60, "the campaign to reach its last action")
        wait_for(lambda: backends.influxql({"query": f'SELECT count(*) FROM "{schema.EVENT_MEASUREMENT}" '
                                                     "WHERE action = 'epoch'"}), 20, "the events in InfluxDB")
        time.sleep(2)  # a couple more scrapes

        # template variables resolve in order (each may use the ones before), then every query of every dashboard
        # returns data with their values; instance stays "All" (the workload's target is another instance)
        resolved = {}
        for variable in dashboards()["sut-power.json"]["templating"]["list"]:
            if variable["type"] != "query":
                continue
            resolved[variable["name"]] = backends.label_values(variable["query"]["query"])
            assert resolved[variable["name"]], f"variable {variable['name']} has no values"
            backends.values[variable["name"]] = ALL if variable["name"] == "instance" else resolved[variable["name"]][0]
        assert backends.values == {"job": "mltelemetry", "instance": ALL, "host": "sut", "gpu": "0",
                                   "campaign": "dash-1"}
        assert resolved["instance"] == sorted(f"127.0.0.1:{ports[name]}" for name in ("pm", "host", "gpu"))
        empty, checked = [], {"prometheus": 0, "influxdb": 0}
        for name, dashboard in dashboards().items():
            for where, query in queries(dashboard):
                if where.startswith("variable"):
                    continue
                kind = query["datasource"]["type"]
                checked[kind] += 1
                result = backends.prometheus(query) if kind == "prometheus" else backends.influxql(query)
                if not result:
                    empty.append(f"{name} {where}: {backends.substitute(text_of(query))}")
        assert not empty, "queries without data:\n" + "\n".join(empty)
        assert checked["prometheus"] > 60 and checked["influxdb"] >= 5  # every dashboard's, annotations included
    finally:
        hold.set()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


SCHEMA = ROOT / ".cache" / "grafana-schema" / "node_modules"  # make grafana-schema installs it


def test_dashboards_type_check_against_grafanas_dashboard_schema(tmp_path):
    """Every dashboard, provisioned and for import, is a ``Dashboard`` of @grafana/schema 11.1.3 (the Grafana
    compose.yaml runs; dashboard schemaVersion 39): tsc checks each field it names, required fields and enums."""
    node, tsc = require_binary("node"), SCHEMA / "typescript" / "bin" / "tsc"
    if not (SCHEMA / "@grafana" / "schema").is_dir() or not tsc.exists():
        pytest.fail("Grafana's dashboard schema is not installed: make grafana-schema")
    source = ['import type { Dashboard } from "@grafana/schema";',
              "type Mutable<T> = { -readonly [K in keyof T]: Mutable<T[K]> };"]  # keep literal types, drop readonly
    checked = [p for folder in ("dashboards", "import") for p in sorted((GRAFANA / folder).glob("*.json"))]
    for i, path in enumerate(checked):
        source += [f"// {path.relative_to(ROOT)}", f"const d{i} = {path.read_text().strip()} as const;",
                   f"export const checked{i}: Dashboard = d{i} as Mutable<typeof d{i}>;"]
    (tmp_path / "dashboards.ts").write_text("\n".join(source) + "\n")
    (tmp_path / "node_modules").symlink_to(SCHEMA)
    (tmp_path / "tsconfig.json").write_text(json.dumps({"files": ["dashboards.ts"], "compilerOptions": {
        "strict": True, "noEmit": True, "module": "nodenext", "moduleResolution": "nodenext", "target": "es2022",
        "skipLibCheck": True}}))
    result = subprocess.run([node, str(tsc), "-p", str(tmp_path / "tsconfig.json")], capture_output=True,
                            text=True, timeout=300)
    assert len(checked) == 10 and result.returncode == 0, result.stdout[-5000:] + result.stderr
