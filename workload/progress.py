"""The campaign's progress display: scenario, run i/N, epoch, accuracy, elapsed and remaining time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def estimate_remaining_s(durations: dict[str, list[float]], upcoming: Sequence[str], current: str | None = None,
                         current_elapsed_s: float = 0.0, pause_s: float = 0.0) -> float | None:
    """Seconds left: the mean duration of each upcoming run's scenario (the mean of all finished runs for a
    scenario not seen yet) plus pauses, plus what the current run has left. None before any run finished."""
    finished = [d for ds in durations.values() for d in ds]
    if not finished:
        return None
    overall = statistics.fmean(finished)

    def mean(name: str) -> float:
        return statistics.fmean(durations[name]) if durations.get(name) else overall

    left = sum(mean(name) for name in upcoming) + pause_s * len(upcoming)
    if current is not None:
        left += max(0.0, mean(current) - current_elapsed_s)
    return left


def _clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class CampaignProgress:
    """Shows the campaign as it runs (a rich progress line on stderr), and estimates the time left."""

    def __init__(self, schedule: Sequence[tuple[str, int]], runs: int, *, enabled: bool = True, pause_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, console: Console | None = None) -> None:
        self.schedule = list(schedule)
        self.runs = runs
        self.pause_s = pause_s
        self.clock = clock
        self.durations: dict[str, list[float]] = {}
        self.index: int | None = None
        self.run_started = 0.0
        self.epoch_text = ""
        self.accuracy_text = ""
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
            TextColumn("{task.fields[epoch]}"), TextColumn("{task.fields[accuracy]}"),
            TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("remaining {task.fields[remaining]}"),
            disable=not enabled, transient=True, console=console or Console(stderr=True))
        self._task = self._progress.add_task("campaign", total=len(self.schedule), epoch="", accuracy="",
                                             remaining="?")

    def __enter__(self) -> CampaignProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def remaining_s(self) -> float | None:
        if self.index is None:
            return estimate_remaining_s(self.durations, [n for n, _ in self.schedule], pause_s=self.pause_s)
        name = self.schedule[self.index][0]
        return estimate_remaining_s(self.durations, [n for n, _ in self.schedule[self.index + 1:]], name,
                                    self.clock() - self.run_started, self.pause_s)

    def _refresh(self) -> None:
        description = "campaign"
        if self.index is not None:
            name, run = self.schedule[self.index]
            description = f"{name} run {run}/{self.runs}"
        self._progress.update(self._task, description=description, epoch=self.epoch_text,
                              accuracy=self.accuracy_text, remaining=_clock_text(self.remaining_s()))

    def start_run(self, index: int) -> None:
        self.index, self.run_started = index, self.clock()
        self.epoch_text = self.accuracy_text = ""
        self._refresh()

    def update(self, *, epoch: int | None = None, max_epochs: int | None = None,
               val_accuracy: float | None = None, **_: Any) -> None:
        """The hook scenarios call (``RunContext.progress``) as their epochs go by."""
        if epoch is not None:
            self.epoch_text = f"epoch {epoch}" + (f"/{max_epochs}" if max_epochs else "")
        if val_accuracy is not None:
            self.accuracy_text = f"val acc {val_accuracy:.1%}"
        self._refresh()

    def end_run(self) -> None:
        if self.index is not None:
            name = self.schedule[self.index][0]
            self.durations.setdefault(name, []).append(self.clock() - self.run_started)
        self._progress.advance(self._task)
        self._refresh()
