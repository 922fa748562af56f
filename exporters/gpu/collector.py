"""GPU collector: turns NVML readings into samples of the schema's GPU metrics.

Every series carries ``host``, ``gpu`` (NVML index), ``uuid`` and ``name``. Energy is a
monotonic counter, ``gpu_energy_joules_total``, labelled by how it was obtained:

- ``method="nvml_counter"``: NVML's hardware energy counter (Volta and newer), made
  monotonic across driver reloads (a counter that goes back restarted from zero);
- ``method="power_integral"``: where the GPU has no counter, power integrated by the
  trapezoidal rule between ticks (instant power where the driver gives it), on the monotonic
  clock. A tick that misses power leaves a gap that is not bridged.
- ``method="nvml_counter_power_shaped"``: with ``counter_interval_s`` (``--counter-interval``),
  the counter is read only that often and power every tick: one counter read spins milliseconds
  of CPU in the driver. At each counter read the counter's exact increase since the previous
  read is spread over the ticks in between in proportion to their integrated power, and
  published with each tick's own time. So the series equals the counter at every read and
  follows power in between; it reaches /metrics and the sinks up to one counter interval late.
  Power sampled at instants misses what changes between ticks: a window edge between two
  counter reads is less exact than with the counter read every tick (README, GPU exporter).

``gauges_interval_s`` (the CLI: 1 s when it samples faster) reads the slowly changing indicators
(temperature, clocks, memory, P-state, PCIe link, throttle reasons, power limit, fan, and NVML's
1 s average power) at most that often; instant power every tick.

A GPU that falls off the bus publishes ``gpu_up 0`` and nothing else; the other GPUs keep
going, and the lost one is looked for again every ``retry_lost_s``. A GPU already lost at
start-up is started down the same way; until it answers, its ``uuid`` and ``name`` labels are
``unknown``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mltelemetry import schema
from mltelemetry.exporters.counters import MonotonicCounter
from mltelemetry.schema import Sample

from .nvml import GpuLost, Nvml, NvmlError, NvmlGpu, NvmlReading

log = logging.getLogger(__name__)

METHOD_COUNTER = "nvml_counter"
METHOD_COUNTER_SHAPED = "nvml_counter_power_shaped"
METHOD_INTEGRAL = "power_integral"
# Power to integrate where there is no energy counter, best first.
_INTEGRATION_POWER = ("instant", "usage", "average")


class EnergyCounter:
    """Monotonic joules of one GPU, from the hardware counter or from integrated power."""

    def __init__(self) -> None:
        self.method: str | None = None
        self.total_j: float | None = None
        self._counter = MonotonicCounter()  # a counter that goes back: the driver was reloaded, it restarted at 0
        self._last_power: tuple[float, float] | None = None  # (monotonic s, W)

    @property
    def resets(self) -> int:
        """How often the hardware counter restarted (driver reloads)."""
        return self._counter.restarts

    def add_counter(self, counter_j: float) -> float:
        """Account a hardware counter reading; the total starts at the counter's own value."""
        self.total_j = self._counter.add(counter_j)
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


def _integration_power(reading: NvmlReading) -> float | None:
    return next((reading.power_w[k] for k in _INTEGRATION_POWER if k in reading.power_w), None)


@dataclass
class _Gpu:
    index: int
    driver: NvmlGpu | None  # None while a GPU lost at start-up has not answered yet
    labels: dict[str, str]
    energy: EnergyCounter
    up: bool = True
    lost_at: float = 0.0
    busy_s: float = 0.0  # gpu_busy_seconds_total
    busy_since: float | None = None  # monotonic time of the utilisation reading busy_s runs to
    last_counter_read: float = -math.inf  # monotonic times of the last counter and slow-indicator reads
    last_gauges_read: float = -math.inf
    anchor: tuple[int, float, float | None, float] | None = None  # last counter read: (ns, s, W, J total)
    between: list[tuple[int, float, float]] = field(default_factory=list)  # power ticks since: (ns, s, W)


