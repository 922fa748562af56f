"""The campaign runner as an experiment and under abuse: --vary, framework runs in child processes, --settle,
claims (a second process, killed runs, --resume's plan), interrupts between runs, a store that refuses writes,
unwritable folders."""

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
from typer.testing import CliRunner

from conftest import wait_for
from fakes.fake_nvml import FakeClock, FakeGpu, FakeNvml, Step
from mltelemetry import schema
from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
from mltelemetry.publisher import Capability, Publisher
from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, SettleSettings, run_campaign
from mltelemetry.workload.scenarios import SCENARIOS
from mltelemetry.workload.settle import NvmlPower, Settle


def events_of(path, campaign="c"):
    with Store(path) as store:
        return store.events(campaign)


def inside(inner, outer):
    return outer.start_ns <= inner.start_ns <= inner.end_ns <= outer.end_ns


def sigint_as_in_a_terminal():
    """Popen's preexec_fn: Ctrl-C's default action, as in a terminal's foreground job (a test run as a shell's
    background job would otherwise start the command with SIGINT ignored, and Python keeps it so)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def command(store, campaign, *args):
    return [sys.executable, "-m", "mltelemetry", "campaign", "run", "--campaign", campaign, "--store", str(store),
            "--no-progress", *args]


# --- scenarios that run in a child process (module level: the spawned child imports them from here) -----------
def framework_probe(ctx):
    """Stands in for cnn/transfer: a train window with two epochs, recording what the child saw."""
    with ctx.action("train") as fields:
        fields.update(pid=os.getpid(), seen_batch_size=ctx.config.batch_size,
                      seen_learning_rate=ctx.config.learning_rate)
        for epoch in (1, 2):
            with ctx.annotator.epoch(epoch) as epoch_fields:
                epoch_fields["loss"] = 1.0 / epoch
            ctx.progress(epoch=epoch, max_epochs=2)


def framework_explodes(ctx):
    with ctx.action("prepare_data"):
        raise MemoryError("out of memory")


def framework_sleeps(ctx):
    with ctx.action("train"):
        time.sleep(60)


for _function in (framework_probe, framework_explodes, framework_sleeps):
    _function.uses_framework = True  # what @scenario(..., uses_framework=True) sets


class Collect(Publisher):
    """A live publisher (as /metrics, InfluxDB and Grafana are)."""

    capabilities = frozenset({Capability.EVENTS})

    def __init__(self, on_event=None):
        self.seen = []
        self.on_event = on_event or (lambda kind, event: None)

    def publish_events(self, change):
        kind = "closed" if change.closed else "opened"
        self.seen.append((kind, change.event.action, change.event.run, change.event.epoch))
        self.on_event(kind, change.event)


def test_every_event_of_a_variant_run_carries_its_labels_and_runs_in_a_child(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "probe", framework_probe)
    plan = CampaignPlan("c", ["baseline", "probe"], runs=1, seconds=0.05, pause_s=0,
                        vary={"batch_size": [16, 32], "learning_rate": [0.01]})
    publisher = Collect()
    counts = run_campaign(tmp_path / "s.db", plan, show_progress=False, publishers=[publisher])
    assert counts["ok"] == 3 and counts["failed"] == 0
    events = events_of(tmp_path / "s.db")
    for e in events:
        if e.scenario == "probe":
            size = 16 if e.run == 1 else 32
            assert e.fields[schema.FIELD_VARIANT] == f"batch_size={size},learning_rate=0.01"
            assert (e.fields["batch_size"], e.fields["learning_rate"]) == (size, 0.01)
        else:
            assert schema.FIELD_VARIANT not in e.fields
    trains = [e for e in events if e.action == "train"]
    assert [(t.run, t.fields["seen_batch_size"], t.fields["seen_learning_rate"]) for t in trains] == [
        (1, 16, 0.01), (2, 32, 0.01)]  # each child trained with its variant's settings
    pids = {t.fields["pid"] for t in trains}
    assert os.getpid() not in pids and len(pids) == 2  # one process per run ...
    assert not any(psutil.pid_exists(pid) for pid in pids)  # ... gone at the run's end
    for run in (1, 2):
        (run_event,) = [e for e in events if e.action == "run" and e.scenario == "probe" and e.run == run]
        inner = [e for e in events if e.scenario == "probe" and e.run == run and e.action != "run"]
        assert [(e.action, e.epoch) for e in inner] == [("train", None), ("epoch", 1), ("epoch", 2)]
        assert all(inside(e, run_event) for e in inner)
    # the child's windows reached the parent's publishers as they opened and closed
    probe_1 = [s for s in publisher.seen if s[2] == 1 and s[1] in ("run", "train", "epoch")][-8:]
    assert probe_1 == [("opened", "run", 1, None), ("opened", "train", 1, None), ("opened", "epoch", 1, 1),
                       ("closed", "epoch", 1, 1), ("opened", "epoch", 1, 2), ("closed", "epoch", 1, 2),
                       ("closed", "train", 1, None), ("closed", "run", 1, None)]
    campaign = events[0]
    assert campaign.fields["variants"] == ["batch_size=16,learning_rate=0.01", "batch_size=32,learning_rate=0.01"]
    assert json.loads(campaign.fields[schema.FIELD_PLAN])["vary"] == {"batch_size": [16, 32], "learning_rate": [0.01]}


def test_a_child_run_that_fails_is_recorded_and_the_campaign_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "explodes", framework_explodes)
    counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["explodes", "baseline"], 1, 0.05, pause_s=0),
                          show_progress=False)
    assert (counts["ok"], counts["failed"]) == (1, 1)
    status = {(e.scenario, e.action): (e.status, e.fields.get("error")) for e in events_of(tmp_path / "s.db")}
    assert status[("explodes", "prepare_data")] == ("failed", "MemoryError: out of memory")
    assert status[("explodes", "run")] == ("failed", "ChildRunFailed: MemoryError: out of memory")
    assert status[("baseline", "run")] == ("ok", None)


def test_ctrl_c_reaches_the_child_and_its_windows_are_recorded_aborted(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "sleeps", framework_sleeps)

    def ctrl_c_once_training(kind, event):
        if (kind, event.action) == ("opened", "train"):  # the child is in its train window
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["sleeps", "baseline"], 1, 0.05, pause_s=0),
                          show_progress=False, publishers=[Collect(ctrl_c_once_training)])
    assert (counts["aborted"], counts["interrupted"], counts["ok"]) == (1, 1, 0)
    events = events_of(tmp_path / "s.db")
    assert [(e.action, e.scenario, e.status) for e in events] == [
        ("campaign", "*", "aborted"), ("run", "sleeps", "aborted"), ("train", "sleeps", "aborted")]
    assert events[2].duration_s < 30  # the child stopped sleeping: it got the interrupt


# --- gpu_power_limit (fake NVML only: no test changes a real GPU's settings) --------------------------------
def test_gpu_power_limit_is_set_for_each_run_and_restored(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "probe", framework_probe)
    fake = FakeNvml([FakeGpu(steps=[Step(0, 60)], power_limit_w=700),
                     FakeGpu(steps=[Step(0, 60)], uuid="GPU-1", power_limit_w=650)])
    limits_seen = []

    def note_limits(kind, event):
        if (kind, event.action) == ("closed", "train"):  # relayed from the child, while its run goes on
            limits_seen.append((event.run, [gpu.power_limit_w for gpu in fake.gpus]))

    plan = CampaignPlan("c", ["probe"], runs=1, seconds=1, pause_s=0, vary={"gpu_power_limit": [250.0, 300.0]})
    assert run_campaign(tmp_path / "s.db", plan, show_progress=False, nvml_module=fake,
                        publishers=[Collect(note_limits)])["ok"] == 2
    assert limits_seen == [(1, [250, 250]), (2, [300, 300])]
    assert [gpu.power_limit_w for gpu in fake.gpus] == [700, 650]  # each GPU's own limit is back
    runs = [e for e in events_of(tmp_path / "s.db") if e.action == "run"]
    assert [(e.fields["variant"], e.fields["gpu_power_limit"]) for e in runs] == [
        ("gpu_power_limit=250", 250.0), ("gpu_power_limit=300", 300.0)]


# --- --settle --------------------------------------------------------------------------------------------------
def test_settle_waits_for_the_first_baselines_gpu_power(tmp_path, monkeypatch):
    clock = FakeClock(0)
    # GPU 0 alone: 90 W at the start, 60 W from t=1, 300 W while "hot" trains, 150 W after it, 66 W from t=26
    fake = FakeNvml([FakeGpu(steps=[Step(0, 90), Step(1, 60), Step(11, 300), Step(20, 150), Step(26, 66)])],
                    clock=clock)

    def baseline(ctx):
        with ctx.action("baseline"):
            clock.advance(10)  # t 0 -> 10: 90 W for 1 s and 60 W for 9 s = 630 J, a mean of 63 W

    def hot(ctx):
        with ctx.action("compute"):
            clock.advance(10)  # t 10 -> 20

    monkeypatch.setitem(SCENARIOS, "baseline", baseline)
    monkeypatch.setitem(SCENARIOS, "hot", hot)
    cool_calls = []

    def cool(ctx):  # fails the first time, so --resume runs it again
        cool_calls.append(ctx.run)
        if len(cool_calls) == 1:
            raise RuntimeError("not today")

    monkeypatch.setitem(SCENARIOS, "cool", cool)
    settings = SettleSettings(margin_w=5, limit_s=60, poll_s=2, nvml_module=fake, clock=clock, sleep=clock.advance)
    plan = CampaignPlan("c", ["baseline", "hot", "cool"], 1, 1, pause_s=0)
    run_campaign(tmp_path / "s.db", plan, show_progress=False, settle=settings)
    events = events_of(tmp_path / "s.db")
    assert [(e.action, e.scenario) for e in events if e.action in ("settle", "run")] == [
        ("settle", "baseline"), ("run", "baseline"), ("settle", "hot"), ("run", "hot"), ("settle", "cool"),
        ("run", "cool")]
    first, second, third = (e.fields for e in events if e.action == "settle")
    assert (first["reference_w"], first["reference_from"], first["gpu_power_w"], first["reached"]) == (
        90, "campaign start", 90, True)
    assert second["reference_w"] == pytest.approx(63) and second["reference_from"] == "baseline run 1"
    assert (second["gpu_power_w"], second["waited_s"]) == (60, 0)
    # t = 20: 150 W > 63 + 5; polls at 22 and 24 read 150, at 26 66 W <= 68: reached after 6 s
    assert (third["start_gpu_power_w"], third["gpu_power_w"], third["waited_s"], third["reached"]) == (150, 66, 6, True)
    assert third["margin"] == 5 and third["reference_w"] == pytest.approx(63)
    for settle, run in zip((e for e in events if e.action == "settle"), (e for e in events if e.action == "run")):
        assert settle.end_ns <= run.start_ns and (settle.scenario, settle.run) == (run.scenario, run.run)
    # resumed (t = 26, 66 W): the first baseline's 63 W still is the reference, not the resumed start's 66 W
    assert run_campaign(tmp_path / "s.db", plan, show_progress=False, settle=settings, resume=True)["ok"] == 1
    resumed = [e.fields for e in events_of(tmp_path / "s.db") if e.action == "settle"][-1]
    assert (resumed["reference_w"], resumed["reference_from"]) == (pytest.approx(63), "baseline run 1")
    assert cool_calls == [1, 1]


def test_settle_gives_up_at_its_limit_and_is_skipped_without_a_gpu(tmp_path, caplog):
    clock = FakeClock(0)
    source = NvmlPower(FakeNvml([FakeGpu([Step(0, 150)]), FakeGpu([Step(0, 120)], uuid="GPU-1")], clock=clock))
    settle = Settle(source, margin_w=10, limit_s=12, poll_s=5, clock=clock, sleep=clock.advance,
                    reference_w=200, reference_from="given")
    fields = {}
    assert settle.wait(fields) is False  # two GPUs: 150 + 120 = 270 W > 210 W all along
    assert (fields["gpu_power_w"], fields["waited_s"], fields["reached"]) == (270, 12, False)
    assert fields["note"] == "still above 210 W after the 12 s limit"
    with caplog.at_level(logging.WARNING):
        no_gpu = SettleSettings(nvml_module=FakeNvml([], library_missing=True))
        counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["baseline"], 2, 0.05, pause_s=0),
                              show_progress=False, settle=no_gpu)
    assert counts["ok"] == 2
    events = events_of(tmp_path / "s.db")
    assert not [e for e in events if e.action == "settle"]
    assert "no GPU power from NVML" in events[0].fields["settle_skipped"]
    assert len([r for r in caplog.records if "settle skipped" in r.getMessage()]) == 1


# --- interrupted between runs (issue 20.1) ----------------------------------------------------------------------
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_interrupt_during_the_pause_exits_130_and_says_so(tmp_path, signum):
    store = tmp_path / "s.db"
    process = subprocess.Popen(command(store, "p", "--scenario", "baseline", "--runs", "4", "--seconds", "0.2",
                                       "--pause", "30"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=sigint_as_in_a_terminal)
    try:
        wait_for(lambda: store.exists() and any(e.action == "run" and e.status == "ok" for e in events_of(store, "p")),
                 60, "run 1 to end (the 30 s pause begins)")
        process.send_signal(getattr(signal, signum))
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert out.strip() == "campaign p: 1 runs ok, 0 failed, interrupted: between runs; --resume runs the rest"
    assert "Traceback" not in err
    events = events_of(store, "p")
    assert [(e.action, e.run, e.status) for e in events if e.action in ("campaign", "run")] == [
        ("campaign", 0, "aborted"), ("run", 1, "ok")]  # runs 2-4 never ran


# --- the plan is stored; --resume refuses another (issue 20.2) --------------------------------------------------
def test_resume_refuses_a_different_plan(tmp_path):
    path = tmp_path / "s.db"
    plan = CampaignPlan("c", ["baseline"], runs=1, seconds=0.05, pause_s=0)
    run_campaign(path, plan, show_progress=False)
    stored = json.loads(events_of(path)[0].fields[schema.FIELD_PLAN])
    assert stored == {"scenarios": ["baseline"], "runs": 1, "seconds": 0.05, "order": "blocked", "seed": 0,
                      "vary": {}, "idle_framework": "auto"}
    for change, difference in [({"runs": 2}, "runs (1 then, 2 now)"),
                               ({"seconds": 0.1}, "seconds (0.05 then, 0.1 now)"),
                               ({"order": "random"}, 'order ("blocked" then, "random" now)'),
                               ({"seed": 7}, "seed (0 then, 7 now)"),
                               ({"scenarios": ["baseline", "cpu"]}, 'scenarios (["baseline"] then, ["baseline", "cp')]:
        other = CampaignPlan(**{**plan.__dict__, **change})
        with pytest.raises(MltelemetryError, match="differs in") as refused:
            run_campaign(path, other, show_progress=False, resume=True)
        assert difference in str(refused.value)
    assert run_campaign(path, plan, show_progress=False, resume=True)["skipped"] == 1  # the same plan resumes
    result = CliRunner().invoke(app, ["campaign", "run", "--campaign", "c", "--store", str(path), "--resume",
                                      "--scenario", "baseline", "--runs", "1", "--seconds", "0.05", "--seed", "3"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: --resume runs the plan campaign 'c' was started with; this one differs "
                                     "in seed (0 then, 3 now)")
    assert [e.status for e in events_of(path) if e.action == "run"] == ["ok"]  # nothing ran under another plan


# --- claims: a second process, a killed run (issue 20.3, 20.4) ----------------------------------------------------
def test_the_same_campaign_twice_at_once_is_refused(tmp_path):
    store = tmp_path / "s.db"
    first = subprocess.Popen(command(store, "c", "--scenario", "baseline", "--runs", "1", "--seconds", "15",
                                     "--pause", "0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: store.exists() and events_of(store), 60, "the first campaign's claim")
        claim = events_of(store)[0]  # in the store from the start, before any window closed
        assert (claim.action, claim.status, claim.fields["owner_pid"]) == ("campaign", "running", first.pid)
        for extra in ([], ["--resume"]):
            second = subprocess.run(command(store, "c", "--scenario", "baseline", "--runs", "1", "--seconds", "15",
                                            "--pause", "0", *extra), capture_output=True, text=True, timeout=60)
            assert second.returncode == 1
            assert second.stderr.strip().startswith(f"error: campaign 'c' is running now (process {first.pid} on ")
            assert first.poll() is None  # refused because the first one runs, not because it ended
        assert first.wait(timeout=60) == 0
    finally:
        first.kill()
    events = events_of(store)
    assert [(e.action, e.run, e.status) for e in events if e.action in ("campaign", "run")] == [
        ("campaign", 0, "ok"), ("run", 1, "ok")]  # the first ran alone, once
    assert "owner_pid" not in events[0].fields  # the claim was replaced by the final event


def test_a_killed_run_stays_claimed_then_resume_marks_it_lost_and_runs_it_again(tmp_path):
    store = tmp_path / "s.db"
    process = subprocess.Popen(command(store, "c", "--scenario", "cpu", "--runs", "1", "--seconds", "60",
                                       "--pause", "0", "--workdir", str(tmp_path / "work")))
    try:
        wait_for(lambda: store.exists() and any(e.action == "prepare_data" for e in events_of(store)), 60,
                 "prepare_data to close (the compute window is open)")
        process.kill()
        process.wait(timeout=30)
    finally:
        process.kill()
    killed = events_of(store)
    assert [(e.action, e.status) for e in killed] == [("campaign", "running"), ("run", "running"),
                                                      ("prepare_data", "ok")]
    (left,) = (tmp_path / "work").iterdir()  # the killed run's 16 MiB input
    assert left.name.startswith(f"mltelemetry-cpu-p{process.pid}-")
    plan = CampaignPlan("c", ["cpu"], runs=1, seconds=60, pause_s=0)
    plan.config.workdir = tmp_path / "work"
    plan.seconds = 0.2
    with pytest.raises(MltelemetryError, match=r"differs in seconds \(60.0 then, 0.2 now\)"):
        run_campaign(store, plan, show_progress=False, resume=True)
    plan.seconds = 60.0
    SCENARIOS_cpu = SCENARIOS["cpu"]
    ran = []

    def quick_cpu(ctx):  # the same plan, and a test that does not wait a minute
        ran.append(ctx.run)
        ctx.seconds = 0.2
        SCENARIOS_cpu(ctx)

    SCENARIOS["cpu"] = quick_cpu
    try:
        counts = run_campaign(store, plan, show_progress=False, resume=True)
    finally:
        SCENARIOS["cpu"] = SCENARIOS_cpu
    assert (counts["lost"], counts["ok"], ran) == (1, 1, [1])
    events = events_of(store)
    runs = [e for e in events if e.action == "run"]
    assert [e.status for e in runs] == ["lost", "ok"]
    lost, prepare = runs[0], next(e for e in events if e.action == "prepare_data")
    assert inside(prepare, lost)  # the lost run now spans the windows its process recorded
    assert [e.status for e in events if e.action == "campaign"] == ["lost", "ok"]
    assert events[-1].action != "campaign" and not left.exists()  # the stale folder was reclaimed
    resumed = [e for e in events if e.action == "campaign"][1]
    assert (resumed.fields["lost_runs"], resumed.fields["reclaimed_dirs"]) == (1, 1)


# --- the done criterion: SIGKILL at random moments, resume, and the record is an uninterrupted campaign's ---------
def record(events):
    """What a campaign's record says ran: ok runs with their inner actions, in order."""
    runs = [e for e in events if e.action == "run" and e.status == "ok"]
    return [(r.scenario, r.run, r.fields["position"],
             [e.action for e in events if (e.scenario, e.run) == (r.scenario, r.run) and e.action not in
              ("run", "cooldown", "settle") and inside(e, r)]) for r in sorted(runs, key=lambda r: r.start_ns)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_then_resume_equals_an_uninterrupted_campaign(tmp_path, seed):
    rng = random.Random(seed)
    args = ["--scenario", "baseline", "--scenario", "cpu", "--runs", "2", "--seconds", "0.3", "--pause", "0",
            "--order", "random", "--seed", "5", "--workdir", str(tmp_path / "work")]
    reference = tmp_path / "reference.db"
    assert subprocess.run(command(reference, "c", *args), capture_output=True, timeout=120).returncode == 0

    store = tmp_path / "s.db"
    kills = 0
    for attempt in range(3):  # killed twice (at random moments), then left to finish
        process = subprocess.Popen(command(store, "c", *args, *(["--resume"] if attempt else [])),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if attempt < 2:
                pid = process.pid
                # a resumed campaign with little left may end before its claim is seen: then there is no kill
                wait_for(lambda: process.poll() is not None  # noqa: B023
                         or store.exists() and any(e.status == "running" and e.action == "campaign"
                                                   and e.fields.get("owner_pid") == pid  # noqa: B023
                                                   for e in events_of(store)), 120, "the campaign's claim")
                time.sleep(rng.uniform(0, 4))
                kills += process.poll() is None
                process.kill()
            process.wait(timeout=120)
        finally:
            process.kill()
    assert process.returncode == 0
    events = events_of(store)
    assert record(events) == record(events_of(reference))  # same runs, same windows in them, once each
    runs = [e for e in events if e.action == "run"]
    assert {e.status for e in runs} <= {"ok", "lost"} and "running" not in {e.status for e in events}
    assert len([e for e in runs if e.status == "ok"]) == 4
    campaigns = [e for e in events if e.action == "campaign"]
    assert campaigns[-1].status == "ok" and sum(e.status == "lost" for e in campaigns) <= kills
    lost = [e for e in runs if e.status == "lost"]
    assert len(lost) <= kills and all(e.fields["owner_pid"] != process.pid for e in lost)
    assert sum(e.fields.get("lost_runs", 0) for e in campaigns) == len(lost)  # each resume says what it marked
    for e in events:  # every window of a lost run lies inside it: the analysis can leave them out
        owner = [r for r in runs if (r.scenario, r.run) == (e.scenario, e.run) and inside(e, r)]
        if e.action not in ("run", "campaign"):
            assert len(owner) == 1, e
    assert not list((tmp_path / "work").iterdir())  # no killed run's folder is left


def test_a_claims_owner_is_alive_only_while_its_process_runs():
    from mltelemetry.workload import claims
    me = claims.owner()
    assert claims.owner_alive(me)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert not claims.owner_alive({**me, "owner_pid": finished.pid})  # gone
    assert not claims.owner_alive({**me, "owner_started": me["owner_started"] - 60})  # a reused pid: not the owner
    assert claims.owner_alive({**me, "owner_host": "elsewhere"})  # cannot be checked from here: kept
    assert not claims.owner_alive({})
