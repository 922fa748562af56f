"""Host exporter as a real process: scraped by a real Prometheus, its store written every 5 s and in full on
SIGTERM, and a bad --disk-devices as a usage error (the in-memory rest: tests/unit/test_host.py)."""

import re
import signal
import subprocess
import sys
import time

import psutil
import requests

from conftest import free_port, wait_for
from mltelemetry import schema
from mltelemetry.store import Store


def test_real_prometheus_scrapes_the_host_exporter(prometheus):
    port = free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "mltelemetry", "exporter", "host",
                                 "--listen", f"127.0.0.1:{port}", "--host-label", "sut-under-test"])
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).ok, 20, "the exporter")
        url = prometheus([f"127.0.0.1:{port}"])

        def query(expr):
            result = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
            return result

        memory = wait_for(lambda: query(f'{schema.HOST_MEMORY_TOTAL}{{host="sut-under-test"}}'), 30, "a scrape")
        assert float(memory[0]["value"][1]) == psutil.virtual_memory().total
        # five 1-second scrapes of the CPU ratio, read back through the HTTP API
        samples = wait_for(lambda: (r := query(f"{schema.HOST_CPU_TOTAL_UTILIZATION}[30s]"))
                           and len(r[0]["values"]) >= 5 and r[0]["values"], 30, "five scrapes")
        assert all(0.0 <= float(v) <= 1.0 for _, v in samples)
        counters = query(f"{schema.HOST_NET_RECEIVED}")
        assert counters and all(float(c["value"][1]) >= 0 for c in counters)
        health = query(f'{schema.EXPORTER_SAMPLES}{{exporter="host"}}')
        assert float(health[0]["value"][1]) > 0
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)


def test_a_bad_disk_devices_value_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "mltelemetry", "exporter", "host", "--disk-devices", "some",
                             "--listen", "off"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--disk-devices takes whole or all" in result.stderr


def test_the_store_lags_at_most_five_seconds_and_sigterm_writes_what_was_buffered(tmp_path):
    store_path = tmp_path / "host.db"
    exporter = subprocess.Popen([sys.executable, "-m", "mltelemetry", "exporter", "host", "--store", str(store_path),
                                 "--listen", "off", "--interval", "0.5", "--host-label", "sut"],
                                stderr=subprocess.PIPE, text=True)

    def stored_ticks() -> list[int]:
        if not store_path.exists():
            return []
        with Store(store_path) as store:
            return sorted(store.query(schema.HOST_LOAD, {"period": "1m"})["ts_ns"])

    try:
        first = wait_for(stored_ticks, 60, "the first write of the store")
        # the first write came 4.5 s after the start: it holds the ticks of those 4.5 s (0.5 s apart; under load
        # some may be skipped)
        assert len(first) >= 5
        # 3 s more ticks buffered (the next write is due 4.5 s after the first), then SIGTERM
        wait_for(lambda: time.time_ns() > first[-1] + 3 * 10**9, 30, "3 s of buffered ticks")
        stopped_ns = time.time_ns()
        exporter.send_signal(signal.SIGTERM)
        assert exporter.wait(30) == 0
    finally:
        exporter.kill()
    ticks = stored_ticks()
    # what was buffered at SIGTERM is in the store: its last tick within a tick (0.5 s, 1 s of slack) of the signal
    assert ticks[-1] >= stopped_ns - 1.5e9 and len(ticks) >= len(first) + 5
    received, stored, lost = map(int, re.search(r"(\d+) samples received, (\d+) stored, \d+ refused as not finite, "
                                                r"(\d+) lost", exporter.stderr.read()).groups())
    assert received == stored and lost == 0
