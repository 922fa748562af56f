"""The campaign runner in one process: --vary, power limits refused, a store that refuses writes, unwritable folders,
the recorder's refusals (child processes, claims and interrupts: tests/integration/test_campaign.py)."""

import logging

import pytest
from test_campaign import framework_probe
from typer.testing import CliRunner

from fakes.fake_nvml import FakeGpu, FakeNvml, Step
from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, run_campaign
from mltelemetry.workload.events import EventRecorder
from mltelemetry.workload.scenarios import SCENARIOS
from mltelemetry.workload.variants import parse_vary, variants


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


def test_gpu_power_limit_refused_without_permission_or_out_of_range(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "probe", framework_probe)
    plan = CampaignPlan("c", ["probe"], runs=1, seconds=1, vary={"gpu_power_limit": [250.0]})
    user = FakeNvml([FakeGpu(steps=[Step(0, 60)])], root=False)
    with pytest.raises(MltelemetryError, match="refuses to change the GPU power limit without root permission"):
        run_campaign(tmp_path / "s.db", plan, show_progress=False, nvml_module=user)
    plan.vary = {"gpu_power_limit": [250.0, 100.0]}
    with pytest.raises(MltelemetryError, match=r"100 W is outside GPU 0 .*'s range 200-700 W"):
        run_campaign(tmp_path / "s.db", plan, show_progress=False, nvml_module=FakeNvml([FakeGpu([Step(0, 60)])]))
    no_driver = FakeNvml([], library_missing=True)
    with pytest.raises(MltelemetryError, match="gpu_power_limit sets limits through NVML: NVML library .* not found"):
        run_campaign(tmp_path / "s.db", plan, show_progress=False, nvml_module=no_driver)
    with Store(tmp_path / "s.db") as store:
        assert store.campaigns() == []  # refused before anything was recorded


# --- a store that refuses writes stops the campaign (issue 20.6) --------------------------------------------------
def fills_the_store(ctx):
    db = ctx.recorder.record.store._db  # a real SQLite "database or disk is full": no more pages may be added
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    with ctx.action("prepare_data", padding="x" * 100_000):
        pass


def test_a_full_store_stops_the_campaign_with_its_cause(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setitem(SCENARIOS, "fills", fills_the_store)
    monkeypatch.setitem(SCENARIOS, "after", lambda ctx: ran.append(ctx.run))
    with pytest.raises(MltelemetryError) as stopped:
        run_campaign(tmp_path / "s.db", CampaignPlan("c", ["fills", "after"], 1, 1, pause_s=0), show_progress=False)
    assert str(stopped.value) == f"cannot write to the store {tmp_path / 's.db'}: the disk is full"
    assert ran == []  # no run went on that could not be recorded
    result = CliRunner().invoke(app, ["campaign", "run", "--campaign", "d", "--store", str(tmp_path / "t.db"),
                                      "--scenario", "fills", "--scenario", "after", "--runs", "1", "--no-progress"])
    assert result.exit_code == 1 and ran == []
    assert result.output.strip() == f"error: cannot write to the store {tmp_path / 't.db'}: the disk is full"
    with Store(tmp_path / "t.db") as store:  # the small claims could still be finished, with the cause
        events = store.events("d")
    assert [(e.action, e.status) for e in events] == [("campaign", "failed"), ("run", "failed")]
    assert {e.fields["error"] for e in events} == {
        f"StoreWriteError: cannot write to the store {tmp_path / 't.db'}: the disk is full"}


# --- every folder the runs write to is checked first (issue 20.7) -------------------------------------------------

def test_unwritable_workdir_and_export_dir_are_refused_before_the_first_run(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    store = str(tmp_path / "s.db")
    common = ["campaign", "run", "--store", store, "--runs", "1", "--seconds", "0.05", "--no-progress"]
    result = CliRunner().invoke(app, [*common, "--campaign", "w", "--scenario", "cpu",
                                      "--workdir", str(tmp_path / "a-file" / "work")])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: --workdir {tmp_path / 'a-file' / 'work'} is not writable: Not a directory"
    result = CliRunner().invoke(app, [*common, "--campaign", "e", "--scenario", "cnn", "--data", "synthetic",
                                      "--export-dir", str(tmp_path / "a-file" / "exports")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: --export-dir {tmp_path / 'a-file' / 'exports'} is not writable: "
                                     "Not a directory")
    with Store(store) as s:
        assert s.campaigns() == []  # refused before anything was recorded or trained


# --- the recorder: repeated epochs, out-of-order closing (issue 20, minor) -----------------------------------------

def test_the_recorder_refuses_a_repeated_epoch_and_logs_out_of_order_closing(tmp_path, caplog):
    with Store(tmp_path / "s.db") as store:
        recorder = EventRecorder(store, "c")
        with recorder.window("train", scenario="s", run=1):
            with recorder.window("epoch", scenario="s", run=1, epoch=1):
                pass
            with pytest.raises(ValueError, match="epoch 1 of 's' run 1 was already recorded in this train window"):
                with recorder.window("epoch", scenario="s", run=1, epoch=1):
                    pass
        with recorder.window("train", scenario="s", run=1):  # a second fit may count from 1 again
            with recorder.window("epoch", scenario="s", run=1, epoch=1):
                pass
        outer = recorder.window("train", scenario="s", run=2)
        inner = recorder.window("epoch", scenario="s", run=2, epoch=1)
        outer.__enter__()
        inner.__enter__()
        with caplog.at_level(logging.WARNING):
            outer.__exit__(None, None, None)
        inner.__exit__(None, None, None)
        assert [(e.action, e.run, e.epoch) for e in store.events("c")] == [
            ("train", 1, None), ("epoch", 1, 1), ("train", 1, None), ("epoch", 1, 1), ("train", 2, None),
            ("epoch", 2, 1)]
    assert "window 'train' of 's' run 2 closed before the windows opened inside it" in caplog.text

