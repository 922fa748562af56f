"""The Keras backend: the paper's models and counts, a local hub SavedModel, TFDS data, the Keras callback."""

import functools
import http.server
import importlib
import json
import os
import threading

import numpy as np
import pytest

from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, run_campaign
from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.data import CLASSES, TFDS_LABELS, prepare, synthetic_image, write_png
from mltelemetry.workload.instrument import Annotator

try:
    tf = importlib.import_module("tensorflow")
    keras = importlib.import_module("keras")
    tf_keras = importlib.import_module("tf_keras")
    kb = importlib.import_module("mltelemetry.workload.keras_backend")
except ImportError as e:  # `make test` installs the keras extra; a missing framework is a failure, not a skip
    pytest.fail(f"{e.name} is not installed: pip install -e '.[keras]' (make test does)", pytrace=False)

ML_ACTIONS = ["run", "prepare_data", "create_model", "train", "epoch", "epoch", "export", "cleanup"]


def small(tmp_path, **overrides):
    (tmp_path / "work").mkdir(exist_ok=True)
    settings = dict(backend="keras", image_size=32, batch_size=16, max_epochs=2, target_accuracy=1.0,
                    synthetic_per_class=12, synthetic_size=32, export_dir=tmp_path / "exports",
                    workdir=tmp_path / "work", hub_handle=None)
    return MLConfig(**{**settings, **overrides})


def inside(inner, outer):
    return outer.start_ns <= inner.start_ns <= inner.end_ns <= outer.end_ns


def events_of(path, campaign="c"):
    with Store(path) as store:
        return store.events(campaign)


@pytest.fixture(scope="module")
def hub_module(tmp_path_factory):
    """A MobileNetV2 feature-vector SavedModel in TF Hub's reusable format (any image size), made locally."""
    folder = tmp_path_factory.mktemp("hub") / "mobilenet_v2_feature_vector"
    model = tf_keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg",
                                              input_shape=(None, None, 3))
    tf.saved_model.save(model, str(folder))
    return folder



def in_process(monkeypatch):
    """Run framework scenarios inside the test's process (a campaign runs each in a child of its own), so what
    the test patches is what the run uses."""
    from mltelemetry.workload import campaign as campaign_module
    monkeypatch.setattr(campaign_module, "run_in_child", lambda function, ctx: function(ctx))

def test_parameter_counts_at_224_match_the_paper(caplog):
    assert kb.count_params(kb.build_cnn(keras, 224)) == (25_716_773, 25_716_773)
    assert kb.count_params(kb.build_cnn(tf_keras, 224)) == (25_716_773, 25_716_773)
    model, k, fields = kb.build_transfer(MLConfig(hub_handle=None), 224)
    assert kb.count_params(model) == (2_264_389, 6_405)
    assert k is keras and fields["weights"] == "random" and fields["fallback_reason"] == "no hub handle given"
    assert "building keras.applications.MobileNetV2(weights=None) instead" in caplog.text


