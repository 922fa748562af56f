"""The PyTorch backend: the paper's models with Keras's parameter counts, runs annotated to the epoch."""

import importlib
import json
import math

import pytest

from mltelemetry.errors import MltelemetryError
from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, run_campaign
from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.data import Augmentation, make_synthetic
from mltelemetry.workload.instrument import Annotator

try:
    torch = importlib.import_module("torch")
    tb = importlib.import_module("mltelemetry.workload.torch_backend")
except ImportError as e:  # `make test` installs the torch extra; a missing framework is a failure, not a skip
    pytest.fail(f"{e.name} is not installed: pip install -e '.[torch]' (make test does)", pytrace=False)

ML_ACTIONS = ["run", "prepare_data", "create_model", "train", "epoch", "epoch", "export", "cleanup"]


def small(tmp_path, **overrides):
    (tmp_path / "work").mkdir(exist_ok=True)
    settings = dict(backend="torch", image_size=32, batch_size=16, max_epochs=2, target_accuracy=1.0,
                    synthetic_per_class=12, synthetic_size=32, export_dir=tmp_path / "exports",
                    workdir=tmp_path / "work", hub_handle=None)
    return MLConfig(**{**settings, **overrides})


def inside(inner, outer):
    return outer.start_ns <= inner.start_ns <= inner.end_ns <= outer.end_ns



def in_process(monkeypatch):
    """Run framework scenarios inside the test's process (a campaign runs each in a child of its own), so what
    the test patches is what the run uses."""
    from mltelemetry.workload import campaign as campaign_module
    monkeypatch.setattr(campaign_module, "run_in_child", lambda function, ctx: function(ctx))

def test_parameter_counts_at_224_match_the_paper():
    cnn = tb.build_cnn(224)
    assert tb.count_params(cnn) == (25_716_773, 25_716_773)
    transfer = tb.TransferNet()
    assert tb.count_params(transfer) == (2_264_389, 6_405)
    # Keras's count includes BatchNorm's moving mean and variance: PyTorch keeps those as buffers
    assert sum(p.numel() for p in transfer.parameters()) == 2_264_389 - 34_112
    assert transfer(torch.zeros(2, 3, 224, 224)).shape == (2, 5)
    assert cnn(torch.zeros(1, 3, 224, 224)).shape == (1, 5)


def test_mobilenet_v2_has_torchvisions_layout():
    state = tb.TransferNet().state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["features.0.0.weight"] == (32, 3, 3, 3)
    assert shapes["features.1.conv.0.0.weight"] == (32, 1, 3, 3)  # t=1: depthwise first
    assert shapes["features.2.conv.0.0.weight"] == (96, 16, 1, 1)  # t=6: expansion first
    assert shapes["features.17.conv.2.weight"] == (320, 960, 1, 1)
    assert shapes["features.18.0.weight"] == (1280, 320, 1, 1)
    assert len([k for k in state if k.startswith("features.")]) == 312  # as torchvision's mobilenet_v2


def test_transfer_loads_a_torchvision_state_dict(tmp_path):
    source = tb.TransferNet()
    state = {k: v for k, v in source.state_dict().items() if k.startswith("features.")}
    state["classifier.1.weight"] = torch.zeros(1000, 1280)  # torchvision's ImageNet head is ignored
    torch.save(state, tmp_path / "mobilenet_v2.pth")
    model = tb.TransferNet()
    tb.load_features(model, tmp_path / "mobilenet_v2.pth")
    assert torch.equal(model.features[18][0].weight, source.features[18][0].weight)
    torch.save({"features.0.0.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(MltelemetryError, match="not a torchvision mobilenet_v2 state dict"):
        tb.load_features(tb.TransferNet(), tmp_path / "partial.pth")


def test_augmentation():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 16, 16)
    none = Augmentation(rotation_deg=0, width_shift=0, height_shift=0, zoom=0, horizontal_flip=False)
    assert torch.allclose(tb.augment(x, none, generator), x, atol=1e-5)
    flip_only = Augmentation(rotation_deg=0, width_shift=0, height_shift=0, zoom=0, horizontal_flip=True)
    flipped = tb.augment(x, flip_only, generator)
    mirrored = [torch.allclose(f, i.flip(-1), atol=1e-5) for f, i in zip(flipped, x)]
    same = [torch.allclose(f, i, atol=1e-5) for f, i in zip(flipped, x)]
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored) and any(same)
    full = tb.augment(x, Augmentation(), generator)
    assert full.shape == x.shape and 0 <= float(full.min()) and float(full.max()) <= 1
    assert not torch.allclose(full, x, atol=1e-3)


