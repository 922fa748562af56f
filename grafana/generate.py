"""The Grafana dashboards, generated from the schema: ``python grafana/generate.py [--check]``.

Every panel query names metrics from :mod:`mltelemetry.schema` (the GPU and host dashboards show
every GPU and host metric the schema has), so a renamed metric changes the dashboards with it;
``--check`` (and tests/test_grafana.py) fails when the JSON written is not current. Two forms of
each dashboard:

- ``grafana/dashboards/``: provisioned (compose.yaml mounts them); the datasource variables default
  to the provisioned datasources' uids;
- ``grafana/import/``: Grafana's import format (Dashboards → New → Import): ``__inputs`` asks for a
  Prometheus and an InfluxDB datasource of the Grafana the lab already runs.

Every panel reads its datasource from a variable (``prometheus``, ``influxdb``). Other variables:
``job`` (the Prometheus jobs that scrape mltelemetry's exporters or workload, whatever the lab named
them), ``instance``, ``host`` (the SUT), ``gpu`` (NVML index), ``campaign``; every Prometheus query
is limited to ``$job``, so other exporters of a shared Prometheus are never counted. Annotations:
runs and epochs from Prometheus (``mltelemetry_workload_info``, regions), finished runs from
InfluxDB (``mltelemetry_event``, marked at their end: an InfluxDB point has one time, the event's
end), and the events the workload posted to Grafana's annotations API (tag ``mltelemetry``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mltelemetry import schema
from mltelemetry.schema import METRICS

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
IMPORTS = HERE / "import"

# The datasources of grafana/provisioning/datasources/mltelemetry.yaml: the variables' defaults there.
PROVISIONED_UIDS = {"prometheus": "mltelemetry-prometheus", "influxdb": "mltelemetry-influxdb"}
# Grafana's import format: one input per datasource, substituted for ${DS_...} when the dashboard is imported.
INPUTS = {"prometheus": ("DS_PROMETHEUS", "Prometheus"), "influxdb": ("DS_INFLUXDB", "InfluxDB")}
GRAFANA_VERSION = "10.4.0"  # the oldest Grafana whose dashboard schema (39) these use
PROMETHEUS = {"type": "prometheus", "uid": "${prometheus}"}
INFLUXDB = {"type": "influxdb", "uid": "${influxdb}"}
GRAFANA = {"type": "grafana", "uid": "-- Grafana --"}

JOB = 'job=~"$job"'
# Our exporters: the jobs, targets and SUT chosen. Workload series (events, what runs now) are served by the
# workload's own target, so they are limited to $job and $host, not to an exporter's $instance.
HOST = f'{JOB}, instance=~"$instance", host=~"$host"'
GPU = f'{HOST}, gpu=~"$gpu"'
CAMPAIGN = f'{JOB}, host=~"$host", campaign=~"$campaign"'

_UNITS = {"W": "watt", "J": "joule", "V": "volt", "A": "amp", "Cel": "celsius", "B": "bytes", "Hz": "hertz",
          "s": "s"}
_RATE_UNITS = {"J": "watt", "B": "Bps", "s": "percentunit"}


def unit(metric: str) -> str:
    """The Grafana unit of a gauge of ``metric`` (ratios as percent)."""
    if metric.endswith("_ratio"):
        return "percentunit"
    return _UNITS.get(METRICS[metric].unit, "short")


_UNIT_WORDS = ("watts", "joules", "bytes", "ratio", "celsius", "hertz", "seconds", "volts", "amperes")


def title(metric: str) -> str:
    """``mltelemetry_gpu_memory_used_bytes`` → ``Memory used``: the name without prefix, subsystem and unit."""
    words = metric.removeprefix(schema.PREFIX).removesuffix("_total").split("_")[1:]
    if len(words) > 1 and words[-1] in _UNIT_WORDS:
        words = words[:-1]
    text = " ".join(words).capitalize()
    for word, written in (("Pcie", "PCIe"), ("pcie", "PCIe"), ("Rapl", "RAPL")):
        text = text.replace(word, written)
    return text


# --- building blocks ---------------------------------------------------------------------------------

def prom(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {"datasource": PROMETHEUS, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        target |= {"instant": True, "range": False}
    if table:
        target["format"] = "table"
    return target


def influxql(query: str, *, table: bool = False) -> dict[str, Any]:
    return {"datasource": INFLUXDB, "query": query, "rawQuery": True, "resultFormat": "table" if table else
            "time_series"}


def panel(kind: str, title: str, targets: list[dict], unit: str = "short", *, w: int = 12, h: int = 8,
          description: str = "", **options: Any) -> dict[str, Any]:
    return {"type": kind, "title": title, "description": description,
            "datasource": targets[0]["datasource"],
            "targets": [{"refId": chr(ord("A") + i), **t} for i, t in enumerate(targets)],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": options, "gridPos": {"w": w, "h": h}}


def timeseries(title: str, targets: list[dict], unit: str = "short", **kw: Any) -> dict[str, Any]:
    return panel("timeseries", title, targets, unit,
                 **({"legend": {"displayMode": "list", "placement": "bottom"}} | kw))


def stat(title: str, targets: list[dict], unit: str = "short", **kw: Any) -> dict[str, Any]:
    return panel("stat", title, targets, unit, w=kw.pop("w", 6), h=kw.pop("h", 5),
                 **({"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"} | kw))


def table(title: str, targets: list[dict], unit: str = "short", **kw: Any) -> dict[str, Any]:
    return panel("table", title, targets, unit, w=kw.pop("w", 24), h=kw.pop("h", 8), **kw)


def metric_panel(metric: str, selector: str, legend: str) -> dict[str, Any]:
    """One panel for one schema metric: the gauge itself, or a counter's rate."""
    spec = METRICS[metric]
    extra = [label for label in spec.labels if label not in ("host", "gpu", "uuid", "name")]
    legend = " ".join([legend, *(f"{{{{{label}}}}}" for label in extra)]).strip()
    if spec.type == "counter":
        name = f"Power from the {title(metric).lower()} counter" if spec.unit == "J" else f"{title(metric)} per second"
        return timeseries(name.replace("rapl", "RAPL"), [prom(f"rate({metric}{{{selector}}}[$__rate_interval])",
                                                               legend)], _RATE_UNITS.get(spec.unit, "short"),
                          description=spec.help)
    return timeseries(title(metric), [prom(f"{metric}{{{selector}}}", legend)], unit(metric), description=spec.help)