def test_transfer_from_a_local_hub_savedmodel(hub_module, tmp_path):
    model, k, fields = kb.build_transfer(MLConfig(hub_handle=str(hub_module)), 224)
    assert k is tf_keras and fields["weights"] == "hub" and fields["downloaded"] == []
    assert type(model.layers[0]).__name__ == "KerasLayer"
    assert kb.count_params(model) == (2_264_389, 6_405)
    missing = tmp_path / "no-such-module"
    model, k, fields = kb.build_transfer(MLConfig(hub_handle=str(missing)), 224)
    assert k is keras and kb.count_params(model) == (2_264_389, 6_405)
    assert fields["fallback_reason"].startswith(f"hub handle '{missing}' could not be loaded: ")

    # one training run on the hub layer, annotated like any other
    config = small(tmp_path, hub_handle=str(hub_module), max_epochs=1, synthetic_per_class=5)
    assert run_campaign(tmp_path / "s.db", CampaignPlan("c", ["transfer"], 1, 1, pause_s=0, config=config),
                        show_progress=False)["ok"] == 1
    events = events_of(tmp_path / "s.db")
    create = next(e for e in events if e.action == "create_model")
    assert create.fields["keras"] == "tf_keras" and create.fields["weights"] == "hub"
    assert (create.fields["params_total"], create.fields["params_trainable"]) == (2_264_389, 6_405)
    (epoch,) = [e for e in events if e.action == "epoch"]
    assert set(epoch.fields) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_a_downloaded_hub_module_lands_in_tfhub_cache_dir_and_cleanup_deletes_it(hub_module, tmp_path, monkeypatch):
    import tarfile
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "mobilenet_v2.tar.gz", "w:gz") as archive:
        archive.add(hub_module, arcname=".")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cache = tmp_path / "tfhub-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    url = f"http://127.0.0.1:{server.server_port}/mobilenet_v2.tar.gz"
    try:
        for campaign, keep in (("c", False), ("kept", True)):
            config = small(tmp_path, hub_handle=url, max_epochs=1, keep_downloads=keep, synthetic_per_class=5)
            run_campaign(tmp_path / "s.db", CampaignPlan(campaign, ["transfer"], 1, 1, pause_s=0, config=config),
                         show_progress=False)
            events = events_of(tmp_path / "s.db", campaign)
            assert next(e for e in events if e.action == "create_model").fields["weights"] == "hub"
            cleanup = next(e for e in events if e.action == "cleanup")
            if not keep:
                assert [p for p in cleanup.fields["deleted"] if p.startswith(str(cache))]  # module and descriptor
                assert os.listdir(cache) == []
            else:
                assert not [p for p in cleanup.fields["deleted"] if p.startswith(str(cache))]
                assert len(os.listdir(cache)) == 2
    finally:
        server.shutdown()


def test_cnn_run_is_annotated_to_the_epoch_and_cleans_up(tmp_path):
    config = small(tmp_path)
    assert run_campaign(tmp_path / "s.db", CampaignPlan("c", ["cnn"], 1, 1, pause_s=0, config=config),
                        show_progress=False)["ok"] == 1
    events = [e for e in events_of(tmp_path / "s.db") if e.action != "campaign"]
    assert [e.action for e in events] == ML_ACTIONS
    run, prepare_event, create, train, epoch1, epoch2, export, cleanup = events
    assert all(e.status == "ok" and inside(e, run) for e in events)
    assert inside(epoch1, train) and inside(epoch2, train) and epoch1.end_ns <= epoch2.start_ns
    assert prepare_event.end_ns <= create.start_ns and train.end_ns <= export.start_ns <= cleanup.start_ns
    assert (epoch1.epoch, epoch2.epoch) == (1, 2)
    for epoch in (epoch1, epoch2):
        assert set(epoch.fields) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert create.fields["params_total"] == 550_949 and create.fields["keras"] == "keras"
    assert create.fields["framework"] == "tensorflow" and create.fields["device"] == "CPU"
    assert train.fields["epochs"] == 2 and train.fields["val_accuracy"] == epoch2.fields["val_accuracy"]
    assert train.fields["correct_classifications"] == round(epoch2.fields["val_accuracy"] * 10)
    folder = tmp_path / "exports" / "c" / "cnn-run001"
    assert [h["epoch"] for h in json.loads((folder / "history.json").read_text())] == [1, 2]
    assert json.loads((folder / "model.json").read_text())["class_name"] == "Sequential"
    assert cleanup.fields["left"] == [] and not list((tmp_path / "work").iterdir())


def test_training_stops_when_validation_accuracy_reaches_the_target(tmp_path):
    config = small(tmp_path, target_accuracy=0.8, max_epochs=12, synthetic_per_class=40)
    run_campaign(tmp_path / "s.db", CampaignPlan("c", ["cnn"], 1, 1, pause_s=0, config=config), show_progress=False)
    events = events_of(tmp_path / "s.db")
    accuracies = [e.fields["val_accuracy"] for e in events if e.action == "epoch"]
    assert len(accuracies) < 12, accuracies  # the synthetic flowers are learnt in a few epochs
    assert accuracies[-1] >= 0.8 and all(a < 0.8 for a in accuracies[:-1])
    train = next(e for e in events if e.action == "train")
    assert train.fields["reached_target"] is True and train.fields["target_accuracy"] == 0.8


