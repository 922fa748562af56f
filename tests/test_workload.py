import pytest
from typer.testing import CliRunner

from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
from mltelemetry.publisher import Capability, Publisher
from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, run_campaign
from mltelemetry.workload.events import EventRecorder
from mltelemetry.workload.scenarios import SCENARIOS, scenario


def inside(inner, outer):
    return outer.start_ns <= inner.start_ns <= inner.end_ns <= outer.end_ns


def test_campaign_records_nested_runs_and_actions(tmp_path):
    path = tmp_path / "s.db"
    counts = run_campaign(path, CampaignPlan("c1", ["baseline", "idle", "cpu"], runs=2, seconds=0.3, pause_s=0),
                          show_progress=False)
    assert counts == {"ok": 6, "failed": 0, "aborted": 0, "skipped": 0, "lost": 0, "interrupted": 0}
    with Store(path) as store:
        events = store.events("c1")
    (campaign,) = [e for e in events if e.action == "campaign"]
    runs = [e for e in events if e.action == "run"]
    assert [(e.scenario, e.run) for e in runs] == [("baseline", 1), ("baseline", 2), ("idle", 1), ("idle", 2),
                                                   ("cpu", 1), ("cpu", 2)]
    actions = {(e.scenario, e.run): [] for e in runs}
    for e in events:
        if e.action not in ("campaign", "run"):
            actions[(e.scenario, e.run)].append(e.action)
    assert actions[("baseline", 1)] == ["baseline"]
    assert actions[("idle", 2)] == ["idle"]
    assert actions[("cpu", 1)] == ["prepare_data", "compute", "cleanup"]
    for e in events:
        assert e.status == "ok" and e.end_ns > e.start_ns
        if e.action != "campaign":
            assert inside(e, campaign)
            run = next(r for r in runs if (r.scenario, r.run) == (e.scenario, e.run))
            assert inside(e, run)
    compute = next(e for e in events if e.action == "compute")
    assert compute.duration_s == pytest.approx(0.3, abs=0.25) and compute.fields["hash_rounds"] > 0
    assert next(e for e in events if e.action == "prepare_data").fields["bytes"] == 16 * 2**20


def test_orders():
    plan = CampaignPlan("c", ["a", "b"], runs=2, seconds=1, order="interleaved")
    assert plan.schedule() == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    shuffled = CampaignPlan("c", ["a", "b", "c"], runs=3, seconds=1, order="random", seed=7).schedule()
    assert sorted(shuffled) == CampaignPlan("c", ["a", "b", "c"], runs=3, seconds=1).schedule()
    assert shuffled == CampaignPlan("c", ["a", "b", "c"], runs=3, seconds=1, order="random", seed=7).schedule()
    assert shuffled != sorted(shuffled)


def test_failed_run_is_recorded_and_the_campaign_goes_on(tmp_path):
    @scenario("explodes")
    def explodes(ctx):
        with ctx.action("prepare_data"):
            raise MemoryError("out of memory")

    try:
        counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["explodes", "baseline"], 1, 0.1, pause_s=0),
                              show_progress=False)
    finally:
        del SCENARIOS["explodes"]
    assert counts == {"ok": 1, "failed": 1, "aborted": 0, "skipped": 0, "lost": 0, "interrupted": 0}
    with Store(tmp_path / "s.db") as store:
        status = {(e.scenario, e.action): (e.status, e.fields.get("error")) for e in store.events("c")}
    assert status[("explodes", "run")] == ("failed", "MemoryError: out of memory")
    assert status[("explodes", "prepare_data")] == ("failed", "MemoryError: out of memory")
    assert status[("baseline", "run")] == ("ok", None)



def test_a_scenario_adds_its_settings_to_its_run_event_also_when_it_fails(tmp_path):
    @scenario("set")
    def settings(ctx):
        ctx.run_fields.update(precision="bf16", batch_size=ctx.run * 16)
        if ctx.run == 2:
            raise RuntimeError("diverged")

    try:
        run_campaign(tmp_path / "s.db", CampaignPlan("c", ["set"], 2, 0.1, pause_s=0), show_progress=False)
    finally:
        del SCENARIOS["set"]
    with Store(tmp_path / "s.db") as store:
        runs = [e for e in store.events("c") if e.action == "run"]
    assert [(e.run, e.status, e.fields["precision"], e.fields["batch_size"]) for e in runs] == [
        (1, "ok", "bf16", 16), (2, "failed", "bf16", 32)]

