"""A scripted stand-in for pynvml, for CI machines without a GPU.

A :class:`FakeNvml` has the pynvml functions and constants the GPU driver uses, so it goes
where the ``pynvml`` module would: ``open_nvml(FakeNvml([...]))``. (The module itself also
behaves as one once :func:`install` gave it an instance: ``open_nvml(fake_nvml)``.)

Each :class:`FakeGpu` follows a script of :class:`Step` s on a :class:`FakeClock`: power
and temperature (and load, clocks, ...) hold from one step to the next. Everything NVML
reports is derived from the script exactly, in NVML's integer units:

- instant power (field 186, ``nvmlDeviceGetPowerUsage``): the step's power, in mW;
- average power (field 185): the mean of the scripted power over the last second, in mW
  (before the script starts the first step's power is taken as having held);
- energy (field 83, ``nvmlDeviceGetTotalEnergyConsumption``): ``energy_at_start_mj`` plus
  the integral of the scripted power since t = 0, in mJ, rounded; after :meth:`FakeNvml.recover`
  with ``reload_driver=True`` it restarts from 0 at the time of the reload.

``unsupported`` names readings (as :mod:`mltelemetry.exporters.gpu.nvml` names them: ``power_instant``,
``power_average``, ``energy``, ``power_usage``, ``temperature``, ``utilization``,
``memory_used``, ``performance_state``, ``pcie_link_generation``, ``pcie_link_width``,
``sm_clock``, ``memory_clock``, ``graphics_clock``, ``throttle_reasons``, ``power_limit``,
``fan_speed``, or ``field_values`` for a driver without ``nvmlDeviceGetFieldValues``) that
answer NVML_ERROR_NOT_SUPPORTED. ``nvmlDeviceSetPowerManagementLimit`` changes the GPU's
``power_limit_w`` within ``power_limit_range_w`` (NVML_ERROR_NO_PERMISSION unless ``root``).
:meth:`FakeNvml.lose` makes a GPU answer NVML_ERROR_GPU_IS_LOST until :meth:`FakeNvml.recover`.
``calls`` counts every call by name.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15

NVML_VALUE_TYPE_DOUBLE = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3

NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION = 83
NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2

_CLOCK_NAMES = {NVML_CLOCK_GRAPHICS: "graphics_clock", NVML_CLOCK_SM: "sm_clock", NVML_CLOCK_MEM: "memory_clock"}
_FIELD_NAMES = {NVML_FI_DEV_POWER_INSTANT: "power_instant", NVML_FI_DEV_POWER_AVERAGE: "power_average",
                NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: "energy"}


class NVMLError(Exception):
    """pynvml's error: ``value`` is the NVML return code."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass(frozen=True)
class Step:
    """The GPU's state from ``at_s`` (seconds on the fake clock) until the next step."""

    at_s: float
    power_w: float
    temperature_c: int = 35
    utilization_pct: int = 0
    memory_utilization_pct: int = 0
    memory_used_bytes: int = 0
    pstate: int = 0
    sm_mhz: int = 1980
    memory_mhz: int = 2619
    graphics_mhz: int = 1980
    throttle_reasons: int = 0


