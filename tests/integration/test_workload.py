import pytest
from typer.testing import CliRunner

from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
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


# --- campaign control: fail-fast, Ctrl-C, resume -------------------------------------------------
import logging  # noqa: E402
import time  # noqa: E402

from fakes.fake_nvml import FakeClock, FakeNvml  # noqa: E402
from mltelemetry import schema  # noqa: E402
from mltelemetry.workload.campaign import CooldownSettings  # noqa: E402
from mltelemetry.workload.compare import CodeCarbonCompare  # noqa: E402
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
