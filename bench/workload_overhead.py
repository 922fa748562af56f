"""Instrumentation overhead of the annotation API: time per epoch with and without it. Goal: under 0.5 %.

Two measures, because this machine is shared and epoch times drift by more than the overhead:
- **A/B**: the same training with and without the instrumentation, alternated (ABAB...) so
  drift hits both alike; median epoch time of each, and their relative difference;
- **direct**: the wall time spent inside the instrumentation itself (opening and closing the
  epoch window, which writes one event to the store) per epoch, divided by the median epoch.

Keras: the paper's CNN with the EventCallback (``Annotator.keras_callback``) against no callback.
PyTorch: the same CNN in a plain loop with ``with ann.epoch(n)`` around each epoch against none.
Both on synthetic tf_flowers images; events go to a real store file (SQLite, WAL).

    .venv/bin/python bench/workload_overhead.py --image-size 64 --images 40 --epochs 6 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from provenance import provenance

from mltelemetry.store import Store
from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.data import Augmentation, make_synthetic, prepare
from mltelemetry.workload.instrument import Annotator, OpenWindows
from mltelemetry.workload.ml import load_backend


class Timed(OpenWindows):
    """OpenWindows that adds the time spent opening and closing windows to ``spent``."""

    spent = 0.0

    def open(self, key, cm):
        t = time.perf_counter()
        try:
            return super().open(key, cm)
        finally:
            Timed.spent += time.perf_counter() - t

    def close(self, key, exc=None):
        t = time.perf_counter()
        try:
            super().close(key, exc)
        finally:
            Timed.spent += time.perf_counter() - t


def keras_round(data, cfg, ann, instrumented: bool) -> tuple[list[float], float]:
    from mltelemetry.workload import keras_backend as kb
    k = kb.keras_module()
    backend = kb.KerasBackend()
    model, _ = backend.create_model("cnn", cfg, len(data.classes), cfg.seed)
    train, validation = backend.datasets(data, cfg)
    model = backend.training_model(k, model, cfg)
    model.compile(optimizer=k.optimizers.Adam(cfg.learning_rate),
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    times: list[float] = []
    started: list[float] = []

    class EpochStart(k.callbacks.Callback):  # first in the list: before the event callback opens its window
        def on_epoch_begin(self, epoch, logs=None):
            started.append(time.perf_counter())

    class EpochEnd(k.callbacks.Callback):  # last in the list: after the event callback wrote its event
        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - started[-1])

    callbacks = [EpochStart(), EpochEnd()]
    Timed.spent = 0.0
    if instrumented:
        callback = ann.keras_callback(train_window=False, keras_module=k)
        callback.windows = Timed()
        callbacks.insert(1, callback)
    model.fit(train, validation_data=validation, epochs=cfg.max_epochs, verbose=0, shuffle=False,
              callbacks=callbacks)
    return times[1:], Timed.spent  # the first epoch traces the graph


def torch_round(data, cfg, ann, instrumented: bool) -> tuple[list[float], float]:
    import contextlib

    import torch

    from mltelemetry.workload import torch_backend as tb
    torch.manual_seed(cfg.seed)
    model = tb.build_cnn(cfg.image_size, len(data.classes))
    images, labels = tb.place(data.decoded["train"], torch.device("cpu"))
    order_seed = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(1)
    times, spent = [], 0.0
    for epoch in range(1, cfg.max_epochs + 1):
        t0 = time.perf_counter()
        window = ann.epoch(epoch) if instrumented else contextlib.nullcontext({})
        t = time.perf_counter()
        fields = window.__enter__()
        spent += time.perf_counter() - t
        correct = seen = 0
        loss_sum = 0.0
        order = torch.randperm(len(labels), generator=order_seed)
        for batch, batch_labels in tb.batches(images, labels, cfg.batch_size, torch.device("cpu"), order):
            x = tb.augment(batch.float().mul_(1 / 255), cfg.augmentation, generator)
            optimizer.zero_grad()
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, batch_labels)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(batch_labels)
            correct += int((logits.argmax(1) == batch_labels).sum())
            seen += len(batch_labels)
        fields.update(loss=loss_sum / seen, accuracy=correct / seen)
        t = time.perf_counter()
        window.__exit__(None, None, None)
        spent += time.perf_counter() - t
        times.append(time.perf_counter() - t0)
    return times[1:], spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="keras,torch")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=40, help="synthetic images per class")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="A/B pairs per backend")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "workload_overhead.json")
    args = parser.parse_args()
    results = {**provenance(), "image_size": args.image_size, "images_per_class": args.images, "epochs": args.epochs,
               "rounds": args.rounds, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="mltelemetry-bench-") as tmp:
        source = make_synthetic(Path(tmp) / "src", per_class=args.images, size=args.image_size)
        data = prepare(source, Path(tmp) / "prepared")
        cfg = MLConfig(image_size=args.image_size, max_epochs=args.epochs, batch_size=32,
                       augmentation=Augmentation())
        with Store(Path(tmp) / "events.db") as store:
            for backend in args.backends.split(","):
                run_round = keras_round if backend == "keras" else torch_round
                data.decode(args.image_size, load_backend(MLConfig(backend=backend, device="cpu")).decode_image)
                plain, instrumented, spent = [], [], []
                for i in range(args.rounds):
                    ann = Annotator(store, f"bench-{backend}-{i}", scenario="cnn", run=i + 1)
                    for flag in (False, True) if i % 2 == 0 else (True, False):
                        times, cost = run_round(data, cfg, ann, flag)
                        (instrumented if flag else plain).extend(times)
                        if flag:
                            spent.append(cost / args.epochs)
                    print(f"{backend} round {i + 1}: plain {statistics.median(plain):.3f} s/epoch, "
                          f"instrumented {statistics.median(instrumented):.3f} s/epoch", flush=True)
                median_plain, median_inst = statistics.median(plain), statistics.median(instrumented)
                per_epoch = statistics.median(spent)
                results["backends"][backend] = {
                    "epoch_s_plain_median": median_plain, "epoch_s_instrumented_median": median_inst,
                    "ab_difference_pct": 100 * (median_inst - median_plain) / median_plain,
                    "epoch_s_plain_stdev": statistics.stdev(plain),
                    "instrumentation_ms_per_epoch": 1000 * per_epoch,
                    "direct_overhead_pct": 100 * per_epoch / median_plain,
                    "epochs_measured": [len(plain), len(instrumented)],
                    "epoch_s_plain": [round(t, 4) for t in plain],
                    "epoch_s_instrumented": [round(t, 4) for t in instrumented],
                }
                print(json.dumps({k: v for k, v in results["backends"][backend].items()
                                  if not k.startswith("epoch_s_") or k.endswith("median")}, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
