"""Every GPU's NVML energy counter read directly, beside a campaign: the reference for issue 15.

Reads ``nvmlDeviceGetTotalEnergyConsumption`` of every GPU every ``--period`` s (the counter itself changes
every 100 ms on Hopper) until SIGTERM/SIGINT, each read stamped with the wall clock at the middle of its own
call (the clock the events use), and writes ``{"gpus": {index: [[ns, mJ], ...]}}`` to ``--out``.

    python3 bench/multi_gpu/reference.py --out reference.json --period 0.02 &
"""

from __future__ import annotations

import argparse
import json
import signal
import time

import pynvml


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--period", type=float, default=0.02)
    args = parser.parse_args()
    pynvml.nvmlInit()
    handles = {i: pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())}
    reads: dict[int, list[tuple[int, int]]] = {i: [] for i in handles}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    next_at = time.monotonic()
    while not stopping:
        for i, handle in handles.items():
            before = time.time_ns()
            millijoules = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            reads[i].append(((before + time.time_ns()) // 2, millijoules))
        next_at += args.period
        time.sleep(max(0.0, next_at - time.monotonic()))
    with open(args.out, "w") as f:
        json.dump({"period_s": args.period, "gpus": reads}, f)
    print(f"reference: {sum(len(r) for r in reads.values())} reads of {len(handles)} GPUs -> {args.out}")


if __name__ == "__main__":
    main()
