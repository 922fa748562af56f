"""The same crafted campaign read from a real Prometheus, VictoriaMetrics and InfluxDB 1.6 gives the numbers of
the embedded store (within 0.1 %).

How the campaign gets in, each the way a lab's data would:
- InfluxDB and VictoriaMetrics: line protocol written by ``mltelemetry.influx`` (the push-backend
  contract: samples as measurement <metric> with field ``value``, events as one point each);
- Prometheus: its own TSDB blocks, backfilled with ``promtool tsdb create-blocks-from openmetrics``
  before the server starts. A scrape would stamp samples with scrape times and take as long as the
  campaign; backfill keeps the exporters' exact timestamps, so the numbers can be compared, and
  the events are laid out as a scrape of the workload leaves them (every finished event served as
  ``event_start_seconds``/``event_end_seconds``/``event_field_value`` each second until the end).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import requests
from test_analysis_figures import END_S, S, lab_events, lab_samples

from conftest import require_binary, wait_for
from mltelemetry import schema
from mltelemetry.analysis import sources
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.analysis.sources import InfluxSource, PrometheusSource, open_source
from mltelemetry.errors import MltelemetryError
from mltelemetry.influx import V1Writer, event_line, sample_line, stored_tag_value
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

# 27 hours ago: inside every server's retention, and always before 00:00 UTC today (a campaign from yesterday
# must read the same; VictoriaMetrics keeps days apart in its index)
ORIGIN_NS = (time.time_ns() // S - 27 * 3600) * S
SCRAPE_LABELS = {"job": "mltelemetry", "instance": "sut:9810"}


def campaign_events() -> list[Event]:
    """The lab campaign, plus "nocamp": two windows of it recorded without a campaign event (a workload that died)."""
    events = lab_events(ORIGIN_NS)
    extra = [e for e in events if e.scenario == "cnn" and e.run == 2 and e.action in ("run", "train")]
    extra += [e for e in events if e.scenario == "baseline" and e.run == 1 and e.action == "run"]
    return events + [Event("nocamp", e.scenario, e.run, e.action, e.start_ns, e.end_ns, e.epoch, e.status,
                           dict(e.fields)) for e in extra]


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "lab.db"
    with Store(path) as store:
        store.write(lab_samples(ORIGIN_NS))
        store.write_events(campaign_events())
        yield {c: analyze_campaign(store, c) for c in ("lab", "nocamp")}


def assert_same(expected, got, rel=1e-3):
    for table in ("windows", "summary", "tests", "correlations", "sensors"):
        e, g = getattr(expected, table), getattr(got, table)
        assert list(g.columns) == list(e.columns), table
        assert len(g) == len(e), table
        for column in e.columns:
            if column == "start":
                assert (pd.to_datetime(g[column]) - pd.to_datetime(e[column])).abs().max() < pd.Timedelta("1us")
            elif pd.api.types.is_numeric_dtype(e[column]) and not pd.api.types.is_bool_dtype(e[column]):
                np.testing.assert_allclose(g[column].astype(float), e[column].astype(float), rtol=rel, atol=1e-9,
                                           equal_nan=True, err_msg=f"{table}.{column}")
            else:
                assert g[column].tolist() == e[column].tolist(), f"{table}.{column}"
    assert got.baseline_power_w == pytest.approx(expected.baseline_power_w, rel=rel)


def test_influxdb_gives_the_store_numbers(influxdb, expected):
    assert requests.post(f"{influxdb}/query", params={"q": "CREATE DATABASE mltelemetry"}, timeout=10).ok
    lines = [line for s in lab_samples(ORIGIN_NS) if (line := sample_line(s))]
    lines += [event_line(e) for e in campaign_events()]
    written = requests.post(f"{influxdb}/write", params={"db": "mltelemetry"}, data="\n".join(lines), timeout=30)
    assert written.status_code == 204, written.text
    source = open_source(f"influxdb+{influxdb}/mltelemetry")
    assert isinstance(source, InfluxSource) and source.campaigns() == ["lab", "nocamp"]
    for campaign in ("lab", "nocamp"):
        assert_same(expected[campaign], analyze_campaign(source, campaign))
    with pytest.raises(MltelemetryError, match="no campaign 'x'.*campaigns there: lab, nocamp"):
        analyze_campaign(source, "x")
    with pytest.raises(MltelemetryError, match="database not found: nodb"):
        analyze_campaign(f"influxdb+{influxdb}/nodb", "lab")


# Campaign names a user may type, each written by the exporters' writer and found again by the same name: a
# backslash where line protocol would read it as an escape (stored as "/") and where it would not (stored as is),
# quotes, a space, a comma, an equals sign, non-ASCII letters, and all of them at once.
HOSTILE_CAMPAIGNS = ["x\\", "lab\\2026", "it's \"q\"", "a b,c=d", "ünïcødé 能量 ☃", 'lab\\ "q" it\'s a,b=c ü\\']


def test_campaigns_with_hostile_names_round_trip_through_influxdb(influxdb, expected):
    assert requests.post(f"{influxdb}/query", params={"q": "CREATE DATABASE mltelemetry"}, timeout=10).ok
    lines = [line for s in lab_samples(ORIGIN_NS) if (line := sample_line(s))]
    lines += [event_line(e) for name in HOSTILE_CAMPAIGNS for e in lab_events(ORIGIN_NS, campaign=name)]
    V1Writer(influxdb, "mltelemetry").write(lines)
    url = f"influxdb+{influxdb}/mltelemetry"
    source = open_source(url)
    assert source.campaigns() == sorted(stored_tag_value(n) for n in HOSTILE_CAMPAIGNS)
    assert all(source.events(listed) for listed in source.campaigns())  # a listed name is found again as listed
    for name in HOSTILE_CAMPAIGNS:  # the same samples under every name: the numbers of "lab" in the store
        assert_same(expected["lab"], analyze_campaign(source, name))
    for name in (HOSTILE_CAMPAIGNS[0], HOSTILE_CAMPAIGNS[-1]):  # and by name on the command line
        done = subprocess.run([sys.executable, "-m", "mltelemetry", "analyze", "--source", url, "--campaign", name,
                               "--format", "json"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        assert got["campaign"] == name
        want = expected["lab"].windows
        assert len(got["windows"]) == len(want) > 0
        energy_wh = [np.nan if w["energy_wh"] is None else w["energy_wh"] for w in got["windows"]]
        np.testing.assert_allclose(energy_wh, want["energy_wh"].astype(float), rtol=1e-3)
    # a host (any label) is looked up the same way; the frame holds the name as stored
    V1Writer(influxdb, "mltelemetry").write([sample_line(Sample(schema.HOST_MEMORY_USED, {"host": "sut\\"}, 5.0,
                                                                ORIGIN_NS))])
    frame = source.query(schema.HOST_MEMORY_USED, {"host": "sut\\"})
    assert frame["value"].tolist() == [5.0] and frame["host"].tolist() == ["sut/"]


def test_victoria_metrics_gives_the_store_numbers(victoria_metrics, expected):
    lines = [line for s in lab_samples(ORIGIN_NS) if (line := sample_line(s))]
    lines += [event_line(e) for e in campaign_events()]
    written = requests.post(f"{victoria_metrics}/api/v2/write", data="\n".join(lines), timeout=30)
    assert written.status_code == 204, written.text
    requests.get(f"{victoria_metrics}/internal/force_flush", timeout=10)
    series = len({(s.metric, tuple(sorted(s.labels.items()))) for s in lab_samples(ORIGIN_NS)})
    # Searched over the campaign's own range: VictoriaMetrics 1.79's /api/v1/series, given start=0 or no start, lists
    # only the series with samples since 00:00 UTC.
    wait_for(lambda: len(requests.get(f"{victoria_metrics}/api/v1/series", timeout=5,
                                      params={"match[]": '{__name__=~"mltelemetry_.+_(total|ratio|bytes|celsius|'
                                                         'state|generation|hertz)"}', "start": ORIGIN_NS // S - 60}
                                      ).json()["data"]) >= series, 30, "every series to be searchable")
    source = open_source(victoria_metrics)
    assert isinstance(source, PrometheusSource) and source.campaigns() == ["lab", "nocamp"]
    for campaign in ("lab", "nocamp"):
        assert_same(expected[campaign], analyze_campaign(source, campaign))


def _om_labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if v != "")


def openmetrics(samples, events, served_until_s: float) -> str:
    """Samples with their own timestamps, and events as a 1 s scrape of the workload leaves them."""
    by_series: dict[tuple, list[tuple[int, float]]] = {}
    for s in samples:
        by_series.setdefault((s.metric, _om_labels({**s.labels, **SCRAPE_LABELS})), []).append((s.ts_ns, s.value))
    for e in events:
        labels = {"campaign": e.campaign, "scenario": e.scenario, "run": str(e.run), "action": e.action,
                  "epoch": "" if e.epoch is None else str(e.epoch), "status": e.status, **SCRAPE_LABELS}
        served = range(math.floor(e.end_ns / S) + 1, math.floor(served_until_s) + 1)
        values = [(schema.EVENT_START, labels, e.start_ns / 1e9), (schema.EVENT_END, labels, e.end_ns / 1e9)]
        values += [(schema.EVENT_FIELD, {**labels, "field": k}, float(v)) for k, v in e.fields.items()
                   if isinstance(v, (int, float))]
        for metric, series_labels, value in values:
            by_series.setdefault((metric, _om_labels(series_labels)), []).extend((t * S, value) for t in served)
    lines = []
    for (metric, labels), points in sorted(by_series.items()):
        lines += [f"{metric}{{{labels}}} {value!r} {ts / 1e9:.3f}" for ts, value in sorted(points)]
    return "\n".join(lines) + "\n# EOF\n"


def test_prometheus_gives_the_store_numbers(prometheus, tmp_path, expected):
    promtool = require_binary("promtool")
    data = tmp_path / "campaign.om"
    data.write_text(openmetrics(lab_samples(ORIGIN_NS), campaign_events(), ORIGIN_NS / S + END_S + 10))
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(data), str(tmp_path / "tsdb")],
                   check=True, capture_output=True, timeout=120)
    url = prometheus([])  # the fixture's server opens the backfilled blocks in tmp_path/tsdb
    source = open_source(url)
    assert source.campaigns() == ["lab", "nocamp"]
    for campaign in ("lab", "nocamp"):
        assert_same(expected[campaign], analyze_campaign(source, campaign))
    with pytest.raises(MltelemetryError, match="no campaign 'x'.*campaigns there: lab, nocamp"):
        analyze_campaign(source, "x")


def test_unreachable_and_unknown_sources_are_one_line_errors(tmp_path):
    with pytest.raises(MltelemetryError, match=r"cannot read the Prometheus API at http://127\.0\.0\.1:9: "):
        analyze_campaign("http://127.0.0.1:9", "lab")
    with pytest.raises(MltelemetryError, match="unknown scheme 'ftp'"):
        open_source("ftp://x/y")
    with pytest.raises(MltelemetryError, match="names no database"):
        open_source("influxdb+http://127.0.0.1:8086")
    with pytest.raises(MltelemetryError, match="no store at"):
        open_source(tmp_path / "missing.db")


# --- a lab's own exporters: dcgm-exporter's GPU counter and node_exporter's RAPL counters ----------------------
DCGM_LABELS = {"gpu": "0", "UUID": "GPU-0000", "device": "nvidia0", "modelName": "Fake GPU", "Hostname": "sut",
               "job": "dcgm", "instance": "gpu-box.lab:9400"}
NODE_PATHS = {"package-0": "/sys/class/powercap/intel-rapl:0", "core": "/sys/class/powercap/intel-rapl:0:0",
              "dram": "/sys/class/powercap/intel-rapl:0:1"}


def standard_exporter_points(samples, zone_label: bool, instance: str = "sut:9100") -> list[tuple[str, float, int]]:
    """Our GPU and RAPL counters as dcgm-exporter (mJ) and node_exporter (J) publish the same readings."""
    lines = []
    for s in samples:
        if s.metric == schema.GPU_ENERGY:
            lines.append((f"{sources.DCGM_ENERGY}{{{_om_labels(DCGM_LABELS)}}}", round(s.value * 1000), s.ts_ns))
        elif s.metric == schema.HOST_RAPL_ENERGY:
            zone = s.labels["zone"].split("-")[0]
            labels = {"index": "0", "path": NODE_PATHS[s.labels["zone"]], "job": "node", "instance": instance}
            name = f"node_rapl_{zone}_joules_total"
            if zone_label:
                name, labels = "node_rapl_joules_total", {**labels, "rapl_zone": zone}
            lines.append((f"{name}{{{_om_labels(labels)}}}", s.value, s.ts_ns))
    return lines


def openmetrics_lines(points: list[tuple[str, float, int]]) -> str:
    """Points as OpenMetrics lines, each series' together and in time order."""
    return "\n".join(f"{series} {value!r} {ts / 1e9:.3f}" for series, value, ts in
                     sorted(points, key=lambda p: (p[0], p[2])))


