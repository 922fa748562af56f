"""Hardware indicators (paper table 2): the mean of the samples inside each window (gauges, mean over GPUs and
hosts; memory sums) or the counter's increase (disk and network bytes, summed over devices); CPU and GPU
utilisation from their time counters where recorded; and how well the host, GPU and RAPL series cover each
window (``sensor_coverage``, the worst of them; a window below MIN_COVERAGE is flagged by figures.flags)."""

from __future__ import annotations

import numpy as np

from mltelemetry import schema
from mltelemetry.analysis.energy import window_means
from mltelemetry.analysis.figures.context import Context
from mltelemetry.analysis.series import Series, combine, energy_of, increases_of, worst_coverage

# Hardware indicators of paper table 2: column, metric, label filter, how series combine.
GAUGES: list[tuple[str, str, dict[str, str], str]] = [
    ("cpu_utilization", schema.HOST_CPU_TOTAL_UTILIZATION, {}, "mean"),
    ("memory_used_bytes", schema.HOST_MEMORY_USED, {}, "sum"),
    ("gpu_utilization", schema.GPU_UTILIZATION, {}, "mean"),
    ("gpu_memory_utilization", schema.GPU_MEMORY_UTILIZATION, {}, "mean"),
    ("gpu_memory_used_bytes", schema.GPU_MEMORY_USED, {}, "sum"),
    ("gpu_temperature_c", schema.GPU_TEMPERATURE, {}, "mean"),
    ("gpu_performance_state", schema.GPU_PSTATE, {}, "mean"),
    ("gpu_pcie_link_generation", schema.GPU_PCIE_GENERATION, {}, "mean"),
    ("gpu_clock_sm_hz", schema.GPU_CLOCK, {"clock": "sm"}, "mean"),
    ("gpu_clock_memory_hz", schema.GPU_CLOCK, {"clock": "memory"}, "mean"),
    ("gpu_clock_graphics_hz", schema.GPU_CLOCK, {"clock": "graphics"}, "mean"),
]


# Series recorded before the whole-machine totals had names of their own (0.1), read where the new name is absent.
LEGACY_GAUGES: dict[str, tuple[str, dict[str, str]]] = {
    "cpu_utilization": (schema.HOST_CPU_UTILIZATION, {"cpu": "total"}),
}


COUNTERS: list[tuple[str, str]] = [
    ("disk_read_bytes", schema.HOST_DISK_READ), ("disk_written_bytes", schema.HOST_DISK_WRITTEN),
    ("net_received_bytes", schema.HOST_NET_RECEIVED), ("net_transmitted_bytes", schema.HOST_NET_TRANSMITTED),
]


FIGURES = [g[0] for g in GAUGES] + [c[0] for c in COUNTERS] + ["sensor_coverage"]
SERIES_READ = len({g[1] for g in GAUGES}) + len(COUNTERS)  # metrics read here (for the progress bar)


IDLE_CPU_MODES = ("idle", "iowait")


def cpu_utilization_from_counters(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean CPU utilisation of each window from the CPU-time counters (``host_cpu_seconds_total``, one series per
    core and mode): 1 − Δ(idle + iowait) / Δ(all modes), summed over the cores, each counter read at the window's
    edges as energy is. Exact however rarely the counters were scraped; NaN where they do not bracket the window."""
    if not series:
        return np.full(len(starts), np.nan)
    total = energy_of(series, starts, ends)
    idle = energy_of([s for s in series if s.labels.get("mode") in IDLE_CPU_MODES], starts, ends)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - idle / total, np.nan)


def gpu_utilization_from_counters(series: list[Series], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean GPU load of each window from the busy-time counters (``gpu_busy_seconds_total``, one per GPU): each
    GPU's increase over the window's length, averaged over the GPUs. NaN where they do not bracket the window."""
    duration_s = (ends - starts) / 1e9
    with np.errstate(invalid="ignore", divide="ignore"):
        return combine([np.where(duration_s > 0, increases_of(s, starts, ends) / duration_s, np.nan) for s in series],
                        "mean", len(starts))


def provide(ctx: Context) -> None:
    reader, w, n = ctx.reader, ctx.windows, ctx.windows.n
    starts, ends = w.starts, w.ends
    for column, metric, labels, how in GAUGES:
        series = reader.get(metric, labels)
        if not series and column in LEGACY_GAUGES:
            series = reader.get(*LEGACY_GAUGES[column])
        ctx.columns[column] = combine([window_means(s.ts, s.values, starts, ends) for s in series], how, n)
    for column, metric in COUNTERS:
        series = reader.get(metric)
        ctx.columns[column] = combine([increases_of(s, starts, ends) for s in series], "sum", n)
    # CPU utilisation: the CPU-time counters give a window's true mean, read at its edges as energy is; the
    # last-interval gauge above stays the figure of data recorded without them
    from_counters = cpu_utilization_from_counters(reader.get(schema.HOST_CPU_SECONDS), starts, ends)
    ctx.columns["cpu_utilization"] = np.where(np.isfinite(from_counters), from_counters,
                                              ctx.columns["cpu_utilization"])
    from_counters = gpu_utilization_from_counters(reader.get(schema.GPU_BUSY_SECONDS), starts, ends)
    ctx.columns["gpu_utilization"] = np.where(np.isfinite(from_counters), from_counters,
                                              ctx.columns["gpu_utilization"])
    sensor_series = {"host": (reader.get(schema.HOST_CPU_TOTAL_UTILIZATION)
                              or reader.get(*LEGACY_GAUGES["cpu_utilization"])),
                     "GPU": ctx.devices.gpus or reader.get(schema.GPU_TEMPERATURE), "RAPL": ctx.devices.rapl}
    ctx.sensor_coverage = {name: worst_coverage(series, starts, ends) for name, series in sensor_series.items()
                           if series}
    ctx.columns["sensor_coverage"] = (np.min(list(ctx.sensor_coverage.values()), axis=0) if ctx.sensor_coverage
                                      else np.full(n, np.nan))