def test_cnn_run_is_annotated_to_the_epoch_and_cleans_up(tmp_path):
    config = small(tmp_path)
    counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["cnn"], 1, 1, pause_s=0, config=config),
                          show_progress=False)
    assert counts["ok"] == 1
    with Store(tmp_path / "s.db") as store:
        events = [e for e in store.events("c") if e.action != "campaign"]
    assert [e.action for e in events] == ML_ACTIONS
    run, prepare, create, train, epoch1, epoch2, export, cleanup = events
    assert all(e.status == "ok" and inside(e, run) for e in events)
    assert inside(epoch1, train) and inside(epoch2, train) and epoch1.end_ns <= epoch2.start_ns
    assert prepare.end_ns <= create.start_ns <= create.end_ns <= train.start_ns
    assert train.end_ns <= export.start_ns <= export.end_ns <= cleanup.start_ns
    assert (epoch1.epoch, epoch2.epoch) == (1, 2)
    for epoch in (epoch1, epoch2):
        assert set(epoch.fields) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert 0 <= epoch.fields["accuracy"] <= 1 and epoch.fields["loss"] > 0
    assert prepare.fields["train_images"] == 5 * 10 and prepare.fields["validation_images"] == 5 * 2
    assert create.fields["params_total"] == create.fields["params_trainable"] == 550_949  # 32×32 input
    assert create.fields["framework"] == "torch" and create.fields["device"] == "cpu"
    assert train.fields["epochs"] == 2 and train.fields["reached_target"] is False
    assert train.fields["val_accuracy"] == epoch2.fields["val_accuracy"]
    folder = tmp_path / "exports" / "c" / "cnn-run001"
    history = json.loads((folder / "history.json").read_text())
    assert [h["val_loss"] for h in history] == [epoch1.fields["val_loss"], epoch2.fields["val_loss"]]
    assert json.loads((folder / "model.json").read_text())["params_total"] == 550_949
    assert export.fields["path"] == str(folder) and export.fields["files"] == 2
    # cleanup: the prepared folders are gone, and the synthetic source made for the campaign too
    assert cleanup.fields["left"] == [] and not list((tmp_path / "work").iterdir())


def test_training_stops_at_the_target(tmp_path):
    config = small(tmp_path, target_accuracy=0.0, max_epochs=5)
    run_campaign(tmp_path / "s.db", CampaignPlan("c", ["cnn"], 1, 1, pause_s=0, config=config), show_progress=False)
    with Store(tmp_path / "s.db") as store:
        events = store.events("c")
    assert [e.epoch for e in events if e.action == "epoch"] == [1]
    train = next(e for e in events if e.action == "train")
    assert train.fields["reached_target"] is True and train.fields["epochs"] == 1


def test_transfer_run_and_a_failing_run_that_does_not_stop_the_campaign(tmp_path):
    bad = make_synthetic(tmp_path / "bad", per_class=4, size=32)
    (bad / "roses" / "roses_0000.png").write_bytes(b"not an image")
    config = small(tmp_path, max_epochs=1)
    plan = CampaignPlan("c", ["transfer"], 1, 1, pause_s=0, config=config)
    run_campaign(tmp_path / "s.db", plan, show_progress=False)
    plan = CampaignPlan("bad", ["cnn", "transfer"], 1, 1, pause_s=0, config=small(tmp_path, data=str(bad)))
    assert run_campaign(tmp_path / "s.db", plan, show_progress=False)["failed"] == 2
    with Store(tmp_path / "s.db") as store:
        good, failed = store.events("c"), store.events("bad")
    create = next(e for e in good if e.action == "create_model")
    assert (create.fields["params_total"], create.fields["params_trainable"]) == (2_264_389, 6_405)
    assert create.fields["fallback_reason"] == "no torchvision MobileNetV2 weights file given"
    assert [e.action for e in good if e.action not in ("campaign", "epoch")] == [a for a in ML_ACTIONS
                                                                               if a != "epoch"]
    # the corrupt image fails prepare_data, where every image is decoded; both runs are recorded failed, each
    # cleaned up, and no model is built nor trained on a partial set
    runs = [e for e in failed if e.action == "run"]
    assert [(e.scenario, e.status) for e in runs] == [("cnn", "failed"), ("transfer", "failed")]
    assert all("UnidentifiedImageError" in e.fields["error"] for e in runs)
    assert [(e.scenario, e.status) for e in failed if e.action == "prepare_data"] == [("cnn", "failed"),
                                                                                      ("transfer", "failed")]
    assert not [e for e in failed if e.action in ("create_model", "train", "epoch")]
    assert [e.fields["left"] for e in failed if e.action == "cleanup"] == [[], []]
    assert not list((tmp_path / "work").iterdir())


