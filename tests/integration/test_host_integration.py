"""Host exporter as a real process: scraped by a real Prometheus, and a bad --disk-devices as a usage error
(the in-memory rest: tests/unit/test_host.py)."""

import subprocess
import sys

import psutil
import requests

from conftest import free_port, wait_for
from mltelemetry import schema


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