@pytest.mark.parametrize("zone_label", [False, True], ids=["node-rapl-per-zone-names", "node-rapl-zone-label"])
def test_dcgm_exporter_and_node_exporter_series_give_the_figures_of_ours(prometheus, tmp_path, expected, zone_label):
    promtool = require_binary("promtool")
    ours = lab_samples(ORIGIN_NS)
    theirs = [s for s in ours if s.metric not in (schema.GPU_ENERGY, schema.HOST_RAPL_ENERGY)]
    text = openmetrics(theirs, campaign_events(), ORIGIN_NS / S + END_S + 10).removesuffix("# EOF\n")
    text += openmetrics_lines(standard_exporter_points(ours, zone_label)) + "\n# EOF\n"
    (tmp_path / "campaign.om").write_text(text)
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "campaign.om"),
                    str(tmp_path / "tsdb")], check=True, capture_output=True, timeout=120)
    source = open_source(prometheus([]))

    got = analyze_campaign(source, "lab")  # auto: ours are absent, theirs are read
    methods = ["gpu_energy_method", "rapl_method"]
    windows = got.windows.set_index(["scenario", "run", "action", "epoch"], drop=False)
    epoch = windows.loc[("cnn", 1, "epoch", 1.0)]
    assert epoch.gpu_energy_wh == pytest.approx(1100 / 3600, rel=1e-6)  # 10 s × (180 − 70) W = 1100 J
    assert epoch.cpu_energy_wh == pytest.approx(400 / 3600, rel=1e-6)  # 10 s × 40 W package (core not added)
    assert epoch.dram_energy_wh == pytest.approx(50 / 3600, rel=1e-6)  # 10 s × 5 W
    assert set(got.windows.gpu_energy_method) == {"GPU counter (dcgm-exporter)"}
    assert set(got.windows.rapl_method) == {"RAPL counter (node_exporter)"}
    assert set(expected["lab"].windows.gpu_energy_method) == {"GPU counter (nvml_counter)"}
    ours_wh = expected["lab"].windows[["gpu_energy_wh", "cpu_energy_wh", "dram_energy_wh"]].to_numpy()
    theirs_wh = got.windows[["gpu_energy_wh", "cpu_energy_wh", "dram_energy_wh"]].to_numpy()
    print(f"dcgm/node_exporter against ours: {np.isfinite(theirs_wh).sum()} figures, largest relative difference "
          f"{np.nanmax(np.abs(theirs_wh / ours_wh - 1)):.2e}")
    # every figure of every window, statistic and test equals the one from our own series, within 0.1 %
    assert_same(dataclasses.replace(expected["lab"], windows=expected["lab"].windows.drop(columns=methods)),
                dataclasses.replace(got, windows=got.windows.drop(columns=methods)))

    # told to read ours only, there are none: no GPU or RAPL energy, and the table says so by its empty cells
    ours_only = analyze_campaign(source, "lab", sensor_exporters="mltelemetry")
    assert ours_only.windows.gpu_energy_wh.isna().all() and ours_only.windows.cpu_energy_wh.isna().all()
    assert ours_only.windows.energy_wh.tolist() == got.windows.energy_wh.tolist()  # the meter is untouched


