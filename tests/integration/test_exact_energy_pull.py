"""Issue 18: window energy through the pull path is as exact as through the store.

A WT310 emulator on a smoothly varying load (150 W ± 60 W, triangular, 13 s period: no constant, no steps
that could line up with the scrapes) is read every second by the PM exporter (a real process, writing to
the store), which is scraped every second by a real Prometheus and a real VictoriaMetrics
(``-promscrape.config``). For windows of 10 s and more at many phases, each source's energy (the
counter's increase, read at the window's edges as the analysis reads it) is checked against the
meter-visible exact energy: the profile's exact integral up to each update the meter completed, linearly
interpolated at the edges (the meter reports once a second; no reader of it can know more).

Stamped at scrape time, Prometheus read the counter up to one interval late at both edges: 1.0–1.4 % low
on every window. With the reading's own time (an explicit timestamp) all three agree within 0.2 %.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from conftest import _start_server, free_port, require_binary, wait_for
from mltelemetry import schema
from mltelemetry.analysis.energy import increases
from mltelemetry.analysis.sources import PrometheusSource, StoreSource
from mltelemetry.exporters.pm.emulator import PeriodicProfile
from mltelemetry.exporters.pm.wt300_emulator import Wt300Emulator
from mltelemetry.store import Store

PROFILE = PeriodicProfile([(6.5, 90.0, 210.0), (6.5, 210.0, 90.0)])  # 150 W ± 60 W, period 13 s
RUN_S = 48.0
TOLERANCE = 0.002


def meter_visible_energy(a: np.ndarray, b: np.ndarray, last_update_end: float) -> np.ndarray:
    """Exact energy the meter's 1 s updates show between emulator times a and b: the profile's integral at each
    update's end (…, last_update_end - 1, last_update_end), interpolated linearly at the window's edges."""
    ends = np.arange(last_update_end - 200.0, last_update_end + 0.5, 1.0)
    ends = ends[ends >= 0]
    cumulative = np.array([PROFILE.energy(0.0, t) for t in ends])
    return np.interp(b, ends, cumulative) - np.interp(a, ends, cumulative)


@pytest.fixture
def victoria_metrics_scraping(tmp_path):
    """``start(target)``: a VictoriaMetrics scraping ``target`` every second itself (-promscrape.config)."""
    processes = []

    def start(target: str) -> str:
        port = free_port()
        config = tmp_path / "vm-scrape.yml"
        config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mltelemetry\n"
                          f"    honor_timestamps: true\n    static_configs:\n      - targets: ['{target}']\n")
        url = f"http://127.0.0.1:{port}"
        processes.append(_start_server(tmp_path, "vm-scraping", [
            require_binary("victoria-metrics"), f"-storageDataPath={tmp_path / 'vm'}",
            f"-httpListenAddr=127.0.0.1:{port}", f"-promscrape.config={config}", "-search.latencyOffset=0s",
            "-search.disableCache"], f"{url}/health", "VictoriaMetrics to be ready"))
        return url

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=15)


def test_window_energy_through_prometheus_and_victoria_metrics_scrapes_is_exact(
        tmp_path, prometheus, victoria_metrics_scraping):
    port, store = free_port(), tmp_path / "pm.db"
    target = f"127.0.0.1:{port}"
    prometheus_url = prometheus([target])
    vm_url = victoria_metrics_scraping(target)
    with Wt300Emulator(PROFILE, tmp_path / "wt310", update_interval_s=1.0) as emu:
        log = (tmp_path / "exporter.log").open("wb")
        exporter = subprocess.Popen(
            [sys.executable, "-m", "mltelemetry", "exporter", "pm", "--driver", "wt300", "--port", emu.address,
             "--meter", "wt310", "--host-label", "sut", "--listen", target, "--store", str(store)],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            # /healthz, not /metrics: a scrape of ours would take readings the scrapers then never see
            wait_for(lambda: emu.updates >= 3 and requests.get(f"http://{target}/healthz", timeout=2).ok, 60,
                     "the exporter to read the meter")
            time.sleep(RUN_S)
        finally:
            exporter.terminate()
            exporter.wait(timeout=30)
        # Wall clock of the emulator's time zero, and its last completed update (emulator time).
        now_s = time.monotonic() - emu.origin
        wall_origin_ns = time.time_ns() - round(now_s * 1e9)
        last_update_end = now_s + emu.seconds_to_next_update() - emu.update_interval_s

    with Store(store, create=False) as db:
        stored = db.query(schema.PM_ENERGY, {"host": "sut"})
    first_ns, last_ns = int(stored["ts_ns"].iloc[0]), int(stored["ts_ns"].iloc[-1])
    # Windows of 10 to 20 s at phases 0.37 s apart, inside the data with 2 s to spare at the start and 4 s at
    # the end (the last reading or two came after the last scrape, before the exporter stopped).
    starts = np.arange(first_ns + 2e9, last_ns - 24e9, 0.37e9).astype(np.int64)
    lengths = np.resize(np.array([11.3e9, 10.0e9, 13.7e9, 20.0e9]), len(starts)).astype(np.int64)
    ends = starts + lengths
    assert len(starts) >= 50
    exact = meter_visible_energy((starts - wall_origin_ns) / 1e9, (ends - wall_origin_ns) / 1e9, last_update_end)

    # The readings the windows need, from the very first (the scrapers hold it truncated to the millisecond).
    span = (first_ns - 10**9, int(ends.max()) + 2 * 10**9)

    def readings(url: str) -> np.ndarray:
        source = PrometheusSource(url)
        try:
            return source.query(schema.PM_ENERGY, {"host": "sut"}, *span)["ts_ns"].to_numpy(np.int64)
        finally:
            source.close()

    stored_in_span = stored["ts_ns"][(stored["ts_ns"] >= span[0]) & (stored["ts_ns"] <= span[1])].to_numpy()
    for url, name in ((prometheus_url, "Prometheus"), (vm_url, "VictoriaMetrics")):
        wait_for(lambda url=url: readings(url)[-1] >= stored_in_span[-1] - 10**9, 30,
                 f"{name} to hold the last readings")
    errors, counts = {}, {}
    sources = {"store": StoreSource(Store(store, create=False)), "prometheus": PrometheusSource(prometheus_url),
               "victoria-metrics": PrometheusSource(vm_url)}
    for name, source in sources.items():
        frame = source.query(schema.PM_ENERGY, {"host": "sut"}, *span)
        source.close()
        ts, values = frame["ts_ns"].to_numpy(np.int64), frame["value"].to_numpy(np.float64)
        counts[name] = len(ts)
        energy = increases(ts, values, starts, ends)
        errors[name] = (energy - exact) / exact
        print(f"{name}: {len(ts)} readings, {len(starts)} windows, relative error mean "
              f"{100 * np.nanmean(errors[name]):+.4f} %, worst {100 * np.nanmax(np.abs(errors[name])):.4f} %")
    # Every reading reached each scraper (none missed between two scrapes), at its own time: the store's.
    assert counts == dict.fromkeys(sources, len(stored_in_span))
    for name, error in errors.items():
        assert not np.isnan(error).any() and np.abs(error).max() < TOLERANCE, name
    # The analysis says which time the counter carried; a gauge of the same exporter is stamped at the scrape.
    for url in (prometheus_url, vm_url):
        source = PrometheusSource(url)
        source.query(schema.PM_ENERGY, {"host": "sut"}, *span)
        assert source.time_notes() == [f"{url}: {schema.PM_ENERGY} at each reading's own time (explicit "
                                       "timestamps, honoured)"]
        assert source._sample_time(source.query(schema.PM_POWER, {"host": "sut"}, *span)) == "scrape"
        source.close()


def test_a_nan_in_a_prometheus_source_is_no_reading(victoria_metrics):
    """VictoriaMetrics returns a failed scrape's staleness marker as NaN: one between two readings must not
    make the windows across it unknown."""
    start_ms = time.time_ns() // 10**9 * 1000 - 60_000  # a minute ago, inside the retention
    lines = "".join(f'{schema.PM_ENERGY}{{host="sut",meter="m"}} {value} {start_ms + 1000 * k}\n'
                    for k, value in enumerate(["0", "100", "NaN", "300", "400"]))
    requests.post(f"{victoria_metrics}/api/v1/import/prometheus", data=lines, timeout=10).raise_for_status()
    source = PrometheusSource(victoria_metrics)
    start_ns, end_ns = start_ms * 10**6, (start_ms + 4000) * 10**6

    def values():
        return list(source.query(schema.PM_ENERGY, {"host": "sut"}, start_ns, end_ns)["value"])

    assert wait_for(values, 30, "VictoriaMetrics to hold the samples") == [0.0, 100.0, 300.0, 400.0]
    frame = source.query(schema.PM_ENERGY, {"host": "sut"}, start_ns, end_ns)
    # [0.5 s, 3.5 s]: 50 J at the start (halfway 0 → 100), 350 J at the end (halfway 300 → 400): 300 J.
    energy = increases(frame["ts_ns"].to_numpy(np.int64), frame["value"].to_numpy(), np.array([start_ns + 5 * 10**8]),
                       np.array([start_ns + 35 * 10**8]))
    assert energy.tolist() == [300.0]
    source.close()