def test_duplicate_campaign_and_unknown_scenario_are_refused(tmp_path):
    path = tmp_path / "s.db"
    run_campaign(path, CampaignPlan("c", ["baseline"], 1, 0.1), show_progress=False)
    with pytest.raises(MltelemetryError, match="already exists"):
        run_campaign(path, CampaignPlan("c", ["baseline"], 1, 0.1), show_progress=False)
    result = CliRunner().invoke(app, ["campaign", "run", "--campaign", "d", "--store", str(path),
                                      "--scenario", "nope"])
    assert result.exit_code == 2  # a usage error
    assert result.output.strip() == ("error: unknown scenario 'nope'; known: baseline, cnn, cpu, idle, lm-infer, "
                                     "lm-train, transfer")
    with Store(path) as store:
        assert store.campaigns() == ["c"]  # nothing recorded was lost or added


def test_same_window_twice_is_an_error(tmp_path):
    with Store(tmp_path / "s.db") as store:
        recorder = EventRecorder(store, "c")
        with recorder.window("train", scenario="s", run=1):
            with pytest.raises(ValueError, match="already open"):
                with recorder.window("train", scenario="s", run=1):
                    pass
            with recorder.window("epoch", scenario="s", run=1, epoch=1) as fields:
                fields["loss"] = 0.5
        events = store.events("c")
    assert [(e.action, e.epoch, e.fields) for e in events] == [("train", None, {}), ("epoch", 1, {"loss": 0.5})]


# --- campaign control: fail-fast, Ctrl-C, resume -------------------------------------------------
import logging  # noqa: E402
import time  # noqa: E402

from mltelemetry import schema  # noqa: E402
from mltelemetry.exporters.gpu.fake_nvml import FakeClock, FakeGpu, FakeNvml, Step  # noqa: E402
from mltelemetry.schema import Sample  # noqa: E402
from mltelemetry.workload.campaign import CooldownSettings  # noqa: E402
from mltelemetry.workload.compare import CodeCarbonCompare  # noqa: E402
from mltelemetry.workload.cooldown import Cooldown, NvmlTemperature, StoreTemperature  # noqa: E402
from mltelemetry.workload.instrument import Annotator  # noqa: E402
from mltelemetry.workload.progress import estimate_remaining_s  # noqa: E402
from mltelemetry.workload.scenarios import RunContext  # noqa: E402


def run_events(path, campaign="c"):
    with Store(path) as store:
        return store.events(campaign)


def test_fail_fast_stops_at_the_first_failed_run(tmp_path, monkeypatch):
    def explodes(ctx):
        raise ValueError("bad data")

    monkeypatch.setitem(SCENARIOS, "explodes", explodes)
    counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["baseline", "explodes", "baseline"], 1, 0.05,
                                                          pause_s=0), show_progress=False, fail_fast=True)
    assert counts == {"ok": 1, "failed": 1, "aborted": 0, "skipped": 0, "lost": 0, "interrupted": 0}
    events = run_events(tmp_path / "s.db")
    assert [(e.scenario, e.action, e.status) for e in events if e.action in ("campaign", "run")] == [
        ("*", "campaign", "failed"), ("baseline", "run", "ok"), ("explodes", "run", "failed")]
    campaign = events[0]
    assert campaign.fields["error"].startswith("CampaignStopped: --fail-fast: explodes run 1 failed (ValueError: bad")


