"""NVML driver: the one module that talks to NVIDIA's management library.

It returns readings in SI units (mW → W, mJ → J, MHz → Hz, % → ratio) and translates every
``NVMLError`` into this package's errors here and nowhere else. ``pynvml`` (package
``nvidia-ml-py``, the ``gpu`` extra) is imported only when :func:`open_nvml` runs, so the
rest of mltelemetry starts without it. Anything with pynvml's function names can stand in
for the module: the CI tests pass their fake, `tests/fakes/fake_nvml.py`.

One read of one GPU costs one ``nvmlDeviceGetFieldValues`` call for instant power (field
186), 1-second average power (185) and the hardware energy counter (83), plus one cheap call
per remaining indicator. The energy counter is the expensive query (≈ 2.5 ms on an H100, 4 ms
on an H200), so it is read at most once per read, inside that batch, and only when asked for;
the average, like the slow indicators, only with them. A reading the GPU does not support is
logged once and never asked for again; a lost GPU raises :class:`GpuLost`.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from mltelemetry.errors import MltelemetryError

log = logging.getLogger(__name__)

# NVML return codes and field ids are the library's ABI: fixed numbers, usable without pynvml.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18

FI_TOTAL_ENERGY_CONSUMPTION = 83  # mJ since the driver was loaded (Volta and newer)
FI_POWER_AVERAGE = 185  # mW, averaged by the driver over 1 s
FI_POWER_INSTANT = 186  # mW, the latest reading (updated about every 100 ms)

NVML_TEMPERATURE_GPU = 0
NVML_PSTATE_UNKNOWN = 32
NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
CLOCKS = (("sm", NVML_CLOCK_SM), ("memory", NVML_CLOCK_MEM), ("graphics", NVML_CLOCK_GRAPHICS))

# How a field's value is stored in nvmlValue_t, by nvmlValueType_t.
_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")

# Reading names, as used in logs and by the fake's ``unsupported=``.
POWER_INSTANT, POWER_AVERAGE, ENERGY = "power_instant", "power_average", "energy"
_FIELDS = {FI_POWER_INSTANT: POWER_INSTANT, FI_POWER_AVERAGE: POWER_AVERAGE, FI_TOTAL_ENERGY_CONSUMPTION: ENERGY}


class NvmlError(MltelemetryError):
    """An NVML call failed; ``code`` is NVML's return code (None where there was none)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class NvmlUnavailable(NvmlError):
    """No usable NVML on this machine: pynvml missing, no library, or no driver loaded."""


class NotSupported(NvmlError):
    """The GPU (or the driver) does not offer this reading."""


class GpuLost(NvmlError):
    """The GPU fell off the bus (NVML_ERROR_GPU_IS_LOST)."""


def translate(error: Exception, what: str) -> NvmlError:
    """Our error for an ``NVMLError`` raised while doing ``what``: the only place NVML errors are mapped."""
    code = getattr(error, "value", None)
    text = f"{what}: {error}"
    if code in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND):
        return NotSupported(text, code)
    if code == NVML_ERROR_GPU_IS_LOST:
        return GpuLost(text, code)
    if code == NVML_ERROR_LIBRARY_NOT_FOUND:
        return NvmlUnavailable("NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver is installed "
                               "on this machine", code)
    if code == NVML_ERROR_DRIVER_NOT_LOADED:
        return NvmlUnavailable("the NVIDIA driver is not loaded: NVML cannot reach any GPU", code)
    if code == NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return NvmlUnavailable("NVML library and NVIDIA kernel driver versions differ (reboot or reload "
                               "the driver)", code)
    return NvmlError(text, code)


def _import_pynvml() -> ModuleType:
    try:
        return importlib.import_module("pynvml")
    except ImportError as e:
        raise NvmlUnavailable("pynvml is not installed: pip install 'mltelemetry[gpu]' (nvidia-ml-py)") from e


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class NvmlReading:
    """One read of one GPU, in SI units; None where the GPU does not give the value (or it failed this time).

    ``energy_j`` is NVML's hardware counter as read (joules since the driver was loaded), not
    yet made monotonic. ``power_w`` maps kind (``instant``, ``average`` or, where neither field
    exists, ``usage`` from ``nvmlDeviceGetPowerUsage``) to watts.
    """

    power_w: dict[str, float] = field(default_factory=dict)
    energy_j: float | None = None
    temperature_c: float | None = None
    utilization_ratio: float | None = None
    memory_utilization_ratio: float | None = None
    memory_used_bytes: float | None = None
    performance_state: float | None = None
    pcie_link_generation: float | None = None
    pcie_link_width: float | None = None
    clocks_hz: dict[str, float] = field(default_factory=dict)
    throttle_reasons: float | None = None
    power_limit_w: float | None = None
    fan_speed_ratio: float | None = None