def datasource_variable(plugin: str, label: str) -> dict[str, Any]:
    """The datasource every panel of that type reads (``${prometheus}``); defaults to the provisioned one."""
    return {"name": plugin, "label": label, "type": "datasource", "query": plugin, "regex": "", "hide": 0,
            "includeAll": False, "multi": False, "refresh": 1, "options": [],
            "current": {"selected": False, "text": label, "value": PROVISIONED_UIDS[plugin]}}


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": PROMETHEUS,
            "query": {"query": query, "refId": f"{name}-variable"}, "definition": query,
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


# The series only mltelemetry's targets serve: the exporters' sample counter, the workload's info gauge.
OURS = f'{{__name__=~"{schema.EXPORTER_SAMPLES}|{schema.WORKLOAD_INFO}"}}'
VARIABLES = {
    "prometheus": datasource_variable("prometheus", "Prometheus"),
    "influxdb": datasource_variable("influxdb", "InfluxDB"),
    "job": variable("job", f"label_values({OURS}, job)", "Job"),
    "instance": variable("instance", f"label_values({schema.EXPORTER_SAMPLES}{{{JOB}}}, instance)", "Instance"),
    "host": variable("host", f'label_values({schema.EXPORTER_SAMPLES}{{{JOB}, instance=~"$instance"}}, host)',
                     "Host"),
    "gpu": variable("gpu", f"label_values({schema.GPU_UP}{{{HOST}}}, gpu)", "GPU"),
    "campaign": variable("campaign", f'label_values({schema.WORKLOAD_INFO}{{{JOB}, host=~"$host"}}, campaign)',
                         "Campaign"),
}
COMMON_VARIABLES = ["prometheus", "influxdb", "job", "instance", "host"]

