"""Bursty PyTorch load on one GPU, with the NVML energy counter read directly every 0.5 s.

Writes JSON: the phases (name, start/end wall ns) and ``marks``: (wall ns, counter mJ) pairs,
each stamped at the middle of its own nvmlDeviceGetTotalEnergyConsumption call. The marks are
the reference the exporter's energy is compared against (windows between any two marks).

    python3 bench/gpu/load.py --gpu 0 --out load.json [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import pynvml
import torch

# (name, burst s, pause s, repeats): about 58 s of load at scale 1.
PHASES = [
    ("long_bursts", 3.0, 2.0, 4),
    ("half_second", 0.5, 0.5, 10),
    ("bursty_0.3s", 0.3, 0.3, 20),
    ("short_0.1s", 0.1, 0.15, 40),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply repeats (0.2 for a short run)")
    parser.add_argument("--lead", type=float, default=3.0, help="idle seconds before and after the load")
    args = parser.parse_args()

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(args.gpu)
    marks: list[tuple[int, int]] = []
    stop = threading.Event()

    def mark() -> None:
        before = time.time_ns()
        mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        after = time.time_ns()
        marks.append(((before + after) // 2, mj))

    def marker() -> None:
        while not stop.wait(0.5):
            mark()

    device = torch.device(f"cuda:{args.gpu}")
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)

    def burst(seconds: float) -> int:
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            for _ in range(4):
                a @ b
            torch.cuda.synchronize(device)
            n += 4
        return n

    thread = threading.Thread(target=marker, daemon=True)
    mark()
    thread.start()
    time.sleep(args.lead)
    phases = []
    load_start = time.time_ns()
    for name, on, off, repeats in PHASES:
        t0, products = time.time_ns(), 0
        for _ in range(max(1, round(repeats * args.scale))):
            products += burst(on)
            time.sleep(off)
        phases.append({"name": name, "burst_s": on, "pause_s": off, "start_ns": t0, "end_ns": time.time_ns(),
                       "products": products})
    load_end = time.time_ns()
    time.sleep(args.lead)
    stop.set()
    thread.join()
    mark()
    with open(args.out, "w") as f:
        json.dump({"gpu": args.gpu, "name": pynvml.nvmlDeviceGetName(handle), "load_start_ns": load_start,
                   "load_end_ns": load_end, "phases": phases, "marks": marks}, f)
    print(f"load on GPU {args.gpu}: {(load_end - load_start) / 1e9:.1f} s, {len(marks)} counter marks, "
          f"{(marks[-1][1] - marks[0][1]) / 1000:.1f} J from first to last mark")


if __name__ == "__main__":
    main()