def test_context_manager_and_decorator_in_a_torch_loop(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(model.parameters())
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    with Annotator(tmp_path / "s.db", campaign="mine", scenario="linear", run=1) as ann:
        @ann.recorded("epoch", numbered=True)
        def one_epoch():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            return {"loss": loss.detach(), "accuracy": (model(x).argmax(1) == y).float().mean()}

        with ann.window("train", optimizer="adam") as fields:
            losses = [float(one_epoch()["loss"]) for _ in range(3)]
            fields["epochs"] = 3
    with Store(tmp_path / "s.db") as store:
        events = store.events("mine")
    assert [(e.action, e.epoch) for e in events] == [("train", None), ("epoch", 1), ("epoch", 2), ("epoch", 3)]
    assert [e.fields["loss"] for e in events[1:]] == pytest.approx(losses)  # tensors stored as numbers
    assert all(0 <= e.fields["accuracy"] <= 1 and inside(e, events[0]) for e in events[1:])


def test_campaign_command_with_the_ml_options(tmp_path):
    from typer.testing import CliRunner

    from mltelemetry.cli import app
    (tmp_path / "work").mkdir()
    result = CliRunner().invoke(app, [
        "campaign", "run", "--campaign", "cli", "--store", str(tmp_path / "s.db"), "--scenario", "cnn",
        "--scenario", "idle", "--runs", "2", "--order", "interleaved", "--seconds", "0.2", "--pause", "0",
        "--backend", "torch", "--image-size", "32", "--batch-size", "8", "--max-epochs", "3",
        "--target-accuracy", "0", "--synthetic-images", "6", "--workdir", str(tmp_path / "work"),
        "--export-dir", str(tmp_path / "exports"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("campaign cli: 4 runs ok, 0 failed")
    with Store(tmp_path / "s.db") as store:
        events = store.events("cli")
    assert [(e.scenario, e.run) for e in events if e.action == "run"] == [("cnn", 1), ("idle", 1), ("cnn", 2),
                                                                          ("idle", 2)]
    create = next(e for e in events if e.action == "create_model")
    assert create.fields["image_size"] == 32 and create.fields["framework"] == "torch"
    train = next(e for e in events if e.action == "train")
    assert (train.fields["batch_size"], train.fields["max_epochs"], train.fields["target_accuracy"]) == (8, 3, 0)
    assert [e.epoch for e in events if e.action == "epoch"] == [1, 1]  # target 0: one epoch per run
    idle = next(e for e in events if e.action == "idle")
    assert idle.fields["framework"] == "torch"  # the backend's framework imported before sleeping
    assert sorted(p.name for p in (tmp_path / "exports" / "cli").iterdir()) == ["cnn-run001", "cnn-run002"]
    result = CliRunner().invoke(app, ["campaign", "run", "--campaign", "x", "--store", str(tmp_path / "s.db"),
                                      "--scenario", "cnn", "--backend", "jax"])
    assert result.exit_code == 2 and "'jax' is not one of 'keras', 'torch'" in result.output


# --- the in-memory pipeline, precision and batch size (issue 10) ---------------------------------
def augment_before_issue_10(x, aug, generator):
    """The augmentation as it was before the pipeline moved to the device (kept verbatim as the reference)."""
    import torch.nn.functional as F
    n = x.shape[0]

    def uniform(scale):
        return (torch.rand(n, generator=generator) * 2 - 1) * scale

    angle = uniform(math.radians(aug.rotation_deg))
    zoom = 1 + uniform(aug.zoom)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if aug.horizontal_flip else torch.ones(n)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, uniform(2 * aug.width_shift)], 1),
                         torch.stack([sin * flip, cos, uniform(2 * aug.height_shift)], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def test_augmentation_draws_the_same_transforms_as_before():
    x = torch.rand(16, 3, 24, 24)
    for aug in (Augmentation(), Augmentation(horizontal_flip=False, zoom=0.2)):
        now = tb.augment(x, aug, torch.Generator().manual_seed(5))
        before = augment_before_issue_10(x, aug, torch.Generator().manual_seed(5))
        assert torch.equal(now, before)
    # the parameters themselves: five uniform draws of n from the generator, in this order
    n, aug = 4, Augmentation(rotation_deg=90, width_shift=0.25, height_shift=0.1, zoom=0.5)
    g = torch.Generator().manual_seed(9)
    angle_u, zoom_u, flip_u, w_u, h_u = (torch.rand(n, generator=g) for _ in range(5))
    theta = tb.affine_params(n, aug, torch.Generator().manual_seed(9))
    angle = (angle_u * 2 - 1) * (math.pi / 2)  # ±90°
    zoom = 1 + (zoom_u * 2 - 1) * 0.5  # 0.5…1.5
    flip = torch.where(flip_u < 0.5, -1.0, 1.0)
    assert torch.allclose(theta[:, 0, 0], torch.cos(angle) * zoom * flip)
    assert torch.allclose(theta[:, 1, 0], torch.sin(angle) * zoom * flip)
    assert torch.allclose(theta[:, 0, 2], (w_u * 2 - 1) * 0.5)  # shift ±0.25 of the width = ±0.5 in [-1, 1]
    assert torch.allclose(theta[:, 1, 2], (h_u * 2 - 1) * 0.2)


def test_batches_follow_the_order_and_keep_the_last_partial_batch():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    labels = torch.arange(10) % 5
    order = torch.tensor([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    got = list(tb.batches(images, labels, 4, torch.device("cpu"), order))
    assert [b[0][:, 0, 0, 0].tolist() for b in got] == [[9, 8, 7, 6], [5, 4, 3, 2], [1, 0]]  # 10 = 4 + 4 + 2
    assert [b[1].tolist() for b in got] == [[4, 3, 2, 1], [0, 4, 3, 2], [1, 0]]
    # a rank's share names 5 of the 10 images: 2 batches, nothing after them (no empty steps)
    share = list(tb.batches(images, labels, 4, torch.device("cpu"), order[0::2]))
    assert [b[0][:, 0, 0, 0].tolist() for b in share] == [[9, 7, 5, 3], [1]]


def test_images_are_decoded_once_per_run(tmp_path, monkeypatch):
    calls = []

    def counting(path, size):
        calls.append(path.name)
        return original(path, size)

    original = tb.read_image
    monkeypatch.setattr(tb, "read_image", counting)
    in_process(monkeypatch)  # the patch must reach the run: no child process
    config = small(tmp_path, max_epochs=3)
    counts = run_campaign(tmp_path / "s.db", CampaignPlan("c", ["cnn"], 2, 1, pause_s=0, config=config),
                          show_progress=False)
    assert counts["ok"] == 2
    with Store(tmp_path / "s.db") as store:
        events = store.events("c")
    assert len([e for e in events if e.action == "epoch"]) == 2 * 3
    # 12 images × 5 classes = 60 per run, each decoded once whatever the epochs: 2 runs × 60 = 120 calls
    assert len(calls) == 120 and len(set(calls)) == 60
    prepare = [e for e in events if e.action == "prepare_data"]
    assert [e.fields["train_images"] + e.fields["validation_images"] for e in prepare] == [60, 60]


def test_precision_and_batch_size_are_recorded_and_applied(tmp_path, monkeypatch):
    dtypes = []

    def observed_cnn(image_size, n_classes=5):
        model = original(image_size, n_classes)
        model[0].register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        return model

    original = tb.build_cnn
    monkeypatch.setattr(tb, "build_cnn", observed_cnn)
    in_process(monkeypatch)  # the patch must reach the run: no child process
    for precision, expected in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        dtypes.clear()
        config = small(tmp_path, precision=precision, batch_size=8, max_epochs=1)
        assert run_campaign(tmp_path / f"{precision}.db", CampaignPlan("c", ["cnn"], 1, 1, pause_s=0, config=config),
                            show_progress=False)["ok"] == 1
        with Store(tmp_path / f"{precision}.db") as store:
            events = {e.action: e for e in store.events("c")}
        for action in ("run", "create_model"):
            assert (events[action].fields["precision"], events[action].fields["batch_size"]) == (precision, 8)
        # create_model's warm-up: 1 training + 1 evaluation pass; then 50 training images in batches of 8 = 7 steps,
        # 10 validation images = 2 batches: 11 forward passes, all in the precision's dtype
        assert len(dtypes) == 11 and set(dtypes) == {expected}
    assert torch.backends.cudnn.allow_tf32 is False  # fp32 means IEEE fp32, also for cuDNN's convolutions


def test_fp16_scales_the_loss_and_tf32_is_switched_by_the_precision():
    torch.manual_seed(0)
    model = tb.build_cnn(32)
    optimizer = torch.optim.Adam(model.parameters())
    precision = tb.Precision("fp16", torch.device("cpu"))
    assert precision.scaler.is_enabled() and precision.dtype == torch.float16
    before = model[0].weight.detach().clone()
    loss, correct = tb.train_step(model, optimizer, precision, torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(loss) and 0 <= int(correct) <= 4 and not torch.equal(before, model[0].weight)
    tb.Precision("tf32", torch.device("cpu"))
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    tb.Precision("fp32", torch.device("cpu"))
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert not tb.Precision("bf16", torch.device("cpu")).scaler.is_enabled()


def test_precision_option_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from mltelemetry.cli import app
    (tmp_path / "work").mkdir()
    common = ["campaign", "run", "--store", str(tmp_path / "s.db"), "--scenario", "cnn", "--runs", "1",
              "--pause", "0", "--backend", "torch", "--image-size", "32", "--max-epochs", "1",
              "--synthetic-images", "4", "--workdir", str(tmp_path / "work"), "--export-dir",
              str(tmp_path / "exports"), "--no-progress"]
    result = CliRunner().invoke(app, [*common, "--campaign", "bad", "--precision", "fp64"])
    assert result.exit_code == 2 and "--precision must be one of fp32, tf32, bf16, fp16" in result.output
    result = CliRunner().invoke(app, [*common, "--campaign", "ok", "--precision", "bf16", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    with Store(tmp_path / "s.db") as store:
        run = next(e for e in store.events("ok") if e.action == "run")
    assert (run.fields["precision"], run.fields["batch_size"]) == ("bf16", 4)


def test_a_terminal_ctrl_c_during_training_in_the_child_is_recorded_aborted(tmp_path):
    """The terminal sends Ctrl-C to the whole foreground process group: the campaign passes it to its run's
    child (in a group of its own, so it arrives once), which records its windows aborted and cleans up."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import wait_for
    store = tmp_path / "s.db"
    (tmp_path / "work").mkdir()
    process = subprocess.Popen([
        sys.executable, "-m", "mltelemetry", "campaign", "run", "--campaign", "c", "--store", str(store),
        "--scenario", "cnn", "--runs", "1", "--backend", "torch", "--device", "cpu", "--image-size", "32",
        "--synthetic-images", "6", "--max-epochs", "10000", "--target-accuracy", "1", "--workdir",
        str(tmp_path / "work"), "--export-dir", str(tmp_path / "exports"), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # Ctrl-C's default action as in a terminal's job, also when the tests run in a shell's background job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        def epochs():
            with Store(store) as s:
                return [e for e in s.events("c") if e.action == "epoch"]

        wait_for(lambda: store.exists() and epochs(), 120, "the child's first epoch")
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted: the run in progress is recorded aborted" in out and "Traceback" not in err
    with Store(store) as s:
        events = s.events("c")
    status = {e.action: e.status for e in events if e.action != "epoch"}
    assert status == {"campaign": "aborted", "run": "aborted", "prepare_data": "ok", "create_model": "ok",
                      "train": "aborted", "cleanup": "ok"}
    assert not list((tmp_path / "work").iterdir())  # the child cleaned up, the parent removed the synthetic data


def test_the_optimizer_is_made_in_create_model_not_in_the_train_window(tmp_path):
    """The first optimizer a process builds imports PyTorch's compiler stack (≈2 s here, ≈5 s on an H200 host):
    in the train window it was most of a short run's training time (seen on the H200: 7.4 s train, 1.9 s of
    epochs). Like Keras's compile(), it belongs to create_model."""
    backend = tb.TorchBackend("cpu")
    model, _ = backend.create_model("cnn", small(tmp_path), 5, seed=0)
    made = backend.optimizers[id(model)]
    assert made.param_groups[0]["params"][0] is next(model.parameters())
    x, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    optimizer = backend.optimizers.pop(id(model))
    tb.train_step(model, optimizer, tb.Precision("fp32", torch.device("cpu")), x, labels)
    assert optimizer.state  # the optimizer made in create_model is the one that steps the model


def _epochs(store, campaign):
    with Store(store) as s:
        events = [e for e in s.events(campaign) if e.action != "campaign"]
    return events, [e.fields for e in events if e.action == "epoch"]


def test_cnn_with_two_gloo_processes_trains_as_one_process_with_twice_the_batch(tmp_path):
    # 5 classes × 12 synthetic images, 20 % kept for validation: 50 training and 10 validation images. Two ranks
    # of batch 5 take order[0::2] and order[1::2]: their k-th batches together are order[10k:10k+10], one batch
    # of 10 in a single process, and DDP's gradient (the mean of the two ranks' mean gradients) is that batch's
    # mean gradient. Without augmentation (its draws are per rank) both runs must give the same epochs.
    no_augmentation = Augmentation(enabled=False)
    store = tmp_path / "s.db"
    for campaign, processes, batch in (("two", 2, 5), ("one", 1, 10)):
        config = small(tmp_path, batch_size=batch, processes=processes, device="cpu", augmentation=no_augmentation)
        counts = run_campaign(store, CampaignPlan(campaign, ["cnn"], 1, 1, pause_s=0, config=config),
                              show_progress=False)
        assert counts["ok"] == 1
    events, two = _epochs(store, "two")
    _, one = _epochs(store, "one")
    assert [e.action for e in events] == ML_ACTIONS  # rank 0 alone records: one window per epoch
    fields = {e.action: e.fields for e in events}
    assert (fields["prepare_data"]["train_images"], fields["prepare_data"]["validation_images"]) == (50, 10)
    assert fields["prepare_data"]["held_on"] == "cpu"  # the set is placed in prepare_data, not in the train window
    assert fields["run"]["processes"] == fields["create_model"]["processes"] == 2
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [f[name] for f in two] == pytest.approx([f[name] for f in one], rel=1e-4), name
    assert [f["correct_classifications"] for f in two] == [f["correct_classifications"] for f in one]


def test_each_rank_takes_an_equal_share_of_the_padded_order():
    order = torch.tensor([4, 0, 3, 1, 2])  # 5 images, 2 ranks: padded with its first index to 6
    shares = [tb.TorchBackend("cpu")._share(order)]
    ranks = []
    for rank in (0, 1):
        backend = tb.TorchBackend.__new__(tb.TorchBackend)
        backend.world, backend.rank = 2, rank
        ranks.append(backend._share(order).tolist())
    assert shares[0].tolist() == [4, 0, 3, 1, 2]  # one process: the whole order
    assert ranks == [[4, 3, 2], [0, 1, 4]]


def test_processes_on_keras_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from mltelemetry.cli import app
    result = CliRunner().invoke(app, ["campaign", "run", "--campaign", "k", "--store", str(tmp_path / "s.db"),
                                      "--scenario", "cnn", "--backend", "keras", "--processes", "2"])
    assert result.exit_code == 2 and "--processes needs --backend torch" in result.output
    assert not (tmp_path / "s.db").exists()  # refused before anything was recorded


def test_create_model_warms_the_model_up_without_changing_it(tmp_path):
    # the warm-up pass (kernels, cuDNN/cuBLAS set-up on a GPU) belongs to create_model; the model must come out
    # with the weights a plain build gives and no gradients, so training starts from the same state
    config = small(tmp_path, device="cpu")
    model, fields = tb.TorchBackend("cpu").create_model("cnn", config, 5, seed=7)
    torch.manual_seed(7)
    plain = tb.build_cnn(config.image_size, 5)
    assert fields["warmup_passes"] == 1
    for (name, got), (_, want) in zip(model.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(got, want), name
    assert all(p.grad is None for p in model.parameters())
