"""Benchmark of ``mltelemetry analyze`` (issue 6); results in bench/analysis.md.

A synthetic campaign as the issue sets it: 4 scenarios (baseline, idle, cnn, transfer) × 30 runs,
10 minutes each, 1 Hz, 40 series (meter, host, RAPL, one GPU, exporters' self-metrics), the ML runs
annotated to the epoch (20 epochs of 28 s). Timed as a user runs it, a fresh process each
(``python -m mltelemetry analyze …``, Python start-up and imports included), with the peak resident
memory of that process (``wait4``'s ``ru_maxrss``):

1. ``--format table`` from the embedded store (goal ≤ 5 s);
2. the same with ``--report DIR`` (goal ≤ 30 s);
3. ``--format table`` from a real Prometheus holding the same campaign (goal ≤ 30 s), the data
   backfilled with ``promtool tsdb create-blocks-from openmetrics`` (as in the tests) and the
   events laid out as a 1 s scrape of the workload leaves them at the campaign's end;
peak memory of each ≤ 1 GiB. The Prometheus analysis must give the store's numbers (checked on the
JSON of both).

    .venv/bin/python bench/analysis_bench.py [--runs 30] [--seconds 600] [--no-prometheus]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from overhead_bench import free_port
from provenance import provenance

from mltelemetry import schema
from mltelemetry.schema import Event
from mltelemetry.store import Store

S = 10**9
SCENARIOS = {"baseline": 60.0, "idle": 66.0, "cnn": 185.0, "transfer": 150.0}  # mean wall power, W
EPOCH_S, EPOCHS = 28, 20
GOALS = {"store_table_s": 5.0, "store_report_s": 30.0, "prometheus_table_s": 30.0, "peak_memory_mib": 1024.0}


def schedule(runs: int, seconds: int, pause: int = 10) -> list[tuple[str, int, int]]:
    """(scenario, run, start second) in the interleaved order the workload offers."""
    out, t = [], 60
    for run in range(1, runs + 1):
        for scenario in SCENARIOS:
            out.append((scenario, run, t))
            t += seconds + pause
    return out


def events_of(plan, seconds: int, origin_ns: int) -> list[Event]:
    rng = np.random.default_rng(1)

    def ev(scenario, run, action, a, b, epoch=None, **fields):
        return Event("bench", scenario, run, action, origin_ns + int(a * S), origin_ns + int(b * S), epoch,
                     fields=fields)

    end = plan[-1][2] + seconds + 30
    events = [ev("*", 0, "campaign", 30, end)]
    for scenario, run, t in plan:
        events.append(ev(scenario, run, "run", t, t + seconds,
                         **({"correct_classifications": 700 + run} if scenario in ("cnn", "transfer") else {})))
        if scenario in ("baseline", "idle"):
            events.append(ev(scenario, run, scenario, t, t + seconds))
            continue
        train = EPOCH_S * EPOCHS
        prepare = (seconds - train) // 2
        events += [ev(scenario, run, "prepare_data", t, t + prepare - 5),
                   ev(scenario, run, "create_model", t + prepare - 5, t + prepare),
                   ev(scenario, run, "train", t + prepare, t + prepare + train),
                   ev(scenario, run, "export", t + prepare + train, t + prepare + train + 5),
                   ev(scenario, run, "cleanup", t + prepare + train + 5, t + seconds)]
        for k in range(EPOCHS):
            a = t + prepare + k * EPOCH_S
            acc = 0.5 + 0.4 * (1 - math.exp(-k / 6)) + rng.normal(0, 0.01)
            events.append(ev(scenario, run, "epoch", a, a + EPOCH_S, epoch=k + 1, loss=1.5 - acc, accuracy=acc,
                             val_loss=1.6 - acc, val_accuracy=acc - 0.02))
    return events


def counter(power: np.ndarray) -> np.ndarray:
    """Joules at each whole second from the power held over each second before it."""
    return np.concatenate(([0.0], np.cumsum(power)[:-1]))


def series_values(plan, seconds: int, total_s: int) -> dict[tuple[str, tuple], np.ndarray]:
    """Every series' values at 0 … total_s − 1 s (counters integrated from their power)."""
    rng = np.random.default_rng(0)
    level = np.full(total_s, 0.0)
    for scenario, _, t in plan:
        level[t:t + seconds] = {"baseline": 0.0, "idle": 0.05, "cnn": 1.0, "transfer": 0.7}[scenario]
    meter = 60 + 125 * level + rng.normal(0, 2, total_s)
    gpu = 25 + 110 * level + rng.normal(0, 1.5, total_s)
    package = 12 + 30 * level + rng.normal(0, 0.5, total_s)
    host = {"host": "sut"}
    gpu_l = {"host": "sut", "gpu": "0", "uuid": "GPU-bench", "name": "Bench GPU"}
    v: dict[tuple[str, tuple], np.ndarray] = {}

    def put(metric, labels, values):
        v[(metric, tuple(sorted(labels.items())))] = np.asarray(values, np.float64)

    put(schema.PM_POWER, {**host, "meter": "wt310"}, meter)
    put(schema.PM_ENERGY, {**host, "meter": "wt310"}, counter(meter))
    put(schema.PM_SAMPLES, {**host, "meter": "wt310"}, np.arange(total_s))
    put(schema.PM_GAP, {**host, "meter": "wt310"}, np.zeros(total_s))
    put(schema.HOST_CPU_UTILIZATION, {**host, "cpu": "total"}, np.clip(0.03 + 0.6 * level, 0, 1))
    for core in ("0", "1"):
        put(schema.HOST_CPU_UTILIZATION, {**host, "cpu": core}, np.clip(0.03 + 0.6 * level, 0, 1))
    put(schema.HOST_MEMORY_USED, host, 4e9 + 3e9 * level)
    put(schema.HOST_MEMORY_AVAILABLE, host, 12e9 - 3e9 * level)
    put(schema.HOST_LOAD, {**host, "period": "1m"}, 0.1 + 2 * level)
    put(schema.HOST_DISK_READ, {**host, "device": "nvme0n1"}, counter(1e4 * level))
    put(schema.HOST_DISK_WRITTEN, {**host, "device": "nvme0n1"}, counter(2e3 + 1e3 * level))
    put(schema.HOST_NET_RECEIVED, {**host, "interface": "eth0"}, counter(500 + 2e4 * level))
    put(schema.HOST_NET_TRANSMITTED, {**host, "interface": "eth0"}, counter(300 + 1e3 * level))
    put(schema.HOST_RAPL_ENERGY, {**host, "zone": "package-0"}, counter(package))
    put(schema.HOST_RAPL_ENERGY, {**host, "zone": "core"}, counter(package * 0.7))
    put(schema.HOST_RAPL_ENERGY, {**host, "zone": "dram"}, counter(np.full(total_s, 4.0)))
    put(schema.GPU_ENERGY, {**gpu_l, "method": "nvml_counter"}, counter(gpu))
    put(schema.GPU_POWER, {**gpu_l, "kind": "instant"}, gpu)
    put(schema.GPU_POWER, {**gpu_l, "kind": "average"}, gpu)
    put(schema.GPU_TEMPERATURE, gpu_l, 35 + 40 * level + rng.normal(0, 0.3, total_s))
    put(schema.GPU_UTILIZATION, gpu_l, 0.95 * level)
    put(schema.GPU_MEMORY_UTILIZATION, gpu_l, 0.5 * level)
    put(schema.GPU_MEMORY_USED, gpu_l, 3e8 + 6e9 * level)
    put(schema.GPU_PSTATE, gpu_l, 8 - 6 * (level > 0.5))
    put(schema.GPU_PCIE_GENERATION, gpu_l, 1 + 3 * (level > 0.5))
    put(schema.GPU_PCIE_WIDTH, gpu_l, np.full(total_s, 16.0))
    for clock, base in (("sm", 1.98e9), ("memory", 2.6e9), ("graphics", 1.98e9)):
        put(schema.GPU_CLOCK, {**gpu_l, "clock": clock}, 0.3e9 + (base - 0.3e9) * (level > 0.5))
    put(schema.GPU_THROTTLE, gpu_l, np.zeros(total_s))
    put(schema.GPU_POWER_LIMIT, gpu_l, np.full(total_s, 700.0))
    put(schema.GPU_FAN, gpu_l, 0.3 + 0.4 * level)
    put(schema.GPU_UP, gpu_l, np.ones(total_s))
    for exporter in ("pm", "host", "gpu"):
        put(schema.EXPORTER_SAMPLE_DURATION, {**host, "exporter": exporter}, rng.gamma(2, 0.0005, total_s))
        put(schema.EXPORTER_SAMPLES, {**host, "exporter": exporter}, np.arange(total_s))
    return v