def test_ctrl_c_records_aborted_then_resume_runs_only_what_is_missing(tmp_path, monkeypatch):
    calls = []

    def flaky(ctx):
        calls.append(ctx.run)
        with ctx.action("train"):
            if ctx.run == 2 and len(calls) == 2:
                raise KeyboardInterrupt  # the user's Ctrl-C, in the middle of run 2

    monkeypatch.setitem(SCENARIOS, "flaky", flaky)
    path = tmp_path / "s.db"
    plan = CampaignPlan("c", ["flaky"], runs=3, seconds=1, pause_s=0)
    assert run_campaign(path, plan, show_progress=False) == {"ok": 1, "failed": 0, "aborted": 1, "skipped": 0,
                                                             "lost": 0, "interrupted": 1}
    assert calls == [1, 2]  # run 3 never started
    events = run_events(path)
    assert [(e.action, e.run, e.status) for e in events] == [
        ("campaign", 0, "aborted"), ("run", 1, "ok"), ("train", 1, "ok"), ("run", 2, "aborted"),
        ("train", 2, "aborted")]

    with pytest.raises(MltelemetryError, match="already exists"):
        run_campaign(path, plan, show_progress=False)
    assert run_campaign(path, plan, show_progress=False, resume=True) == {"ok": 2, "failed": 0, "aborted": 0,
                                                                        "skipped": 1, "lost": 0, "interrupted": 0}
    assert calls == [1, 2, 2, 3]
    events = run_events(path)
    runs = [(e.run, e.status) for e in events if e.action == "run"]
    assert runs == [(1, "ok"), (2, "aborted"), (2, "ok"), (3, "ok")]  # nothing recorded was lost
    resumed = [e for e in events if e.action == "campaign"][1]
    assert resumed.fields["resumed"] is True and resumed.fields["skipped_runs"] == 1
    assert run_campaign(path, plan, show_progress=False, resume=True)["skipped"] == 3


def test_cli_exit_codes_for_failed_aborted_and_resume(tmp_path, monkeypatch):
    def explodes(ctx):
        raise MemoryError("out of memory")

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(SCENARIOS, "explodes", explodes)
    monkeypatch.setitem(SCENARIOS, "interrupted", interrupted)
    store = str(tmp_path / "s.db")
    common = ["campaign", "run", "--store", store, "--seconds", "0.05", "--pause", "0", "--runs", "1", "--no-progress"]
    result = CliRunner().invoke(app, [*common, "--campaign", "a", "--scenario", "explodes", "--scenario", "baseline"])
    assert result.exit_code == 1 and "campaign a: 1 runs ok, 1 failed" in result.output
    result = CliRunner().invoke(app, [*common, "--campaign", "b", "--scenario", "interrupted"])
    assert result.exit_code == 130 and "interrupted" in result.output
    result = CliRunner().invoke(app, [*common, "--campaign", "nope", "--resume"])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: no campaign 'nope' in {store} to resume"
    result = CliRunner().invoke(app, [*common, "--campaign", "a", "--resume", "--scenario", "explodes",
                                      "--scenario", "baseline"])
    assert result.exit_code == 1 and "0 runs ok, 1 failed, 1 already done" in result.output


def test_random_order_is_recorded_and_reproducible(tmp_path):
    plan = CampaignPlan("c", ["baseline", "idle"], runs=3, seconds=0.05, order="random", seed=11, pause_s=0,
                        idle_framework="none")
    run_campaign(tmp_path / "s.db", plan, show_progress=False)
    runs = [e for e in run_events(tmp_path / "s.db") if e.action == "run"]
    assert [(e.scenario, e.run) for e in runs] == plan.schedule()
    assert [e.fields["position"] for e in runs] == list(range(6))
    assert plan.schedule() != CampaignPlan("c", ["baseline", "idle"], 3, 1).schedule()


# --- idle ------------------------------------------------------------------------------------------
def test_idle_imports_its_framework_before_the_window(tmp_path):
    with Store(tmp_path / "s.db") as store:
        recorder = EventRecorder(store, "c")
        SCENARIOS["idle"](RunContext(recorder, "idle", 1, 0.3, idle_import="json"))
        with pytest.raises(RuntimeError, match="exited before sleeping .import no_such_module"):
            SCENARIOS["idle"](RunContext(recorder, "idle", 2, 0.3, idle_import="no_such_module"))
        (idle,) = store.events("c")
    assert idle.fields["framework"] == "json" and idle.fields["import_s"] >= 0
    assert idle.duration_s == pytest.approx(0.3, abs=0.2)
    assert CampaignPlan("c", ["idle", "cnn"], 1, 1).idle_import() == "tensorflow"
    assert CampaignPlan("c", ["idle"], 1, 1).idle_import() is None


