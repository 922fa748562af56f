"""What the figure providers share: the windows, the series reader, the figures computed so far, the notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mltelemetry.analysis.series import Reader
from mltelemetry.analysis.windows import Windows

if TYPE_CHECKING:
    from mltelemetry.analysis.figures.device import DeviceEnergy, HostsDevices
    from mltelemetry.analysis.figures.gpus import GpuEnergy
    from mltelemetry.analysis.figures.wall import HostsWall, WallEnergy

J_PER_WH = 3600.0
MIN_COVERAGE = 0.95  # a window whose samples cover less is flagged


@dataclass
class Context:
    """One analysis in progress. Window providers fill ``columns`` (figure → one value per window), ``methods``
    (where a figure came from, per window), ``row_notes`` and ``flagged``; table providers then work on ``table``
    (the windows as a DataFrame: a figure that needs other windows, e.g. the baseline runs)."""

    windows: Windows
    reader: Reader
    sensor_exporters: str  # auto, mltelemetry or standard (analysis.sources.SENSOR_EXPORTERS)
    baseline_margin: float | None
    notes: list[str]  # the campaign's notes
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    methods: dict[str, np.ndarray] = field(default_factory=dict)
    host_figures: list[str] = field(default_factory=list)  # figure[host] columns (several hosts analysed as one)
    gpu_figures: list[str] = field(default_factory=list)  # figure[gpu] columns (several GPUs)
    row_notes: list[list[str]] = field(default_factory=list)
    flagged: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    wall: WallEnergy | HostsWall | None = None  # set by figures.wall
    devices: DeviceEnergy | HostsDevices | None = None  # set by figures.device
    gpus: GpuEnergy | None = None  # set by figures.gpus where there are several GPUs
    sensor_coverage: dict[str, np.ndarray] = field(default_factory=dict)  # per sensor kind, set by indicators
    table: pd.DataFrame | None = None
    baseline: dict = field(default_factory=dict)  # set by figures.baseline

    def __post_init__(self) -> None:
        self.row_notes = [[] for _ in range(self.windows.n)]
        self.flagged = np.zeros(self.windows.n, bool)
