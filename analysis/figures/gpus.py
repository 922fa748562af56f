"""Each GPU's share of the GPU figures, when a campaign has more than one GPU (one GPU: nothing here).

Per GPU and window: its energy (the summed ``gpu_energy_wh`` of figures.device is the sum of these), its mean
power, and its mean load (its ``gpu_busy_seconds_total`` counter where recorded, else the mean of its
``gpu_utilization_ratio`` gauge, as the summed ``gpu_utilization`` is computed), named ``figure[gpu0]``, or
``figure[host/gpu0]`` when several hosts are analysed as one. A window where one GPU has no energy and another has
is flagged, naming that GPU: never a sum over fewer GPUs (the GPU's own columns are NaN there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mltelemetry import schema
from mltelemetry.analysis.energy import window_means
from mltelemetry.analysis.figures.context import J_PER_WH, Context
from mltelemetry.analysis.figures.device import DeviceEnergy, HostsDevices
from mltelemetry.analysis.figures.hosts import per_host
from mltelemetry.analysis.figures.indicators import gpu_utilization_from_counters
from mltelemetry.analysis.series import HostView, Reader, combine, sum_strict

FIGURES: list[str] = []  # the figure[gpu] columns depend on the GPUs: Context.gpu_figures


@dataclass
class Gpu:
    name: str  # gpu0, or host/gpu0 with several hosts
    host: str | None  # None: the only host
    match: dict[str, str]  # the labels that pick its series: its gpu index, else its uuid
    energy_j: np.ndarray  # per window; NaN where its series do not cover the window


class GpuEnergy:
    """The campaign's GPUs (more than one) with their energy per window, in host and index order."""

    def __init__(self, gpus: list[Gpu]) -> None:
        self.gpus = gpus

    def window_notes(self, i: int) -> tuple[list[str], bool]:
        """Whether window ``i`` lacks some GPUs' energy while others have theirs (its summed GPU energy is NaN)."""
        missing = [g.name for g in self.gpus if not np.isfinite(g.energy_j[i])]
        if not missing or len(missing) == len(self.gpus):
            return [], False  # every GPU has a figure, or none has: nothing partial
        return [f"{name}: no GPU energy (a gap in its samples at an edge, or a restart inside the window): no GPU "
                "energy summed over the GPUs" for name in missing], True


def gpu_column(figure: str, gpu: str) -> str:
    """The column of one GPU's share of a figure: ``gpu_energy_wh[gpu0]``, ``gpu_energy_wh[node-a/gpu0]``."""
    return f"{figure}[{gpu}]"


def gpu_key(labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    """How a GPU is named (``gpu0``) and which labels pick its series."""
    if labels.get("gpu"):
        return f"gpu{labels['gpu']}" if labels["gpu"].isdigit() else labels["gpu"], {"gpu": labels["gpu"]}
    uuid = labels.get("uuid", "")
    return uuid or "gpu?", {"uuid": uuid}


def _order(gpu: Gpu) -> tuple:
    index = gpu.match.get("gpu", "")
    return (gpu.host or "", int(index) if index.isdigit() else float("inf"), gpu.name)


def gpus_of(devices: dict[str | None, DeviceEnergy], n: int) -> list[Gpu]:
    """Every GPU of every host with its energy per window: the sum of its series' (one per GPU, unless its labels
    changed during the campaign)."""
    gpus = []
    for host, device in devices.items():
        parts: dict[str, tuple[dict[str, str], list[np.ndarray]]] = {}
        for series, joules in zip(device.gpu_series, device.gpu_each):
            name, match = gpu_key(series.labels)
            parts.setdefault(name, (match, []))[1].append(joules)
        for name, (match, joules) in parts.items():
            gpus.append(Gpu(name if host is None else f"{host}/{name}", host, match, sum_strict(joules, n)))
    return sorted(gpus, key=_order)


def gpu_utilization(reader: Reader | HostView, match: dict[str, str], starts: np.ndarray,
                    ends: np.ndarray) -> np.ndarray:
    """One GPU's mean load per window: from its busy-time counter where it brackets the window, else the mean of
    its utilisation gauge's samples inside it (as figures.indicators does for all GPUs together)."""
    from_counter = gpu_utilization_from_counters(reader.get(schema.GPU_BUSY_SECONDS, match), starts, ends)
    from_gauge = combine([window_means(s.ts, s.values, starts, ends)
                          for s in reader.get(schema.GPU_UTILIZATION, match)], "mean", len(starts))
    return np.where(np.isfinite(from_counter), from_counter, from_gauge)


def provide(ctx: Context) -> None:
    """Each GPU's energy, mean power and load as ``figure[gpu]`` columns, where the campaign has several GPUs."""
    w = ctx.windows
    devices = ctx.devices.per_host if isinstance(ctx.devices, HostsDevices) else {None: ctx.devices}
    gpus = gpus_of(devices, w.n)
    if len(gpus) < 2:
        return
    ctx.gpus = GpuEnergy(gpus)
    readers = per_host(ctx.reader)
    duration = w.duration
    for gpu in gpus:
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = {"gpu_energy_wh": gpu.energy_j / J_PER_WH,
                      "gpu_mean_power_w": np.where(duration > 0, gpu.energy_j / duration, np.nan),
                      "gpu_utilization": gpu_utilization(readers[gpu.host], gpu.match, w.starts, w.ends)}
        for figure, values in shares.items():
            ctx.columns[gpu_column(figure, gpu.name)] = values
            ctx.gpu_figures.append(gpu_column(figure, gpu.name))
