"""The Keras backend (TensorFlow): the paper's models, its input pipeline and the event callback.

Training reads the images decoded once in ``prepare_data`` through ``tf.data`` (cached, prefetched) and
augments them inside the training graph, on the GPU where there is one.

TensorFlow and Keras are imported only when this module is (the ``keras`` extra). Keras 3 is
used unless ``TF_USE_LEGACY_KERAS=1``; a tensorflow-hub layer needs tf-keras (Keras 2), so the
transfer model built from a hub handle is a ``tf_keras`` model, and the fallback
(``keras.applications.MobileNetV2(weights=None)``) a model of the default Keras.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from mltelemetry.errors import MltelemetryError  # noqa: E402
from mltelemetry.workload.config import MLConfig  # noqa: E402
from mltelemetry.workload.data import PreparedData  # noqa: E402
from mltelemetry.workload.instrument import Annotator, OpenWindows, numeric_fields  # noqa: E402

log = logging.getLogger(__name__)

try:
    import tensorflow as tf
except ImportError as e:  # pragma: no cover - the message is what users see
    raise MltelemetryError("the keras backend needs TensorFlow: pip install 'mltelemetry[keras]'") from e


def keras_module(legacy: bool | None = None) -> Any:
    """Keras 3 (``keras``), or tf-keras (``tf_keras``) when ``legacy`` or ``TF_USE_LEGACY_KERAS=1``."""
    if legacy is None:
        legacy = os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true")
    try:
        if legacy:
            import tf_keras
            return tf_keras
        import keras
        return keras
    except ImportError as e:
        raise MltelemetryError(f"{e.name} is not installed: pip install 'mltelemetry[keras]'") from e


# --- instrumentation ----------------------------------------------------------------------------
@functools.cache
def _callback_class(base: type) -> type:
    class EventCallback(base):  # type: ignore[valid-type, misc]
        """Records ``fit`` as a ``train`` window (optional) and every epoch as an ``epoch`` window with Keras's logs."""

        def __init__(self, annotator: Annotator, train_window: bool, on_epoch: Any) -> None:
            super().__init__()
            self.annotator = annotator
            self.train_window = train_window
            self.on_epoch = on_epoch
            self.windows = OpenWindows()
            self.history: list[dict[str, Any]] = []

        def on_train_begin(self, logs: dict | None = None) -> None:
            if self.train_window:
                self.windows.open("train", self.annotator.window("train"))

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.windows.open("epoch", self.annotator.epoch(epoch + 1))

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if "epoch" not in self.windows:
                return
            fields = self.windows.fields("epoch")
            fields.update(numeric_fields(logs or {}))
            self.windows.close("epoch")
            self.history.append({"epoch": epoch + 1, **fields})
            if self.on_epoch is not None:
                self.on_epoch(epoch + 1, fields)

        def on_train_end(self, logs: dict | None = None) -> None:
            if "train" in self.windows:
                self.windows.fields("train")["epochs"] = len(self.history)
                self.windows.close("train")

        def __enter__(self) -> EventCallback:
            return self

        def __exit__(self, kind: type | None, error: BaseException | None, tb: object) -> None:
            self.windows.close_all(error)

    return EventCallback


def event_callback(annotator: Annotator, *, train_window: bool = True, keras_module: Any = None,
                   on_epoch: Any = None) -> Any:
    """See :meth:`Annotator.keras_callback`."""
    k = keras_module if keras_module is not None else globals()["keras_module"]()
    return _callback_class(k.callbacks.Callback)(annotator, train_window, on_epoch)


@functools.cache
def _stop_class(base: type) -> type:
    class StopAtAccuracy(base):  # type: ignore[valid-type, misc]
        """Stops ``fit`` after the first epoch whose validation accuracy reaches ``target`` (0–1)."""

        def __init__(self, target: float) -> None:
            super().__init__()
            self.target = target
            self.reached_at: int | None = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if (logs or {}).get("val_accuracy", -1.0) >= self.target:
                self.reached_at = epoch + 1
                self.model.stop_training = True

    return StopAtAccuracy


# --- models -------------------------------------------------------------------------------------
def build_cnn(k: Any, image_size: int, n_classes: int = 5) -> Any:
    """Three Conv2D (16, 32, 64 filters, 3×3, same padding, ReLU), each followed by MaxPooling2D, then
    Flatten, Dense 512 ReLU and Dense ``n_classes`` (logits): 25,716,773 parameters at 224×224×3."""
    layers = k.layers
    return k.Sequential([
        k.Input((image_size, image_size, 3)),
        layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dense(n_classes),
    ], name="cnn")


