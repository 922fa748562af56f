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
    assert counts == {"ok": 6, "failed": 0}
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
    assert counts == {"ok": 1, "failed": 1}
    with Store(tmp_path / "s.db") as store:
        status = {(e.scenario, e.action): (e.status, e.fields.get("error")) for e in store.events("c")}
    assert status[("explodes", "run")] == ("failed", "MemoryError: out of memory")
    assert status[("explodes", "prepare_data")] == ("failed", "MemoryError: out of memory")
    assert status[("baseline", "run")] == ("ok", None)


def test_duplicate_campaign_and_unknown_scenario_are_refused(tmp_path):
    path = tmp_path / "s.db"
    run_campaign(path, CampaignPlan("c", ["baseline"], 1, 0.1), show_progress=False)
    with pytest.raises(MltelemetryError, match="already exists"):
        run_campaign(path, CampaignPlan("c", ["baseline"], 1, 0.1), show_progress=False)
    result = CliRunner().invoke(app, ["campaign", "run", "--campaign", "d", "--store", str(path),
                                      "--scenario", "nope"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown scenario 'nope'; known: baseline, cpu, idle"
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