# --- cooldown ------------------------------------------------------------------------------------
class ScriptedTemperatures:
    """Readings in order (the last one repeats); ``mean`` answers from a dict of window means."""

    def __init__(self, readings, means=None):
        self.readings = list(readings)
        self.means = list(means or [])
        self.reads = 0

    def describe(self):
        return "scripted"

    def read(self):
        self.reads += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]

    def mean(self, start_ns, end_ns):
        return self.means.pop(0) if self.means else None


def test_cooldown_waits_for_the_baseline_temperature(tmp_path):
    clock = FakeClock()
    # campaign start 40 °C; before baseline run 1: 40; after it, its mean is 41 (new reference);
    # before the cpu run: 50, 47, 44, 42.9 -> within 41 + 2 after three polls of 5 s
    source = ScriptedTemperatures([40, 40, 50, 47, 44, 42.9], means=[41.0])
    settings = CooldownSettings(margin_c=2, limit_s=60, poll_s=5, source=source, clock=clock, sleep=clock.advance)
    run_campaign(tmp_path / "s.db", CampaignPlan("c", ["baseline", "cpu"], 1, 0.05, pause_s=0), show_progress=False,
                 cooldown=settings)
    events = run_events(tmp_path / "s.db")
    assert [(e.scenario, e.action) for e in events if e.action in ("cooldown", "run")] == [
        ("baseline", "cooldown"), ("baseline", "run"), ("cpu", "cooldown"), ("cpu", "run")]
    first, second = (e for e in events if e.action == "cooldown")
    assert first.fields == {"source": "scripted", "margin_c": 2, "limit_s": 60, "start_temperature_c": 40,
                            "reference_c": 40, "reference_from": "campaign start", "end_temperature_c": 40,
                            "waited_s": 0, "reached": True}
    assert second.fields["reference_c"] == 41.0 and second.fields["reference_from"] == "baseline run 1"
    assert (second.fields["start_temperature_c"], second.fields["end_temperature_c"]) == (50, 42.9)
    assert second.fields["waited_s"] == 15 and second.fields["reached"] is True
    cpu_run = next(e for e in events if e.action == "run" and e.scenario == "cpu")
    assert second.end_ns <= cpu_run.start_ns  # the wait is not part of the run


def test_cooldown_gives_up_at_the_limit():
    clock = FakeClock()
    cooler = Cooldown(ScriptedTemperatures([70]), margin_c=2, limit_s=12, poll_s=5, clock=clock, sleep=clock.advance)
    cooler.set_reference(40, "given")
    fields = {}
    assert cooler.wait(fields) is False
    assert fields["waited_s"] == 12 and fields["reached"] is False and fields["end_temperature_c"] == 70
    assert fields["note"] == "still above 42 °C after the 12 s limit"


def test_cooldown_reads_nvml_directly():
    clock = FakeClock(0)
    fake = FakeNvml([FakeGpu(steps=[Step(0, 300, temperature_c=75), Step(40, 80, temperature_c=44)]),
                     FakeGpu(steps=[Step(0, 60, temperature_c=38)], uuid="GPU-1")], clock=clock)
    source = NvmlTemperature(fake)
    assert source.describe() == "NVML (2 GPUs)" and source.read() == 75  # the hottest GPU
    cooler = Cooldown(source, margin_c=5, limit_s=600, poll_s=10, clock=clock, sleep=clock.advance)
    cooler.set_reference(40, "given")
    fields = {}
    assert cooler.wait(fields) is True
    assert fields["waited_s"] == 40 and fields["end_temperature_c"] == 44


