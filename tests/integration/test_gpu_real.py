"""The GPU exporter against a real NVIDIA GPU through pynvml. Skipped where there is none (CI)."""

from __future__ import annotations

import statistics
import time

import pytest

from mltelemetry import schema
from mltelemetry.exporters.gpu.collector import METHOD_COUNTER, GpuCollector
from mltelemetry.exporters.gpu.nvml import NvmlUnavailable, open_nvml


def _real_nvml():
    try:
        nvml = open_nvml()
    except NvmlUnavailable:
        return None
    if nvml.device_count() == 0:
        nvml.close()
        return None
    return nvml


_NVML = _real_nvml()
pytestmark = pytest.mark.skipif(_NVML is None, reason="needs a real NVIDIA GPU: no usable NVML (pynvml, driver, GPU)")


def test_real_gpu_publishes_every_indicator_and_the_hardware_counter():
    assert _NVML is not None
    collector = GpuCollector(_NVML, "real", [0])
    handle = _NVML.nv.nvmlDeviceGetHandleByIndex(0)

    def direct_j() -> float:
        return _NVML.nv.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000

    before = direct_j()
    first = collector.sample(time.time_ns())
    middle = direct_j()
    time.sleep(1.0)
    durations = []
    for _ in range(20):
        began = time.perf_counter()
        last = collector.sample(time.time_ns())
        durations.append(time.perf_counter() - began)
    after = direct_j()

    def value(samples, metric, **labels):
        found = [s.value for s in samples
                 if s.metric == metric and all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(found) == 1, (metric, labels, found)
        return found[0]

    e0 = value(first, schema.GPU_ENERGY, method=METHOD_COUNTER)
    e1 = value(last, schema.GPU_ENERGY, method=METHOD_COUNTER)
    # The exporter's counter is NVML's own counter: it lies between direct reads taken around it.
    assert before <= e0 <= middle and middle <= e1 <= after
    limit = value(last, schema.GPU_POWER_LIMIT)
    instant = value(last, schema.GPU_POWER, kind="instant")
    average = value(last, schema.GPU_POWER_AVERAGE)
    assert 50 <= limit <= 1500 and 5 <= instant <= 1.2 * limit and 5 <= average <= 1.2 * limit
    # The ticks span a little over 1 s: at least 5 W and at most the limit for 2 s.
    assert 5 <= e1 - e0 <= 2 * 1.2 * limit
    assert 10 <= value(last, schema.GPU_TEMPERATURE) <= 110
    assert 0 <= value(last, schema.GPU_UTILIZATION) <= 1
    assert 0 <= value(last, schema.GPU_MEMORY_UTILIZATION) <= 1
    assert value(last, schema.GPU_MEMORY_USED) > 0
    assert 0 <= value(last, schema.GPU_PSTATE) <= 15
    assert 1 <= value(last, schema.GPU_PCIE_GENERATION) <= 6
    assert value(last, schema.GPU_PCIE_WIDTH) in (1, 2, 4, 8, 16)
    for clock in ("sm", "memory", "graphics"):
        assert 1e8 <= value(last, schema.GPU_CLOCK, clock=clock) <= 5e9
    assert value(last, schema.GPU_THROTTLE) >= 0
    assert value(last, schema.GPU_UP) == 1
    median_ms = statistics.median(durations) * 1000
    # One tick must fit well inside the 100 ms interval.
    assert median_ms < 50
    published = sorted({s.metric.removeprefix(schema.PREFIX) for s in last})
    gpu = collector.gpus[0].driver
    print(f"\nGPU 0 {gpu!r}, driver {_NVML.driver_version()}: energy {e0:.3f} -> {e1:.3f} J "
          f"(direct {before:.3f}/{middle:.3f}/{after:.3f}), power instant {instant:.1f} W, average {average:.1f} W, "
          f"limit {limit:.0f} W, tick median {median_ms:.2f} ms, unsupported {sorted(gpu.unsupported)}, "
          f"published {published}")