ANNOTATIONS = [
    {"builtIn": 1, "datasource": GRAFANA, "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
     "name": "Annotations & Alerts", "type": "dashboard"},
    {"name": "Runs", "datasource": PROMETHEUS, "enable": True, "iconColor": "rgba(255, 152, 48, 0.6)",
     "expr": f"max by (campaign, scenario, run) ({schema.WORKLOAD_INFO}{{{CAMPAIGN}}})", "step": "1s",
     "titleFormat": "{{scenario}} run {{run}}", "tagKeys": "campaign,scenario,run", "useValueForTime": False},
    {"name": "Epochs", "datasource": PROMETHEUS, "enable": False, "iconColor": "rgba(115, 191, 105, 0.5)",
     "expr": f'max by (campaign, scenario, run, epoch) ({schema.WORKLOAD_INFO}{{{CAMPAIGN}, epoch!=""}})',
     "step": "1s", "titleFormat": "epoch {{epoch}}", "tagKeys": "scenario,run,epoch", "useValueForTime": False},
    {"name": "Runs ended (InfluxDB)", "datasource": INFLUXDB, "enable": False, "iconColor": "rgba(184, 119, 217, 1)",
     "query": f'SELECT "end_seconds" - "start_seconds" AS "seconds", "scenario", "run", "status" '
              f'FROM "{schema.EVENT_MEASUREMENT}" WHERE "action" = \'run\' AND "campaign" =~ /^$campaign$/ '
              'AND "host" =~ /^$host$/ AND $timeFilter',
     "textColumn": "seconds", "tagsColumn": "scenario,run,status"},
    {"name": "Events (Grafana API)", "datasource": GRAFANA, "enable": False, "iconColor": "rgba(242, 204, 12, 1)",
     "target": {"refId": "Anno", "type": "tags", "tags": ["mltelemetry"], "limit": 500, "matchAny": False}},
]


