"""``--settle``: before each run, wait until the GPUs' power is back near the campaign's first baseline.

After a training run a GPU stays in a high performance state, and its fans and memory
clocks with it, for a while; a run started then measures part of the previous one. The
criterion: the GPUs' total board power (NVML) at most ``margin_w`` above the reference, which
is the mean power over the campaign's first ``baseline`` run (from NVML's energy counters at
its edges, else the reading at its end), or the power when the campaign started until that
run has run. One-sided, like the cooldown: a GPU idling lower than the reference is settled.
The wait is its own ``settle`` event, outside the run, recorded whether or not it was reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.workload.cooldown import poll_until_at_most

log = logging.getLogger(__name__)


class PowerSource(Protocol):
    def read_w(self) -> float | None:
        """The GPUs' total board power now, in W; None when there is no reading."""
        ...

    def energy_j(self) -> float | None:
        """The GPUs' total energy counter, in J (for the mean power over a run); None where there is none."""
        ...


class NvmlPower:
    """GPU power and energy counters straight from NVML (through the GPU exporter's driver), summed over GPUs."""

    def __init__(self, module: Any = None) -> None:
        from mltelemetry.exporters.gpu.nvml import open_nvml
        self.nvml = open_nvml(module)
        self.gpus = [self.nvml.gpu(i) for i in range(self.nvml.device_count())]
        if not self.gpus:
            self.nvml.close()
            raise MltelemetryError("NVML sees no GPU")

    def _readings(self) -> list:
        from mltelemetry.exporters.gpu.nvml import NvmlError
        readings = []
        for gpu in self.gpus:
            try:
                readings.append(gpu.read())
            except NvmlError as e:
                log.debug("%s", e)
                return []
        return readings

    def read_w(self) -> float | None:
        powers = [next(iter(r.power_w.values()), None) for r in self._readings()]  # instant first, then average
        return sum(powers) if powers and None not in powers else None

    def energy_j(self) -> float | None:
        energies = [r.energy_j for r in self._readings()]
        return sum(energies) if energies and None not in energies else None

    def close(self) -> None:
        self.nvml.close()


def find_power_source(nvml_module: Any = None) -> tuple[PowerSource | None, str]:
    try:
        source = NvmlPower(nvml_module)
    except MltelemetryError as e:
        return None, f"no GPU power from NVML ({e})"
    if source.read_w() is None:
        source.close()
        return None, "NVML gives no GPU power reading"
    return source, ""


@dataclass
class Settle:
    """Waits (``sleep``, polling every ``poll_s``) until ``source`` reads at most reference + ``margin_w``,
    for at most ``limit_s`` seconds of ``clock``."""

    source: PowerSource
    margin_w: float = 5.0
    limit_s: float = 300.0
    poll_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    reference_w: float | None = None
    reference_from: str = ""
    from_baseline: bool = False

    def start(self) -> None:
        """The campaign starts: its power now is the reference until the first baseline run has run."""
        value = self.source.read_w()
        if value is not None:
            self.reference_w, self.reference_from = value, "campaign start"

    def recorded_baseline(self, settle_fields: list[dict[str, Any]]) -> None:
        """A resumed campaign: the reference its first baseline run gave, from its earlier settle events."""
        for fields in settle_fields:
            if str(fields.get("reference_from", "")).startswith("baseline run") and \
                    fields.get(schema.FIELD_SETTLE_REFERENCE) is not None:
                self.reference_w, self.reference_from = fields[schema.FIELD_SETTLE_REFERENCE], fields["reference_from"]
                self.from_baseline = True
                return

    def baseline_starting(self) -> tuple[float | None, float] | None:
        """Before a baseline run: what :meth:`baseline_ran` needs (None once the first baseline has set it)."""
        return None if self.from_baseline else (self.source.energy_j(), self.clock())

    def baseline_ran(self, run: int, before: tuple[float | None, float] | None) -> None:
        """The first baseline run ended: its mean GPU power (energy counters over its time) becomes the
        reference for the rest of the campaign; the power now where there are no counters."""
        if before is None or self.from_baseline:
            return
        energy_before_j, started = before
        energy_after_j, seconds = self.source.energy_j(), self.clock() - started
        if energy_before_j is not None and energy_after_j is not None and seconds > 0:
            value: float | None = (energy_after_j - energy_before_j) / seconds
        else:
            value = self.source.read_w()
        if value is not None:
            self.reference_w, self.reference_from, self.from_baseline = value, f"baseline run {run}", True

    def wait(self, fields: dict[str, Any]) -> bool:
        """Wait; fill ``fields`` (W and s). True when the margin was reached."""
        fields.update({schema.FIELD_SETTLE_MARGIN: self.margin_w, "limit_s": self.limit_s,
                       schema.FIELD_SETTLE_REFERENCE: self.reference_w, "reference_from": self.reference_from})
        started = self.clock()
        power = self.source.read_w()
        fields["start_gpu_power_w"] = power
        if self.reference_w is None:
            fields.update({schema.FIELD_COOLDOWN_WAITED: 0.0, schema.FIELD_COOLDOWN_REACHED: False,
                           schema.FIELD_SETTLE_GPU_POWER: power, "note": "no reference power"})
            return False
        threshold = self.reference_w + self.margin_w
        power = poll_until_at_most(self.source.read_w, power, threshold, started=started, limit_s=self.limit_s,
                                   poll_s=self.poll_s, clock=self.clock, sleep=self.sleep)
        reached = power is not None and power <= threshold
        fields.update({schema.FIELD_COOLDOWN_WAITED: round(self.clock() - started, 3),
                       schema.FIELD_COOLDOWN_REACHED: reached, schema.FIELD_SETTLE_GPU_POWER: power})
        if power is None:
            fields["note"] = "the GPU power reading stopped"
        elif not reached:
            fields["note"] = f"still above {threshold:g} W after the {self.limit_s:g} s limit"
            log.warning("settle: GPU power %.1f W after %g s, above the reference %.1f W + %g; starting anyway",
                        power, self.limit_s, self.reference_w, self.margin_w)
        return reached
