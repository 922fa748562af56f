"""How often NVML's energy counter and instant power actually change, idle and under load.

Reads the counter (nvmlDeviceGetTotalEnergyConsumption, ~4 ms a call) and the instant power
field (186) back to back in a tight loop for 2 s idle, then 3 s while a PyTorch GEMM loop runs,
and reports the median time between changes of each.

    python3 bench/gpu/update_period.py [--gpu 0] [--out period.json]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np
import pynvml
import torch


def changes(ts: list[float], values: list[float]) -> dict:
    t, v = np.array(ts), np.array(values)
    at = t[1:][np.diff(v) != 0]
    gaps = np.diff(at)
    return {"reads": len(t), "changes": int(len(at)), "median_interval_ms": round(float(np.median(gaps)) * 1e3, 2)
            if len(gaps) else None, "p10_ms": round(float(np.percentile(gaps, 10)) * 1e3, 2) if len(gaps) else None,
            "p90_ms": round(float(np.percentile(gaps, 90)) * 1e3, 2) if len(gaps) else None}


def probe(handle, seconds: float) -> dict:
    tc, vc, tp, vp = [], [], [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        c = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        tc.append(time.perf_counter())
        vc.append(c)
        for _ in range(20):  # power is cheap: read it more often than the counter
            p = pynvml.nvmlDeviceGetFieldValues(handle, [186])[0].value.uiVal
            tp.append(time.perf_counter())
            vp.append(p)
            time.sleep(0.0002)
    return {"energy_counter": changes(tc, vc), "instant_power": changes(tp, vp)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(args.gpu)
    device = torch.device(f"cuda:{args.gpu}")
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    torch.cuda.synchronize(device)
    time.sleep(1.0)
    result = {"idle": probe(handle, 2.0)}
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for _ in range(8):
                a @ a
            torch.cuda.synchronize(device)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.5)
    result["load"] = probe(handle, 3.0)
    stop.set()
    thread.join()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