class Nvml:
    """An initialised NVML (pynvml or a stand-in with its function names)."""

    def __init__(self, module: Any) -> None:
        self.nv = module
        self._nvml_error: type[Exception] = module.NVMLError

    def call(self, what: str, fn_name: str, *args: Any) -> Any:
        """``module.fn_name(*args)`` with NVML's errors translated."""
        fn = getattr(self.nv, fn_name, None)
        if fn is None:  # an older pynvml without this function
            raise NotSupported(f"{what}: this pynvml has no {fn_name}", NVML_ERROR_FUNCTION_NOT_FOUND)
        try:
            return fn(*args)
        except self._nvml_error as e:
            raise translate(e, what) from e

    def device_count(self) -> int:
        return int(self.call("counting GPUs", "nvmlDeviceGetCount"))

    def driver_version(self) -> str:
        try:
            return _text(self.call("reading the driver version", "nvmlSystemGetDriverVersion"))
        except NvmlError:
            return "unknown"

    def gpu(self, index: int) -> NvmlGpu:
        return NvmlGpu(self, index)

    def close(self) -> None:
        try:
            self.call("shutting NVML down", "nvmlShutdown")
        except NvmlError as e:
            log.debug("%s", e)


def open_nvml(module: Any | None = None) -> Nvml:
    """Load and initialise NVML; :class:`NvmlUnavailable` (one clear line) when it cannot start."""
    nv = module if module is not None else _import_pynvml()
    nvml = Nvml(nv)
    try:
        nvml.call("starting NVML", "nvmlInit")
    except NvmlUnavailable:
        raise
    except NvmlError as e:
        raise NvmlUnavailable(f"NVML could not start: {e}", e.code) from e
    return nvml


