"""The campaign runner: N runs of each scenario, each run and action annotated as an event."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.progress import Progress

from mltelemetry.errors import MltelemetryError
from mltelemetry.store import Store
from mltelemetry.workload.events import EventRecorder
from mltelemetry.workload.scenarios import SCENARIOS, RunContext

log = logging.getLogger(__name__)

Order = Literal["blocked", "interleaved", "random"]


@dataclass
class CampaignPlan:
    campaign: str
    scenarios: list[str]
    runs: int
    seconds: float
    order: Order = "blocked"
    pause_s: float = 1.0
    seed: int = 0

    def schedule(self) -> list[tuple[str, int]]:
        """(scenario, run number) in the order they will run; run numbers count from 1 per scenario."""
        blocked = [(s, r) for s in self.scenarios for r in range(1, self.runs + 1)]
        if self.order == "blocked":
            return blocked
        if self.order == "interleaved":
            return [(s, r) for r in range(1, self.runs + 1) for s in self.scenarios]
        random.Random(self.seed).shuffle(blocked)
        return blocked


def run_campaign(store_path: str | Path, plan: CampaignPlan, *, show_progress: bool = True) -> dict[str, int]:
    """Run every scheduled run; a failed run is recorded and the campaign goes on. Returns counts by status."""
    unknown = [s for s in plan.scenarios if s not in SCENARIOS]
    if unknown:
        raise MltelemetryError(f"unknown scenario {unknown[0]!r}; known: {', '.join(sorted(SCENARIOS))}")
    if plan.runs < 1 or plan.seconds <= 0:
        raise MltelemetryError("--runs must be at least 1 and --seconds positive")
    counts = {"ok": 0, "failed": 0}
    with Store(store_path) as store:
        if plan.campaign in store.campaigns():
            raise MltelemetryError(f"campaign {plan.campaign!r} already exists in {store_path}; choose a new name")
        recorder = EventRecorder(store, plan.campaign)
        schedule = plan.schedule()
        with recorder.window("campaign", scenario="*", run=0, order=plan.order, runs=plan.runs,
                             seed=plan.seed, scenarios=plan.scenarios), \
                Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task(f"campaign {plan.campaign}", total=len(schedule))
            for index, (name, run) in enumerate(schedule):
                progress.update(task, description=f"{name} run {run}/{plan.runs}")
                ctx = RunContext(recorder, name, run, plan.seconds)
                try:
                    with recorder.window("run", scenario=name, run=run, position=index):
                        SCENARIOS[name](ctx)
                    counts["ok"] += 1
                except Exception as e:  # recorded as failed by the window; the campaign goes on
                    counts["failed"] += 1
                    log.error("%s run %d failed: %s", name, run, e)
                progress.advance(task)
                if index < len(schedule) - 1:
                    time.sleep(plan.pause_s)
    return counts
