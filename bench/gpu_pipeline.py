"""Is the accelerator busy in the ML scenarios' train windows? The scenario against its ceiling (issue 10).

For each scenario (``cnn``, ``transfer``) and backend:

- **ceiling**: the same model, batch and precision trained on random tensors already on the device
  (no data pipeline, no augmentation, no validation), ``--ceiling-steps`` steps after a warm-up, before
  and after the scenario (the mean of the two: a shared machine drifts);
- **scenario**: ``mltelemetry campaign run`` of one run of the scenario in a child process, exactly as
  a user runs it (synthetic data, ``--target-accuracy 1``, no hub download); its ``train`` and ``epoch``
  windows are read back from the store.

A sampler thread reads NVML every 0.1 s (GPU utilisation, power, the energy counter) and the host's CPU
use, on the wall clock the events use; each window's mean utilisation and power come from the samples
inside it. Images/s of a train window = training images × epochs / window length (validation passes
included, as in the scenario); ``epochs 2+`` leaves out the first epoch (the device's warm-up).
``--code DIR`` runs the scenario with the package found in DIR instead (the "before" code); the ceiling
always uses this checkout's training step. Results go to ``--out`` (JSON, one entry per ``--label``).

    # on the GPU machine (torch; the table in bench/gpu_pipeline.md)
    python3 bench/gpu_pipeline.py --device cuda --label after --synthetic-images 1200 --max-epochs 12
    # on a CPU (small images, so it ends in a couple of minutes)
    .venv/bin/python bench/gpu_pipeline.py --device cpu --image-size 64 --synthetic-images 40 --max-epochs 3 \\
        --ceiling-steps 20 --label cpu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from provenance import provenance

from mltelemetry.store import Store

SAMPLE_PERIOD_S = 0.1


class Sampler:
    """NVML (GPU 0) and host CPU readings every 0.1 s in a thread: (wall ns, util %, power W, energy mJ, cpu %)."""

    def __init__(self, gpu: bool) -> None:
        self.samples: list[tuple[int, float | None, float | None, float | None, float]] = []
        self.nvml = None
        if gpu:
            import pynvml
            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
            self.gpu_name = pynvml.nvmlDeviceGetName(self.handle)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> tuple[int, float | None, float | None, float | None, float]:
        cpu = psutil.cpu_percent(None)
        if self.nvml is None:
            return time.time_ns(), None, None, None, cpu
        util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
        power = self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000
        energy = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        return time.time_ns(), float(util), power, float(energy), cpu

    def _run(self) -> None:
        psutil.cpu_percent(None)
        while not self._stop.wait(SAMPLE_PERIOD_S):
            self.samples.append(self._read())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, start_ns: int, end_ns: int) -> dict[str, float | None]:
        """Mean GPU utilisation (%), mean power (W, from the energy counter), mean host CPU (%) over a window."""
        inside = [s for s in self.samples if start_ns <= s[0] <= end_ns]
        if not inside:
            return {"gpu_util_pct": None, "gpu_power_w": None, "cpu_pct": None, "samples": 0}
        result: dict[str, float | None] = {"cpu_pct": statistics.fmean(s[4] for s in inside), "samples": len(inside)}
        if self.nvml is None:
            return {**result, "gpu_util_pct": None, "gpu_power_w": None}
        result["gpu_util_pct"] = statistics.fmean(s[1] for s in inside)
        first, last = inside[0], inside[-1]
        result["gpu_power_w"] = ((last[3] - first[3]) / 1000 / ((last[0] - first[0]) / 1e9)
                                 if last[0] > first[0] else statistics.fmean(s[2] for s in inside))
        return result


def torch_ceiling(scenario: str, args: argparse.Namespace) -> tuple[float, int, int]:
    """(images/s, start ns, end ns) of ``--ceiling-steps`` training steps on device-resident random tensors."""
    import torch

    from mltelemetry.workload import torch_backend as tb
    from mltelemetry.workload.config import MLConfig
    device = tb.resolve_device(args.device)
    cfg = MLConfig(backend="torch", image_size=args.image_size, batch_size=args.batch_size, precision=args.precision)
    torch.manual_seed(0)
    model = (tb.build_cnn(args.image_size) if scenario == "cnn" else tb.TransferNet()).to(device).train()
    precision = tb.Precision(args.precision, device)
    optimizer = tb.optimizer_for(model, cfg, device)
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, 5, (args.batch_size,), device=device)

    def steps(n: int) -> None:
        total = torch.zeros((), device=device)
        for _ in range(n):
            total += tb.train_step(model, optimizer, precision, x, labels)[0]
        float(total)  # wait for the device

    steps(max(5, args.ceiling_steps // 10))
    start = time.time_ns()
    steps(args.ceiling_steps)
    end = time.time_ns()
    return args.ceiling_steps * args.batch_size / ((end - start) / 1e9), start, end


def keras_ceiling(scenario: str, args: argparse.Namespace) -> tuple[float, int, int]:
    """As :func:`torch_ceiling`, with the Keras backend's model and compile settings."""
    import tensorflow as tf

    from mltelemetry.workload.config import MLConfig
    from mltelemetry.workload.keras_backend import KerasBackend
    cfg = MLConfig(backend="keras", image_size=args.image_size, batch_size=args.batch_size, precision=args.precision,
                   hub_handle=None)
    model, _ = KerasBackend().create_model(scenario, cfg, 5, 0)
    k = model._mltelemetry_keras
    model.compile(optimizer=k.optimizers.Adam(cfg.learning_rate),
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x = tf.random.uniform((args.batch_size, args.image_size, args.image_size, 3))
    y = tf.random.uniform((args.batch_size,), maxval=5, dtype=tf.int64)
    model.fit(tf.data.Dataset.from_tensors((x, y)).repeat(max(5, args.ceiling_steps // 10)), verbose=0)
    data = tf.data.Dataset.from_tensors((x, y)).repeat(args.ceiling_steps)
    start = time.time_ns()
    model.fit(data, verbose=0)
    end = time.time_ns()
    return args.ceiling_steps * args.batch_size / ((end - start) / 1e9), start, end


def run_scenario(scenario: str, args: argparse.Namespace, tmp: Path) -> list:
    """The scenario's events from one ``campaign run`` in a child process."""
    store = tmp / f"{scenario}.db"
    command = [sys.executable, "-m", "mltelemetry", "campaign", "run", "--campaign", f"bench-{scenario}",
               "--store", str(store), "--scenario", scenario, "--runs", "1", "--pause", "0",
               "--backend", args.backend, "--device", args.device, "--data", "synthetic",
               "--synthetic-images", str(args.synthetic_images), "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--max-epochs", str(args.max_epochs),
               "--target-accuracy", "1", "--hub-handle", "none", "--no-progress", "--workdir", str(tmp),
               "--export-dir", str(tmp / "exports")]
    if args.precision != "fp32" or args.code is None:  # the before code has no --precision
        command += ["--precision", args.precision]
    env = dict(os.environ)
    if args.code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(args.code), env.get("PYTHONPATH", "")])
    print("$", " ".join(command), flush=True)
    # cwd: not the repository root, whose mltelemetry/ folder would shadow the installed package
    subprocess.run(command, env=env, check=True, cwd=tmp)
    with Store(store) as opened:
        return opened.events(f"bench-{scenario}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "keras"])
    parser.add_argument("--device", default="cuda", help="torch device (keras: ignored, TensorFlow picks)")
    parser.add_argument("--scenario", action="append", choices=["cnn", "transfer"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--synthetic-images", type=int, default=1200, help="per class (5 classes, 80 %% train)")
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--ceiling-steps", type=int, default=300)
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--code", type=Path, help="run the scenario with the package in this folder")
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu_pipeline.json")
    args = parser.parse_args()
    scenarios = args.scenario or ["cnn", "transfer"]
    gpu = args.device.startswith("cuda")
    rows = []
    with Sampler(gpu) as sampler, tempfile.TemporaryDirectory(prefix="mltelemetry-gpu-pipeline-") as tmp:
        for scenario in scenarios:
            row: dict = {"scenario": scenario, "backend": args.backend, "label": args.label}
            ceiling = torch_ceiling if args.backend == "torch" else keras_ceiling
            if not args.no_ceiling:
                rate, start, end = ceiling(scenario, args)
                row["ceiling"] = {"images_per_s": rate, "seconds": (end - start) / 1e9, **sampler.window(start, end)}
                time.sleep(1)  # let the utilisation average settle between the two measurements
            events = run_scenario(scenario, args, Path(tmp))
            if not args.no_ceiling:  # again after the scenario: a shared machine drifts; the mean is the ceiling
                rate_after = ceiling(scenario, args)[0]
                row["ceiling"].update(images_per_s_before=row["ceiling"]["images_per_s"],
                                      images_per_s_after=rate_after,
                                      images_per_s=(row["ceiling"]["images_per_s"] + rate_after) / 2)
            run = next(e for e in events if e.action == "run")
            if run.status != "ok":
                row["error"] = run.fields.get("error")
                rows.append(row)
                continue
            prepare = next(e for e in events if e.action == "prepare_data")
            train = next(e for e in events if e.action == "train")
            epochs = [e for e in events if e.action == "epoch"]
            n_train = prepare.fields["train_images"]
            later = [n_train / e.duration_s for e in epochs[1:]]
            row["scenario_run"] = {
                "train_images": n_train, "epochs": len(epochs), "prepare_data_s": prepare.duration_s,
                "train_s": train.duration_s, "images_per_s": n_train * len(epochs) / train.duration_s,
                "images_per_s_epochs_2plus": statistics.median(later) if later else None,
                "epoch_s": [round(e.duration_s, 3) for e in epochs],
                **sampler.window(train.start_ns, train.end_ns),
                "epoch_2plus_gpu_util_pct": (sampler.window(epochs[1].start_ns, epochs[-1].end_ns)["gpu_util_pct"]
                                             if len(epochs) > 1 else None),
            }
            if "ceiling" in row:
                row["ratio"] = row["scenario_run"]["images_per_s"] / row["ceiling"]["images_per_s"]
                if later:
                    row["ratio_epochs_2plus"] = row["scenario_run"]["images_per_s_epochs_2plus"] / \
                        row["ceiling"]["images_per_s"]
            rows.append(row)
            print(json.dumps(row, indent=1, default=str), flush=True)
    meta = {"label": args.label, "backend": args.backend, "device": args.device, "image_size": args.image_size,
            "batch_size": args.batch_size, "precision": args.precision, "synthetic_images": args.synthetic_images,
            "max_epochs": args.max_epochs, "ceiling_steps": args.ceiling_steps, "code": str(args.code or "."),
            "gpu": getattr(sampler, "gpu_name", None), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv),
            "commit": provenance()["commit"]}  # None where the code came as a wheel without git
    print_table(rows)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.label] = {"meta": meta, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"written to {args.out} [{args.label}]")


def print_table(rows: list[dict]) -> None:
    def fmt(value: float | None, spec: str = ".0f") -> str:
        return "-" if value is None else format(value, spec)

    print("| scenario | backend | label | ceiling img/s | ceiling GPU % | train img/s | epochs 2+ img/s | ratio "
          "| train GPU % | train GPU W | train CPU % | epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ceiling, run = row.get("ceiling", {}), row.get("scenario_run", {})
        print(f"| {row['scenario']} | {row['backend']} | {row['label']} | {fmt(ceiling.get('images_per_s'))} "
              f"| {fmt(ceiling.get('gpu_util_pct'))} | {fmt(run.get('images_per_s'))} "
              f"| {fmt(run.get('images_per_s_epochs_2plus'))} | {fmt(row.get('ratio'), '.2f')} "
              f"| {fmt(run.get('gpu_util_pct'))} | {fmt(run.get('gpu_power_w'))} | {fmt(run.get('cpu_pct'))} "
              f"| {run.get('epochs', row.get('error', '-'))} |")


if __name__ == "__main__":
    main()