@dataclass
class FakeGpu:
    """One scripted GPU. ``steps`` must be sorted by ``at_s``."""

    steps: Sequence[Step]
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    energy_at_start_mj: int = 0
    pcie_link_generation: int = 5
    pcie_link_width: int = 16
    power_limit_w: float = 700.0
    power_limit_range_w: tuple[float, float] = (200.0, 700.0)
    fan_pct: int = 0
    unsupported: frozenset[str] = frozenset()
    lost: bool = False
    reload_at_s: float | None = None  # when the driver was last reloaded (the counter restarts)
    generation: int = 0  # bumped on recovery: older handles are stale

    def __post_init__(self) -> None:
        self._starts = [step.at_s for step in self.steps]

    def step(self, t: float) -> Step:
        return self.steps[max(0, bisect.bisect_right(self._starts, t) - 1)]

    def integral_j(self, a: float, b: float) -> float:
        """Exact ∫ scripted power dt over [a, b] (the first step extends back in time)."""
        total, t = 0.0, a
        while t < b:
            i = max(0, bisect.bisect_right(self._starts, t) - 1)
            end = min(b, self._starts[i + 1]) if i + 1 < len(self._starts) else b
            total += self.steps[i].power_w * (end - t)
            t = end
        return total

    def energy_j(self, t: float) -> float:
        """What the hardware counter holds at ``t``, exact (NVML reports it rounded to mJ)."""
        if self.reload_at_s is not None:
            return self.integral_j(self.reload_at_s, t)
        return self.energy_at_start_mj / 1000 + self.integral_j(0.0, t)

    def average_w(self, t: float) -> float:
        """The mean scripted power over [t - 1 s, t]: NVML's 1-second average."""
        return self.integral_j(t - 1.0, t)