def test_tfds_data_dir(tmp_path):
    version = tmp_path / "tfds" / "tf_flowers" / "3.0.1"
    version.mkdir(parents=True)
    (version / "label.labels.txt").write_text("\n".join(TFDS_LABELS) + "\n")
    rng = np.random.default_rng(0)
    counts = {"dandelion": 3, "daisy": 4, "tulips": 5, "sunflowers": 6, "roses": 7}
    for shard in range(2):
        path = version / f"tf_flowers-train.tfrecord-0000{shard}-of-00002"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for label, name in enumerate(TFDS_LABELS):
                for _ in range(counts[name] if shard == 0 else 0):
                    encoded = tf.io.encode_jpeg(synthetic_image(name, 32, rng)).numpy()
                    feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                               "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
                    writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    data = prepare(tmp_path / "tfds", tmp_path / "prepared", validation_split=0.25, seed=1)
    assert data.classes == CLASSES and data.source == f"tfds:{version}"
    by_class = {name: len(list((data.train_dir / name).iterdir())) + len(list((data.validation_dir / name).iterdir()))
                for name in CLASSES}
    assert by_class == counts
    assert len(list((data.validation_dir / "roses").iterdir())) == 2  # round(7 × 0.25)
    image = tf.io.decode_jpeg((data.train_dir / "roses" / sorted(os.listdir(data.train_dir / "roses"))[0])
                              .read_bytes())
    assert tuple(image.shape) == (32, 32, 3)


