"""Transformer scenarios on a GPU: tokens/s, mean GPU utilisation and power inside their windows.

Runs ``lm-train`` then ``lm-infer`` (from the lm-train export) as campaigns on the embedded store while a thread
samples NVML (utilisation, power, the energy counter) every 50 ms, then reports per window kind: tokens, seconds,
tokens/s, mean utilisation, mean power and the energy counter's increase per token.

    python bench/lm_gpu.py --out results.json [--d-model 256 --layers 4 ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import pynvml

from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, run_campaign
from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.lm_config import LMConfig


class Sampler(threading.Thread):
    def __init__(self, period_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        self.period_s, self.rows, self.stop = period_s, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            util = pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
            power = pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000
            energy = pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000
            self.rows.append((time.time_ns(), util, power, energy))
            time.sleep(self.period_s)


def window_figures(rows, start_ns: int, end_ns: int) -> dict:
    inside = [r for r in rows if start_ns <= r[0] <= end_ns]
    before = [r for r in rows if r[0] <= start_ns][-1:] or inside[:1]
    after = [r for r in rows if r[0] >= end_ns][:1] or inside[-1:]
    return {"util": sum(r[1] for r in inside) / max(1, len(inside)),
            "power_w": sum(r[2] for r in inside) / max(1, len(inside)),
            "energy_j": after[0][3] - before[0][3] if before and after else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--d-model", type=int, default=LMConfig.d_model)
    parser.add_argument("--layers", type=int, default=LMConfig.layers)
    parser.add_argument("--heads", type=int, default=LMConfig.heads)
    parser.add_argument("--context", type=int, default=LMConfig.context)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=LMConfig.steps_per_epoch)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    lm = LMConfig(d_model=args.d_model, layers=args.layers, heads=args.heads, context=args.context,
                  max_epochs=args.epochs, steps_per_epoch=args.steps, target_val_loss=None)
    cfg = MLConfig(backend="torch", device="cuda", batch_size=args.batch_size, precision=args.precision,
                   export_dir=work / "exports", workdir=work, lm=lm)
    sampler = Sampler()
    sampler.start()
    store = work / "lm.db"
    run_campaign(store, CampaignPlan("train", ["lm-train"], args.runs, 1, pause_s=2, config=cfg), show_progress=False)
    cfg.lm.checkpoint = work / "exports" / "train" / "lm-train-run001"
    run_campaign(store, CampaignPlan("infer", ["lm-infer"], args.runs, 1, pause_s=2, config=cfg), show_progress=False)
    time.sleep(0.5)
    sampler.stop.set()
    sampler.join()
    results = []
    with Store(store) as s:
        for campaign in ("train", "infer"):
            for e in s.events(campaign):
                if e.action in ("epoch", "train", "prefill", "decode"):
                    tokens = e.fields.get("tokens")
                    figures = window_figures(sampler.rows, e.start_ns, e.end_ns)
                    results.append({"campaign": campaign, "run": e.run, "action": e.action, "epoch": e.epoch,
                                    "seconds": e.duration_s, "tokens": tokens,
                                    "tokens_per_s": tokens / e.duration_s if tokens else None,
                                    "j_per_token": figures["energy_j"] / tokens if tokens else None, **figures})
    settings = {**lm.model_settings(), "batch_size": args.batch_size, "precision": args.precision,
                "steps_per_epoch": args.steps, "epochs": args.epochs, "prefill_rounds": lm.prefill_rounds,
                "decode_rounds": lm.decode_rounds, "prompts": lm.prompts}
    args.out.write_text(json.dumps({"settings": settings, "windows": results}, indent=1))
    for r in results:
        print(f"{r['campaign']:6} run {r['run']} {r['action']:8} {r['epoch'] or '':>3} {r['seconds']:7.2f} s "
              f"{(r['tokens_per_s'] or 0):12.0f} tok/s util {r['util']:5.1f} % {r['power_w']:6.1f} W "
              f"{(r['j_per_token'] or 0) * 1e6:9.3f} µJ/token")


if __name__ == "__main__":
    main()
