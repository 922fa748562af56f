"""Cooldown between runs: wait until the GPU is back near the baseline's temperature.

Running 30 runs of one scenario back to back lets heat build up, and energy per epoch follows
GPU temperature (the paper found r = 0.98). Before each run the campaign can wait until the
hottest GPU is within ``margin_c`` of the reference temperature, up to ``limit_s``; the wait
is its own ``cooldown`` event.

Temperatures come from the GPU exporter's series in the store
(``mltelemetry_gpu_temperature_celsius``, the latest sample of each GPU, if recent) or from
NVML directly. The reference is ``reference_c`` where given, else the mean temperature during
the campaign's latest ``baseline`` run, else the temperature when the campaign started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.store import Store

log = logging.getLogger(__name__)


class TemperatureSource(Protocol):
    """Where GPU temperatures come from; ``describe`` names it in the events."""

    def describe(self) -> str: ...

    def read(self) -> float | None:
        """The hottest GPU's temperature now, in °C; None when there is no reading."""
        ...

    def mean(self, start_ns: int, end_ns: int) -> float | None:
        """Mean temperature (°C) of the hottest GPU over a past window; None where the source cannot tell."""
        ...


class StoreTemperature:
    """The GPU exporter's ``gpu_temperature_celsius`` series in the store (readings older than ``max_age_s``
    don't count)."""

    def __init__(self, store: Store, *, host: str | None = None, max_age_s: float = 15.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.labels = {"host": host} if host else {}
        self.max_age_ns = int(max_age_s * 1e9)
        self.clock = clock

    def describe(self) -> str:
        return f"store series {schema.GPU_TEMPERATURE}"

    def read(self) -> float | None:
        now = self.clock()
        frame = self.store.query(schema.GPU_TEMPERATURE, self.labels, now - self.max_age_ns, now)
        if frame.empty:
            return None
        keys = [c for c in frame.columns if c not in ("ts_ns", "value")]
        latest = frame.sort_values("ts_ns").groupby(keys).last() if keys else frame.tail(1)
        return float(latest["value"].max())

    def mean(self, start_ns: int, end_ns: int) -> float | None:
        frame = self.store.query(schema.GPU_TEMPERATURE, self.labels, start_ns, end_ns)
        if frame.empty:
            return None
        keys = [c for c in frame.columns if c not in ("ts_ns", "value")]
        return float(frame.groupby(keys)["value"].mean().max()) if keys else float(frame["value"].mean())


class NvmlTemperature:
    """GPU temperatures straight from NVML (through the GPU exporter's driver)."""

    def __init__(self, module: Any = None) -> None:
        from mltelemetry.exporters.gpu.nvml import NVML_TEMPERATURE_GPU, open_nvml
        self._sensor = NVML_TEMPERATURE_GPU
        self.nvml = open_nvml(module)
        count = self.nvml.device_count()
        if count == 0:
            self.nvml.close()
            raise MltelemetryError("NVML sees no GPU")
        self.gpus = [self.nvml.gpu(i) for i in range(count)]

    def describe(self) -> str:
        return f"NVML ({len(self.gpus)} GPU{'s' if len(self.gpus) > 1 else ''})"

    def read(self) -> float | None:
        from mltelemetry.exporters.gpu.nvml import NvmlError
        values = []
        for gpu in self.gpus:
            try:
                values.append(float(self.nvml.call(f"{gpu!r}: reading its temperature", "nvmlDeviceGetTemperature",
                                                   gpu.handle, self._sensor)))
            except NvmlError as e:
                log.debug("%s", e)
        return max(values) if values else None

    def mean(self, start_ns: int, end_ns: int) -> float | None:
        return None  # NVML has no history; the campaign reads the temperature at the baseline's end instead

    def close(self) -> None:
        self.nvml.close()


def find_source(store: Store, *, host: str | None = None, nvml_module: Any = None
                ) -> tuple[TemperatureSource | None, str]:
    """The first source that gives a reading now (store series, then NVML), or None and why there is none."""
    from_store = StoreTemperature(store, host=host)
    if from_store.read() is not None:
        return from_store, ""
    try:
        nvml = NvmlTemperature(nvml_module)
    except MltelemetryError as e:
        return None, f"no recent {schema.GPU_TEMPERATURE} samples in the store and no NVML ({e})"
    if nvml.read() is None:
        nvml.close()
        return None, "no recent GPU temperature in the store, and NVML gives none"
    return nvml, ""


def poll_until_at_most(read: Callable[[], float | None], value: float | None, threshold: float, *, started: float,
                       limit_s: float, poll_s: float, clock: Callable[[], float],
                       sleep: Callable[[float], None]) -> float | None:
    """Read again every ``poll_s`` until ``value`` is at most ``threshold``, the reading stops (None), or
    ``limit_s`` has passed since ``started`` (on ``clock``); the last value read. Cooldown and settle wait so."""
    while value is not None and value > threshold and clock() - started < limit_s:
        sleep(min(poll_s, max(0.0, limit_s - (clock() - started))))
        value = read()
    return value


@dataclass
class Cooldown:
    """Waits (``sleep``, polling every ``poll_s``) until ``source`` reads at most reference + ``margin_c``,
    for at most ``limit_s`` seconds of ``clock``."""

    source: TemperatureSource
    margin_c: float = 2.0
    limit_s: float = 600.0
    poll_s: float = 5.0
    reference_c: float | None = None
    reference_from: str = ""
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def set_reference(self, value: float | None, origin: str) -> None:
        if value is not None:
            self.reference_c, self.reference_from = value, origin

    def wait(self, fields: dict[str, Any]) -> bool:
        """Wait; fill ``fields`` with what happened (°C and s). True when the margin was reached."""
        fields.update(source=self.source.describe(), margin_c=self.margin_c, limit_s=self.limit_s)
        temperature = self.source.read()
        fields["start_temperature_c"] = temperature
        if self.reference_c is None:
            fields["skipped"] = "no reference temperature"
            return False
        fields.update(reference_c=self.reference_c, reference_from=self.reference_from)
        threshold = self.reference_c + self.margin_c
        started = self.clock()
        temperature = poll_until_at_most(self.source.read, temperature, threshold, started=started,
                                         limit_s=self.limit_s, poll_s=self.poll_s, clock=self.clock, sleep=self.sleep)
        reached = temperature is not None and temperature <= threshold
        fields.update(end_temperature_c=temperature, waited_s=round(self.clock() - started, 3), reached=reached)
        if temperature is None:
            fields["note"] = "the temperature reading stopped"
        elif not reached:
            fields["note"] = f"still above {threshold:g} °C after the {self.limit_s:g} s limit"
            log.warning("cooldown: %.1f °C after %g s, above the reference %.1f °C + %g; starting anyway",
                        temperature, self.limit_s, self.reference_c, self.margin_c)
        return reached
