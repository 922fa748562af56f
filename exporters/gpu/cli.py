"""``mltelemetry exporter gpu``: publish every NVML indicator of the GPUs, energy from the hardware counter."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mltelemetry.cliutil import (
    DEFAULT_HOST,
    HostLabel,
    Interval,
    Listen,
    SinkOptions,
    StorePath,
    one_line_errors,
    with_sink_options,
)

from .nvml import open_nvml

Gpus = Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer reads the annotation at run time)
    "--gpus", help="Comma-separated NVML indices of the GPUs to publish (default: all).")]
CounterInterval = Annotated[Optional[float], typer.Option(  # noqa: UP045 (typer reads the annotation at run time)
    "--counter-interval", min=0.0, show_default="2 when --interval is under 1 s, else 0",
    help="Read the energy counter at most this often (s; 0: every tick) and shape it by power in between "
         "(method nvml_counter_power_shaped): each read spins ~4 ms of CPU in the driver; a window edge "
         "between reads is a little less exact on loads that step faster than a second.")]
RetryLost = Annotated[float, typer.Option(
    "--retry-lost", min=0.0, help="Seconds between attempts to reach a GPU that fell off the bus.")]


def parse_gpus(gpus: str | None) -> list[int] | None:
    """``"0,2"`` → ``[0, 2]``; None or ``all`` → None (every GPU)."""
    if gpus is None or gpus.strip().lower() in ("", "all"):
        return None
    try:
        indices = [int(part) for part in gpus.split(",")]
    except ValueError:
        raise typer.BadParameter(f"want comma-separated GPU indices such as 0,1, got {gpus!r}",
                                 param_hint="--gpus") from None
    if len(set(indices)) != len(indices) or min(indices) < 0:
        raise typer.BadParameter(f"GPU indices must be distinct and non-negative, got {gpus!r}",
                                 param_hint="--gpus")
    return indices


# The counter every 2 s when the exporter ticks faster than once a second: each read spins ~4 ms of CPU in the
# driver. At 0.1 s on an H200, side by side: every tick 141-152 CPU-s per hour, every 1 s 30-41, every 2 s 23-25,
# with windows >= 5 s of a bursty load as exact against the counter read directly (bench/overhead.md).
SHAPED_COUNTER_INTERVAL_S = 2.0


def default_counter_interval(interval_s: float, counter_interval_s: float | None) -> float:
    """SHAPED_COUNTER_INTERVAL_S when the exporter ticks faster than once a second, else every tick; as given when
    given."""
    if counter_interval_s is not None:
        return counter_interval_s
    return SHAPED_COUNTER_INTERVAL_S if interval_s < 1.0 else 0.0


@with_sink_options
@one_line_errors
def gpu_command(
    listen: Listen = "127.0.0.1:9812",
    store: StorePath = None,
    interval: Interval = 1.0,
    host_label: HostLabel = DEFAULT_HOST,
    gpus: Gpus = None,
    retry_lost: RetryLost = 30.0,
    counter_interval: CounterInterval = None,
    *, sink_options: SinkOptions,
) -> None:
    """Publish power (instant and 1 s average), hardware energy counter, temperature, load, memory,
    clocks, P-state, PCIe link, throttle reasons, power limit and fan of NVIDIA GPUs through NVML.
    Faster than every second, power is read every tick, the slowly changing indicators once a second and
    the energy counter every 2 s (--counter-interval 0: the counter every tick)."""
    from mltelemetry.exporters.runtime import exporter_sinks, serve

    from .collector import GpuCollector

    indices = parse_gpus(gpus)
    nvml = open_nvml()  # no NVML here is a runtime error: one line, exit code 1
    try:
        collector = GpuCollector(nvml, host_label, indices, retry_lost_s=retry_lost,
                                 counter_interval_s=default_counter_interval(interval, counter_interval),
                                 gauges_interval_s=1.0 if interval < 1.0 else 0.0)
    except BaseException:
        nvml.close()
        raise
    try:
        sinks = exporter_sinks(collector.name, listen=listen, store=str(store) if store else None,
                               interval_s=interval, options=sink_options)
    except BaseException:
        collector.close()
        raise
    serve(collector, sinks, interval_s=interval, host=host_label)