def dashboard(uid: str, title: str, description: str, variables: list[str], panels: list[dict]) -> dict[str, Any]:
    """A dashboard with panels laid out left to right, top to bottom, and ids in order."""
    x = y = row_h = 0
    for i, p in enumerate(panels, 1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["id"], p["gridPos"] = i, {"h": h, "w": w, "x": x, "y": y}
        x, row_h = x + w, max(row_h, h)
    return {"uid": uid, "title": title, "description": description, "tags": ["mltelemetry"], "editable": True,
            "schemaVersion": 39, "version": 1, "refresh": "5s", "time": {"from": "now-30m", "to": "now"},
            "timezone": "utc", "graphTooltip": 1, "links": [
                {"type": "dashboards", "tags": ["mltelemetry"], "asDropdown": True, "title": "mltelemetry",
                 "icon": "external link", "includeVars": True, "keepTime": True, "targetBlank": False, "tooltip": "",
                 "url": ""}],
            "templating": {"list": [VARIABLES[v] for v in COMMON_VARIABLES + variables]},
            "annotations": {"list": ANNOTATIONS}, "panels": panels}


# --- the dashboards ----------------------------------------------------------------------------------

def sut_power() -> dict[str, Any]:
    energy_wh = [
        prom(f"sum by (meter) (increase({schema.PM_ENERGY}{{{HOST}}}[$__range])) / 3600", "meter {{meter}}"),
        prom(f"sum by (gpu) (increase({schema.GPU_ENERGY}{{{GPU}}}[$__range])) / 3600", "GPU {{gpu}}"),
        prom(f"sum by (zone) (increase({schema.HOST_RAPL_ENERGY}{{{HOST}}}[$__range])) / 3600", "RAPL {{zone}}"),
    ]
    return dashboard("mltelemetry-sut-power", "SUT power", "Power of the system under test: the meter at the wall, "
                     "the GPUs (NVML) and the CPU packages (RAPL), with campaign annotations.",
                     ["gpu", "campaign"], [
        timeseries("Power: meter, GPUs, RAPL", [
            prom(f"sum by (meter) ({schema.PM_POWER}{{{HOST}}})", "meter {{meter}}"),
            prom(f"sum by (gpu) ({schema.GPU_POWER}{{{GPU}}})", "GPU {{gpu}}"),
            prom(f"sum by (zone) (rate({schema.HOST_RAPL_ENERGY}{{{HOST}}}[$__rate_interval]))", "RAPL {{zone}}"),
        ], "watt", w=24, h=10),
        stat("Energy in the time range", energy_wh, "watth", w=12),
        stat("Meter power now", [prom(f"sum by (meter) ({schema.PM_POWER}{{{HOST}}})", "{{meter}}")], "watt"),
        stat("Meter connected", [prom(f"min by (meter) ({schema.PM_CONNECTED}{{{HOST}}})", "{{meter}}")],
             "bool_yes_no"),
        timeseries("Meter power from its energy counter", [
            prom(f"rate({schema.PM_ENERGY}{{{HOST}}}[$__rate_interval])", "{{meter}}")], "watt"),
        timeseries("Meter voltage and current", [
            prom(f"{schema.PM_VOLTAGE}{{{HOST}}}", "{{meter}} V"),
            prom(f"{schema.PM_CURRENT}{{{HOST}}}", "{{meter}} A")], "short"),
        timeseries("GPU power (instant and NVML's 1 s average)", [
            prom(f"{schema.GPU_POWER}{{{GPU}}}", "GPU {{gpu}} {{kind}}"),
            prom(f"{schema.GPU_POWER_AVERAGE}{{{GPU}}}", "GPU {{gpu}} 1 s average")], "watt"),
        timeseries("RAPL power per zone", [
            prom(f"rate({schema.HOST_RAPL_ENERGY}{{{HOST}}}[$__rate_interval])", "{{zone}}")], "watt"),
    ])


def gpu() -> dict[str, Any]:
    gpu_metrics = [m for m in METRICS if m.startswith(schema.PREFIX + "gpu_")]
    return dashboard("mltelemetry-gpu", "GPU", "Every NVML indicator the GPU exporter publishes, one series per GPU.",
                     ["gpu", "campaign"], [metric_panel(m, GPU, "GPU {{gpu}}") for m in gpu_metrics])


def host() -> dict[str, Any]:
    cpu, total = schema.HOST_CPU_UTILIZATION, schema.HOST_CPU_TOTAL_UTILIZATION
    memory = [schema.HOST_MEMORY_USED, schema.HOST_MEMORY_AVAILABLE, schema.HOST_MEMORY_TOTAL, schema.HOST_SWAP_USED]
    shown = {cpu, total, *memory}
    return dashboard("mltelemetry-host", "Host", "CPU, memory, disk, network, load and RAPL of the SUT.",
                     ["campaign"], [
        timeseries("CPU utilisation (whole machine)", [prom(f"{total}{{{HOST}}}", "{{host}}")], "percentunit"),
        timeseries("CPU utilisation per core", [prom(f"{cpu}{{{HOST}}}", "cpu {{cpu}}")], "percentunit"),
        timeseries("Memory", [prom(f"{m}{{{HOST}}}", title(m)) for m in memory], "bytes"),
        *[metric_panel(m, HOST, "") for m in METRICS
          if m.startswith(schema.PREFIX + "host_") and m not in shown],
    ])


def campaign() -> dict[str, Any]:
    running = f"{schema.WORKLOAD_INFO}{{{CAMPAIGN}}}"
    # The meter's counter, counted only while the campaign runs (the info gauge exists exactly then).
    during = f"({schema.PM_ENERGY}{{{HOST}}} and on (host) group by (host) ({running}))"
    # Mean meter power over each step of $__interval while an epoch runs, times the step: at most the panel's
    # max data points steps over any range (a [$__range:1s] subquery would evaluate every second of a month).
    per_epoch = (f"sum by (scenario, run, epoch) (sum_over_time((sum by (host) (rate({schema.PM_ENERGY}{{{HOST}}}"
                 f"[$__rate_interval])) * on (host) group_right () max by (host, campaign, scenario, run, epoch) "
                 f'({schema.WORKLOAD_INFO}{{{CAMPAIGN}, epoch!=""}}))[$__range:$__interval])) * $__interval_ms / 1000')

    # Finished events stay on the workload's /metrics only while it runs: look back over the whole range.
    def last(metric: str, selector: str = CAMPAIGN) -> str:
        return f"last_over_time({metric}{{{selector}}}[$__range])"

    events = f"{last(schema.EVENT_END)} - {last(schema.EVENT_START)}"
    runs = last(schema.EVENT_END, CAMPAIGN + ', action="run"')
    epochs = last(schema.EVENT_END, CAMPAIGN + ', action="epoch"')
    return dashboard("mltelemetry-campaign", "Campaign", "What runs now, energy so far and per epoch, and the finished "
                     "events. Exact, baseline-adjusted figures come from `mltelemetry analyze`; the per-epoch energy "
                     "here sums the meter's mean power over the panel's steps.", ["campaign"], [
        table("Running now", [prom(running, instant=True, table=True)], h=5,
              description="Campaign, scenario, run, action and epoch the workload is in (mltelemetry_workload_info)."),
        stat("Meter energy so far in the campaign", [
            prom(f"sum(increase({during}[$__range:$__interval])) / 3600", "meter")], "watth", w=8),
        stat("Runs finished", [prom(f"count({runs})", "runs")], w=8),
        stat("Epochs finished", [prom(f"count({epochs})", "epochs")], w=8),
        panel("barchart", "Meter energy per epoch (≈ Σ power × step)",
              [prom(f"{per_epoch} / 3600", "{{scenario}} run {{run}} epoch {{epoch}}", instant=True, table=True)],
              "watth", w=12, h=9, description="Mean meter power over each step of the panel's interval while "
              "the epoch runs, times the step: the narrower the time range, the finer the steps (1 s at best). "
              "Exact figures: mltelemetry analyze."),
        timeseries("Epoch metrics (loss, accuracy, ...)", [
            prom(f'{schema.EVENT_FIELD}{{{CAMPAIGN}, action="epoch"}}', "{{field}} {{scenario}} run {{run}}")],
                   w=12, h=9),
        timeseries("Meter power during the campaign", [
            prom(f"sum by (meter) ({schema.PM_POWER}{{{HOST}}})", "meter {{meter}}")], "watt", w=24),
        table("Finished events (Prometheus): duration", [prom(events, instant=True, table=True)], "s"),
        table("Finished events (InfluxDB)", [influxql(
            f'SELECT "start_seconds", "end_seconds", "end_seconds" - "start_seconds" AS "seconds", "scenario", "run", '
            f'"action", "epoch", "status" FROM "{schema.EVENT_MEASUREMENT}" WHERE "campaign" =~ /^$campaign$/ '
            'AND "host" =~ /^$host$/ AND $timeFilter', table=True)]),
    ])


def exporter_health() -> dict[str, Any]:
    exporter = "{{exporter}}"
    sink = "{{exporter}} → {{sink}}"
    return dashboard("mltelemetry-exporter-health", "Exporter health", "Sampling rate, errors, spool fill and "
                     "overhead of every exporter.", ["campaign"], [
        stat("Targets up", [prom(f'sum(up{{{JOB}, instance=~"$instance"}})', "up")], w=6,
             description="mltelemetry's targets (the jobs chosen) that answered their last scrape."),
        stat("Spool fill (max)", [prom(f"max({schema.EXPORTER_SPOOL_FILL}{{{HOST}}})", "fill")], "percentunit",
             w=6),
        stat("Sampling errors in range", [prom(f"sum(increase({schema.EXPORTER_ERRORS}{{{HOST}}}[$__range]))",
                                               "errors")], w=6),
        stat("Samples dropped from full spools", [prom(
            f"sum({schema.EXPORTER_SPOOL_DROPPED}{{{HOST}}})", "dropped")], w=6),
        timeseries("Samples per second", [
            prom(f"rate({schema.EXPORTER_SAMPLES}{{{HOST}}}[$__rate_interval])", exporter)], "short"),
        timeseries("Meter readings per second", [
            prom(f"rate({schema.PM_SAMPLES}{{{HOST}}}[$__rate_interval])", "{{meter}} valid"),
            prom(f"rate({schema.PM_INVALID}{{{HOST}}}[$__rate_interval])", "{{meter}} invalid")], "short"),
        timeseries("Tick duration (overhead per sample)", [
            prom(f"{schema.EXPORTER_SAMPLE_DURATION}{{{HOST}}}", exporter)], "s"),
        timeseries("Scrape duration", [prom(f'scrape_duration_seconds{{{JOB}, instance=~"$instance"}}',
                                             "{{instance}}")], "s"),
        timeseries("Exporter CPU (CPU-s per hour) and memory (MB)", [  # each exporter's own process_* series
            prom(f'rate(process_cpu_seconds_total{{{JOB}, instance=~"$instance"}}[$__rate_interval]) * 3600',
                 "{{instance}} CPU-s/h"),
            prom(f'process_resident_memory_bytes{{{JOB}, instance=~"$instance"}} / 1e6', "{{instance}} RSS MB")],
            "short"),
        timeseries("Errors and missed ticks per second", [
            prom(f"rate({schema.EXPORTER_ERRORS}{{{HOST}}}[$__rate_interval])", f"{exporter} errors"),
            prom(f"rate({schema.EXPORTER_MISSED_TICKS}{{{HOST}}}[$__rate_interval])", f"{exporter} missed ticks")]),
        timeseries("Spool fill", [prom(f"{schema.EXPORTER_SPOOL_FILL}{{{HOST}}}", sink)], "percentunit"),
        timeseries("Spooled bytes", [prom(f"{schema.EXPORTER_SPOOL_BYTES}{{{HOST}}}", sink)], "bytes"),
        timeseries("Push sink: written, refused and failed per second", [
            prom(f"rate({schema.EXPORTER_SINK_WRITTEN}{{{HOST}}}[$__rate_interval])", f"{sink} written"),
            prom(f"rate({schema.EXPORTER_SINK_REJECTED}{{{HOST}}}[$__rate_interval])", f"{sink} refused"),
            prom(f"rate({schema.EXPORTER_SINK_ERRORS}{{{HOST}}}[$__rate_interval])", f"{sink} failed writes")]),
    ])


BUILDERS = {"sut-power": sut_power, "gpu": gpu, "host": host, "campaign": campaign,
            "exporter-health": exporter_health}


def for_import(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard in Grafana's import format: ``__inputs`` for the datasources, which Grafana's import puts in
    place of ``${DS_PROMETHEUS}`` and ``${DS_INFLUXDB}`` (the datasource variables' defaults)."""
    out = json.loads(json.dumps(dashboard))
    for variable in out["templating"]["list"]:
        if variable["type"] == "datasource":
            name, label = INPUTS[variable["query"]]
            variable["current"] = {"selected": False, "text": label, "value": f"${{{name}}}"}
    inputs = [{"name": name, "label": label, "description": f"The {label} that holds mltelemetry's series",
               "type": "datasource", "pluginId": plugin, "pluginName": label}
              for plugin, (name, label) in INPUTS.items()]
    requires = [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION}]
    requires += [{"type": "datasource", "id": plugin, "name": label, "version": "1.0.0"}
                 for plugin, (_, label) in INPUTS.items()]
    requires += [{"type": "panel", "id": kind, "name": kind, "version": ""}
                 for kind in sorted({p["type"] for p in out["panels"]})]
    return {"__inputs": inputs, "__elements": {}, "__requires": requires, "id": None, **out}


def render() -> dict[Path, str]:
    """Path → JSON text of every dashboard, provisioned and for import."""
    files = {}
    for name, build in BUILDERS.items():
        dashboard = build()
        for folder, form in ((DASHBOARDS, dashboard), (IMPORTS, for_import(dashboard))):
            files[folder / f"{name}.json"] = json.dumps(form, indent=2, ensure_ascii=False) + "\n"
    return files


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
        extra = sorted({p for folder in (DASHBOARDS, IMPORTS) for p in folder.glob("*.json")} - set(files))
        for path in stale + extra:
            print(f"{path.relative_to(HERE.parent)} is not current: run python grafana/generate.py", file=sys.stderr)
        return 1 if stale or extra else 0
    for path, text in files.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(files) // 2} dashboards to {DASHBOARDS} and, for import, to {IMPORTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