class GpuCollector:
    """Samples every indicator of the selected GPUs (all of them by default) on each tick."""

    name = "gpu"

    def __init__(self, nvml: Nvml, host: str, indices: Sequence[int] | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic, retry_lost_s: float = 30.0,
                 counter_interval_s: float = 0.0, gauges_interval_s: float = 0.0) -> None:
        self.nvml = nvml
        self.host = host
        self.monotonic = monotonic
        self.retry_lost_s = retry_lost_s
        # Read the energy counter, and the slow indicators, at most this often (0: every tick); power every tick.
        self.counter_interval_s = counter_interval_s
        self.gauges_interval_s = gauges_interval_s
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
        # 5 ms of slack: a tick on time is not taken for early by the jitter of the clock
        counter = now - gpu.last_counter_read >= self.counter_interval_s - 0.005
        gauges = now - gpu.last_gauges_read >= self.gauges_interval_s - 0.005
        try:
            reading = gpu.driver.read(energy=counter, slow=gauges)
        except GpuLost as e:
            if gpu.up:
                log.error("%s: marked down; the other GPUs go on (looked for again every %g s)", e,
                          self.retry_lost_s)
            gpu.up, gpu.lost_at = False, now
            gpu.energy.gap()
            gpu.busy_since = None  # its load while lost is unknown: not counted
            gpu.anchor, gpu.between = None, []
            return [Sample(schema.GPU_UP, gpu.labels, 0.0, ts_ns)]
        if not gpu.up:
            log.warning("%r answers again", gpu.driver)
            gpu.up = True
        gpu.last_counter_read = now if counter else gpu.last_counter_read
        gpu.last_gauges_read = now if gauges else gpu.last_gauges_read
        return self._samples(gpu, reading, now, ts_ns, counter, gauges)

    def _between_counter_reads(self, gpu: _Gpu, reading: NvmlReading, now: float, ts_ns: int) -> list[Sample]:
        """Energy on a tick without a counter read: none yet, its power kept to shape the counter's next
        increase (or, for a GPU without a counter, power integrated at once)."""
        power = _integration_power(reading)
        if gpu.energy.method == METHOD_INTEGRAL:
            total = gpu.energy.add_power(now, power) if power is not None else gpu.energy.gap()
            if total is not None:
                return [Sample(schema.GPU_ENERGY, {**gpu.labels, "method": METHOD_INTEGRAL}, total, ts_ns)]
        elif power is not None and gpu.anchor is not None:
            gpu.between.append((ts_ns, now, power))
        return []

    def _shaped(self, gpu: _Gpu, total: float, power: float | None, now: float, ts_ns: int) -> list[Sample]:
        """Energy samples for the ticks since the previous counter read, then this read's: the counter's increase
        spread over them by integrated power (by time where power is missing or zero)."""
        labels = {**gpu.labels, "method": METHOD_COUNTER_SHAPED}
        anchor, between = gpu.anchor, gpu.between
        gpu.anchor, gpu.between = (ts_ns, now, power, total), []
        if anchor is None or not between or total < anchor[3]:  # nothing to shape, or the counter restarted
            return [Sample(schema.GPU_ENERGY, labels, total, ts_ns)]
        points = [(anchor[1], anchor[2])] + [(t, p) for _, t, p in between] + [(now, power)]
        times = [t for t, _ in points]
        if all(p is not None for _, p in points):
            steps = [(p0 + p1) / 2 * (t1 - t0) for (t0, p0), (t1, p1) in zip(points, points[1:])]
        else:
            steps = [t1 - t0 for t0, t1 in zip(times, times[1:])]
        whole = sum(steps)
        if whole <= 0:
            steps, whole = [t1 - t0 for t0, t1 in zip(times, times[1:])], max(now - anchor[1], 1e-9)
        increase, done, out = total - anchor[3], 0.0, []
        for (tick_ns, _, _), step in zip(between, steps):
            done += step
            out.append(Sample(schema.GPU_ENERGY, labels, anchor[3] + increase * done / whole, tick_ns))
        return out + [Sample(schema.GPU_ENERGY, labels, total, ts_ns)]

    def _energy(self, gpu: _Gpu, reading: NvmlReading, now: float) -> float | None:
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
        power = _integration_power(reading)
        if power is None:
            energy.gap()
            return None
        return energy.add_power(now, power)

    def _samples(self, gpu: _Gpu, r: NvmlReading, now: float, ts_ns: int, counter: bool = True,
                 gauges: bool = True) -> list[Sample]:
        labels = gpu.labels

        def s(metric: str, value: float | None, **extra: str) -> None:
            if value is not None:
                out.append(Sample(metric, {**labels, **extra} if extra else labels, float(value), ts_ns))

        out: list[Sample] = []
        s(schema.GPU_UP, 1.0)
        for kind, watts in r.power_w.items():  # NVML's 1 s average has a name of its own: sum() counts a GPU once
            if kind == "average":
                s(schema.GPU_POWER_AVERAGE, watts)
            else:
                s(schema.GPU_POWER, watts, kind=kind)
        total = self._energy(gpu, r, now) if counter else None
        if not counter:
            out += self._between_counter_reads(gpu, r, now, ts_ns)
        elif total is not None and self.counter_interval_s > 0 and gpu.energy.method == METHOD_COUNTER:
            out += self._shaped(gpu, total, _integration_power(r), now, ts_ns)
        elif total is not None:
            s(schema.GPU_ENERGY, total, method=gpu.energy.method or "")
        if not gauges:  # the slow indicators were not read: nothing more this tick
            return out
        s(schema.GPU_TEMPERATURE, r.temperature_c)
        s(schema.GPU_UTILIZATION, r.utilization_ratio)
        s(schema.GPU_BUSY_SECONDS, self._busy(gpu, r.utilization_ratio, now))  # waits for the next utilisation
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

    @staticmethod
    def _busy(gpu: _Gpu, ratio: float | None, now: float) -> float | None:
        """Busy seconds: NVML's utilisation (the share of its last 1/6 to 1 s with a kernel running) times the time
        since the previous reading, so the counter holds the load between the ticks, not only at the scrapes. A
        reading that misses starts the count again at the next one."""
        if ratio is None:
            gpu.busy_since = None
            return None
        if gpu.busy_since is not None:
            gpu.busy_s += ratio * (now - gpu.busy_since)
        gpu.busy_since = now
        return gpu.busy_s

    def close(self) -> None:
        self.nvml.close()
