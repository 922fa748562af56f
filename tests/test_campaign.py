"""The campaign runner as an experiment and under abuse: --vary, framework runs in child processes, --settle,
claims (a second process, killed runs, --resume's plan), interrupts between runs, a store that refuses writes,
unwritable folders."""

import json
import logging
import os
import signal
import sys
import threading
import time

import psutil
import pytest
from typer.testing import CliRunner

from mltelemetry import schema
from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
from mltelemetry.exporters.gpu.fake_nvml import FakeClock, FakeGpu, FakeNvml, Step
from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, SettleSettings, run_campaign
from mltelemetry.workload.events import publishing
from mltelemetry.workload.scenarios import SCENARIOS
from mltelemetry.workload.settle import NvmlPower, Settle
from mltelemetry.workload.variants import parse_vary, variants


def events_of(path, campaign="c"):
    with Store(path) as store:
        return store.events(campaign)


def inside(inner, outer):
    return outer.start_ns <= inner.start_ns <= inner.end_ns <= outer.end_ns


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


class Collect:
    """A live publisher (as /metrics, InfluxDB and Grafana are)."""

    def __init__(self, on_event=None):
        self.seen = []
        self.on_event = on_event or (lambda kind, event: None)

    def window_opened(self, event):
        self.seen.append(("opened", event.action, event.run, event.epoch))
        self.on_event("opened", event)

    def window_closed(self, event):
        self.seen.append(("closed", event.action, event.run, event.epoch))
        self.on_event("closed", event)


# --- --vary -------------------------------------------------------------------------------------------------
def test_vary_parses_and_refuses_bad_settings():
    assert parse_vary(["batch_size=16,32", "learning_rate=0.01, 1e-3"]) == {"batch_size": [16, 32],
                                                                            "learning_rate": [0.01, 0.001]}
    for bad, message in [("batch_size", "wants NAME=V1,V2"), ("epochs=1,2", "unknown setting 'epochs'"),
                         ("batch_size=16,x", "'x' is not an integer"), ("batch_size=0", "must be positive"),
                         ("backend=jax", "'jax' is not one of keras, torch"), ("image_size=64,64", "repeated")]:
        with pytest.raises(ValueError, match=message):
            parse_vary([bad])
    with pytest.raises(ValueError, match="given twice"):
        parse_vary(["batch_size=16", "batch_size=32"])
    result = CliRunner().invoke(app, ["campaign", "run", "--campaign", "c", "--store", "s.db", "--vary", "epochs=1"])
    assert result.exit_code == 2 and "unknown setting 'epochs'" in result.output
    labels = [v.label for v in variants({"batch_size": [16, 32], "gpu_power_limit": [250.0, 300.5]})]
    assert labels == ["batch_size=16,gpu_power_limit=250", "batch_size=16,gpu_power_limit=300.5",
                      "batch_size=32,gpu_power_limit=250", "batch_size=32,gpu_power_limit=300.5"]


def test_vary_schedules_the_cross_product_of_the_ml_scenarios(monkeypatch):
    monkeypatch.setitem(SCENARIOS, "probe", framework_probe)
    vary = {"batch_size": [16, 32], "learning_rate": [0.01, 0.001]}
    blocked = CampaignPlan("c", ["baseline", "probe"], runs=2, seconds=1, vary=vary)
    # baseline is not varied (it reads none of these settings); probe: 4 variants x 2 runs, numbered 1..8
    assert blocked.schedule() == [("baseline", 1), ("baseline", 2)] + [("probe", r) for r in range(1, 9)]
    interleaved = CampaignPlan("c", ["baseline", "probe"], runs=2, seconds=1, order="interleaved", vary=vary)
    assert interleaved.schedule() == [("baseline", 1), ("probe", 1), ("probe", 3), ("probe", 5), ("probe", 7),
                                      ("baseline", 2), ("probe", 2), ("probe", 4), ("probe", 6), ("probe", 8)]
    shuffled = CampaignPlan("c", ["baseline", "probe"], runs=2, seconds=1, order="random", seed=3, vary=vary)
    assert sorted(shuffled.schedule()) == sorted(blocked.schedule()) != shuffled.schedule()
    # variant k (from 0) holds runs 2k+1 and 2k+2; the first option is the outermost
    assert [blocked.variant_of("probe", r).label for r in (1, 2, 3, 8)] == [
        "batch_size=16,learning_rate=0.01", "batch_size=16,learning_rate=0.01", "batch_size=16,learning_rate=0.001",
        "batch_size=32,learning_rate=0.001"]
    assert blocked.variant_of("baseline", 2) is None
    with pytest.raises(MltelemetryError, match="this campaign has none"):
        run_campaign("unused.db", CampaignPlan("c", ["baseline"], 1, 1, vary=vary), show_progress=False)


def test_every_event_of_a_variant_run_carries_its_labels_and_runs_in_a_child(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "probe", framework_probe)
    plan = CampaignPlan("c", ["baseline", "probe"], runs=1, seconds=0.05, pause_s=0,
                        vary={"batch_size": [16, 32], "learning_rate": [0.01]})
    publisher = Collect()
    with publishing([publisher]):
        counts = run_campaign(tmp_path / "s.db", plan, show_progress=False)
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

    with publishing([Collect(ctrl_c_once_training)]):
        counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["sleeps", "baseline"], 1, 0.05, pause_s=0),
                              show_progress=False)
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
    with publishing([Collect(note_limits)]):
        assert run_campaign(tmp_path / "s.db", plan, show_progress=False, nvml_module=fake)["ok"] == 2
    assert limits_seen == [(1, [250, 250]), (2, [300, 300])]
    assert [gpu.power_limit_w for gpu in fake.gpus] == [700, 650]  # each GPU's own limit is back
    runs = [e for e in events_of(tmp_path / "s.db") if e.action == "run"]
    assert [(e.fields["variant"], e.fields["gpu_power_limit"]) for e in runs] == [
        ("gpu_power_limit=250", 250.0), ("gpu_power_limit=300", 300.0)]


def test_gpu_power_limit_refused_without_permission_or_out_of_range(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "probe", framework_probe)
    plan = CampaignPlan("c", ["probe"], runs=1, seconds=1, vary={"gpu_power_limit": [250.0]})
    user = FakeNvml([FakeGpu(steps=[Step(0, 60)])], root=False)
    with pytest.raises(MltelemetryError, match="refuses to change the GPU power limit without root permission"):
        run_campaign(tmp_path / "s.db", plan, show_progress=False, nvml_module=user)
    plan.vary = {"gpu_power_limit": [250.0, 100.0]}
    with pytest.raises(MltelemetryError, match=r"100 W is outside GPU 0 .*'s range 200-700 W"):
        run_campaign(tmp_path / "s.db", plan, show_progress=False, nvml_module=FakeNvml([FakeGpu([Step(0, 60)])]))
    with Store(tmp_path / "s.db") as store:
        assert store.campaigns() == []  # refused before anything was recorded


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
    monkeypatch.setitem(SCENARIOS, "cool", lambda ctx: None)
    settings = SettleSettings(margin_w=5, limit_s=60, poll_s=2, nvml_module=fake, clock=clock, sleep=clock.advance)
    run_campaign(tmp_path / "s.db", CampaignPlan("c", ["baseline", "hot", "cool"], 1, 1, pause_s=0),
                 show_progress=False, settle=settings)
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
