"""Image data in the tf_flowers layout: one folder per class (daisy, dandelion, roses, sunflowers, tulips).

Three sources, all local (nothing is downloaded here):

- a directory in that layout, or one holding it somewhere below (the ``flower_photos`` folder of
  TensorFlow's archive, TFDS's ``downloads/extracted/...``);
- a TFDS data dir with a prepared ``tf_flowers/<version>/`` (TFRecord files of encoded images
  and integer labels; reading them needs TensorFlow);
- ``synthetic``: :func:`make_synthetic` writes a small set in the same layout whose classes a
  CNN can tell apart in an epoch or two (for demos and tests).

:func:`prepare` is the paper's image preparation: it groups the images by label into
``train/<class>/`` and ``validation/<class>/`` under a working folder, split per class with a seed.
:meth:`PreparedData.decode` then decodes and resizes every image once, with the backend's decoder, into
uint8 arrays kept in memory for the whole run; the backends train from those (on the accelerator
where the set fits) and apply the augmentation to each batch there.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mltelemetry.errors import MltelemetryError

log = logging.getLogger(__name__)

CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
# TFDS's label order for tf_flowers when the data dir has no label.labels.txt.
TFDS_LABELS = ("dandelion", "daisy", "tulips", "sunflowers", "roses")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
SYNTHETIC = "synthetic"

# Petal and centre colours (RGB) of the synthetic flowers, one pair per class.
_COLOURS = {
    "daisy": ((245, 245, 240), (230, 200, 40)),
    "dandelion": ((250, 215, 30), (240, 170, 20)),
    "roses": ((200, 25, 45), (140, 15, 30)),
    "sunflowers": ((250, 140, 20), (90, 55, 20)),
    "tulips": ((170, 60, 210), (110, 30, 140)),
}


@dataclass(frozen=True)
class Augmentation:
    """The paper's augmentation (TensorFlow's flowers example): pixel values rescaled to [0, 1], then a
    random rotation up to ``rotation_deg`` degrees, width and height shifts up to the given fractions,
    a horizontal flip and a zoom by up to ``zoom`` (fraction) either way. Applied to training images only."""

    rescale: float = 1 / 255
    rotation_deg: float = 45.0
    width_shift: float = 0.15
    height_shift: float = 0.15
    horizontal_flip: bool = True
    zoom: float = 0.5
    enabled: bool = True


# Reads one image file as a size×size×3 uint8 RGB array (each backend brings its own, as its framework decodes).
Decoder = Callable[[Path, int], np.ndarray]


@dataclass
class DecodedImages:
    """One split decoded and resized once: ``images`` N×size×size×3 uint8 (RGB), ``labels`` N int64."""

    images: np.ndarray
    labels: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + self.labels.nbytes


def decode_all(items: list[tuple[Path, int]], size: int, decoder: Decoder) -> DecodedImages:
    """Decode every (path, label) with ``decoder`` into one array, on a thread per core (Pillow and
    TensorFlow release the GIL while they decode)."""
    images = np.empty((len(items), size, size, 3), np.uint8)

    def one(index: int) -> None:
        images[index] = decoder(items[index][0], size)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(one, range(len(items))))  # list(): the first decoding error is raised here
    return DecodedImages(images, np.array([label for _, label in items], np.int64))


@dataclass
class PreparedData:
    """Images grouped by label under ``root``: ``train/<class>/`` and ``validation/<class>/``; after
    :meth:`decode`, also held in memory as ``decoded["train"]`` and ``decoded["validation"]``."""

    root: Path
    classes: tuple[str, ...]
    train: list[tuple[Path, int]] = field(default_factory=list)
    validation: list[tuple[Path, int]] = field(default_factory=list)
    source: str = ""
    decoded: dict[str, DecodedImages] = field(default_factory=dict)

    def decode(self, size: int, decoder: Decoder) -> None:
        """Decode and resize each image of both splits once (the paper's image preparation)."""
        self.decoded = {"train": decode_all(self.train, size, decoder),
                        "validation": decode_all(self.validation, size, decoder)}
        log.info("decoded %d images of %d×%d pixels (%.1f MB in memory)", len(self.train) + len(self.validation),
                 size, size, sum(d.nbytes for d in self.decoded.values()) / 1e6)

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def validation_dir(self) -> Path:
        return self.root / "validation"


# --- synthetic data -----------------------------------------------------------------------------
def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an H×W×3 uint8 array as an 8-bit RGB PNG (no dependency beyond zlib)."""
    height, width, _ = rgb.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def synthetic_image(cls: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic flower of class ``cls``: a disc of the class's petal colour with its centre colour,
    at a random place and size, on a noisy green background. Returns a size×size×3 uint8 array."""
    petal, centre = (np.array(c, np.float64) for c in _COLOURS.get(cls, ((128, 128, 128), (64, 64, 64))))
    image = np.empty((size, size, 3))
    image[...] = (40, 110, 40)
    image += rng.normal(0, 18, image.shape)
    y, x = np.mgrid[0:size, 0:size]
    radius = rng.uniform(0.22, 0.38) * size
    cy, cx = rng.uniform(radius * 0.8, size - radius * 0.8, 2)
    distance = np.hypot(y - cy, x - cx)
    image[distance < radius] = petal + rng.normal(0, 12, 3)
    image[distance < radius * 0.35] = centre + rng.normal(0, 12, 3)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_synthetic(root: str | Path, *, per_class: int = 40, size: int = 64, seed: int = 0,
                   classes: tuple[str, ...] = CLASSES) -> Path:
    """Write ``per_class`` PNG images of ``size``×``size`` pixels per class into ``root/<class>/``; returns root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for cls in classes:
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_png(folder / f"{cls}_{i:04d}.png", synthetic_image(cls, size, rng))
    return root


# --- finding a source ---------------------------------------------------------------------------
def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    """Subfolders of ``folder`` that hold images, by name."""
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = _images(sub)
        if images:
            found[sub.name] = images
    return found


def _tfds_version_dir(folder: Path) -> Path | None:
    base = folder / "tf_flowers" if (folder / "tf_flowers").is_dir() else folder
    versions = [p for p in base.iterdir() if p.is_dir() and any(p.glob("tf_flowers-*.tfrecord*"))] \
        if base.is_dir() else []
    if any(base.glob("tf_flowers-*.tfrecord*")):
        versions.append(base)

    def key(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in p.name.split(".") if x.isdigit())
    return max(versions, key=key) if versions else None


def locate(source: str | Path, *, max_depth: int = 5) -> tuple[str, Path]:
    """``("folders", dir)`` for a directory in the class-folder layout (found at ``source`` or below it),
    or ``("tfds", dir)`` for a TFDS ``tf_flowers/<version>`` directory; MltelemetryError otherwise."""
    path = Path(source).expanduser()
    if not path.is_dir():
        raise MltelemetryError(f"no data directory at {path}")
    queue = [(path, 0)]
    while queue:
        folder, depth = queue.pop(0)
        version = _tfds_version_dir(folder)
        if version is not None:
            return "tfds", version
        classes = _class_folders(folder)
        if len(classes) >= 2:
            return "folders", folder
        if depth < max_depth:
            queue.extend((p, depth + 1) for p in sorted(folder.iterdir()) if p.is_dir())
    raise MltelemetryError(f"{path} holds neither class folders of images (the tf_flowers layout) nor a TFDS "
                           "tf_flowers data dir")


def _tfds_examples(version_dir: Path) -> tuple[tuple[str, ...], list[tuple[bytes, int]]]:
    """(label names, [(encoded image, label)]) from a prepared TFDS tf_flowers directory."""
    try:
        import tensorflow as tf
    except ImportError as e:
        raise MltelemetryError("reading a TFDS data dir needs TensorFlow: pip install 'mltelemetry[keras]'") from e
    labels_file = version_dir / "label.labels.txt"
    names = tuple(line.strip() for line in labels_file.read_text().splitlines() if line.strip()) \
        if labels_file.exists() else TFDS_LABELS
    files = sorted(str(p) for p in version_dir.glob("tf_flowers-*.tfrecord*"))
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    examples = []
    for record in tf.data.TFRecordDataset(files):
        parsed = tf.io.parse_single_example(record, spec)
        examples.append((parsed["image"].numpy(), int(parsed["label"].numpy())))
    return names, examples


def _suffix(encoded: bytes) -> str:
    return ".png" if encoded.startswith(b"\x89PNG") else ".jpg"


def prepare(source: str | Path, workdir: str | Path, *, validation_split: float = 0.2, seed: int = 0,
            per_class_limit: int | None = None) -> PreparedData:
    """Group the images of ``source`` by label into ``workdir/train/<class>/`` and ``workdir/validation/<class>/``.

    Each class is shuffled with ``seed`` and split so that ``validation_split`` of it (at least one
    image where the class has two or more) goes to validation. ``per_class_limit`` keeps only the
    first images of each class after shuffling.
    """
    if not 0 < validation_split < 1:
        raise MltelemetryError(f"validation split must lie between 0 and 1, not {validation_split}")
    kind, found = locate(source)
    root = Path(workdir)
    rng = random.Random(seed)
    if kind == "folders":
        by_class: dict[str, list] = {name: list(images) for name, images in _class_folders(found).items()}
    else:
        names, examples = _tfds_examples(found)
        by_class = {name: [] for name in names}
        for encoded, label in examples:
            by_class[names[label]].append(encoded)
    classes = tuple(sorted(by_class))
    data = PreparedData(root, classes, source=f"{kind}:{found}")
    for label, name in enumerate(classes):
        items = by_class[name]
        rng.shuffle(items)
        if per_class_limit is not None:
            items = items[:per_class_limit]
        n_val = max(1, round(len(items) * validation_split)) if len(items) >= 2 else 0
        for split, chosen, target in (("validation", items[:n_val], data.validation),
                                      ("train", items[n_val:], data.train)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, item in enumerate(chosen):
                if isinstance(item, Path):
                    path = folder / item.name
                    shutil.copyfile(item, path)
                else:
                    path = folder / f"{name}_{i:05d}{_suffix(item)}"
                    path.write_bytes(item)
                target.append((path, label))
    if not data.train or not data.validation:
        raise MltelemetryError(f"{source} has too few images for a train/validation split")
    log.info("prepared %d training and %d validation images of %d classes from %s", len(data.train),
             len(data.validation), len(classes), data.source)
    return data
