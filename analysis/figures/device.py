"""Device energy from the on-board sensors: GPU energy (``gpu_energy_joules_total`` summed over GPUs, else
dcgm-exporter's counter, else GPU power integrated here) and RAPL package and DRAM energy (ours, else
node_exporter's), with the GPU's mean power and share of the wall energy and the sensors' sum (GPU + RAPL)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mltelemetry import schema
from mltelemetry.analysis.figures.context import J_PER_WH, Context
from mltelemetry.analysis.figures.hosts import host_notes, joined, per_host
from mltelemetry.analysis.series import HostView, Reader, Series, energy_of, increases_of, integrated, sum_strict
from mltelemetry.analysis.sources import METHOD_NODE_EXPORTER, dcgm_gpu_energy, node_rapl_energy

FIGURES = ["gpu_energy_wh", "gpu_mean_power_w", "gpu_share", "cpu_energy_wh", "dram_energy_wh", "sensors_wh",
           "sensors_ratio"]
METHOD_GPU_INTEGRAL = "∫ GPU power (analysis)"
METHOD_RAPL = "RAPL counter"


@dataclass
class DeviceEnergy:
    """One host's GPU and RAPL energy per window (J; NaN where not recorded) and where each came from."""

    gpus: list[Series]  # energy counters (ours or dcgm-exporter's); empty where power was integrated
    gpu_series: list[Series]  # what gpu_j came from: the counters, or the power series
    gpu_each: list[np.ndarray]  # J per window of each of gpu_series (figures.gpus: each GPU's share)
    gpu_j: np.ndarray  # their sum
    gpu_method: str
    rapl: list[Series]
    packages: list[Series]
    drams: list[Series]
    cpu_j: np.ndarray
    dram_j: np.ndarray
    rapl_method: str


def device_energy(reader: Reader | HostView, starts: np.ndarray, ends: np.ndarray, sensor_exporters: str,
                  notes: list[str]) -> DeviceEnergy:
    """GPU energy (ours, else dcgm-exporter's counter, else GPU power integrated here) and RAPL package and DRAM
    energy (ours, else node_exporter's) of one host (or of the only host)."""
    n = len(starts)
    ours, theirs = sensor_exporters != "standard", sensor_exporters != "mltelemetry"
    gpus = reader.get(schema.GPU_ENERGY) if ours else []
    if not gpus and theirs:
        gpus = reader.foreign(dcgm_gpu_energy)  # method label "dcgm-exporter"
    if gpus:
        gpu_series = gpus
        gpu_each = [increases_of(s, starts, ends) for s in gpus]
        gpu_method = "GPU counter (" + ", ".join(sorted({s.labels.get("method") or "?" for s in gpus})) + ")"
    else:
        power = reader.get(schema.GPU_POWER) if ours else []
        kinds = {s.labels.get("kind") for s in power}
        kind = "instant" if "instant" in kinds else "average" if "average" in kinds else None
        power = [s for s in power if s.labels.get("kind") == kind] if kind else power
        gpu_series = power
        gpu_each = [integrated([s], starts, ends) for s in power]
        gpu_method = METHOD_GPU_INTEGRAL
        if power:
            notes.append("no GPU energy counter: GPU energy integrated from gpu_power_watts by the analysis")
    gpu_j = sum_strict(gpu_each, n)  # never a sum over fewer GPUs: NaN where one has no figure
    rapl = reader.get(schema.HOST_RAPL_ENERGY) if ours else []
    rapl_method = METHOD_RAPL
    if not rapl and theirs:
        rapl = reader.foreign(node_rapl_energy)
        rapl_method = f"{METHOD_RAPL} ({METHOD_NODE_EXPORTER})"
    packages = [s for s in rapl if s.labels.get("zone", "").startswith("package")]
    drams = [s for s in rapl if s.labels.get("zone", "").startswith("dram")]
    return DeviceEnergy(gpus, gpu_series, gpu_each, gpu_j, gpu_method, rapl, packages, drams,
                        energy_of(packages, starts, ends), energy_of(drams, starts, ends), rapl_method)


class HostsDevices:
    """GPU and RAPL energy of several hosts analysed as one: summed over the hosts that record them at all (a host
    without a GPU adds none; a campaign note names it), NaN in a window where one of those has no figure."""

    def __init__(self, per_host: dict[str, DeviceEnergy], n: int, notes: list[str]) -> None:
        self.per_host = per_host
        self.gpu_j, self.gpu_method = self._sum("GPU energy", lambda d: d.gpu_series, lambda d: d.gpu_j,
                                                lambda d: d.gpu_method, n, notes)
        self.cpu_j, self.rapl_method = self._sum("RAPL package energy", lambda d: d.packages, lambda d: d.cpu_j,
                                                 lambda d: d.rapl_method, n, notes)
        self.dram_j, _ = self._sum("RAPL DRAM energy", lambda d: d.drams, lambda d: d.dram_j, lambda d: d.rapl_method,
                                   n, notes)
        self.gpus = [s for d in per_host.values() for s in d.gpus]
        self.rapl = [s for d in per_host.values() for s in d.rapl]

    def _sum(self, what: str, series_of: Callable, joules_of: Callable, method_of: Callable, n: int,
             notes: list[str]) -> tuple[np.ndarray, str]:
        recorded = [h for h, d in self.per_host.items() if series_of(d)]
        if recorded and len(recorded) < len(self.per_host):
            others = [h for h in self.per_host if h not in recorded]
            notes.append(f"{what} summed over host(s) {', '.join(recorded)}; {', '.join(others)} recorded none")
        joules = sum_strict([joules_of(self.per_host[h]) for h in recorded], n)
        return joules, (joined({h: method_of(self.per_host[h]) for h in recorded}) if recorded else "")


def provide(ctx: Context) -> None:
    w = ctx.windows
    devices = {}
    for host, reader in per_host(ctx.reader).items():
        notes: list[str] = []
        devices[host] = device_energy(reader, w.starts, w.ends, ctx.sensor_exporters, notes)
        ctx.notes += host_notes(host, notes)
    ctx.devices = d = devices[None] if None in devices else HostsDevices(devices, w.n, ctx.notes)
    c = ctx.columns
    c["gpu_energy_wh"] = d.gpu_j / J_PER_WH
    ctx.methods["gpu_energy_method"] = np.where(np.isfinite(d.gpu_j), d.gpu_method, "")
    c["cpu_energy_wh"] = d.cpu_j / J_PER_WH
    c["dram_energy_wh"] = d.dram_j / J_PER_WH
    ctx.methods["rapl_method"] = np.where(np.isfinite(c["cpu_energy_wh"]), d.rapl_method, "")
    duration = w.duration
    with np.errstate(invalid="ignore", divide="ignore"):
        c["gpu_mean_power_w"] = np.where(duration > 0, d.gpu_j / duration, np.nan)
        c["gpu_share"] = c["gpu_energy_wh"] / c["energy_wh"]
        sensor_parts = np.vstack([c["gpu_energy_wh"], c["cpu_energy_wh"], c["dram_energy_wh"]])
        recorded = np.isfinite(sensor_parts).any(axis=0)
        c["sensors_wh"] = np.where(recorded, np.nansum(sensor_parts, axis=0), np.nan)
        c["sensors_ratio"] = c["sensors_wh"] / c["energy_wh"]
