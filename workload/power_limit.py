"""``--vary gpu_power_limit=W1,W2``: set every GPU's power limit through NVML before a run, restore it after.

Zeus's power-limit trade-off (energy against time) as a campaign variable. Setting the limit
needs root (NVML answers NVML_ERROR_NO_PERMISSION otherwise): the campaign checks that, and the
limits against each GPU's allowed range, before its first run, and refuses with one line. The
limit each GPU had before the run is put back after it, whatever the run's outcome (a campaign
killed with SIGKILL cannot: ``nvidia-smi -pl`` restores it by hand).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mltelemetry.errors import MltelemetryError

log = logging.getLogger(__name__)

NVML_ERROR_NO_PERMISSION = 4  # NVML's return code for a call that needs root


class PowerLimits:
    """Every GPU NVML sees, for setting power limits (``module``: pynvml or the fake NVML)."""

    def __init__(self, module: Any = None) -> None:
        from mltelemetry.exporters.gpu.nvml import open_nvml
        try:
            self.nvml = open_nvml(module)
        except MltelemetryError as e:
            raise MltelemetryError(f"--vary gpu_power_limit sets limits through NVML: {e}") from e
        self.gpus = [self.nvml.gpu(i) for i in range(self.nvml.device_count())]
        if not self.gpus:
            self.nvml.close()
            raise MltelemetryError("--vary gpu_power_limit: NVML sees no GPU")

    def _call(self, gpu: Any, what: str, fn_name: str, *args: Any) -> Any:
        from mltelemetry.exporters.gpu.nvml import NvmlError
        try:
            return self.nvml.call(f"{gpu!r}: {what}", fn_name, gpu.handle, *args)
        except NvmlError as e:
            if e.code == NVML_ERROR_NO_PERMISSION:
                raise MltelemetryError("--vary gpu_power_limit: NVML refuses to change the GPU power limit without "
                                       "root permission; run the campaign as root or vary something else") from e
            raise MltelemetryError(f"--vary gpu_power_limit: {e}") from e

    def limits_w(self) -> list[float]:
        return [self._call(gpu, "reading its power limit", "nvmlDeviceGetPowerManagementLimit") / 1000
                for gpu in self.gpus]

    def set_w(self, watts: list[float]) -> None:
        for gpu, w in zip(self.gpus, watts):
            self._call(gpu, f"setting its power limit to {w:g} W", "nvmlDeviceSetPowerManagementLimit",
                       round(w * 1000))

    def check(self, values_w: list[float]) -> None:
        """Refuse limits outside a GPU's allowed range, and a missing permission (by setting the limits they
        have now), before the campaign starts."""
        for gpu in self.gpus:
            low, high = (v / 1000 for v in self._call(gpu, "reading its power limit range",
                                                       "nvmlDeviceGetPowerManagementLimitConstraints"))
            outside = [w for w in values_w if not low <= w <= high]
            if outside:
                raise MltelemetryError(f"--vary gpu_power_limit: {outside[0]:g} W is outside {gpu!r}'s range "
                                       f"{low:g}-{high:g} W")
        self.set_w(self.limits_w())

    @contextmanager
    def applied(self, watts: float) -> Iterator[list[float]]:
        """Every GPU at ``watts`` inside the block; the limits they had are restored after. Yields those."""
        before = self.limits_w()
        self.set_w([watts] * len(self.gpus))
        try:
            yield before
        finally:
            self.set_w(before)

    def close(self) -> None:
        self.nvml.close()