def _cache_entries() -> tuple[Path, set[str]]:
    from tensorflow_hub import resolver
    cache = Path(resolver.tfhub_cache_dir(use_temp=True))
    return cache, set(os.listdir(cache)) if cache.is_dir() else set()


def build_transfer(cfg: MLConfig, image_size: int, n_classes: int = 5) -> tuple[Any, Any, dict[str, Any]]:
    """MobileNetV2 feature vector (frozen) + Dense ``n_classes``: 2,264,389 parameters, 6,405 trainable.

    From ``cfg.hub_handle`` through ``hub.KerasLayer`` (a tf-keras model) where it loads; otherwise
    ``keras.applications.MobileNetV2(weights=None)``, with the reason logged and returned.
    Returns (model, its Keras module, fields); ``fields["downloaded"]`` lists what the hub
    download added to the cache (deleted at cleanup unless ``cfg.keep_downloads``).
    """
    shape = (image_size, image_size, 3)
    reason, leftovers = "no hub handle given", []
    if cfg.hub_handle:
        try:
            import tensorflow_hub as hub
            import tf_keras
        except ImportError as e:
            reason = f"{e.name} is not installed (hub layers need tensorflow-hub and tf-keras)"
        else:
            cache, before = _cache_entries()
            try:
                layer = hub.KerasLayer(cfg.hub_handle, trainable=False, input_shape=shape, name="feature_vector")
                model = tf_keras.Sequential([layer, tf_keras.layers.Dense(n_classes)], name="transfer")
                model.build((None, *shape))
                return model, tf_keras, {"weights": "hub", "hub_handle": cfg.hub_handle,
                                         "downloaded": _new_entries(cache, before, cfg)}
            except Exception as e:  # any failure to load the handle means the fallback
                leftovers = _new_entries(cache, before, cfg)  # a partial download is cleaned up too
                reason = f"hub handle {cfg.hub_handle!r} could not be loaded: {type(e).__name__}: {e}"[:400]
    log.warning("transfer: %s; building keras.applications.MobileNetV2(weights=None) instead", reason)
    k = keras_module()
    base = k.applications.MobileNetV2(input_shape=shape, include_top=False, pooling="avg", weights=None)
    base.trainable = False
    model = k.Sequential([k.Input(shape), base, k.layers.Dense(n_classes)], name="transfer")
    return model, k, {"weights": "random", "fallback_reason": reason, "downloaded": leftovers}


def _new_entries(cache: Path, before: set[str], cfg: MLConfig) -> list[Path]:
    if cfg.keep_downloads or not cache.is_dir():
        return []
    return [cache / name for name in sorted(set(os.listdir(cache)) - before)]


