"""The campaign runner: N runs of each scenario, each run and action annotated as an event.

Beyond the paper: the runs' order (blocked, interleaved or seeded random, so heat does not build
up along one scenario), a cooldown to the baseline's GPU temperature before each run,
CodeCarbon's estimate on each run event, and robustness: a run that raises is recorded
``failed`` and the campaign goes on (unless ``fail_fast``), Ctrl-C records the run and the
campaign ``aborted`` and returns, ``resume`` runs only the runs not yet recorded ``ok``.
Every window is in the store the moment it closes, so nothing recorded is lost in any case.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mltelemetry.errors import MltelemetryError, UsageError
from mltelemetry.store import Store
from mltelemetry.workload.compare import CodeCarbonCompare
from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.cooldown import Cooldown, TemperatureSource, find_source
from mltelemetry.workload.data import SYNTHETIC, locate
from mltelemetry.workload.events import EventRecorder
from mltelemetry.workload.ml import FRAMEWORK_MODULES, ML_SCENARIOS, check_backend
from mltelemetry.workload.progress import CampaignProgress
from mltelemetry.workload.scenarios import SCENARIOS, RunContext

log = logging.getLogger(__name__)

Order = Literal["blocked", "interleaved", "random"]
BASELINE_SCENARIO = "baseline"
IDLE_FRAMEWORKS = ("auto", "none", *FRAMEWORK_MODULES)


@dataclass
class CampaignPlan:
    """What a campaign runs: ``runs`` of each scenario in ``order`` (``seed`` for random), ``seconds`` for the
    main action of baseline, idle and cpu, ``pause_s`` between runs, ``config`` for cnn and transfer.
    ``idle_framework``: what the idle process imports (``auto``: the ML backend's framework when the
    campaign has an ML scenario, else nothing)."""

    campaign: str
    scenarios: list[str]
    runs: int
    seconds: float
    order: Order = "blocked"
    pause_s: float = 1.0
    seed: int = 0
    config: MLConfig = field(default_factory=MLConfig)
    idle_framework: str = "auto"

    def schedule(self) -> list[tuple[str, int]]:
        """(scenario, run number) in the order they will run; run numbers count from 1 per scenario."""
        blocked = [(s, r) for s in self.scenarios for r in range(1, self.runs + 1)]
        if self.order == "blocked":
            return blocked
        if self.order == "interleaved":
            return [(s, r) for r in range(1, self.runs + 1) for s in self.scenarios]
        random.Random(self.seed).shuffle(blocked)
        return blocked

    @property
    def has_ml(self) -> bool:
        return any(s in ML_SCENARIOS for s in self.scenarios)

    def idle_import(self) -> str | None:
        """The module the idle scenario's process imports before it sleeps, or None."""
        if self.idle_framework == "auto":
            return FRAMEWORK_MODULES[self.config.backend] if self.has_ml else None
        return None if self.idle_framework == "none" else FRAMEWORK_MODULES[self.idle_framework]


@dataclass
class CooldownSettings:
    """``--cooldown``: before each run wait until the hottest GPU is within ``margin_c`` °C of the reference
    (``reference_c``, else the latest baseline run's mean, else the campaign start's), at most ``limit_s``.
    ``source`` overrides where temperatures come from (default: the store's GPU series, else NVML)."""

    margin_c: float = 2.0
    limit_s: float = 600.0
    poll_s: float = 5.0
    reference_c: float | None = None
    host: str | None = None
    source: TemperatureSource | None = None
    nvml_module: Any = None
    clock: Any = time.monotonic
    sleep: Any = time.sleep


class CampaignStopped(Exception):
    """``fail_fast``: a run failed and the campaign stops."""


def _validate(plan: CampaignPlan) -> None:
    unknown = [s for s in plan.scenarios if s not in SCENARIOS]
    if unknown:
        raise UsageError(f"unknown scenario {unknown[0]!r}; known: {', '.join(sorted(SCENARIOS))}")
    if plan.runs < 1 or not 0 < plan.seconds < math.inf:  # NAN fails this comparison too
        raise UsageError("--runs must be at least 1 and --seconds positive and finite")
    if not plan.campaign.strip():
        raise UsageError("--campaign needs a name (it is how the analysis finds the campaign)")
    if plan.order not in ("blocked", "interleaved", "random"):
        raise UsageError(f"--order must be blocked, interleaved or random, not {plan.order!r}")
    if plan.idle_framework not in IDLE_FRAMEWORKS:
        raise UsageError(f"--idle-framework must be one of {', '.join(IDLE_FRAMEWORKS)}")
    if plan.has_ml:
        check_backend(plan.config)
        if plan.config.data != SYNTHETIC:
            locate(plan.config.data)  # a wrong --data is one error now, not a failed run each