def test_cooldown_reads_the_gpu_exporters_series(tmp_path):
    now = time.time_ns()
    labels = {"host": "sut", "uuid": "u", "name": "H100"}
    samples = [Sample(schema.GPU_TEMPERATURE, {**labels, "gpu": "0"}, 70, now - 60 * 10**9),
               Sample(schema.GPU_TEMPERATURE, {**labels, "gpu": "0"}, 52, now - 2 * 10**9),
               Sample(schema.GPU_TEMPERATURE, {**labels, "gpu": "1"}, 61, now - 3 * 10**9),
               Sample(schema.GPU_TEMPERATURE, {**labels, "gpu": "1"}, 58, now - 1 * 10**9)]
    with Store(tmp_path / "s.db") as store:
        store.write(samples)
        source = StoreTemperature(store, host="sut", clock=lambda: now)
        assert source.read() == 58  # the latest reading of each GPU, the hottest of them
        assert source.mean(now - 70 * 10**9, now) == pytest.approx((70 + 52) / 2)  # hottest GPU's mean
        assert StoreTemperature(store, host="sut", clock=lambda: now + 30 * 10**9).read() is None  # stale
        assert StoreTemperature(store, host="other", clock=lambda: now).read() is None


def test_no_gpu_skips_the_cooldown_once_and_says_so(tmp_path, caplog):
    settings = CooldownSettings(nvml_module=FakeNvml([], library_missing=True))
    with caplog.at_level(logging.WARNING):
        counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["baseline"], 2, 0.05, pause_s=0),
                              show_progress=False, cooldown=settings)
    assert counts["ok"] == 2
    events = run_events(tmp_path / "s.db")
    assert not [e for e in events if e.action == "cooldown"]
    reason = events[0].fields["cooldown_skipped"]
    assert "no recent mltelemetry_gpu_temperature_celsius samples in the store and no NVML" in reason
    assert "no NVIDIA driver" in reason
    assert len([r for r in caplog.records if "cooldown skipped" in r.getMessage()]) == 1


# --- CodeCarbon beside the meter -----------------------------------------------------------------
def test_codecarbon_estimate_is_stored_on_the_run_event(tmp_path):
    run_campaign(tmp_path / "s.db", CampaignPlan("c", ["cpu"], 1, 1.5, pause_s=0), show_progress=False,
                 compare=CodeCarbonCompare(measure_power_secs=1))
    events = run_events(tmp_path / "s.db")
    run = next(e for e in events if e.action == "run")
    joules = run.fields[schema.FIELD_CODECARBON_ENERGY]
    assert joules > 0 and joules == pytest.approx(run.fields[schema.FIELD_CODECARBON_ENERGY_KWH] * 3.6e6)
    assert joules == pytest.approx(run.fields["codecarbon_cpu_energy_joules"] + run.fields[
        "codecarbon_gpu_energy_joules"] + run.fields["codecarbon_ram_energy_joules"], rel=1e-6)
    assert run.fields["codecarbon_duration_s"] == pytest.approx(run.duration_s, abs=1.0)
    assert events[0].fields["compare"] == "codecarbon"


def test_codecarbon_failing_to_start_does_not_fail_the_run(tmp_path):
    def broken(**options):
        raise RuntimeError("no RAPL, no luck")

    counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["baseline"], 1, 0.05, pause_s=0),
                          show_progress=False, compare=CodeCarbonCompare(tracker_factory=broken))
    assert counts["ok"] == 1
    run = next(e for e in run_events(tmp_path / "s.db") if e.action == "run")
    assert run.status == "ok" and run.fields["codecarbon_error"] == "CodeCarbon did not start"


