"""Grafana's dashboards as files: current, naming only schema metrics, their datasources from variables, and the
import format (the panel queries against real servers and the TypeScript check: tests/integration/test_grafana.py)."""

from __future__ import annotations

import importlib.util
import json
import re

import yaml
from test_grafana import GRAFANA, dashboards, queries, text_of

from mltelemetry import schema


def load_generator():
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def datasource_uid(dashboard: dict, ref: dict) -> str:
    """The uid a datasource reference resolves to: a ``${variable}`` through that datasource variable's default."""
    match = re.fullmatch(r"\$\{(\w+)\}", ref["uid"])
    if not match:
        return ref["uid"]
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == match[1]]
    assert variable["type"] == "datasource" and variable["query"] == ref["type"]
    return variable["current"]["value"]


def test_dashboards_are_current_and_complete():
    generator = load_generator()
    assert generator.main(["--check"]) == 0, "run: python grafana/generate.py"
    assert set(dashboards()) == {"sut-power.json", "gpu.json", "host.json", "campaign.json", "exporter-health.json"}
    assert set(dashboards("import")) == set(dashboards())
    gpu_panels = " ".join(text_of(t) for p in dashboards()["gpu.json"]["panels"] for t in p["targets"])
    assert all(m in gpu_panels for m in schema.METRICS if m.startswith("mltelemetry_gpu_"))  # every indicator
    host_panels = " ".join(text_of(t) for p in dashboards()["host.json"]["panels"] for t in p["targets"])
    assert all(m in host_panels for m in schema.METRICS if m.startswith("mltelemetry_host_"))


def test_queries_name_schema_metrics_and_defined_variables_and_provisioned_datasources():
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "mltelemetry.yaml").read_text())
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    event_fields = {schema.EVENT_MEASUREMENT}
    for name, dashboard in dashboards().items():
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert {"prometheus", "influxdb", "job", "instance", "host"} <= variables, name
        for where, query in queries(dashboard):
            text = text_of(query)
            assert query["datasource"]["uid"] in ("${prometheus}", "${influxdb}", "-- Grafana --"), (name, where)
            assert uids[datasource_uid(dashboard, query["datasource"])] == query["datasource"]["type"], (name, where)
            if query["datasource"]["type"] == "prometheus":
                # only mltelemetry's jobs: every selector names $job (other exporters of a shared Prometheus
                # would be summed in), and no subquery steps finer than the panel's interval over any range
                for selector in re.findall(r"(\w+)\{([^}]*)\}", text):
                    if selector[0] != "label_values" and "__name__" not in selector[1]:
                        assert 'job=~"$job"' in selector[1], (name, where, selector)
                for step in re.findall(r"\[[^\]:]+:([^\]]*)\]", text):
                    assert step == "$__interval", (name, where, text)
            for metric in re.findall(r"mltelemetry_[a-z_]+", text):
                assert metric in schema.METRICS or metric in event_fields, (name, where, metric)
            for used in re.findall(r"\$(\w+)", text):
                assert used.startswith("__") or used == "timeFilter" or used in variables, (name, where, used)
        for panel in dashboard["panels"]:
            assert datasource_uid(dashboard, panel["datasource"]) in uids
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mltelemetry.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_import_format_asks_for_the_datasources_and_imports_as_the_provisioned_dashboard():
    """What Grafana's import does (Dashboards → New → Import): each ``${DS_...}`` becomes the datasource the user
    picked for that input; the result is the provisioned dashboard reading those datasources."""
    chosen = {"DS_PROMETHEUS": "lab-prom-uid", "DS_INFLUXDB": "lab-influx-uid"}
    for name, imported in dashboards("import").items():
        inputs = {i["name"]: (i["type"], i["pluginId"]) for i in imported["__inputs"]}
        assert inputs == {"DS_PROMETHEUS": ("datasource", "prometheus"), "DS_INFLUXDB": ("datasource", "influxdb")}
        required = {(r["type"], r["id"]) for r in imported["__requires"]}
        assert {("grafana", "grafana"), ("datasource", "prometheus"), ("datasource", "influxdb")} <= required
        assert {("panel", p["type"]) for p in imported["panels"]} <= required, name
        assert imported["id"] is None  # a new dashboard in the lab's Grafana
        text = json.dumps(imported)
        assert set(re.findall(r"\$\{(DS_\w+)\}", text)) == set(inputs)  # every input is used, nothing else asked
        for input_name, uid in chosen.items():
            text = text.replace(f"${{{input_name}}}", uid)
        result = {k: v for k, v in json.loads(text).items() if k not in ("__inputs", "__elements", "__requires", "id")}
        expected = dashboards()[name]
        for variable in expected["templating"]["list"]:
            if variable["type"] == "datasource":
                variable["current"]["value"] = chosen[f"DS_{variable['query'].upper()}"]
        assert result == expected, name