class NvmlGpu:
    """One GPU. :meth:`read` returns a :class:`NvmlReading`; unsupported readings are dropped after the first try."""

    def __init__(self, nvml: Nvml, index: int) -> None:
        self.nvml = nvml
        self.index = index
        self.handle = nvml.call(f"GPU {index}: getting its handle", "nvmlDeviceGetHandleByIndex", index)
        self.uuid = _text(nvml.call(f"GPU {index}: reading its UUID", "nvmlDeviceGetUUID", self.handle))
        self.name = _text(nvml.call(f"GPU {index}: reading its name", "nvmlDeviceGetName", self.handle))
        self.unsupported: set[str] = set()
        self._reading_texts: dict[str, str] = {}  # "GPU 0 (...): reading what" by what: made once, not per call
        self._field_ids = [FI_POWER_INSTANT, FI_POWER_AVERAGE, FI_TOTAL_ENERGY_CONSUMPTION]
        self._field_values = True

    def __repr__(self) -> str:
        return f"GPU {self.index} ({self.name}, {self.uuid})"

    def reacquire(self) -> None:
        """Get a fresh handle by UUID, after the GPU was lost; raises GpuLost while it is still gone."""
        self.handle = self.nvml.call(f"{self!r}: getting its handle", "nvmlDeviceGetHandleByUUID", self.uuid)

    def _not_supported(self, what: str, why: str = "") -> None:
        if what not in self.unsupported:
            self.unsupported.add(what)
            log.info("%r: %s not supported%s; left out for this GPU", self, what.replace("_", " "),
                     f" ({why})" if why else "")

    def _reading(self, what: str) -> str:
        """What an error says was being done (made once per reading: an exporter at 0.1 s asks ten times a second)."""
        text = self._reading_texts.get(what)
        if text is None:
            text = self._reading_texts[what] = f"{self!r}: reading {what.replace('_', ' ')}"
        return text

    def _get(self, what: str, fn_name: str, *args: Any) -> Any:
        """One reading, or None where unsupported (said once) or failing this time (said each time)."""
        if what in self.unsupported:
            return None
        try:
            return self.nvml.call(self._reading(what), fn_name, self.handle, *args)
        except NotSupported as e:
            self._not_supported(what, str(e.code))
            return None
        except GpuLost:
            raise
        except NvmlError as e:
            log.warning("%s", e)
            return None

    def _read_fields(self, reading: NvmlReading, energy: bool = True, average: bool = True) -> None:
        left_out = {FI_TOTAL_ENERGY_CONSUMPTION} if not energy else set()
        if not average and FI_POWER_INSTANT in self._field_ids:  # the 1 s average only with the slow indicators
            left_out.add(FI_POWER_AVERAGE)
        ids = [i for i in self._field_ids if i not in left_out]
        if not self._field_values or not ids:
            return
        try:
            values = self.nvml.call(self._reading("field_values"), "nvmlDeviceGetFieldValues", self.handle, ids)
        except NotSupported:
            self._field_values = False
            log.info("%r: NVML field values not supported by this driver; using the older calls", self)
            return
        except GpuLost:
            raise
        except NvmlError as e:
            log.warning("%s", e)
            return
        for value in values:
            what = _FIELDS[value.fieldId]
            code = value.nvmlReturn
            if code == NVML_SUCCESS:
                number = float(getattr(value.value, _VALUE_MEMBERS[value.valueType]))
                if value.fieldId == FI_TOTAL_ENERGY_CONSUMPTION:
                    reading.energy_j = number / 1000
                else:
                    reading.power_w["instant" if value.fieldId == FI_POWER_INSTANT else "average"] = number / 1000
            elif code in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND):
                self._field_ids.remove(value.fieldId)
                self._not_supported(what, f"field {value.fieldId}")
            elif code == NVML_ERROR_GPU_IS_LOST:
                raise GpuLost(f"{self!r}: reading field {value.fieldId}: GPU is lost", code)
            else:
                log.warning("%r: reading field %d failed with NVML code %d", self, value.fieldId, code)

    def _read_power_usage(self, reading: NvmlReading) -> None:
        fields_have_power = FI_POWER_INSTANT in self._field_ids or FI_POWER_AVERAGE in self._field_ids
        if not (self._field_values and fields_have_power):
            milliwatts = self._get("power_usage", "nvmlDeviceGetPowerUsage")
            if milliwatts is not None:
                reading.power_w["usage"] = milliwatts / 1000

    def read(self, *, energy: bool = True, slow: bool = True) -> NvmlReading:
        """Read every indicator the GPU supports: power always, the energy counter (one read spins milliseconds
        of CPU in the driver) with ``energy``, the slowly changing rest with ``slow`` (and NVML's 1 s average
        power, where instant power is read every time). Raises :class:`GpuLost` if it fell off the bus."""
        reading = NvmlReading()
        self._read_fields(reading, energy=energy, average=slow)
        self._read_power_usage(reading)
        if energy and not (self._field_values and FI_TOTAL_ENERGY_CONSUMPTION in self._field_ids):
            millijoules = self._get(ENERGY, "nvmlDeviceGetTotalEnergyConsumption")
            if millijoules is not None:
                reading.energy_j = millijoules / 1000
        if slow:
            self._read_slow(reading)
        return reading

    def _read_slow(self, reading: NvmlReading) -> None:
        temperature = self._get("temperature", "nvmlDeviceGetTemperature", NVML_TEMPERATURE_GPU)
        reading.temperature_c = None if temperature is None else float(temperature)
        rates = self._get("utilization", "nvmlDeviceGetUtilizationRates")
        if rates is not None:
            reading.utilization_ratio = rates.gpu / 100
            reading.memory_utilization_ratio = rates.memory / 100
        memory = self._get("memory_used", "nvmlDeviceGetMemoryInfo")
        reading.memory_used_bytes = None if memory is None else float(memory.used)
        pstate = self._get("performance_state", "nvmlDeviceGetPerformanceState")
        reading.performance_state = None if pstate in (None, NVML_PSTATE_UNKNOWN) else float(pstate)
        generation = self._get("pcie_link_generation", "nvmlDeviceGetCurrPcieLinkGeneration")
        reading.pcie_link_generation = None if generation is None else float(generation)
        width = self._get("pcie_link_width", "nvmlDeviceGetCurrPcieLinkWidth")
        reading.pcie_link_width = None if width is None else float(width)
        for clock, clock_type in CLOCKS:
            mhz = self._get(f"{clock}_clock", "nvmlDeviceGetClockInfo", clock_type)
            if mhz is not None:
                reading.clocks_hz[clock] = mhz * 1e6
        reasons = self._get("throttle_reasons", "nvmlDeviceGetCurrentClocksEventReasons")
        reading.throttle_reasons = None if reasons is None else float(reasons)
        limit = self._get("power_limit", "nvmlDeviceGetEnforcedPowerLimit")
        reading.power_limit_w = None if limit is None else limit / 1000
        fan = self._get("fan_speed", "nvmlDeviceGetFanSpeed")
        reading.fan_speed_ratio = None if fan is None else fan / 100
