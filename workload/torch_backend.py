"""The PyTorch backend: the paper's two models with the same shapes and parameter counts as in Keras.

PyTorch (and Pillow, for decoding images) are imported only when this module is (the ``torch``
extra). torchvision is not needed: MobileNetV2 is built here with torchvision's module layout
(``features.<i>...`` names), so a torchvision ``mobilenet_v2`` state-dict file loads into it.

Training reads the images decoded once in ``prepare_data``: from the GPU's memory where the set fits
(else through pinned host memory, one batch ahead), augmented there, with no wait for the device
between steps (loss and accuracy are summed on the device and read once an epoch).

Parameter counts follow Keras's convention so both backends report the same numbers: the
BatchNorm running mean and variance (buffers in PyTorch) count as non-trainable parameters;
``num_batches_tracked`` does not.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from mltelemetry.errors import MltelemetryError
from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.data import Augmentation, DecodedImages, PreparedData
from mltelemetry.workload.instrument import Annotator

log = logging.getLogger(__name__)

try:
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch import nn
except ImportError as e:  # pragma: no cover - the message is what users see
    raise MltelemetryError(f"the torch backend needs {e.name}: pip install 'mltelemetry[torch]'") from e


# --- models -------------------------------------------------------------------------------------
def build_cnn(image_size: int, n_classes: int = 5) -> nn.Sequential:
    """The Keras CNN in PyTorch: 25,716,773 parameters at 224×224×3."""
    side = image_size // 2 // 2 // 2
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * side * side, 512), nn.ReLU(), nn.Linear(512, n_classes),
    )


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) + BatchNorm + ReLU6, as torchvision's ``Conv2dNormActivation``."""

    def __init__(self, inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == out
        layers: list[nn.Module] = [ConvBNReLU6(inp, hidden, kernel=1)] if expand_ratio != 1 else []
        layers += [ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, out, 1, 1, 0, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (expansion t, channels c, repeats n, first stride s), width multiplier 1.0
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1))


def mobilenet_v2_features() -> nn.Sequential:
    """MobileNetV2's feature extractor (torchvision's ``features``): 1280 channels out."""
    layers: list[nn.Module] = [ConvBNReLU6(3, 32, stride=2)]
    channels = 32
    for t, c, n, s in _MOBILENET_V2:
        for i in range(n):
            layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
            channels = c
    layers.append(ConvBNReLU6(channels, 1280, kernel=1))
    return nn.Sequential(*layers)


class TransferNet(nn.Module):
    """Frozen MobileNetV2 feature vector (global average pool) + a trainable linear layer:
    2,264,389 parameters (Keras's count), 6,405 trainable."""

    def __init__(self, n_classes: int = 5) -> None:
        super().__init__()
        self.features = mobilenet_v2_features()
        self.classifier = nn.Linear(1280, n_classes)
        self.features.requires_grad_(False)

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        self.features.eval()  # frozen: BatchNorm keeps its statistics, as a hub layer with trainable=False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def load_features(model: TransferNet, path: Path) -> None:
    """Load the ``features.*`` tensors of a torchvision ``mobilenet_v2`` state dict (its classifier is ignored)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise MltelemetryError(f"cannot read MobileNetV2 weights from {path}: {e}") from e
    state = {k: v for k, v in state.items() if k.startswith("features.")}
    missing = set(model.state_dict()) - set(state) - {k for k in model.state_dict() if k.startswith("classifier.")}
    if missing:
        raise MltelemetryError(f"{path} is not a torchvision mobilenet_v2 state dict (missing {sorted(missing)[0]})")
    model.load_state_dict(state, strict=False)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) as Keras counts them: parameters plus BatchNorm running mean and variance."""
    params = list(model.parameters())
    stats = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in params) + stats, sum(p.numel() for p in params if p.requires_grad)


