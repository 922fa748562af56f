"""The campaign runner: N runs of each scenario, each run and action annotated as an event.

Beyond the paper: the runs' order (blocked, interleaved or seeded random, so heat does not build
up along one scenario), a cooldown to the baseline's GPU temperature and a settle to its GPU power
before each run, ``--vary`` (every ML scenario in each combination of settings, :mod:`.variants`),
framework runs in a child process each (:mod:`.child`), CodeCarbon's estimate on each run event,
and robustness:

- the campaign and each run are claimed in the store when they start (:mod:`.claims`): a second
  process with the same campaign name is refused, and a run whose process was killed stays
  recognisable (``running``), marked ``lost`` and run again by ``resume``;
- the campaign event holds the plan (``plan``, JSON); ``resume`` refuses another plan and runs only
  the runs not yet recorded ``ok``;
- a run that raises is recorded ``failed`` and the campaign goes on (unless ``fail_fast``); Ctrl-C
  records the run and the campaign ``aborted`` and returns, also between runs;
- a store that refuses a write stops the campaign with its reason (nothing could be recorded);
- every folder the runs write to is checked before the first run.

Every window is in the store the moment it closes, so nothing recorded is lost in any case.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError, StoreWriteError, UsageError
from mltelemetry.publisher import ClaimCheck, Publisher
from mltelemetry.schema import Event
from mltelemetry.store import Store
from mltelemetry.workload import claims
from mltelemetry.workload.child import run_in_child
from mltelemetry.workload.compare import CodeCarbonCompare
from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.cooldown import Cooldown, TemperatureSource, find_source
from mltelemetry.workload.data import SYNTHETIC, locate
from mltelemetry.workload.events import EventRecorder
from mltelemetry.workload.ml import FRAMEWORK_MODULES, ML_SCENARIOS, check_backend
from mltelemetry.workload.power_limit import PowerLimits
from mltelemetry.workload.progress import CampaignProgress
from mltelemetry.workload.scenarios import SCENARIOS, RunContext, backend_of, reclaim_stale_dirs, uses_framework
from mltelemetry.workload.settle import PowerSource, Settle, find_power_source
from mltelemetry.workload.variants import POWER_LIMIT, Variant, variants

log = logging.getLogger(__name__)

Order = Literal["blocked", "interleaved", "random"]
BASELINE_SCENARIO = "baseline"
IDLE_FRAMEWORKS = ("auto", "none", *FRAMEWORK_MODULES)
# ML settings that say where things go, not what a run does: left out of the plan --resume compares.
_NOT_IN_PLAN = {"workdir", "export_dir", "keep_downloads", "workers"}


@dataclass
class CampaignPlan:
    """What a campaign runs: ``runs`` of each scenario in ``order`` (``seed`` for random), ``seconds`` for the
    main action of baseline, idle and cpu, ``pause_s`` between runs, ``config`` for cnn and transfer.
    ``idle_framework``: what the idle process imports (``auto``: the ML backend's framework when the
    campaign has an ML scenario, else nothing). ``vary``: setting -> values (:func:`.variants.parse_vary`);
    each ML scenario then runs ``runs`` times per variant, numbered on: variant k (from 0) has the runs
    k·runs+1 … (k+1)·runs, so scenario and run still name one run."""

    campaign: str
    scenarios: list[str]
    runs: int
    seconds: float
    order: Order = "blocked"
    pause_s: float = 1.0
    seed: int = 0
    config: MLConfig = field(default_factory=MLConfig)
    idle_framework: str = "auto"
    vary: dict[str, list[Any]] = field(default_factory=dict)

    def variants(self, scenario: str) -> list[Variant | None]:
        """The variants ``scenario`` runs in: each combination for an ML scenario of a --vary campaign, else one."""
        return list(variants(self.vary)) if self.vary and uses_framework(scenario) else [None]

    def schedule(self) -> list[tuple[str, int]]:
        """(scenario, run number) in the order they will run; run numbers count from 1 per scenario."""
        units = [(s, k) for s in self.scenarios for k in range(len(self.variants(s)))]
        blocked = [(s, k * self.runs + r) for s, k in units for r in range(1, self.runs + 1)]
        if self.order == "blocked":
            return blocked
        if self.order == "interleaved":
            return [(s, k * self.runs + r) for r in range(1, self.runs + 1) for s, k in units]
        random.Random(self.seed).shuffle(blocked)
        return blocked

    def variant_of(self, scenario: str, run: int) -> Variant | None:
        return self.variants(scenario)[(run - 1) // self.runs]

    @property
    def has_ml(self) -> bool:
        return any(uses_framework(s) for s in self.scenarios)

    @property
    def has_images(self) -> bool:
        """The campaign trains the image classifiers (cnn, transfer): it needs --data."""
        return any(s in ML_SCENARIOS for s in self.scenarios)

    def idle_import(self) -> str | None:
        """The module the idle scenario's process imports before it sleeps, or None."""
        if self.idle_framework == "auto":
            frameworks = [backend_of(s, self.config) for s in self.scenarios if uses_framework(s)]
            return FRAMEWORK_MODULES[frameworks[0]] if frameworks else None
        return None if self.idle_framework == "none" else FRAMEWORK_MODULES[self.idle_framework]

    def to_json(self) -> str:
        """What the campaign runs, as the campaign event's ``plan``: what ``--resume`` must match."""
        plan: dict[str, Any] = {"scenarios": self.scenarios, "runs": self.runs, "seconds": self.seconds,
                                "order": self.order, "seed": self.seed, "vary": self.vary,
                                "idle_framework": self.idle_framework}
        if self.has_ml:
            plan["ml"] = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)
                          if f.init and f.name not in _NOT_IN_PLAN}
        return json.dumps(plan, sort_keys=True, default=str)


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


