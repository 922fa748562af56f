"""How exact is the GPU energy when the counter is read once a second and shaped by power in between?

Replays a store written by `exporter gpu --interval 0.1 --counter-interval 0` (the counter and instant power at every
tick): keeps the counter at every 10th tick only (each phase of the ten in turn), spreads each second's increase over
the ticks between by power, and compares the energy of windows >= 5 s (edges on ticks) with the counter read at
every tick. Two rules of spreading: the trapezoid between power readings (what `exporters/gpu/collector.py` does)
and each reading's power held until the next one (sample and hold), evaluated because NVML's power moves in 100 ms
steps. The rule is re-implemented here in numpy (the same arithmetic as the collector's `_shaped`).

    python bench/gpu/shaping.py STORE.db [STORE.db ...] [--every 10] [--rule trapezoid] [--out results.json]

``--every N``: the counter kept at one tick in N (10: once a second at 0.1 s, 20: every 2 s).

A `.db.gz` is unpacked to a temporary file first. Results: bench/overhead.md (GPU section).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mltelemetry import schema
from mltelemetry.store import Store

RULES = ("trapezoid", "sample and hold")
EVERY = 10  # the counter at one tick in ten: once a second at 0.1 s
MIN_TICKS = 50  # windows of >= 5 s at 0.1 s


def ticks(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (s), counter (J) and instant power (W) of GPU 0 at the ticks that have both."""
    with Store(path, create=False) as store:
        energy = store.query(schema.GPU_ENERGY, {"gpu": "0"})
        power = store.query(schema.GPU_POWER, {"gpu": "0", "kind": "instant"})
    both = energy.merge(power, on="ts_ns", suffixes=("_energy", "_power"))
    return (both["ts_ns"].to_numpy() / 1e9, both["value_energy"].to_numpy(np.float64),
            both["value_power"].to_numpy(np.float64))


def shaped(t: np.ndarray, energy: np.ndarray, power: np.ndarray, rule: str, phase: int,
           every: int = EVERY) -> tuple[np.ndarray, int, int]:
    """The energy series with the counter kept at ticks phase, phase + every, ... and shaped in between."""
    out = energy.copy()
    reads = list(range(phase, len(energy), every))
    for a, b in zip(reads, reads[1:]):
        dt, p = np.diff(t[a:b + 1]), power[a:b + 1]
        steps = (p[:-1] + p[1:]) / 2 * dt if rule == "trapezoid" else p[:-1] * dt
        out[a + 1:b + 1] = energy[a] + np.cumsum(steps) / steps.sum() * (energy[b] - energy[a])
    return out, reads[0], reads[-1]


def evaluate(path: Path, every: int = EVERY, rules: tuple[str, ...] = RULES) -> dict:
    t, energy, power = ticks(path)
    result = {"store": path.name, "ticks": len(t), "every": every, "rules": {}}
    for rule in rules:
        errors = []
        for phase in range(every):
            series, first, last = shaped(t, energy, power, rule, phase, every)
            edges = np.arange(first, last + 1)
            for i in edges[::3]:  # a sample of the windows: every 3rd start, every 7th end
                ends = edges[edges >= i + MIN_TICKS][::7]
                exact = energy[ends] - energy[i]
                ok = exact > 0
                errors.append(np.abs((series[ends][ok] - series[i]) / exact[ok] - 1))
        errors = np.concatenate(errors)
        result["rules"][rule] = {"windows": len(errors), "median": float(np.median(errors)),
                                 "p95": float(np.percentile(errors, 95)), "max": float(errors.max()),
                                 "within_0_5_percent": float(np.mean(errors <= 0.005))}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=EVERY, help="keep the counter at one tick in this many")
    parser.add_argument("--rule", choices=RULES, action="append", help="the rules to evaluate (default both)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rules = tuple(args.rule or RULES)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.stores:
            if path.suffix == ".gz":
                unpacked = Path(tmp) / path.stem
                with gzip.open(path) as packed, unpacked.open("wb") as out:
                    shutil.copyfileobj(packed, out)
                result = evaluate(unpacked, args.every, rules)
                result["store"] = str(path)
            else:
                result = evaluate(path, args.every, rules)
            results.append(result)
            print(f"{result['store']} ({result['ticks']} ticks)")
            for rule, r in result["rules"].items():
                print(f"  {rule:16} {r['windows']} windows: median {100 * r['median']:.3f} %, p95 "
                      f"{100 * r['p95']:.3f} %, max {100 * r['max']:.2f} %, within 0.5 %: "
                      f"{100 * r['within_0_5_percent']:.1f} %")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
