"""Energy over windows from the exporters' stores against NVML's counter read directly (bench/gpu/load.py).

For each sampling interval and window it compares, against the direct counter difference:
- ``exporter_counter``: the exporter's gpu_energy_joules_total, linearly interpolated at the edges;
- ``int_instant_power``: the trapezoidal integral of gpu_power_watts{kind="instant"};
- ``int_average_power``: the same of gpu_power_watts{kind="average"} (NVML's 1 s average).

    python3 bench/gpu/analyze.py DIR [--tag main] [--multi-tag multi]  → DIR/results.json, prints tables
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mltelemetry import schema
from mltelemetry.store import Store

METHODS = ("exporter_counter", "int_instant_power", "int_average_power")


def series(store: Store, metric: str, **labels: str) -> tuple[np.ndarray, np.ndarray]:
    frame = store.query(metric, labels).sort_values("ts_ns")
    return frame["ts_ns"].to_numpy(np.int64), frame["value"].to_numpy(float)


def integral(ts: np.ndarray, watts: np.ndarray, a: int, b: int) -> float:
    inside = (ts > a) & (ts < b)
    t = np.concatenate([[a], ts[inside], [b]]).astype(float) / 1e9
    p = np.concatenate([[np.interp(a, ts, watts)], watts[inside], [np.interp(b, ts, watts)]])
    return float(np.sum((p[1:] + p[:-1]) / 2 * np.diff(t)))


def energies(data: dict, a: int, b: int) -> dict[str, float]:
    ts, joules = data["counter"]
    return {"exporter_counter": float(np.interp(b, ts, joules) - np.interp(a, ts, joules)),
            "int_instant_power": integral(*data["instant"], a, b),
            "int_average_power": integral(*data["average"], a, b)}


def analyse_rate(path: Path, load: dict) -> dict:
    gpu = str(load["gpu"])
    with Store(path) as store:
        data = {"counter": series(store, schema.GPU_ENERGY, gpu=gpu),
                "instant": series(store, schema.GPU_POWER, gpu=gpu, kind="instant"),
                "average": series(store, schema.GPU_POWER, gpu=gpu, kind="average")}
        methods = sorted(set(store.query(schema.GPU_ENERGY, {"gpu": gpu})["method"]))
        duration = store.query(schema.EXPORTER_SAMPLE_DURATION)["value"].to_numpy()
        missed = store.query(schema.EXPORTER_MISSED_TICKS)["value"].to_numpy()
        errors = store.query(schema.EXPORTER_ERRORS)["value"].to_numpy()
    ts = data["counter"][0]
    marks = np.array(load["marks"], dtype=np.int64)
    mts, mj = marks[:, 0], marks[:, 1] / 1000.0
    keep = (mts >= ts[0]) & (mts <= ts[-1])
    mts, mj = mts[keep], mj[keep]

    def window(i: int, j: int) -> dict:
        ref = float(mj[j] - mj[i])
        got = energies(data, int(mts[i]), int(mts[j]))
        return {"start_ns": int(mts[i]), "seconds": round((mts[j] - mts[i]) / 1e9, 3),
                "direct_counter_j": round(ref, 3),
                **{m: round(v, 3) for m, v in got.items()},
                **{f"{m}_error_pct": round((v - ref) / ref * 100, 3) for m, v in got.items()}}

    def nearest(t: int) -> int:
        return int(np.argmin(np.abs(mts - t)))

    result = {"store": path.name, "energy_method_label": methods, "ticks": int(len(ts)),
              "tick_interval_s": {"median": round(float(np.median(np.diff(ts))) / 1e9, 4),
                                  "max": round(float(np.max(np.diff(ts))) / 1e9, 4)},
              "tick_duration_ms": {"median": round(float(np.median(duration)) * 1e3, 3),
                                   "p99": round(float(np.percentile(duration, 99)) * 1e3, 3),
                                   "max": round(float(np.max(duration)) * 1e3, 3)},
              "missed_ticks": float(missed.max()) if len(missed) else None,
              "errors": float(errors.max()) if len(errors) else None}
    # The whole load with 1.5 s of idle on each side, then each phase.
    whole = window(nearest(load["load_start_ns"] - 1_500_000_000), nearest(load["load_end_ns"] + 1_500_000_000))
    result["load_window"] = whole
    result["phases"] = {p["name"]: window(nearest(p["start_ns"]), nearest(p["end_ns"])) for p in load["phases"]}
    # Every window between two direct reads about 5, 10 and 20 s apart, edges anywhere in the load.
    sliding = {}
    for length in (5, 10, 20):
        rows = []
        for i in range(len(mts)):
            j = int(np.searchsorted(mts, mts[i] + length * 1_000_000_000))
            if j < len(mts) and abs((mts[j] - mts[i]) / 1e9 - length) < 0.3:
                rows.append(window(i, j))
        errs = {m: np.abs([r[f"{m}_error_pct"] for r in rows]) for m in METHODS}
        sliding[f"{length}s"] = {"windows": len(rows), **{
            m: {"median_abs_error_pct": round(float(np.median(e)), 3),
                "p95_abs_error_pct": round(float(np.percentile(e, 95)), 3),
                "max_abs_error_pct": round(float(np.max(e)), 3)} for m, e in errs.items()}}
    result["sliding_windows"] = sliding
    return result


def analyse_multi(directory: Path, tag: str) -> dict:
    load = json.loads((directory / f"{tag}_load.json").read_text())
    stores = sorted(directory.glob(f"{tag}_r*.db"))
    out = {"load_gpu": load["gpu"], "gpus": {}}
    with Store(stores[0]) as store:
        for _, _, labels in store.series(schema.GPU_UP):
            gpu = labels["gpu"]
            row = {"uuid": labels["uuid"], "name": labels["name"]}
            for metric, key, extra in ((schema.GPU_POWER, "power_w", {"kind": "instant"}),
                                       (schema.GPU_UTILIZATION, "utilization", {}),
                                       (schema.GPU_ENERGY, "energy_j", {})):
                ts, v = series(store, metric, gpu=gpu, **extra)
                idle = (ts < load["load_start_ns"]) & (ts >= load["marks"][0][0])
                busy = (ts >= load["load_start_ns"]) & (ts <= load["load_end_ns"])
                if key == "energy_j":
                    row["energy_during_load_j"] = round(float(np.interp(load["load_end_ns"], ts, v)
                                                              - np.interp(load["load_start_ns"], ts, v)), 1)
                else:
                    row[f"{key}_idle_mean"] = round(float(v[idle].mean()), 3)
                    row[f"{key}_load_mean"] = round(float(v[busy].mean()), 3)
            out["gpus"][gpu] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--tag", default="main")
    parser.add_argument("--multi-tag", default=None)
    args = parser.parse_args()
    directory = Path(args.directory)
    load = json.loads((directory / f"{args.tag}_load.json").read_text())
    results: dict = {"gpu": load["gpu"], "gpu_name": load["name"], "rates": {}}
    for path in sorted(directory.glob(f"{args.tag}_r*.db")):
        interval = path.stem.split("_r", 1)[1]
        results["rates"][interval] = analyse_rate(path, load)
    if args.multi_tag and (directory / f"{args.multi_tag}_load.json").exists():
        results["multi_gpu"] = analyse_multi(directory, args.multi_tag)
    (directory / "results.json").write_text(json.dumps(results, indent=1))

    print(f"GPU {results['gpu']} {results['gpu_name']}")
    for interval, r in results["rates"].items():
        w = r["load_window"]
        print(f"\n== interval {interval} s: {r['ticks']} ticks, tick median {r['tick_duration_ms']['median']} ms "
              f"(p99 {r['tick_duration_ms']['p99']}), missed {r['missed_ticks']}, errors {r['errors']}")
        print(f"{'window':<14}{'s':>7}{'direct J':>11}" + "".join(f"{m:>26}" for m in METHODS))
        for name, x in [("load", w), *r["phases"].items()]:
            print(f"{name:<14}{x['seconds']:>7}{x['direct_counter_j']:>11}" + "".join(
                f"{x[m]:>16} ({x[m + '_error_pct']:+.2f}%)" for m in METHODS))
        for length, s in r["sliding_windows"].items():
            print(f"sliding {length} ({s['windows']} windows), max |error| %: "
                  + ", ".join(f"{m} {s[m]['max_abs_error_pct']} (median {s[m]['median_abs_error_pct']})"
                              for m in METHODS))
    if "multi_gpu" in results:
        print("\n== multi-GPU, load on GPU", results["multi_gpu"]["load_gpu"])
        for gpu, row in results["multi_gpu"]["gpus"].items():
            print(gpu, row)


if __name__ == "__main__":
    main()
