"""Run GPU exporters (one process per sampling interval) around bench/gpu/load.py and measure them.

Each exporter is the real command, ``python3 -m mltelemetry.exporters.gpu``, writing into its
own embedded store and serving /metrics. Their CPU time (user + system, psutil) is read when
the load starts and when it ends, so start-up is not counted; /metrics is scraped once, after
that window, from the first exporter.

    python3 bench/gpu/run_exporters.py --out DIR --tag main --intervals 0.1,1 --gpus 0 --load-gpu 0
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--tag", default="main")
    parser.add_argument("--intervals", default="0.1,1")
    parser.add_argument("--gpus", default="all", help="--gpus for the exporters")
    parser.add_argument("--load-gpu", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--lead", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    exporters = []
    for k, interval in enumerate(args.intervals.split(",")):
        port = 9900 + k
        store = out / f"{args.tag}_r{interval}.db"
        store.unlink(missing_ok=True)
        log = open(out / f"{args.tag}_exporter_r{interval}.log", "w")
        cmd = [sys.executable, "-m", "mltelemetry.exporters.gpu", "--interval", interval, "--store", str(store),
               "--listen", f"127.0.0.1:{port}", "--gpus", args.gpus, "--host-label", "bench"]
        popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        exporters.append({"interval_s": float(interval), "port": port, "store": store.name, "cmd": " ".join(cmd),
                          "popen": popen, "proc": psutil.Process(popen.pid), "log": log})
    time.sleep(args.warmup)
    for e in exporters:
        if e["popen"].poll() is not None:
            raise SystemExit(f"exporter {e['cmd']} exited with {e['popen'].returncode}")
        e["cpu_at_load_start"] = cpu_s(e["proc"])
    t_a = time.monotonic()
    load_json = out / f"{args.tag}_load.json"
    subprocess.run([sys.executable, str(HERE / "load.py"), "--gpu", str(args.load_gpu), "--out", str(load_json),
                    "--scale", str(args.scale), "--lead", str(args.lead)], check=True)
    t_b = time.monotonic()
    for e in exporters:
        e["cpu_at_load_end"] = cpu_s(e["proc"])
        e["rss_bytes"] = e["proc"].memory_info().rss
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{exporters[0]['port']}/metrics", timeout=10).read()
    (out / f"{args.tag}_metrics.txt").write_bytes(scrape)
    report = []
    for e in exporters:
        e["popen"].send_signal(signal.SIGINT)
    for e in exporters:
        e["popen"].wait(timeout=30)
        e["log"].close()
        window = t_b - t_a
        used = e["cpu_at_load_end"] - e["cpu_at_load_start"]
        report.append({
            "interval_s": e["interval_s"], "cmd": e["cmd"], "store": e["store"], "exit_code": e["popen"].returncode,
            "measured_wall_s": round(window, 3), "cpu_s_in_window": round(used, 3),
            "cpu_s_per_hour": round(used / window * 3600, 2), "percent_of_one_core": round(used / window * 100, 4),
            "cpu_s_before_window (start-up + warm-up)": round(e["cpu_at_load_start"], 3),
            "rss_mib": round(e["rss_bytes"] / 2**20, 1),
        })
    (out / f"{args.tag}_monitor.json").write_text(json.dumps({"cpu_count": os.cpu_count(), "exporters": report},
                                                             indent=1))
    for r in report:
        print(f"exporter at {r['interval_s']} s: {r['cpu_s_per_hour']} CPU-s/h ({r['percent_of_one_core']} % of a core)"
              f" over {r['measured_wall_s']} s, exit {r['exit_code']}")


if __name__ == "__main__":
    main()
