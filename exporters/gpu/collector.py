"""GPU collector: turns NVML readings into samples of the schema's GPU metrics.

Every series carries ``host``, ``gpu`` (NVML index), ``uuid`` and ``name``. Energy is a
monotonic counter, ``gpu_energy_joules_total``, labelled by how it was obtained:

- ``method="nvml_counter"``: NVML's hardware energy counter (Volta and newer), made
  monotonic across driver reloads (a counter that goes back restarted from zero);
- ``method="power_integral"``: where the GPU has no counter, power integrated by the
  trapezoidal rule between ticks (instant power where the driver gives it), on the monotonic
  clock. A tick that misses power leaves a gap that is not bridged.

A GPU that falls off the bus publishes ``gpu_up 0`` and nothing else; the other GPUs keep
going, and the lost one is looked for again every ``retry_lost_s``. A GPU already lost at
start-up is started down the same way; until it answers, its ``uuid`` and ``name`` labels are
``unknown``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mltelemetry import schema
from mltelemetry.schema import Sample

from .nvml import GpuLost, Nvml, NvmlError, NvmlGpu, Reading

log = logging.getLogger(__name__)

METHOD_COUNTER = "nvml_counter"
METHOD_INTEGRAL = "power_integral"
# Power to integrate where there is no energy counter, best first.
_INTEGRATION_POWER = ("instant", "usage", "average")


class EnergyCounter:
    """Monotonic joules of one GPU, from the hardware counter or from integrated power."""

    def __init__(self) -> None:
        self.method: str | None = None
        self.total_j: float | None = None
        self.resets = 0
        self._last_counter_j: float | None = None
        self._last_power: tuple[float, float] | None = None  # (monotonic s, W)

    def add_counter(self, counter_j: float) -> float:
        """Account a hardware counter reading; the total starts at the counter's own value."""
        if self.total_j is None or self._last_counter_j is None:
            self.total_j = counter_j
        elif counter_j >= self._last_counter_j:
            self.total_j += counter_j - self._last_counter_j
        else:  # the driver was reloaded: the counter restarted from zero
            self.resets += 1
            self.total_j += counter_j
        self._last_counter_j = counter_j
        return self.total_j

    def add_power(self, t_s: float, power_w: float) -> float:
        """Integrate power from the previous point to (t_s, power_w) by the trapezoidal rule."""
        if self.total_j is None:
            self.total_j = 0.0
        elif self._last_power is not None:
            t0, p0 = self._last_power
            self.total_j += (p0 + power_w) / 2 * (t_s - t0)
        self._last_power = (t_s, power_w)
        return self.total_j

    def gap(self) -> None:
        """No reading this tick: integration restarts at the next power reading."""
        self._last_power = None


UNKNOWN = "unknown"


@dataclass
class _Gpu:
    index: int
    driver: NvmlGpu | None  # None while a GPU lost at start-up has not answered yet
    labels: dict[str, str]
    energy: EnergyCounter
    up: bool = True
    lost_at: float = 0.0