def build_store(path: Path, values, events, origin_ns: int, total_s: int) -> None:
    ts = origin_ns + np.arange(total_s, dtype=np.int64) * S
    with Store(path) as store:
        from mltelemetry.schema import Sample

        step = 3600
        for a in range(0, total_s, step):
            store.write(Sample(metric, dict(labels), float(x), int(t))
                        for (metric, labels), series in values.items()
                        for t, x in zip(ts[a:a + step], series[a:a + step]))
        store.write_events(events)


def openmetrics(path: Path, values, events, origin_ns: int, total_s: int) -> None:
    """The samples at their own timestamps; each event served at its end and for a minute after the campaign's."""
    campaign_end_s = max(e.end_ns for e in events) / S
    with path.open("w") as out:
        t_s = origin_ns / S + np.arange(total_s)
        for (metric, labels), series in sorted(values.items()):
            label_text = ",".join(f'{k}="{v}"' for k, v in labels + (("instance", "sut:9810"), ("job", "mlt")))
            prefix = f"{metric}{{{label_text}}} "
            out.writelines(f"{prefix}{float(x)!r} {t:.3f}\n" for t, x in zip(t_s, series))
        served: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for e in events:
            labels = {"campaign": e.campaign, "scenario": e.scenario, "run": str(e.run), "action": e.action,
                      "epoch": "" if e.epoch is None else str(e.epoch), "status": e.status}
            times = [math.floor(e.end_ns / S) + 1] + [math.floor(campaign_end_s) + k for k in range(1, 61)]
            items = [(schema.EVENT_START, labels, e.start_ns / S), (schema.EVENT_END, labels, e.end_ns / S)]
            items += [(schema.EVENT_FIELD, {**labels, "field": k}, float(x)) for k, x in e.fields.items()
                      if isinstance(x, (int, float))]
            for metric, lab, x in items:
                text = ",".join(f'{k}="{v}"' for k, v in sorted(lab.items()) if v != "")
                served.setdefault((metric, text), []).extend((t, x) for t in sorted(set(times)))
        for (metric, text), points in sorted(served.items()):
            out.writelines(f"{metric}{{{text}}} {x!r} {t}\n" for t, x in points)
        out.write("# EOF\n")