def test_standard_exporters_of_two_hosts_need_host_and_ours_win_unless_told(prometheus, tmp_path):
    """Ours and node_exporter's on one Prometheus: auto takes ours; standard takes node_exporter's, per host."""
    promtool = require_binary("promtool")
    ours = lab_samples(ORIGIN_NS)
    doubled = [s._replace(value=2 * s.value) for s in ours if s.metric == schema.HOST_RAPL_ENERGY]
    text = openmetrics(ours, campaign_events(), ORIGIN_NS / S + END_S + 10).removesuffix("# EOF\n")
    points = standard_exporter_points(ours, False) + standard_exporter_points(doubled, False, "other-box:9100")
    text += openmetrics_lines(points) + "\n# EOF\n"
    (tmp_path / "campaign.om").write_text(text)
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "campaign.om"),
                    str(tmp_path / "tsdb")], check=True, capture_output=True, timeout=120)
    source = open_source(prometheus([]))
    auto = analyze_campaign(source, "lab")
    assert set(auto.windows.rapl_method) == {"RAPL counter"}
    with pytest.raises(MltelemetryError, match=r"node_rapl_package_joules_total was recorded on 2 hosts "
                                               r"\(other-box, sut\): name one with --host"):
        analyze_campaign(source, "lab", sensor_exporters="standard")
    other = analyze_campaign(source, "lab", "other-box", sensor_exporters="standard").windows
    sut = analyze_campaign(source, "lab", "sut", sensor_exporters="standard").windows
    assert set(sut.rapl_method) == {"RAPL counter (node_exporter)"}
    np.testing.assert_allclose(sut.cpu_energy_wh, auto.windows.cpu_energy_wh, rtol=1e-9)
    # the other box's node_exporter counted twice the energy (and no meter of its own ran: no wall energy)
    np.testing.assert_allclose(other.cpu_energy_wh, 2 * auto.windows.cpu_energy_wh, rtol=1e-9)