# --- data ---------------------------------------------------------------------------------------
def read_image(path: Path, size: int) -> np.ndarray:
    """One image file as a size×size×3 uint8 RGB array (Pillow, bilinear resize)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))


def place(decoded: DecodedImages, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images N×3×H×W, int64 labels) of a decoded split: on ``device`` when it is a GPU with room for
    the set (a quarter of its free memory at most), else in host memory, from where :func:`batches` copies
    each batch."""
    images, labels = torch.from_numpy(decoded.images), torch.from_numpy(decoded.labels)
    if device.type == "cuda" and decoded.nbytes < torch.cuda.mem_get_info(device)[0] / 4:
        images, labels = images.to(device), labels.to(device)
    return images.permute(0, 3, 1, 2).contiguous(), labels


def batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device,
            order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of (images, labels) on ``device`` in ``order`` (default: as stored). A set held in host memory
    for a GPU goes through pinned memory, each batch's copy issued before the previous batch is handed
    out, so the host never waits for the copy."""
    index = order if order is not None else torch.arange(len(labels))
    index = index.to(images.device)
    copy = images.device.type != device.type  # (torch.device("cuda") != a tensor's "cuda:0")
    pending = None
    for start in range(0, len(labels), batch_size):
        chosen = index[start:start + batch_size]
        batch = images[chosen], labels[chosen]
        if copy:
            batch = tuple((t.pin_memory() if device.type == "cuda" else t).to(device, non_blocking=True)
                          for t in batch)
        if pending is not None:
            yield pending
        pending = batch
    if pending is not None:
        yield pending


def affine_params(n: int, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """The augmentation's random transforms of a batch of ``n``, drawn on the host from ``generator``:
    N×2×3 affine matrices (rotation, zoom, flip, shift) in ``F.affine_grid``'s normalised coordinates."""
    def uniform(scale: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * scale

    angle = uniform(math.radians(aug.rotation_deg))
    zoom = 1 + uniform(aug.zoom)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if aug.horizontal_flip else torch.ones(n)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    return torch.stack([torch.stack([cos * flip, -sin, uniform(2 * aug.width_shift)], 1),
                        torch.stack([sin * flip, cos, uniform(2 * aug.height_shift)], 1)], 1)


def augment(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Random rotation, width/height shift, horizontal flip and zoom of a float batch N×3×H×W, on its device;
    pixels outside the image repeat the border (Keras's ``fill_mode="nearest"``). The parameters are drawn on
    the host (:func:`affine_params`) and copied without waiting for the device."""
    theta = affine_params(x.shape[0], aug, generator)
    theta = (theta.pin_memory() if x.is_cuda else theta).to(x.device, x.dtype, non_blocking=True)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --- precision and the training step ------------------------------------------------------------
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """``cfg.precision`` applied: TF32 allowed only for ``tf32`` (PyTorch allows it for convolutions by
    default), autocast to bf16 or fp16 for mixed precision, and gradient scaling for fp16."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.name, self.device = precision, device
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        self.dtype = AUTOCAST_DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def optimizer_for(model: nn.Module, cfg: MLConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam over the trainable parameters; on a GPU the fused kernel (same update, fewer launches, and fp16's
    gradient scaling without a host round trip)."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                            fused=device.type == "cuda")


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision, x: torch.Tensor,
               labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch; returns (summed loss, correct predictions) as device tensors, so the
    host does not wait for the device between steps."""
    optimizer.zero_grad(set_to_none=True)
    with precision.autocast():
        logits = model(x)
        loss = F.cross_entropy(logits, labels, reduction="sum")
    precision.scaler.scale(loss / len(labels)).backward()
    precision.scaler.step(optimizer)
    precision.scaler.update()
    return loss.detach(), (logits.argmax(1) == labels).sum()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as e:
        raise MltelemetryError(f"device {name!r} is not usable: {e}") from e
    return device


class TorchBackend:
    """Runs the ML scenarios with PyTorch."""

    name = "torch"

    def __init__(self, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.optimizers: dict[int, torch.optim.Optimizer] = {}  # made in create_model, by the model's id

    def describe(self) -> dict[str, Any]:
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        return {"framework": "torch", "framework_version": torch.__version__, "device": device}

    def create_model(self, kind: str, cfg: MLConfig, n_classes: int, seed: int) -> tuple[nn.Module, dict[str, Any]]:
        torch.manual_seed(seed)
        fields: dict[str, Any] = {"weights": "random"}
        if kind == "cnn":
            model: nn.Module = build_cnn(cfg.image_size, n_classes)
        else:
            model = TransferNet(n_classes)
            if cfg.torch_weights is not None:
                load_features(model, cfg.torch_weights)
                fields = {"weights": str(cfg.torch_weights)}
            else:
                reason = "no torchvision MobileNetV2 weights file given"
                log.warning("transfer: %s; the feature extractor keeps random weights", reason)
                fields["fallback_reason"] = reason
        total, trainable = count_params(model)
        fields.update(params_total=total, params_trainable=trainable, downloaded=[])
        model = model.to(self.device)
        # The optimizer is made here, as Keras's compile() does in create_model: the first one PyTorch builds in a
        # process imports its compiler stack (≈2 s on a CPU, ≈5 s seen on an H200 host), which is not training.
        self.optimizers[id(model)] = optimizer_for(model, cfg, self.device)
        return model, fields

    def decode_image(self, path: Path, size: int) -> np.ndarray:
        return read_image(path, size)

    def train(self, model: nn.Module, data: PreparedData, cfg: MLConfig, *, target: float, annotator: Annotator,
              on_epoch: Any = None) -> list[dict[str, Any]]:
        started = time.monotonic()
        loader_seed = torch.Generator().manual_seed(cfg.seed)
        augment_seed = torch.Generator().manual_seed(cfg.seed + 1)
        train_images, train_labels = place(data.decoded["train"], self.device)
        val_images, val_labels = place(data.decoded["validation"], self.device)
        precision = Precision(cfg.precision, self.device)
        optimizer = self.optimizers.pop(id(model), None) or optimizer_for(model, cfg, self.device)
        log.info("training images held on %s, training set up in %.2f s", train_images.device,
                 time.monotonic() - started)
        scale = cfg.augmentation.rescale
        history = []
        for epoch in range(1, cfg.max_epochs + 1):
            with annotator.epoch(epoch) as fields:
                model.train()
                loss_sum, correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
                order = torch.randperm(len(train_labels), generator=loader_seed)  # as DataLoader(shuffle=True)
                for images, labels in batches(train_images, train_labels, cfg.batch_size, self.device, order):
                    x = images.float().mul_(scale)
                    if cfg.augmentation.enabled:
                        x = augment(x, cfg.augmentation, augment_seed)
                    step_loss, step_correct = train_step(model, optimizer, precision, x, labels)
                    loss_sum += step_loss
                    correct += step_correct
                model.eval()
                val_loss, val_correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
                with torch.no_grad(), precision.autocast():
                    for images, labels in batches(val_images, val_labels, cfg.batch_size, self.device):
                        logits = model(images.float().mul_(scale))
                        val_loss += F.cross_entropy(logits, labels, reduction="sum")
                        val_correct += (logits.argmax(1) == labels).sum()
                seen, val_seen = len(train_labels), len(val_labels)
                correct_val = int(val_correct)  # the epoch's one wait for the device
                fields.update(loss=float(loss_sum) / seen, accuracy=int(correct) / seen,
                              val_loss=float(val_loss) / val_seen, val_accuracy=correct_val / val_seen,
                              correct_classifications=correct_val)
            history.append({"epoch": epoch, **fields})
            if on_epoch is not None:
                on_epoch(epoch, fields)
            if fields["val_accuracy"] >= target:
                break
        log.info("trained %d epochs, %.2f s since the training was set up", len(history), time.monotonic() - started)
        return history

    def export(self, model: nn.Module, folder: Path) -> list[Path]:
        total, trainable = count_params(model)
        architecture = {
            "class": type(model).__name__, "framework": "torch", "params_total": total, "params_trainable": trainable,
            "parameters": [{"name": name, "shape": list(p.shape), "trainable": p.requires_grad}
                           for name, p in model.named_parameters()],
            "repr": repr(model),
        }
        path = folder / "model.json"
        path.write_text(json.dumps(architecture, indent=1))
        return [path]