# Keras's dtype policy for each precision (tf32 is fp32 with TF32 matrix units allowed).
DTYPE_POLICIES = {"fp32": "float32", "tf32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@contextlib.contextmanager
def _dtype_policy(precision: str) -> Iterator[None]:
    """Keras's (and tf-keras's, for hub models) global dtype policy for ``precision`` while models are built."""
    modules = [keras_module(legacy=False)]
    with contextlib.suppress(MltelemetryError):
        modules.append(keras_module(legacy=True))
    before = [m.mixed_precision.global_policy().name for m in modules]
    for m in modules:
        m.mixed_precision.set_global_policy(DTYPE_POLICIES[precision])
    try:
        yield
    finally:
        for m, name in zip(modules, before):
            m.mixed_precision.set_global_policy(name)


def count_params(model: Any) -> tuple[int, int]:
    """(total, trainable) parameters as Keras counts them (BatchNorm moving statistics are non-trainable)."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return int(model.count_params()), trainable


class KerasBackend:
    """Runs the ML scenarios with Keras on TensorFlow."""

    name = "keras"

    def describe(self) -> dict[str, Any]:
        gpus = tf.config.list_physical_devices("GPU")
        return {"framework": "tensorflow", "framework_version": tf.__version__,
                "keras_version": keras_module().__version__, "device": "GPU:0" if gpus else "CPU"}

    def hold(self, data: Any) -> str:
        """The decoded set stays in host memory; ``tf.data`` caches it and moves each batch (see :meth:`train`)."""
        return "host"

    def close(self) -> None:
        """Nothing to release: Keras trains in this process alone."""

    def decode_image(self, path: Path, size: int) -> np.ndarray:
        """As ``image_dataset_from_directory`` reads an image (TensorFlow's decoder, bilinear resize), rounded to
        uint8 so the prepared set takes a quarter of the memory."""
        image = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
        resized = tf.image.resize(image, (size, size), method="bilinear")
        return np.clip(np.rint(resized.numpy()), 0, 255).astype(np.uint8)

    def create_model(self, kind: str, cfg: MLConfig, n_classes: int, seed: int,
                     data: Any = None) -> tuple[Any, dict[str, Any]]:
        """The model of ``kind`` (``data`` is for the torch backend's other processes), built under
        ``cfg.precision``'s dtype policy (Keras's mixed precision for bf16 and fp16, whose ``compile`` then
        scales the loss for fp16); TF32 is allowed only for ``tf32``."""
        tf.config.experimental.enable_tensor_float_32_execution(cfg.precision == "tf32")
        keras_module().utils.set_random_seed(seed)
        with _dtype_policy(cfg.precision):
            if kind == "cnn":
                k = keras_module()
                model, fields = build_cnn(k, cfg.image_size, n_classes), {"weights": "random", "downloaded": []}
            else:
                model, k, fields = build_transfer(cfg, cfg.image_size, n_classes)
                if k.__name__ == "tf_keras":
                    k.utils.set_random_seed(seed)
        total, trainable = count_params(model)
        fields.update(params_total=total, params_trainable=trainable, keras=k.__name__)
        model._mltelemetry_keras = k
        return model, fields

    def training_model(self, k: Any, model: Any, cfg: MLConfig) -> Any:
        """``model`` behind the augmentation, in one graph, so that on a GPU the augmentation runs there: uint8
        images in, rescaled, then (in training only: Keras's random layers pass images through at inference)
        randomly rotated, shifted, flipped and zoomed. The augmentation computes in float32 whatever the
        precision; the wrapper takes the precision's dtype policy, so ``compile`` scales the loss for fp16.
        The weights, their counts and the exported architecture stay those of ``model``."""
        aug, layers = cfg.augmentation, k.layers
        steps = [layers.Rescaling(aug.rescale, dtype="float32")]
        if aug.enabled:
            steps += [layers.RandomRotation(aug.rotation_deg / 360, fill_mode="nearest", seed=cfg.seed,
                                            dtype="float32"),
                      layers.RandomTranslation(aug.height_shift, aug.width_shift, fill_mode="nearest", seed=cfg.seed,
                                               dtype="float32"),
                      *([layers.RandomFlip("horizontal", seed=cfg.seed, dtype="float32")]
                        if aug.horizontal_flip else []),
                      layers.RandomZoom((-aug.zoom, aug.zoom), fill_mode="nearest", seed=cfg.seed, dtype="float32")]
        with _dtype_policy(cfg.precision):
            return k.Sequential([k.Input((cfg.image_size, cfg.image_size, 3), dtype="uint8"), *steps, model],
                                name=f"{model.name}_training")

    def datasets(self, data: PreparedData, cfg: MLConfig) -> tuple[Any, Any]:
        """tf.data pipelines of uint8 batches over the images decoded in prepare_data: cached, reshuffled every
        epoch (training), batched and prefetched, so the host has the next batches ready while the device
        trains."""
        autotune = tf.data.AUTOTUNE
        train_set, validation_set = data.decoded["train"], data.decoded["validation"]
        train = (tf.data.Dataset.from_tensor_slices((train_set.images, train_set.labels)).cache()
                 .shuffle(len(train_set.labels), seed=cfg.seed, reshuffle_each_iteration=True)
                 .batch(cfg.batch_size).prefetch(autotune))
        validation = (tf.data.Dataset.from_tensor_slices((validation_set.images, validation_set.labels))
                      .cache().batch(cfg.batch_size).prefetch(autotune))
        return train, validation

    def train(self, model: Any, data: PreparedData, cfg: MLConfig, *, target: float, annotator: Annotator,
              on_epoch: Any = None) -> list[dict[str, Any]]:
        k = model._mltelemetry_keras
        train, validation = self.datasets(data, cfg)
        training = self.training_model(k, model, cfg)
        training.compile(optimizer=k.optimizers.Adam(cfg.learning_rate),
                         loss=k.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        callback = annotator.keras_callback(train_window=False, keras_module=k, on_epoch=on_epoch)
        with callback:
            training.fit(train, validation_data=validation, epochs=cfg.max_epochs, verbose=0, shuffle=False,
                         callbacks=[callback, _stop_class(k.callbacks.Callback)(target)])
        return callback.history

    def export(self, model: Any, folder: Path) -> list[Path]:
        path = folder / "model.json"
        path.write_text(json.dumps(json.loads(model.to_json()), indent=1))
        return [path]