@dataclass
class SettleSettings:
    """``--settle``: before each run wait until the GPUs' power is at most ``margin_w`` above the first baseline
    run's (the campaign start's until then), at most ``limit_s``. ``source`` overrides NVML."""

    margin_w: float = 5.0
    limit_s: float = 300.0
    poll_s: float = 1.0
    source: PowerSource | None = None
    nvml_module: Any = None
    clock: Any = time.monotonic
    sleep: Any = time.sleep


class CampaignStopped(Exception):
    """``fail_fast``: a run failed and the campaign stops."""


def _check_writable(path: Path, what: str) -> None:
    """Refuse a folder the runs could not write to now, before any run has trained for nothing."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise MltelemetryError(f"{what} {path} is not writable: {e.strerror or e}") from None


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
    if plan.vary and not plan.has_ml:
        raise UsageError("--vary varies the ML scenarios (cnn, transfer), and this campaign has none")
    if plan.has_ml:  # every variant's settings are checked (and its backend's framework found) now
        configs = [dataclasses.replace(c, backend=backend_of(s, c)) for s in plan.scenarios if uses_framework(s)
                   for c in (v.config(plan.config) if v else plan.config for v in plan.variants(s))]
        for config in {c.backend: c for c in configs}.values():
            check_backend(config)
    if plan.has_images and plan.config.data != SYNTHETIC:
        locate(plan.config.data)  # a wrong --data is one error now, not a failed run each
    workdir = plan.config.workdir
    _check_writable(Path(workdir) if workdir else Path(tempfile.gettempdir()),
                    "--workdir" if workdir else "the temporary folder ($TMPDIR)")
    if plan.has_ml and plan.config.export_dir is not None:
        _check_writable(Path(plan.config.export_dir), "--export-dir")


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


def _settle(settings: SettleSettings) -> tuple[Settle | None, str]:
    source, reason = (settings.source, "") if settings.source is not None else \
        find_power_source(settings.nvml_module)
    if source is None:
        log.warning("settle skipped for this campaign: %s", reason)
        return None, reason
    return Settle(source, settings.margin_w, settings.limit_s, settings.poll_s, clock=settings.clock,
                  sleep=settings.sleep), ""


def _plan_differences(stored: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    differences = []
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += _plan_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key} ({json.dumps(a)} then, {json.dumps(b)} now)")
    return differences


def _claim_check(plan: CampaignPlan, plan_json: str, resume: bool, store: Store, found: dict[str, Any]) -> ClaimCheck:
    """What the campaign's claim checks, in its write transaction: the name is free (or, to resume, taken with
    the same plan and not running); for ``resume`` it marks the claims of killed processes lost and fills
    ``found`` with the runs already ok (``done``) and those marked lost (``lost``)."""
    def check(rows: list[tuple[int, Event]]) -> dict[str, Any] | None:
        running = [e for _, e in rows if e.action == "campaign" and e.status == claims.RUNNING
                   and claims.owner_alive(e.fields)]
        if running:
            owner = claims.describe_owner(running[0].fields)
            raise MltelemetryError(f"campaign {plan.campaign!r} is running now ({owner}); wait for it to end, or "
                                   "choose another name")
        if not resume:
            if rows:
                raise MltelemetryError(f"campaign {plan.campaign!r} already exists in {store.path}; choose a new name "
                                       "or --resume it")
            return None
        if not rows:
            raise MltelemetryError(f"no campaign {plan.campaign!r} in {store.path} to resume")
        stored = next((e.fields[schema.FIELD_PLAN] for _, e in rows
                       if e.action == "campaign" and schema.FIELD_PLAN in e.fields), None)
        if stored is None:
            log.warning("campaign %s was recorded without its plan: --resume cannot check that it is the same",
                        plan.campaign)
        else:
            differences = _plan_differences(json.loads(stored), json.loads(plan_json))
            if differences:
                raise MltelemetryError(f"--resume runs the plan campaign {plan.campaign!r} was started with; this one "
                                       f"differs in {'; '.join(differences)}")
        stale = claims.stale_claims(rows)
        for row, claim in stale:
            store.replace_event(row, claims.as_lost(claim, rows))
        found["lost"] = [(e.scenario, e.run) for _, e in stale if e.action == "run"]
        found["done"] = {(e.scenario, e.run) for _, e in rows if e.action == "run" and e.status == "ok"}
        # on the claim too, so a resume that is killed in its turn still tells what it marked
        return {"lost_runs": len(found["lost"]), "skipped_runs": len(found["done"] & set(plan.schedule()))}
    return check


@contextmanager
def _power_limit(limits: PowerLimits | None, variant: Variant | None) -> Iterator[None]:
    if limits is None or variant is None or variant.power_limit_w is None:
        yield
        return
    with limits.applied(variant.power_limit_w):
        yield


def run_campaign(store_path: str | Path, plan: CampaignPlan, *, show_progress: bool = True, fail_fast: bool = False,
                 resume: bool = False, cooldown: CooldownSettings | None = None, settle: SettleSettings | None = None,
                 compare: CodeCarbonCompare | None = None, nvml_module: Any = None,
                 publishers: Sequence[Publisher] = ()) -> dict[str, int]:
    """Run every scheduled run, recording its windows in the store and telling ``publishers`` (the live view:
    /metrics, InfluxDB, Grafana), and return counts by outcome: ``ok``, ``failed``, ``aborted`` (Ctrl-C during a
    run), ``skipped`` (already ``ok`` in the store, with ``resume``), ``lost`` (runs of killed processes marked
    lost by ``resume``) and ``interrupted`` (1 when Ctrl-C or SIGTERM stopped the campaign, in a run or between
    runs). ``nvml_module`` stands in for pynvml where ``--vary gpu_power_limit`` sets limits."""
    _validate(plan)
    counts = {"ok": 0, "failed": 0, "aborted": 0, "skipped": 0, "lost": 0, "interrupted": 0}
    limits = None
    if POWER_LIMIT in plan.vary:  # permission and range checked before anything is recorded
        limits = PowerLimits(nvml_module)
        try:
            limits.check(plan.vary[POWER_LIMIT])
        except BaseException:
            limits.close()
            raise
    try:
        with Store(store_path) as store:
            recorder = EventRecorder(store, plan.campaign, publishers=publishers)
            _campaign(store, recorder, plan, counts, fail_fast=fail_fast, resume=resume, cooldown=cooldown,
                      settle=settle, compare=compare, limits=limits, show_progress=show_progress)
    finally:
        if limits is not None:
            limits.close()
    return counts


def _campaign(store: Store, recorder: EventRecorder, plan: CampaignPlan, counts: dict[str, int], *, fail_fast: bool,
              resume: bool, cooldown: CooldownSettings | None, settle: SettleSettings | None,
              compare: CodeCarbonCompare | None, limits: PowerLimits | None, show_progress: bool) -> None:
    cooler, cooldown_skipped = _cooldown(store, cooldown) if cooldown is not None else (None, "")
    settler, settle_skipped = _settle(settle) if settle is not None else (None, "")
    synthetic = plan.has_images and plan.config.data == SYNTHETIC
    plan_json = plan.to_json()
    campaign_fields: dict[str, Any] = {"order": plan.order, "runs": plan.runs, "seed": plan.seed,
                                       "scenarios": plan.scenarios, "resumed": resume, schema.FIELD_PLAN: plan_json}
    if plan.has_ml:
        campaign_fields.update(backend=plan.config.backend, data=plan.config.data)
    if plan.vary:
        campaign_fields["variants"] = [v.label for v in variants(plan.vary)]
    if cooldown_skipped:
        campaign_fields["cooldown_skipped"] = cooldown_skipped
    if settle_skipped:
        campaign_fields["settle_skipped"] = settle_skipped
    if compare is not None:
        campaign_fields["compare"] = "codecarbon"
    found: dict[str, Any] = {"done": set(), "lost": []}
    full = plan.schedule()
    positions = {item: i for i, item in enumerate(full)}
    try:
        with recorder.window("campaign", scenario="*", run=0, claim=_claim_check(plan, plan_json, resume, store, found),
                             **campaign_fields) as fields:
            schedule = [item for item in full if item not in found["done"]]
            counts["skipped"], counts["lost"] = len(full) - len(schedule), len(found["lost"])
            fields.update(skipped_runs=counts["skipped"], lost_runs=counts["lost"])
            reclaimed = reclaim_stale_dirs(plan.config.workdir)
            if reclaimed:
                log.info("deleted the working folders of killed runs: %s", ", ".join(map(str, reclaimed)))
                fields["reclaimed_dirs"] = len(reclaimed)
            if synthetic:
                plan.config.source()  # generated before the campaign's first run, once for all runs
            if settler is not None:
                settler.start()
                if resume:  # the first baseline may have run before: its reference holds for the whole campaign
                    settler.recorded_baseline([e.fields for e in store.events(plan.campaign) if e.action == "settle"])
            with CampaignProgress(schedule, max((r for _, r in full), default=plan.runs), enabled=show_progress,
                                  pause_s=plan.pause_s) as progress:
                for index, (name, run) in enumerate(schedule):
                    _one_run(recorder, plan, name, run, positions[(name, run)], progress, index, counts,
                             cooler=cooler, settler=settler, compare=compare, limits=limits, fail_fast=fail_fast)
                    if index < len(schedule) - 1:
                        time.sleep(plan.pause_s)
    except KeyboardInterrupt:
        counts["interrupted"] = 1
        log.warning("campaign %s interrupted: --resume runs the rest", plan.campaign)
    except CampaignStopped as e:
        log.error("%s", e)
    finally:
        if synthetic:
            plan.config.release()
        for source in (cooler.source if cooler else None, settler.source if settler else None):
            if hasattr(source, "close"):
                source.close()  # NVML shut down again


def _one_run(recorder: EventRecorder, plan: CampaignPlan, name: str, run: int, position: int,
             progress: CampaignProgress, index: int, counts: dict[str, int], *, cooler: Cooldown | None,
             settler: Settle | None, compare: CodeCarbonCompare | None, limits: PowerLimits | None,
             fail_fast: bool) -> None:
    """Cooldown, settle, then the run (under its variant's settings and labels)."""
    variant = plan.variant_of(name, run)
    with recorder.labelled(variant.fields() if variant else {}):
        if cooler is not None:
            with recorder.window("cooldown", scenario=name, run=run) as fields:
                cooler.wait(fields)
        if settler is not None:
            with recorder.window("settle", scenario=name, run=run) as fields:
                settler.wait(fields)
        progress.start_run(index)
        ctx = RunContext(recorder, name, run, plan.seconds, variant.config(plan.config) if variant else plan.config,
                         progress.update, plan.idle_import())
        before_baseline = settler.baseline_starting() if settler is not None and name == BASELINE_SCENARIO else None
        started_ns = time.time_ns()
        with _power_limit(limits, variant):
            ok = _run_one(recorder, ctx, position, compare, counts, fail_fast)
        progress.end_run()
    if ok and name == BASELINE_SCENARIO:
        if cooler is not None:
            mean = cooler.source.mean(started_ns, time.time_ns())
            cooler.set_reference(mean if mean is not None else cooler.source.read(), f"baseline run {run}")
        if settler is not None:
            settler.baseline_ran(run, before_baseline)


def _run_one(recorder: EventRecorder, ctx: RunContext, position: int, compare: CodeCarbonCompare | None,
             counts: dict[str, int], fail_fast: bool) -> bool:
    tracker = compare.start(f"{recorder.campaign}/{ctx.scenario}/{ctx.run}") if compare is not None else None
    function = SCENARIOS[ctx.scenario]
    try:
        with recorder.window("run", scenario=ctx.scenario, run=ctx.run, claim=True, position=position) as fields:
            ctx.run_fields = fields
            try:
                if uses_framework(ctx.scenario):
                    run_in_child(function, ctx)  # the framework and its GPU context end with the run
                else:
                    function(ctx)
            finally:
                if compare is not None:
                    fields.update(compare.stop(tracker))
    except KeyboardInterrupt:
        counts["aborted"] += 1
        raise
    except StoreWriteError:
        raise  # nothing more can be recorded: the campaign stops with the store's reason
    except Exception as e:  # recorded as failed by the window; the campaign goes on
        counts["failed"] += 1
        log.error("%s run %d failed: %s: %s", ctx.scenario, ctx.run, type(e).__name__, e)
        if fail_fast:
            raise CampaignStopped(f"--fail-fast: {ctx.scenario} run {ctx.run} failed ({type(e).__name__}: {e}); "
                                  "the campaign stops") from e
        return False
    counts["ok"] += 1
    return True
