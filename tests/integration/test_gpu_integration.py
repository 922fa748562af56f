"""GPU exporter in real processes: a real Prometheus scrapes the fake-NVML series, and importing the exporter does
not import pynvml (the in-memory rest, with the script's exact numbers: tests/unit/test_gpu.py)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from test_gpu import UUID0, collector_for, h100

from fakes.fake_nvml import FakeClock, FakeNvml
from mltelemetry.sinks import PrometheusSink


def test_prometheus_scrape_shows_the_gpu_series():
    fake = FakeNvml([h100()], clock=FakeClock(3.5))
    sink = PrometheusSink("127.0.0.1", 0)
    try:
        sink.publish_samples(collector_for(fake).sample(1))
        text = urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).read().decode()
    finally:
        sink.close()

    def labels(**extra: str) -> str:  # the sink sorts labels by name
        pairs = {"gpu": "0", "host": "sut", "name": "NVIDIA H100 80GB HBM3", "uuid": UUID0, **extra}
        return ",".join(f'{k}="{v}"' for k, v in sorted(pairs.items()))

    assert f'mltelemetry_gpu_energy_joules_total{{{labels(method="nvml_counter")}}} 1650.0' in text
    assert f'mltelemetry_gpu_power_watts{{{labels(kind="instant")}}} 300.0' in text
    assert f'mltelemetry_gpu_clock_hertz{{{labels(clock="sm")}}} 1.98e+09' in text
    assert f'mltelemetry_gpu_up{{{labels()}}} 1.0' in text
    assert "# TYPE mltelemetry_gpu_energy_joules_total counter" in text


def test_importing_the_exporter_does_not_import_pynvml():
    code = ("import sys; import mltelemetry.exporters.gpu.cli, mltelemetry.exporters.gpu.collector; "
            "assert 'pynvml' not in sys.modules, 'pynvml imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)