def test_keras_callback_api(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(32, 4)), np.arange(32) % 2
    with Annotator(tmp_path / "s.db", campaign="mine", scenario="tiny", run=1) as ann:
        for k in (keras, tf_keras):
            model = k.Sequential([k.Input((4,)), k.layers.Dense(2)])
            model.compile("adam", k.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
            seen: list[int] = []
            callback = ann.keras_callback(keras_module=k, on_epoch=lambda e, f, seen=seen: seen.append(e))
            model.fit(x, y, validation_split=0.25, epochs=3, verbose=0, callbacks=[callback])
            assert seen == [1, 2, 3] and [h["epoch"] for h in callback.history] == [1, 2, 3]

        class Boom(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    raise RuntimeError("out of memory")

        ann.run = 2
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        with pytest.raises(RuntimeError), ann.keras_callback() as callback:
            model.fit(x, y, epochs=3, verbose=0, callbacks=[Boom(), callback])
    events = events_of(tmp_path / "s.db", "mine")
    first = [e for e in events if e.run == 1]
    assert [(e.action, e.epoch) for e in first] == [("train", None), ("epoch", 1), ("epoch", 2), ("epoch", 3)] * 2
    for train in (first[0], first[4]):
        assert train.fields == {"epochs": 3}
    for epoch in first[1:4] + first[5:]:
        assert set(epoch.fields) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert inside(first[1], first[0]) and inside(first[7], first[4])
    failed = [(e.action, e.epoch, e.status, e.fields.get("error")) for e in events if e.run == 2]
    assert failed == [("train", None, "failed", "RuntimeError: out of memory"), ("epoch", 1, "ok", None),
                      ("epoch", 2, "failed", "RuntimeError: out of memory")]


def test_png_writer_round_trips_through_tensorflow(tmp_path):
    image = synthetic_image("tulips", 20, np.random.default_rng(3))
    write_png(tmp_path / "x.png", image)
    assert np.array_equal(tf.io.decode_png((tmp_path / "x.png").read_bytes()).numpy(), image)


# --- the in-memory pipeline, precision and batch size (issue 10) ---------------------------------
def test_images_are_decoded_once_per_run_and_precision_and_batch_size_are_recorded(tmp_path, monkeypatch):
    in_process(monkeypatch)  # the patch must reach the run: no child process
    calls = []
    original = kb.KerasBackend.decode_image

    def counting(self, path, size):
        calls.append(path.name)
        return original(self, path, size)

    monkeypatch.setattr(kb.KerasBackend, "decode_image", counting)
    config = small(tmp_path, max_epochs=3, batch_size=8, precision="bf16")
    assert run_campaign(tmp_path / "s.db", CampaignPlan("c", ["cnn"], 1, 1, pause_s=0, config=config),
                        show_progress=False)["ok"] == 1
    events = events_of(tmp_path / "s.db")
    assert len([e for e in events if e.action == "epoch"]) == 3
    assert len(calls) == 60 and len(set(calls)) == 60  # 12 images × 5 classes, each once over 3 epochs
    for action in ("run", "create_model"):
        event = next(e for e in events if e.action == action)
        assert (event.fields["precision"], event.fields["batch_size"]) == ("bf16", 8)


def test_precision_sets_the_dtype_policy_of_the_model_only():
    backend = kb.KerasBackend()
    model, _ = backend.create_model("cnn", MLConfig(precision="bf16", image_size=32), 5, 0)
    assert model.layers[0].compute_dtype == "bfloat16" and model.layers[0].variable_dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the build
    model, _ = backend.create_model("cnn", MLConfig(precision="fp16", image_size=32), 5, 0)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # fp16: the loss is scaled
    assert tf.config.experimental.tensor_float_32_execution_enabled() is False
    model, _ = backend.create_model("cnn", MLConfig(precision="tf32", image_size=32), 5, 0)
    assert model.layers[0].compute_dtype == "float32" and tf.config.experimental.tensor_float_32_execution_enabled()
    backend.create_model("cnn", MLConfig(precision="fp32", image_size=32), 5, 0)
    assert tf.config.experimental.tensor_float_32_execution_enabled() is False


def test_decoded_image_is_the_png_as_tensorflow_reads_it(tmp_path):
    rgb = synthetic_image("roses", 32, np.random.default_rng(1))
    write_png(tmp_path / "a.png", rgb)
    assert np.array_equal(kb.KerasBackend().decode_image(tmp_path / "a.png", 32), rgb)  # same size: no resampling
    half = kb.KerasBackend().decode_image(tmp_path / "a.png", 16)
    # bilinear to half size (align_corners=False, half-pixel centres) averages each 2×2 block
    blocks = rgb.reshape(16, 2, 16, 2, 3).astype(float).mean(axis=(1, 3))
    assert half.dtype == np.uint8 and np.abs(half.astype(float) - blocks).max() <= 0.5


def test_augmentation_is_in_the_training_graph_with_the_papers_parameters_in_training_only():
    backend, cfg = kb.KerasBackend(), MLConfig(image_size=32)
    model, _ = backend.create_model("cnn", cfg, 5, 0)
    training = backend.training_model(keras, model, cfg)
    rescale, rotation, translation, flip, zoom, inner = training.layers
    assert inner is model and kb.count_params(training) == kb.count_params(model) == (550_949, 550_949)
    assert rescale.scale == pytest.approx(1 / 255)
    assert rotation.factor == (-0.125, 0.125)  # ±45° as a fraction of a full turn: 45 / 360
    assert (translation.height_factor, translation.width_factor) == (0.15, 0.15)
    assert flip.mode == "horizontal" and zoom.height_factor == (-0.5, 0.5)
    assert {rotation.fill_mode, translation.fill_mode, zoom.fill_mode} == {"nearest"}
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    direct = np.asarray(model(x.astype("float32") / 255, training=False))
    # validation (inference): only the rescaling, as the old tf.data map did; training: augmented
    assert np.allclose(np.asarray(training(x, training=False)), direct, atol=1e-5)
    assert not np.allclose(np.asarray(training(x, training=True)), direct, atol=1e-3)
