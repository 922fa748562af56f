"""Several hosts analysed as one: each host's view of the series, its notes, and its share of the figures.

With one host (or none named) there is one view, the reader itself, and nothing here adds a column. With several,
the wall and device providers compute each host's energy as the only host's would be, and sum them
(:class:`~mltelemetry.analysis.figures.wall.HostsWall`, :class:`~mltelemetry.analysis.figures.device.HostsDevices`);
this provider adds each host's share as ``figure[host]`` columns.
"""

from __future__ import annotations

import numpy as np

from mltelemetry.analysis.figures.context import J_PER_WH, Context
from mltelemetry.analysis.series import HostView, Reader

FIGURES: list[str] = []  # the figure[host] columns depend on the hosts: Context.host_figures


def per_host(reader: Reader) -> dict[str | None, Reader | HostView]:
    """The reader itself under None (one host, or none named), or each named host's view."""
    if not reader.several:
        return {None: reader}
    return {h: reader.view(h) for h in reader.hosts or []}


def host_notes(host: str | None, notes: list[str]) -> list[str]:
    """A host's notes with its name in front (several hosts), else as they are."""
    return notes if host is None else [f"host {host}: {note}" for note in notes]


def joined(methods: dict[str, str]) -> str:
    """One method where every host used it, else each host's: ``a: meter counter; b: ∫ meter power``."""
    if len(set(methods.values())) == 1:
        return next(iter(methods.values()))
    return "; ".join(f"{h}: {m}" for h, m in methods.items())


def host_column(figure: str, host: str) -> str:
    """The column of one host's share of a figure, when several hosts are analysed as one: ``energy_wh[sut-a]``."""
    return f"{figure}[{host}]"


def provide(ctx: Context) -> None:
    """Each host's energy, mean power, GPU, CPU and DRAM energy and meter coverage, named ``figure[host]``."""
    if not ctx.reader.several:
        return
    duration = ctx.windows.duration
    with np.errstate(invalid="ignore", divide="ignore"):
        for h in ctx.reader.hosts or []:
            wall, device = ctx.wall.per_host[h], ctx.devices.per_host[h]
            shares = {"energy_wh": wall.energy_j / J_PER_WH,
                      "mean_power_w": np.where(duration > 0, wall.energy_j / duration, np.nan),
                      "gpu_energy_wh": device.gpu_j / J_PER_WH, "cpu_energy_wh": device.cpu_j / J_PER_WH,
                      "dram_energy_wh": device.dram_j / J_PER_WH, "coverage": wall.coverage}
            for figure, values in shares.items():
                ctx.columns[host_column(figure, h)] = values
                ctx.host_figures.append(host_column(figure, h))



