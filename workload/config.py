"""Settings of the ML scenarios (``cnn``, ``transfer``): the paper's values by default, all configurable."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mltelemetry.errors import MltelemetryError
from mltelemetry.workload.data import SYNTHETIC, Augmentation, make_synthetic
from mltelemetry.workload.lm_config import LMConfig

Backend = Literal["keras", "torch"]
BACKENDS: tuple[str, ...] = ("keras", "torch")
# The module each backend needs (the idle scenario imports it: "framework imported, sleeping").
FRAMEWORK_MODULES = {"keras": "tensorflow", "torch": "torch"}

# The paper's transfer-learning module (MobileNetV2 feature vector, 1280 values per image).
DEFAULT_HUB_HANDLE = "https://tfhub.dev/google/tf2-preview/mobilenet_v2/feature_vector/4"
# Numeric precision of training: plain IEEE fp32, TF32 matrix units allowed (NVIDIA Ampere and newer), or
# mixed precision with bf16 or fp16 compute (autocast on torch, a mixed dtype policy on Keras).
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
# Validation accuracy at which training stops, by scenario (the paper's 80 % and 85 %).
DEFAULT_TARGETS = {"cnn": 0.80, "transfer": 0.85}


@dataclass
class MLConfig:
    """What the ML scenarios train on and how.

    ``data`` is ``"synthetic"`` (generated once per campaign: ``synthetic_per_class`` images of
    ``synthetic_size`` pixels per class) or a local directory: the tf_flowers layout (or one below
    it) or a TFDS data dir. ``image_size`` is the side in pixels the images are resized to
    (224 as in the paper). ``target_accuracy`` (0–1) overrides the per-scenario defaults.
    ``hub_handle`` is a tensorflow-hub URL or local SavedModel directory for ``transfer`` on Keras
    (URLs are cached under ``TFHUB_CACHE_DIR``); ``torch_weights`` a torchvision MobileNetV2
    state-dict file for ``transfer`` on torch. Without them the same architecture is built with
    random weights and the reason is logged and recorded. ``workdir`` is where each run's working
    folder is made (the system's temporary folder by default); exports (architecture and history)
    go to ``export_dir/<campaign>/<scenario>-run<N>/`` (``None``: not exported). ``precision`` is one of
    PRECISIONS; ``fp32`` turns TF32 off, which both frameworks otherwise use for some operations on
    NVIDIA GPUs. ``batch_size`` and ``precision`` are recorded on the ``run`` and ``create_model`` events.
    ``processes`` > 1 trains the torch scenarios (cnn, transfer, lm-train) with DistributedDataParallel, one
    process per GPU; ``batch_size`` is then each process's batch.
    """

    backend: Backend = "keras"
    data: str = SYNTHETIC
    image_size: int = 224
    batch_size: int = 32
    precision: str = "fp32"
    processes: int = 1
    max_epochs: int = 100
    target_accuracy: float | None = None
    learning_rate: float = 0.001
    validation_split: float = 0.2
    seed: int = 0
    per_class_limit: int | None = None
    synthetic_per_class: int = 40
    synthetic_size: int = 64
    hub_handle: str | None = DEFAULT_HUB_HANDLE
    torch_weights: Path | None = None
    keep_downloads: bool = False
    device: str = "auto"
    workdir: Path | None = None
    export_dir: Path | None = Path("mltelemetry-exports")
    augmentation: Augmentation = field(default_factory=Augmentation)
    lm: LMConfig = field(default_factory=LMConfig)
    _synthetic_dir: Path | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise MltelemetryError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.image_size < 32:
            raise MltelemetryError(f"image size must be at least 32 pixels (MobileNetV2's minimum), "
                                   f"not {self.image_size}")
        if self.max_epochs < 1 or self.batch_size < 1 or self.processes < 1:
            raise MltelemetryError("max epochs, batch size and processes must be at least 1")
        if self.precision not in PRECISIONS:
            raise MltelemetryError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.target_accuracy is not None and not 0 <= self.target_accuracy <= 1:
            raise MltelemetryError(f"target accuracy is a fraction from 0 to 1, not {self.target_accuracy}")

    def target_for(self, scenario: str) -> float:
        return self.target_accuracy if self.target_accuracy is not None else DEFAULT_TARGETS.get(scenario, 0.8)

    def source(self) -> Path:
        """The data directory; synthetic data is generated on first use and removed when the process exits
        (or by :meth:`release`)."""
        if self.data != SYNTHETIC:
            return Path(self.data).expanduser()
        if self._synthetic_dir is None or not self._synthetic_dir.exists():
            folder = Path(tempfile.mkdtemp(prefix=f"mltelemetry-synthetic-flowers-p{os.getpid()}-", dir=self.workdir))
            atexit.register(shutil.rmtree, folder, True)
            self._synthetic_dir = make_synthetic(folder, per_class=self.synthetic_per_class,
                                                 size=self.synthetic_size, seed=self.seed)
        return self._synthetic_dir

    def release(self) -> None:
        """Delete generated synthetic data now."""
        if self._synthetic_dir is not None:
            shutil.rmtree(self._synthetic_dir, ignore_errors=True)
            self._synthetic_dir = None


def installed_backends() -> list[str]:
    """The backends whose framework is installed, in BACKENDS order."""
    return [b for b in BACKENDS if importlib.util.find_spec(FRAMEWORK_MODULES[b]) is not None]


def demo_config(export_dir: Path | None = None, backend: str | None = None) -> MLConfig | None:
    """Settings that keep ``cnn`` and ``transfer`` to a minute or two each on a 2-core machine (64×64 synthetic
    images, 30 per class, at most 5 epochs, no hub download), on ``backend`` or the first installed one;
    None when no framework is installed."""
    available = installed_backends()
    chosen = backend or (available[0] if available else None)
    if chosen is None or chosen not in available:
        return None
    return MLConfig(backend=chosen, image_size=64, batch_size=16, max_epochs=5, synthetic_per_class=30,  # type: ignore[arg-type]
                    synthetic_size=64, hub_handle=None, export_dir=export_dir)