def test_two_hosts_through_prometheus_are_summed(prometheus, tmp_path, expected):
    """Issue 14 item 5 through a real Prometheus: the lab's SUT ("sut", every exporter of ours) and a second box
    ("other-box") whose meter and node_exporter RAPL counters read twice the SUT's, one Prometheus for both. Analysed
    as one, every energy is 1 + 2 = 3 times the SUT's own (the store's figures, checked by hand in
    test_analysis_figures), each host's share in its column; RAPL comes from ours on the SUT and from node_exporter
    on the other box (a host's own choice of source, as if it were the only one)."""
    promtool = require_binary("promtool")
    ours = lab_samples(ORIGIN_NS)
    doubled = [s._replace(labels={**s.labels, "host": "other-box"}, value=2 * s.value)
               for s in ours if s.metric in (schema.PM_ENERGY, schema.HOST_RAPL_ENERGY)]
    meter_b = [s for s in doubled if s.metric == schema.PM_ENERGY]
    text = openmetrics(ours + meter_b, campaign_events(), ORIGIN_NS / S + END_S + 10).removesuffix("# EOF\n")
    rapl_b = [s for s in doubled if s.metric == schema.HOST_RAPL_ENERGY]
    text += openmetrics_lines(standard_exporter_points(rapl_b, False, "other-box:9100")) + "\n# EOF\n"
    (tmp_path / "campaign.om").write_text(text)
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "campaign.om"),
                    str(tmp_path / "tsdb")], check=True, capture_output=True, timeout=120)
    source = open_source(prometheus([]))
    both = analyze_campaign(source, "lab", ["sut", "other-box"])
    sut = expected["lab"].windows
    w = both.windows
    np.testing.assert_allclose(w["energy_wh[sut]"], sut.energy_wh, rtol=1e-6)
    np.testing.assert_allclose(w["energy_wh[other-box]"], 2 * sut.energy_wh, rtol=1e-6)
    np.testing.assert_allclose(w.energy_wh, 3 * sut.energy_wh, rtol=1e-6)
    np.testing.assert_allclose(w.cpu_energy_wh, 3 * sut.cpu_energy_wh, rtol=1e-6)
    assert both.baseline_power_w == pytest.approx(3 * expected["lab"].baseline_power_w, rel=1e-6)  # 3 × 100 W
    np.testing.assert_allclose(w.induced_wh, 3 * sut.induced_wh, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(w.gpu_energy_wh, sut.gpu_energy_wh, rtol=1e-6)  # the other box has no GPU
    assert set(w.rapl_method) == {"sut: RAPL counter; other-box: RAPL counter (node_exporter)"}
    assert "GPU energy summed over host(s) sut; other-box recorded none" in both.notes
    assert list(w.flagged) == list(sut.flagged)
