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

from mltelemetry.workload.torch_dist import ProcessGroup, all_sum, join, leave, rank_device, unwrap  # noqa: E402


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
    """Batches of (images, labels) on ``device`` in ``order`` (default: all, as stored; else just the images
    ``order`` names). A set held in host memory
    for a GPU goes through pinned memory, each batch's copy issued before the previous batch is handed
    out, so the host never waits for the copy."""
    index = order if order is not None else torch.arange(len(labels))
    index = index.to(images.device)
    copy = images.device.type != device.type  # (torch.device("cuda") != a tensor's "cuda:0")
    pending = None
    for start in range(0, len(index), batch_size):
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


def warm_up(model: nn.Module, cfg: MLConfig, device: torch.device) -> None:
    """One training pass (augmentation, forward, backward) and one evaluation pass on a batch of zeros, the
    gradients then dropped: a GPU's first pass loads the kernels and sets up cuDNN and cuBLAS (0.4 s of a
    0.7 s first epoch seen on an H200), which is readying the model on the device, as Keras's compile() does in
    ``create_model``, not training it. Weights, optimizer state and the training's random draws are untouched;
    with several processes every rank makes the same pass (its gradients are all-reduced once)."""
    precision = Precision(cfg.precision, device)
    x = torch.zeros(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    labels = torch.zeros(cfg.batch_size, dtype=torch.long, device=device)
    if cfg.augmentation.enabled:
        x = augment(x, cfg.augmentation, torch.Generator().manual_seed(0))
    model.train()
    with precision.autocast():
        loss = F.cross_entropy(model(x), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)
    evaluated = unwrap(model)
    evaluated.eval()
    with torch.no_grad(), precision.autocast():
        evaluated(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    """Runs the ML scenarios with PyTorch; with ``processes`` > 1 this object is rank 0 of a
    DistributedDataParallel group (:mod:`mltelemetry.workload.torch_dist`) and starts the other ranks in
    ``create_model``."""

    name = "torch"

    def __init__(self, device: str = "auto", processes: int = 1, rank: int = 0) -> None:
        self.world, self.rank = processes, rank
        self.device = rank_device(device, rank, processes) if processes > 1 else resolve_device(device)
        self.group: ProcessGroup | None = None
        self.held: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # split -> (images, labels), see hold()
        self.optimizers: dict[int, torch.optim.Optimizer] = {}  # made in create_model, by the model's id

    def describe(self) -> dict[str, Any]:
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        return {"framework": "torch", "framework_version": torch.__version__, "device": device}

    def create_model(self, kind: str, cfg: MLConfig, n_classes: int, seed: int,
                     data: PreparedData | None = None) -> tuple[nn.Module, dict[str, Any]]:
        """The model (and its optimizer); with several processes, the other ranks are started here, each with
        the decoded images through shared memory, and the model is wrapped in DistributedDataParallel (which
        gives every rank rank 0's initial weights)."""
        if self.world > 1 and self.rank == 0:
            assert data is not None, "several processes need the decoded images"
            shared = {split: (torch.from_numpy(d.images).share_memory_(), torch.from_numpy(d.labels).share_memory_())
                      for split, d in data.decoded.items()}
            self.group = ProcessGroup(self.device, self.world)
            self.group.start(_rank_main, kind, cfg, n_classes, seed, shared)
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
        if self.world > 1:
            model = nn.parallel.DistributedDataParallel(model, device_ids=[self.rank] if self.device.type == "cuda"
                                                        else None)
        # The optimizer is made here, as Keras's compile() does in create_model: the first one PyTorch builds in a
        # process imports its compiler stack (≈2 s on a CPU, ≈5 s seen on an H200 host), which is not training.
        self.optimizers[id(model)] = optimizer_for(model, cfg, self.device)
        warm_up(model, cfg, self.device)
        fields["warmup_passes"] = 1
        return model, fields

    def hold(self, data: PreparedData) -> str:
        """Put the decoded set where training reads it, the GPU when it fits (:func:`place`): the last step of
        ``prepare_data``, so the copy is not inside the train window. Returns where it is held."""
        self.held = {split: place(decoded, self.device) for split, decoded in data.decoded.items()}
        return str(self.held["train"][0].device)

    def close(self) -> None:
        """Release the held set; leave the process group and reap the other ranks."""
        self.held = {}
        if self.group is not None:
            self.group.close()
            self.group = None

    def decode_image(self, path: Path, size: int) -> np.ndarray:
        return read_image(path, size)

    def train(self, model: nn.Module, data: PreparedData, cfg: MLConfig, *, target: float, annotator: Annotator,
              on_epoch: Any = None) -> list[dict[str, Any]]:
        return self.train_on(model, data.decoded, cfg, target=target, annotator=annotator, on_epoch=on_epoch)

    def train_on(self, model: nn.Module, decoded: dict[str, DecodedImages], cfg: MLConfig, *, target: float,
                 annotator: Annotator | NoEvents, on_epoch: Any = None) -> list[dict[str, Any]]:
        """Epochs until ``target`` validation accuracy or ``cfg.max_epochs``. With several processes each rank
        trains on its share of every epoch's shuffled order (the order padded with its start to a multiple of
        the processes, as torch's DistributedSampler does) and validates its share of the validation set; the
        epoch's sums are added over the ranks, so every rank sees the same accuracy and stops at the same epoch."""
        started = time.monotonic()
        loader_seed = torch.Generator().manual_seed(cfg.seed)
        augment_seed = torch.Generator().manual_seed(cfg.seed + 1 + self.rank)
        held = self.held or {split: place(d, self.device) for split, d in decoded.items()}
        (train_images, train_labels), (val_images, val_labels) = held["train"], held["validation"]
        precision = Precision(cfg.precision, self.device)
        optimizer = self.optimizers.pop(id(model), None) or optimizer_for(model, cfg, self.device)
        evaluated = unwrap(model)
        log.info("training images held on %s, training set up in %.2f s", train_images.device,
                 time.monotonic() - started)
        scale = cfg.augmentation.rescale
        val_order = torch.arange(len(val_labels))[self.rank::self.world]
        history = []
        for epoch in range(1, cfg.max_epochs + 1):
            with annotator.epoch(epoch) as fields:
                model.train()
                # sums on the device: loss, correct, seen; validation loss, correct, seen
                sums = torch.zeros(6, device=self.device)
                order = torch.randperm(len(train_labels), generator=loader_seed)  # as DataLoader(shuffle=True)
                order = self._share(order)
                for images, labels in batches(train_images, train_labels, cfg.batch_size, self.device, order):
                    x = images.float().mul_(scale)
                    if cfg.augmentation.enabled:
                        x = augment(x, cfg.augmentation, augment_seed)
                    step_loss, step_correct = train_step(model, optimizer, precision, x, labels)
                    sums[0] += step_loss
                    sums[1] += step_correct
                sums[2] = len(order)
                evaluated.eval()
                with torch.no_grad(), precision.autocast():
                    for images, labels in batches(val_images, val_labels, cfg.batch_size, self.device, val_order):
                        logits = evaluated(images.float().mul_(scale))
                        sums[3] += F.cross_entropy(logits, labels, reduction="sum")
                        sums[4] += (logits.argmax(1) == labels).sum()
                sums[5] = len(val_order)
                loss, correct, seen, val_loss, val_correct, val_seen = all_sum(sums, self.world).tolist()  # one wait
                fields.update(loss=loss / seen, accuracy=correct / seen, val_loss=val_loss / val_seen,
                              val_accuracy=val_correct / val_seen, correct_classifications=round(val_correct))
            history.append({"epoch": epoch, **fields})
            if on_epoch is not None:
                on_epoch(epoch, fields)
            if fields["val_accuracy"] >= target:
                break
        log.info("trained %d epochs, %.2f s since the training was set up", len(history), time.monotonic() - started)
        return history

    def _share(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's share of an epoch's order: all of it alone; else every ``world``-th index from ``rank``
        of the order padded with its start to a multiple of ``world`` (every rank takes as many steps)."""
        if self.world == 1:
            return order
        padded = torch.cat([order, order[:(-len(order)) % self.world]])
        return padded[self.rank::self.world]

    def export(self, model: nn.Module, folder: Path) -> list[Path]:
        model = unwrap(model)
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


class NoEvents:
    """The annotator of ranks 1..N-1: their epochs are rank 0's windows, so they record nothing."""

    def epoch(self, epoch: int) -> AbstractContextManager[dict[str, Any]]:
        return nullcontext({})


def _rank_main(rank: int, address: str, kind: str, cfg: MLConfig, n_classes: int, seed: int,
               shared: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Ranks 1..N-1 of a training run: the same model and epochs as rank 0, no events."""
    backend = TorchBackend(cfg.device, processes=cfg.processes, rank=rank)
    join(backend.device, address, rank, backend.world)
    try:
        model, _ = backend.create_model(kind, cfg, n_classes, seed)
        decoded = {split: DecodedImages(images.numpy(), labels.numpy()) for split, (images, labels) in shared.items()}
        backend.train_on(model, decoded, cfg, target=cfg.target_for(kind), annotator=NoEvents())
    finally:
        leave()