def _cooldown(store: Store, settings: CooldownSettings) -> tuple[Cooldown | None, str]:
    source, reason = (settings.source, "") if settings.source is not None else \
        find_source(store, host=settings.host, nvml_module=settings.nvml_module)
    if source is None:
        log.warning("cooldown skipped for this campaign: %s", reason)
        return None, reason
    cooler = Cooldown(source, settings.margin_c, settings.limit_s, settings.poll_s, clock=settings.clock,
                      sleep=settings.sleep)
    if settings.reference_c is not None:
        cooler.set_reference(settings.reference_c, "given")
    else:
        cooler.set_reference(source.read(), "campaign start")
    return cooler, ""


def run_campaign(store_path: str | Path, plan: CampaignPlan, *, show_progress: bool = True, fail_fast: bool = False,
                 resume: bool = False, cooldown: CooldownSettings | None = None,
                 compare: CodeCarbonCompare | None = None) -> dict[str, int]:
    """Run every scheduled run and return counts by outcome: ``ok``, ``failed``, ``aborted`` (Ctrl-C; the
    campaign stops there) and ``skipped`` (already ``ok`` in the store, with ``resume``)."""
    _validate(plan)
    counts = {"ok": 0, "failed": 0, "aborted": 0, "skipped": 0}
    with Store(store_path) as store:
        exists = plan.campaign in store.campaigns()
        done: set[tuple[str, int]] = set()
        if resume:
            if not exists:
                raise MltelemetryError(f"no campaign {plan.campaign!r} in {store_path} to resume")
            done = {(e.scenario, e.run) for e in store.events(plan.campaign) if e.action == "run" and e.status == "ok"}
        elif exists:
            raise MltelemetryError(f"campaign {plan.campaign!r} already exists in {store_path}; choose a new name "
                                   "or --resume it")
        full = plan.schedule()
        positions = {item: i for i, item in enumerate(full)}
        schedule = [item for item in full if item not in done]
        counts["skipped"] = len(full) - len(schedule)
        recorder = EventRecorder(store, plan.campaign)
        cooler, cooldown_skipped = _cooldown(store, cooldown) if cooldown is not None else (None, "")
        synthetic = plan.has_ml and plan.config.data == SYNTHETIC
        if synthetic:
            plan.config.source()  # generated before the campaign's first window, once for all runs
        campaign_fields: dict[str, Any] = {"order": plan.order, "runs": plan.runs, "seed": plan.seed,
                                           "scenarios": plan.scenarios, "resumed": resume,
                                           "skipped_runs": counts["skipped"]}
        if plan.has_ml:
            campaign_fields.update(backend=plan.config.backend, data=plan.config.data)
        if cooldown_skipped:
            campaign_fields["cooldown_skipped"] = cooldown_skipped
        if compare is not None:
            campaign_fields["compare"] = "codecarbon"
        try:
            with recorder.window("campaign", scenario="*", run=0, **campaign_fields), \
                    CampaignProgress(schedule, plan.runs, enabled=show_progress, pause_s=plan.pause_s) as progress:
                for index, (name, run) in enumerate(schedule):
                    if cooler is not None:
                        with recorder.window("cooldown", scenario=name, run=run) as fields:
                            cooler.wait(fields)
                    progress.start_run(index)
                    ctx = RunContext(recorder, name, run, plan.seconds, plan.config, progress.update,
                                     plan.idle_import())
                    started_ns = time.time_ns()
                    ok = _run_one(recorder, ctx, positions[(name, run)], compare, counts, fail_fast)
                    progress.end_run()
                    if ok and cooler is not None and name == BASELINE_SCENARIO:
                        mean = cooler.source.mean(started_ns, time.time_ns())
                        cooler.set_reference(mean if mean is not None else cooler.source.read(),
                                             f"baseline run {run}")
                    if index < len(schedule) - 1:
                        time.sleep(plan.pause_s)
        except KeyboardInterrupt:
            log.warning("campaign %s interrupted: the run in progress is recorded aborted; --resume runs the rest",
                        plan.campaign)
        except CampaignStopped as e:
            log.error("%s", e)
        finally:
            if synthetic:
                plan.config.release()
    return counts


def _run_one(recorder: EventRecorder, ctx: RunContext, position: int, compare: CodeCarbonCompare | None,
             counts: dict[str, int], fail_fast: bool) -> bool:
    tracker = compare.start(f"{recorder.campaign}/{ctx.scenario}/{ctx.run}") if compare is not None else None
    try:
        with recorder.window("run", scenario=ctx.scenario, run=ctx.run, position=position) as fields:
            ctx.run_fields = fields
            try:
                SCENARIOS[ctx.scenario](ctx)
            finally:
                if compare is not None:
                    fields.update(compare.stop(tracker))
    except KeyboardInterrupt:
        counts["aborted"] += 1
        raise
    except Exception as e:  # recorded as failed by the window; the campaign goes on
        counts["failed"] += 1
        log.error("%s run %d failed: %s: %s", ctx.scenario, ctx.run, type(e).__name__, e)
        if fail_fast:
            raise CampaignStopped(f"--fail-fast: {ctx.scenario} run {ctx.run} failed ({type(e).__name__}: {e}); "
                                  "the campaign stops") from e
        return False
    counts["ok"] += 1
    return True