class GpuCollector:
    """Samples every indicator of the selected GPUs (all of them by default) on each tick."""

    name = "gpu"

    def __init__(self, nvml: Nvml, host: str, indices: Sequence[int] | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic, retry_lost_s: float = 30.0) -> None:
        self.nvml = nvml
        self.host = host
        self.monotonic = monotonic
        self.retry_lost_s = retry_lost_s
        count = nvml.device_count()
        wanted = list(range(count)) if indices is None else list(indices)
        missing = [i for i in wanted if not 0 <= i < count]
        if missing:
            raise NvmlError(f"no GPU with index {', '.join(map(str, missing))}: NVML sees {count} GPU(s)")
        if not wanted:
            log.warning("NVML sees no GPU: the GPU exporter will publish no GPU data")
        self.driver_version = nvml.driver_version()  # for mltelemetry_build_info
        self.gpus: list[_Gpu] = []
        for index in wanted:
            try:
                driver = nvml.gpu(index)
            except GpuLost as e:
                log.error("%s: started down; the other GPUs go on (looked for again every %g s)", e, retry_lost_s)
                labels = {"host": host, "gpu": str(index), "uuid": UNKNOWN, "name": UNKNOWN}
                self.gpus.append(_Gpu(index, None, labels, EnergyCounter(), up=False, lost_at=monotonic()))
                continue
            self.gpus.append(_Gpu(index, driver, self._labels(index, driver), EnergyCounter()))
            log.info("publishing %r", driver)

    def _labels(self, index: int, driver: NvmlGpu) -> dict[str, str]:
        return {"host": self.host, "gpu": str(index), "uuid": driver.uuid, "name": driver.name}

    def sample(self, ts_ns: int) -> list[Sample]:
        samples: list[Sample] = []
        for gpu in self.gpus:
            samples += self._sample_gpu(gpu, ts_ns)
        return samples

    def _sample_gpu(self, gpu: _Gpu, ts_ns: int) -> list[Sample]:
        now = self.monotonic()
        if not gpu.up:
            if now - gpu.lost_at < self.retry_lost_s:
                return [Sample(schema.GPU_UP, gpu.labels, 0.0, ts_ns)]
            try:
                if gpu.driver is None:
                    gpu.driver = self.nvml.gpu(gpu.index)
                    gpu.labels = self._labels(gpu.index, gpu.driver)
                else:
                    gpu.driver.reacquire()
            except NvmlError:
                gpu.lost_at = now
                return [Sample(schema.GPU_UP, gpu.labels, 0.0, ts_ns)]
        assert gpu.driver is not None
        try:
            reading = gpu.driver.read()
        except GpuLost as e:
            if gpu.up:
                log.error("%s: marked down; the other GPUs go on (looked for again every %g s)", e,
                          self.retry_lost_s)
            gpu.up, gpu.lost_at = False, now
            gpu.energy.gap()
            return [Sample(schema.GPU_UP, gpu.labels, 0.0, ts_ns)]
        if not gpu.up:
            log.warning("%r answers again", gpu.driver)
            gpu.up = True
        return self._samples(gpu, reading, now, ts_ns)

    def _energy(self, gpu: _Gpu, reading: Reading, now: float) -> float | None:
        energy = gpu.energy
        if energy.method is None:
            if reading.energy_j is not None:
                energy.method = METHOD_COUNTER
            elif reading.power_w:
                energy.method = METHOD_INTEGRAL
                log.info("%r has no hardware energy counter: integrating power every tick", gpu.driver)
            else:
                return None
        if energy.method == METHOD_COUNTER:
            return None if reading.energy_j is None else energy.add_counter(reading.energy_j)
        power = next((reading.power_w[k] for k in _INTEGRATION_POWER if k in reading.power_w), None)
        if power is None:
            energy.gap()
            return None
        return energy.add_power(now, power)

    def _samples(self, gpu: _Gpu, r: Reading, now: float, ts_ns: int) -> list[Sample]:
        labels = gpu.labels

        def s(metric: str, value: float | None, **extra: str) -> None:
            if value is not None:
                out.append(Sample(metric, {**labels, **extra} if extra else labels, float(value), ts_ns))

        out: list[Sample] = []
        s(schema.GPU_UP, 1.0)
        for kind, watts in r.power_w.items():
            s(schema.GPU_POWER, watts, kind=kind)
        total = self._energy(gpu, r, now)
        if total is not None:
            s(schema.GPU_ENERGY, total, method=gpu.energy.method or "")
        s(schema.GPU_TEMPERATURE, r.temperature_c)
        s(schema.GPU_UTILIZATION, r.utilization_ratio)
        s(schema.GPU_MEMORY_UTILIZATION, r.memory_utilization_ratio)
        s(schema.GPU_MEMORY_USED, r.memory_used_bytes)
        s(schema.GPU_PSTATE, r.performance_state)
        s(schema.GPU_PCIE_GENERATION, r.pcie_link_generation)
        s(schema.GPU_PCIE_WIDTH, r.pcie_link_width)
        for clock, hertz in r.clocks_hz.items():
            s(schema.GPU_CLOCK, hertz, clock=clock)
        s(schema.GPU_THROTTLE, r.throttle_reasons)
        s(schema.GPU_POWER_LIMIT, r.power_limit_w)
        s(schema.GPU_FAN, r.fan_speed_ratio)
        return out

    def close(self) -> None:
        self.nvml.close()