def timed(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of one analyze process; its stdout."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen([sys.executable, "-m", "mltelemetry", "analyze", *args], stdout=out,
                                   stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - t0
        process.returncode = os.waitstatus_to_exitcode(status)
        err = process.stderr.read()
        if process.returncode:
            sys.exit(f"analyze {' '.join(args)} failed: {err[-2000:]}")
        out.seek(0)
        return wall, usage.ru_maxrss / 1024, out.read()


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def compare_windows(store_rows: list[dict], other_rows: list[dict]) -> dict[str, float | int]:
    """Every numeric window figure of the store's analysis against another source's: the largest relative
    difference of those both give (an absolute one where the store's is 0), and counted, never skipped
    silently, the figures one source gives and the other does not (None or NaN)."""
    out = {"compared": 0, "worst_relative_difference": 0.0, "worst_absolute_difference_at_zero": 0.0,
           "missing_in_other_only": 0, "missing_in_store_only": 0, "missing_in_both": 0}
    for row_a, row_b in zip(store_rows, other_rows, strict=True):
        for key, x in row_a.items():
            y = row_b.get(key)
            if isinstance(x, str) or isinstance(y, str) or isinstance(x, bool):
                continue  # labels (scenario, action, status), not figures
            if is_number(x) and is_number(y):
                out["compared"] += 1
                if x == 0:
                    out["worst_absolute_difference_at_zero"] = max(out["worst_absolute_difference_at_zero"], abs(y))
                else:
                    out["worst_relative_difference"] = max(out["worst_relative_difference"], abs(y - x) / abs(x))
            elif is_number(x):
                out["missing_in_other_only"] += 1
            elif is_number(y):
                out["missing_in_store_only"] += 1
            else:
                out["missing_in_both"] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--no-prometheus", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("analysis_results.json"))
    args = parser.parse_args()
    plan = schedule(args.runs, args.seconds)
    total_s = plan[-1][2] + args.seconds + 120
    origin_ns = (time.time_ns() // S - total_s - 3600) // 3600 * 3600 * S  # ends ~1 h ago: inside retention
    events = events_of(plan, args.seconds, origin_ns)
    values = series_values(plan, args.seconds, total_s)
    results: dict = {**provenance(), "runs": len(plan), "run_seconds": args.seconds, "series": len(values),
                     "samples": len(values) * total_s, "events": len(events)}
    print(f"{results['runs']} runs, {results['series']} series, {results['samples']:,} samples, "
          f"{results['events']} events")
    with tempfile.TemporaryDirectory(prefix="mltelemetry-analysis-bench-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        build_store(tmp / "bench.db", values, events, origin_ns, total_s)
        print(f"store built in {time.perf_counter() - t0:.1f} s")
        wall, rss, _ = timed(["--campaign", "bench", "--source", str(tmp / "bench.db")])
        results.update(store_table_s=wall, store_table_peak_mib=rss)
        print(f"store, table: {wall:.2f} s, peak {rss:.0f} MiB")
        wall, rss, _ = timed(["--campaign", "bench", "--source", str(tmp / "bench.db"), "--report",
                              str(tmp / "report")])
        results.update(store_report_s=wall, store_report_peak_mib=rss)
        print(f"store, table + HTML report: {wall:.2f} s, peak {rss:.0f} MiB")
        if not args.no_prometheus:
            t0 = time.perf_counter()
            openmetrics(tmp / "bench.om", values, events, origin_ns, total_s)
            subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(tmp / "bench.om"),
                            str(tmp / "tsdb")], check=True, capture_output=True)
            (tmp / "bench.om").unlink()
            print(f"Prometheus blocks backfilled in {time.perf_counter() - t0:.1f} s")
            port = free_port()
            (tmp / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\n")
            server = subprocess.Popen(["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                                       "--storage.tsdb.retention.time=30d"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                url = f"http://127.0.0.1:{port}"
                for _ in range(300):
                    try:
                        if requests.get(f"{url}/-/ready", timeout=1).ok:
                            break
                    except requests.RequestException:
                        pass
                    time.sleep(0.2)
                wall, rss, _ = timed(["--campaign", "bench", "--source", url])
                results.update(prometheus_table_s=wall, prometheus_table_peak_mib=rss)
                print(f"Prometheus, table: {wall:.2f} s, peak {rss:.0f} MiB")
                _, _, from_prometheus = timed(["--campaign", "bench", "--source", url, "--format", "json"])
                _, _, from_store = timed(["--campaign", "bench", "--source", str(tmp / "bench.db"), "--format", "json"])
                comparison = compare_windows(json.loads(from_store)["windows"],
                                             json.loads(from_prometheus)["windows"])
                results["prometheus_against_store"] = comparison
                print(f"Prometheus against the store: {comparison}")
            finally:
                server.terminate()
                server.wait(timeout=30)
        shutil.rmtree(tmp / "report", ignore_errors=True)
    peak = max(v for k, v in results.items() if k.endswith("_peak_mib"))
    results["goals"] = GOALS
    results["met"] = {"store_table_s": results["store_table_s"] <= GOALS["store_table_s"],
                      "store_report_s": results["store_report_s"] <= GOALS["store_report_s"],
                      "peak_memory_mib": peak <= GOALS["peak_memory_mib"]}
    if "prometheus_table_s" in results:
        results["met"]["prometheus_table_s"] = results["prometheus_table_s"] <= GOALS["prometheus_table_s"]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["met"]))


if __name__ == "__main__":
    main()