class FakeClock:
    """Scripted monotonic seconds: call it for the time, ``advance`` to move it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass(frozen=True)
class _Handle:
    index: int
    generation: int


@dataclass
class FakeNvml:
    """Scripted GPUs behind pynvml's function names."""

    gpus: list[FakeGpu]
    clock: FakeClock = field(default_factory=FakeClock)
    library_missing: bool = False
    driver_not_loaded: bool = False
    driver_version: str = "580.159.04"
    calls: Counter = field(default_factory=Counter)
    initialised: bool = False
    root: bool = True  # False: setting a power limit answers NVML_ERROR_NO_PERMISSION, as for a normal user

    NVMLError = NVMLError

    # --- the script's controls --------------------------------------------------------------
    def lose(self, index: int) -> None:
        """The GPU falls off the bus: every call about it answers NVML_ERROR_GPU_IS_LOST."""
        self.gpus[index].lost = True

    def recover(self, index: int, reload_driver: bool = True) -> None:
        """The GPU is back (its old handles are stale); with ``reload_driver`` its counter restarts at 0 now."""
        gpu = self.gpus[index]
        gpu.lost = False
        gpu.generation += 1
        if reload_driver:
            gpu.reload_at_s = self.clock()

    # --- pynvml's functions -----------------------------------------------------------------
    def _count(self, name: str) -> None:
        self.calls[name] += 1
        if not self.initialised and name != "nvmlInit":
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _gpu(self, name: str, handle: _Handle, reading: str | None = None) -> FakeGpu:
        self._count(name)
        gpu = self.gpus[handle.index]
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if handle.generation != gpu.generation:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if reading is not None and reading in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def nvmlInit(self) -> None:
        self._count("nvmlInit")
        if self.library_missing:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        if self.driver_not_loaded:
            raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._count("nvmlShutdown")
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._count("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._count("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._count("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if self.gpus[index].lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return _Handle(index, self.gpus[index].generation)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> _Handle:
        self._count("nvmlDeviceGetHandleByUUID")
        for index, gpu in enumerate(self.gpus):
            if gpu.uuid == uuid:
                if gpu.lost:
                    raise NVMLError(NVML_ERROR_GPU_IS_LOST)
                return _Handle(index, gpu.generation)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetFieldValues(self, handle: _Handle, field_ids: Iterable[int]) -> list[Any]:
        self._count("nvmlDeviceGetFieldValues")
        gpu = self.gpus[handle.index]
        if "field_values" in gpu.unsupported:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        if handle.generation != gpu.generation and not gpu.lost:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        t = self.clock()
        out = []
        for field_id in field_ids:
            value = SimpleNamespace(dVal=0.0, uiVal=0, ulVal=0, ullVal=0, sllVal=0, siVal=0, usVal=0)
            entry = SimpleNamespace(fieldId=field_id, scopeId=0, timestamp=int(t * 1e6), latencyUsec=0,
                                    valueType=NVML_VALUE_TYPE_UNSIGNED_INT, nvmlReturn=NVML_SUCCESS, value=value)
            if gpu.lost:
                entry.nvmlReturn = NVML_ERROR_GPU_IS_LOST
            elif field_id not in _FIELD_NAMES or _FIELD_NAMES[field_id] in gpu.unsupported:
                entry.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
            elif field_id == NVML_FI_DEV_POWER_INSTANT:
                value.uiVal = round(gpu.step(t).power_w * 1000)
            elif field_id == NVML_FI_DEV_POWER_AVERAGE:
                value.uiVal = round(gpu.average_w(t) * 1000)
            else:
                entry.valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                value.ullVal = round(gpu.energy_j(t) * 1000)
            out.append(entry)
        return out

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        gpu = self._gpu("nvmlDeviceGetPowerUsage", handle, "power_usage")
        return round(gpu.step(self.clock()).power_w * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        gpu = self._gpu("nvmlDeviceGetTotalEnergyConsumption", handle, "energy")
        return round(gpu.energy_j(self.clock()) * 1000)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle, "temperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.step(self.clock()).temperature_c

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        step = self._gpu("nvmlDeviceGetUtilizationRates", handle, "utilization").step(self.clock())
        return SimpleNamespace(gpu=step.utilization_pct, memory=step.memory_utilization_pct)

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> Any:
        step = self._gpu("nvmlDeviceGetMemoryInfo", handle, "memory_used").step(self.clock())
        total = 85_520_809_984
        return SimpleNamespace(total=total, used=step.memory_used_bytes, free=total - step.memory_used_bytes)

    def nvmlDeviceGetPerformanceState(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetPerformanceState", handle, "performance_state").step(self.clock()).pstate

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetCurrPcieLinkGeneration", handle, "pcie_link_generation").pcie_link_generation

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetCurrPcieLinkWidth", handle, "pcie_link_width").pcie_link_width

    def nvmlDeviceGetClockInfo(self, handle: _Handle, clock_type: int) -> int:
        step = self._gpu("nvmlDeviceGetClockInfo", handle, _CLOCK_NAMES[clock_type]).step(self.clock())
        return {NVML_CLOCK_SM: step.sm_mhz, NVML_CLOCK_MEM: step.memory_mhz,
                NVML_CLOCK_GRAPHICS: step.graphics_mhz}[clock_type]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        gpu = self._gpu("nvmlDeviceGetCurrentClocksEventReasons", handle, "throttle_reasons")
        return gpu.step(self.clock()).throttle_reasons

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return round(self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle, "power_limit").power_limit_w * 1000)

    def nvmlDeviceGetPowerManagementLimit(self, handle: _Handle) -> int:
        return round(self._gpu("nvmlDeviceGetPowerManagementLimit", handle, "power_limit").power_limit_w * 1000)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: _Handle) -> tuple[int, int]:
        low, high = self._gpu("nvmlDeviceGetPowerManagementLimitConstraints", handle, "power_limit").power_limit_range_w
        return round(low * 1000), round(high * 1000)

    def nvmlDeviceSetPowerManagementLimit(self, handle: _Handle, milliwatts: int) -> None:
        gpu = self._gpu("nvmlDeviceSetPowerManagementLimit", handle, "power_limit")
        if not self.root:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        if not gpu.power_limit_range_w[0] * 1000 <= milliwatts <= gpu.power_limit_range_w[1] * 1000:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu.power_limit_w = milliwatts / 1000

    def nvmlDeviceGetFanSpeed(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetFanSpeed", handle, "fan_speed").fan_pct


_installed: FakeNvml | None = None


def install(fake: FakeNvml) -> FakeNvml:
    """Make this module answer as ``fake``: its pynvml names then resolve on the module itself."""
    global _installed
    _installed = fake
    return fake


def __getattr__(name: str) -> Any:
    if _installed is not None and name.startswith(("nvml", "NVML_")):
        return getattr(_installed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
