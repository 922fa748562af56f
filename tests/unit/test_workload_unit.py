"""The workload in memory: orders, windows, cooldown on the fake NVML, progress, synthetic data, the Annotator
(campaign processes and signals: tests/integration/test_workload.py)."""

import pytest
from test_workload import ScriptedTemperatures, inside, run_events

from mltelemetry.errors import MltelemetryError
from mltelemetry.publisher import Capability, Publisher
from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, run_campaign
from mltelemetry.workload.events import EventRecorder


def test_orders():
    plan = CampaignPlan("c", ["a", "b"], runs=2, seconds=1, order="interleaved")
    assert plan.schedule() == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    shuffled = CampaignPlan("c", ["a", "b", "c"], runs=3, seconds=1, order="random", seed=7).schedule()
    assert sorted(shuffled) == CampaignPlan("c", ["a", "b", "c"], runs=3, seconds=1).schedule()
    assert shuffled == CampaignPlan("c", ["a", "b", "c"], runs=3, seconds=1, order="random", seed=7).schedule()
    assert shuffled != sorted(shuffled)


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
import time  # noqa: E402

from fakes.fake_nvml import FakeClock, FakeGpu, FakeNvml, Step  # noqa: E402
from mltelemetry import schema  # noqa: E402
from mltelemetry.schema import Sample  # noqa: E402
from mltelemetry.workload.cooldown import Cooldown, NvmlTemperature, StoreTemperature  # noqa: E402
from mltelemetry.workload.instrument import Annotator  # noqa: E402
from mltelemetry.workload.progress import estimate_remaining_s  # noqa: E402


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

