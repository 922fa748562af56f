"""Per window of a campaign (>= --min-s seconds): each GPU's energy from the exporter's counter series in the
store against the counter read directly beside the run (reference.py), per GPU and summed; and each GPU's mean
utilisation under its own ``gpu`` label. Both sides take a window's edges by linear interpolation between reads.

    python3 bench/multi_gpu/compare.py STORE reference.json --campaign multi --out compare.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

from mltelemetry import schema
from mltelemetry.store import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("reference")
    parser.add_argument("--campaign", required=True)
    parser.add_argument("--min-s", type=float, default=5.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    reference = json.load(open(args.reference))["gpus"]
    direct = {gpu: (np.array([r[0] for r in reads], np.int64), np.array([r[1] for r in reads], float) / 1000)
              for gpu, reads in reference.items()}
    rows = []
    with Store(args.store) as store:
        exported, utilisation = {}, {}
        for gpu in direct:
            frame = store.query(schema.GPU_ENERGY, {"gpu": gpu}).sort_values("ts_ns")
            exported[gpu] = (frame["ts_ns"].to_numpy(np.int64), frame["value"].to_numpy(float))
            frame = store.query(schema.GPU_UTILIZATION, {"gpu": gpu}).sort_values("ts_ns")
            utilisation[gpu] = (frame["ts_ns"].to_numpy(np.int64), frame["value"].to_numpy(float))
        events = [e for e in store.events(args.campaign) if e.action != "campaign"]
    for event in events:
        a, b = event.start_ns, event.end_ns
        if b is None or (b - a) / 1e9 < args.min_s:
            continue
        row = {"scenario": event.scenario, "run": event.run, "action": event.action, "epoch": event.epoch,
               "duration_s": (b - a) / 1e9, "gpus": {}}
        for gpu, (ts, joules) in direct.items():
            ets, ejoules = exported[gpu]
            ref = float(np.interp(b, ts, joules) - np.interp(a, ts, joules))
            got = float(np.interp(b, ets, ejoules) - np.interp(a, ets, ejoules))
            uts, uvalues = utilisation[gpu]
            inside = (uts >= a) & (uts <= b)
            row["gpus"][gpu] = {"reference_j": ref, "exporter_j": got, "error_pct": 100 * (got - ref) / ref,
                                "utilization": float(uvalues[inside].mean()) if inside.any() else None}
        ref_sum = sum(g["reference_j"] for g in row["gpus"].values())
        got_sum = sum(g["exporter_j"] for g in row["gpus"].values())
        row.update(reference_sum_j=ref_sum, exporter_sum_j=got_sum, sum_error_pct=100 * (got_sum - ref_sum) / ref_sum)
        rows.append(row)
    errors = [abs(r["sum_error_pct"]) for r in rows]
    summary = {"windows": len(rows), "median_abs_sum_error_pct": statistics.median(errors) if errors else None,
               "max_abs_sum_error_pct": max(errors) if errors else None,
               "within_0.5_pct": sum(e <= 0.5 for e in errors)}
    json.dump({"summary": summary, "windows": rows}, open(args.out, "w"), indent=1)
    print(f"{'scenario':10} {'run':>3} {'action':12} {'s':>6} " + " ".join(
        f"{'gpu' + g + ' J':>10} {'err %':>7} {'util':>5}" for g in direct) + f" {'sum err %':>9}")
    for r in rows:
        print(f"{r['scenario']:10} {r['run']:>3} {r['action']:12} {r['duration_s']:6.1f} " + " ".join(
            f"{g['reference_j']:10.1f} {g['error_pct']:7.3f} {(g['utilization'] or 0):5.2f}"
            for g in r["gpus"].values())
              + f" {r['sum_error_pct']:9.3f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