# --- the annotation API without a framework ------------------------------------------------------
def test_annotator_windows_nest_and_the_decorator_records_returned_fields(tmp_path):
    with Annotator(tmp_path / "s.db", campaign="mine", scenario="resnet", run=3) as ann:
        @ann.recorded("epoch", numbered=True)
        def train_one_epoch(loss):
            return {"loss": loss, "accuracy": 0.5, "note": "fine", "weights": [1, 2], "bad": float("nan")}

        @ann.window("export", format="json")
        def export():
            pass

        with ann.window("run"):
            with ann.window("train") as fields:
                assert train_one_epoch(0.9)["loss"] == 0.9
                train_one_epoch(0.7)
                with ann.epoch(3) as epoch_fields:
                    epoch_fields["loss"] = 0.6
                fields["epochs"] = 3
            export()
            with pytest.raises(OSError):
                with ann.window("cleanup"):
                    raise OSError("disk full")
    events = run_events(tmp_path / "s.db", "mine")
    assert [(e.action, e.epoch, e.status) for e in events] == [
        ("run", None, "ok"), ("train", None, "ok"), ("epoch", 1, "ok"), ("epoch", 2, "ok"), ("epoch", 3, "ok"),
        ("export", None, "ok"), ("cleanup", None, "failed")]
    run, train, e1, e2, e3, export_event, cleanup = events
    assert {e.scenario for e in events} == {"resnet"} and {e.run for e in events} == {3}
    assert e1.fields == {"loss": 0.9, "accuracy": 0.5, "note": "fine"} and e2.fields["loss"] == 0.7
    assert train.fields == {"epochs": 3} and export_event.fields == {"format": "json"}
    assert cleanup.fields["error"] == "OSError: disk full"
    for epoch in (e1, e2, e3):
        assert inside(epoch, train) and inside(train, run)
    assert e1.end_ns <= e2.start_ns <= e2.end_ns <= e3.start_ns


# --- progress ----------------------------------------------------------------------------------------
def test_remaining_time_estimate():
    assert estimate_remaining_s({}, ["a", "b"]) is None
    durations = {"a": [10.0, 20.0], "b": [100.0]}
    # upcoming a (15) + c (unknown: mean of all finished, 130/3) + pauses, plus what the current b has left
    assert estimate_remaining_s(durations, ["a", "c"], "b", 30.0, pause_s=1.0) == pytest.approx(
        15 + 130 / 3 + 2 + 70)
    assert estimate_remaining_s(durations, [], "a", 99.0) == 0.0


def test_progress_line_follows_runs_and_epochs():
    clock = FakeClock()
    from mltelemetry.workload.progress import CampaignProgress
    progress = CampaignProgress([("cnn", 1), ("cnn", 2), ("baseline", 1)], runs=2, enabled=False, clock=clock)
    task = progress._progress.tasks[0]
    progress.start_run(0)
    progress.update(epoch=3, max_epochs=100, val_accuracy=0.734)
    assert (task.description, task.fields["epoch"], task.fields["accuracy"]) == ("cnn run 1/2", "epoch 3/100",
                                                                                 "val acc 73.4%")
    assert task.fields["remaining"] == "?"
    clock.advance(60)
    progress.end_run()
    progress.start_run(1)
    clock.advance(20)
    progress.update(epoch=1, max_epochs=100)
    # cnn run 2 has 40 s left of the 60 s cnn runs take; baseline unknown: the mean of all finished (60 s)
    assert task.fields["remaining"] == "0:01:40" and task.completed == 1
    assert task.fields["accuracy"] == ""


# --- data ---------------------------------------------------------------------------------------------
def test_synthetic_data_and_the_seeded_split(tmp_path):
    from mltelemetry.workload.data import CLASSES, locate, make_synthetic, prepare
    source = make_synthetic(tmp_path / "archive" / "flower_photos", per_class=10, size=24, seed=1)
    assert sorted(p.name for p in source.iterdir()) == list(CLASSES)
    assert locate(tmp_path / "archive") == ("folders", source)  # found below the given directory
    a = prepare(tmp_path / "archive", tmp_path / "a", validation_split=0.3, seed=5)
    b = prepare(tmp_path / "archive", tmp_path / "b", validation_split=0.3, seed=5)
    c = prepare(tmp_path / "archive", tmp_path / "c", validation_split=0.3, seed=6)
    assert a.classes == CLASSES and (len(a.train), len(a.validation)) == (35, 15)
    names = [sorted(p.name for p, _ in d.validation) for d in (a, b, c)]
    assert names[0] == names[1] != names[2]
    assert {p.parent.name for p, label in a.train if label == 2} == {"roses"}
    assert sorted(p.name for p in (a.validation_dir / "roses").iterdir()) == sorted(
        p.name for p, label in a.validation if label == 2)
    limited = prepare(source, tmp_path / "d", validation_split=0.5, per_class_limit=4)
    assert (len(limited.train), len(limited.validation)) == (10, 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MltelemetryError, match="holds neither class folders"):
        prepare(tmp_path / "empty", tmp_path / "e")
    with pytest.raises(MltelemetryError, match="no data directory"):
        prepare(tmp_path / "missing", tmp_path / "f")


