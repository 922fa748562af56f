"""The paper's ML scenarios: ``cnn`` and ``transfer``, on the Keras or the PyTorch backend.

One run, each action a window (the paper's actions, §3)::

    run
    ├── prepare_data   images grouped by label into train/ and validation/ folders (split with a seed), then
    │                  each decoded and resized once into memory, where training reads them from
    ├── create_model   parameter counts, weights (hub, file or random, with the reason), framework, device,
    │                  precision and batch size (also on the run event)
    ├── train          up to max_epochs, or until validation accuracy reaches the target
    │   └── epoch 1..n loss, accuracy, val_loss, val_accuracy
    ├── export         model architecture and history (JSON)
    └── cleanup        prepared folders and downloaded models deleted: every run starts from the same state
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.workload.config import FRAMEWORK_MODULES, MLConfig
from mltelemetry.workload.data import prepare
from mltelemetry.workload.instrument import EPOCH_FIELDS
from mltelemetry.workload.scenarios import RunContext, run_dir, scenario

log = logging.getLogger(__name__)

ML_SCENARIOS = ("cnn", "transfer")
__all__ = ["FRAMEWORK_MODULES", "ML_SCENARIOS", "run_ml", "load_backend", "check_backend"]


def load_backend(cfg: MLConfig) -> Any:
    """The backend object for ``cfg.backend``, importing its framework now."""
    if cfg.backend == "keras":
        from mltelemetry.workload.keras_backend import KerasBackend
        return KerasBackend()
    from mltelemetry.workload.torch_backend import TorchBackend
    return TorchBackend(cfg.device, processes=cfg.processes)


def framework_available(backend: str) -> bool:
    return importlib.util.find_spec(FRAMEWORK_MODULES[backend]) is not None


def run_ml(ctx: RunContext, kind: str) -> None:
    """One run of ``kind`` (``cnn`` or ``transfer``) as the paper's actions, each a window."""
    cfg = ctx.config
    target = cfg.target_for(kind)
    backend = load_backend(cfg)
    annotator = ctx.annotator
    settings = {schema.FIELD_PRECISION: cfg.precision, schema.FIELD_BATCH_SIZE: cfg.batch_size,
                schema.FIELD_PROCESSES: cfg.processes}
    ctx.run_fields.update(settings)
    workdir = run_dir(f"{kind}-run{ctx.run}", cfg.workdir)
    to_delete = [workdir]
    try:
        with ctx.action("prepare_data", validation_split=cfg.validation_split, seed=cfg.seed) as fields:
            data = prepare(cfg.source(), workdir / "images", validation_split=cfg.validation_split, seed=cfg.seed,
                           per_class_limit=cfg.per_class_limit)
            data.decode(cfg.image_size, backend.decode_image)
            fields["held_on"] = backend.hold(data)
            fields.update(source=data.source, classes=len(data.classes), train_images=len(data.train),
                          validation_images=len(data.validation), path=str(data.root))
        seed = cfg.seed + ctx.run
        with ctx.action("create_model", model=kind, backend=backend.name, seed=seed, image_size=cfg.image_size,
                        **settings, **backend.describe()) as fields:
            model, info = backend.create_model(kind, cfg, len(data.classes), seed, data)
            to_delete.extend(info.pop("downloaded"))
            fields.update(info)
        ctx.progress(epoch=0, max_epochs=cfg.max_epochs)

        def on_epoch(epoch: int, logs: dict[str, Any]) -> None:
            ctx.progress(epoch=epoch, max_epochs=cfg.max_epochs, val_accuracy=logs.get("val_accuracy"))

        with ctx.action("train", max_epochs=cfg.max_epochs, target_accuracy=target, batch_size=cfg.batch_size,
                        learning_rate=cfg.learning_rate, optimizer="adam",
                        **{schema.FIELD_PROCESSES: cfg.processes}) as fields:
            history = backend.train(model, data, cfg, target=target, annotator=annotator, on_epoch=on_epoch)
            last = history[-1] if history else {}
            val_accuracy = last.get(schema.FIELD_VAL_ACCURACY)
            fields.update(epochs=len(history), reached_target=val_accuracy is not None and val_accuracy >= target,
                          **{k: v for k, v in last.items() if k in EPOCH_FIELDS})
            if val_accuracy is not None:
                fields[schema.FIELD_CORRECT] = round(val_accuracy * len(data.validation))
        with ctx.action("export") as fields:
            if cfg.export_dir is None:
                fields["skipped"] = "no export directory"
            else:
                folder = Path(cfg.export_dir) / ctx.recorder.campaign / f"{ctx.scenario}-run{ctx.run:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                history_path = folder / "history.json"
                history_path.write_text(json.dumps(history, indent=1))
                paths = [*backend.export(model, folder), history_path]
                fields.update(path=str(folder), files=len(paths), bytes=sum(p.stat().st_size for p in paths))
    finally:
        with ctx.action("cleanup") as fields:
            backend.close()
            for path in to_delete:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            fields.update(deleted=[str(p) for p in to_delete], left=[str(p) for p in to_delete if p.exists()])


@scenario("cnn", uses_framework=True)
def cnn(ctx: RunContext) -> None:
    """The paper's CNN (three Conv2D/MaxPooling2D, Dense 512, Dense 5), trained to 80 % validation accuracy."""
    run_ml(ctx, "cnn")


@scenario("transfer", uses_framework=True)
def transfer(ctx: RunContext) -> None:
    """MobileNetV2 feature vector (frozen) + Dense 5, trained to 85 % validation accuracy."""
    run_ml(ctx, "transfer")


def check_backend(cfg: MLConfig) -> None:
    """Fail early, with the install command, when the backend's framework is missing."""
    if not framework_available(cfg.backend):
        raise MltelemetryError(f"the {cfg.backend} backend needs {FRAMEWORK_MODULES[cfg.backend]}: "
                               f"pip install 'mltelemetry[{cfg.backend}]'")