def test_synthetic_classes_differ_in_colour():
    import numpy as np

    from mltelemetry.workload.data import CLASSES, synthetic_image
    rng = np.random.default_rng(0)
    centres = {c: np.mean([synthetic_image(c, 32, rng)[12:20, 12:20].reshape(-1, 3).mean(0) for _ in range(20)], 0)
               for c in CLASSES}
    distances = [np.linalg.norm(centres[a] - centres[b]) for i, a in enumerate(CLASSES) for b in CLASSES[i + 1:]]
    assert min(distances) > 30  # mean RGB of the image centre tells the classes apart


# --- a real Ctrl-C (SIGINT) and SIGTERM to the command ------------------------------------------------------
def sigint_as_in_a_terminal():
    """Popen's preexec_fn: Ctrl-C's default action, as in a terminal's foreground job (a test run as a shell's
    background job would otherwise start the command with SIGINT ignored, and Python keeps it so)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_signal_marks_the_run_aborted_and_the_command_exits_cleanly(tmp_path, signum):
    import signal
    import subprocess
    import sys
    store = tmp_path / "s.db"
    process = subprocess.Popen([sys.executable, "-m", "mltelemetry", "campaign", "run", "--campaign", "c",
                                "--store", str(store), "--scenario", "baseline", "--runs", "3", "--seconds", "1.5",
                                "--pause", "0", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=sigint_as_in_a_terminal)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until run 1 is recorded: run 2 is in progress
        time.sleep(0.2)
        if store.exists() and any(e.action == "run" and e.status == "ok" for e in run_events(store)):
            break
    time.sleep(0.3)
    process.send_signal(getattr(signal, signum))
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "interrupted: the run in progress is recorded aborted" in out and "Traceback" not in err
    events = run_events(store)
    assert [(e.action, e.run, e.status) for e in events if e.action in ("campaign", "run")] == [
        ("campaign", 0, "aborted"), ("run", 1, "ok"), ("run", 2, "aborted")]


def test_demo_config_is_small_and_offline(tmp_path):
    from mltelemetry.workload.config import demo_config, installed_backends
    assert installed_backends() == ["keras", "torch"]  # `make test` installs both extras
    config = demo_config(tmp_path)
    assert (config.backend, config.image_size, config.max_epochs, config.hub_handle) == ("keras", 64, 5, None)
    assert config.export_dir == tmp_path and config.data == "synthetic"
    assert demo_config(backend="torch").backend == "torch"
    assert demo_config(backend="jax") is None


def test_annotator_tells_its_publishers_and_a_wrong_data_dir_is_one_error(tmp_path):
    class Collect(Publisher):
        capabilities = frozenset({Capability.EVENTS})

        def __init__(self):
            self.seen = []

        def publish_events(self, change):
            event = change.event
            self.seen.append(("closed", event.action, event.status) if change.closed else
                             ("opened", event.action, event.epoch))

    publisher = Collect()
    with Annotator(tmp_path / "s.db", campaign="mine", publishers=[publisher]) as ann:
        with ann.window("train"), ann.epoch(1):
            pass
    assert publisher.seen == [("opened", "train", None), ("opened", "epoch", 1), ("closed", "epoch", "ok"),
                              ("closed", "train", "ok")]
    from mltelemetry.workload.config import MLConfig
    with pytest.raises(MltelemetryError, match="no data directory at"):
        run_campaign(tmp_path / "s.db", CampaignPlan("x", ["cnn"], 1, 1, config=MLConfig(data=str(tmp_path / "no"))),
                     show_progress=False)
    with Store(tmp_path / "s.db") as store:
        assert store.campaigns() == ["mine"]
