"""Exporter CPU time with nothing else touching NVML: one exporter process at a time, GPU idle.

For each case the exporter (``python3 -m mltelemetry.exporters.gpu``, store and /metrics on)
warms up for 5 s, then its user + system CPU time is read over the measured window, with or
without a scrape of /metrics every second from this process.

    python3 bench/gpu/cpu_alone.py --out DIR [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil


def run(out: Path, interval: str, scrape: bool, seconds: float) -> dict:
    port = 9950
    store = out / f"cpu_r{interval}{'_scraped' if scrape else ''}.db"
    store.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "mltelemetry.exporters.gpu", "--interval", interval, "--store", str(store),
           "--listen", f"127.0.0.1:{port}", "--host-label", "bench"]
    popen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = psutil.Process(popen.pid)
    time.sleep(5)
    t0, c0 = time.monotonic(), sum(proc.cpu_times()[:2])
    scrapes = 0
    while time.monotonic() - t0 < seconds:
        if scrape:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            scrapes += 1
        time.sleep(1.0)
    t1, c1 = time.monotonic(), sum(proc.cpu_times()[:2])
    popen.send_signal(signal.SIGINT)
    popen.wait(timeout=30)
    store.unlink(missing_ok=True)
    used, wall = c1 - c0, t1 - t0
    return {"interval_s": float(interval), "scraped_every_s": 1.0 if scrape else None, "scrapes": scrapes,
            "wall_s": round(wall, 2), "cpu_s": round(used, 3), "cpu_s_per_hour": round(used / wall * 3600, 2),
            "percent_of_one_core": round(used / wall * 100, 4), "cpu_ms_per_tick": round(
                used / (wall / float(interval)) * 1000, 3), "exit_code": popen.returncode, "cmd": " ".join(cmd)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run(out, "1", False, args.seconds), run(out, "1", True, args.seconds),
               run(out, "0.1", False, args.seconds)]
    (out / "cpu_alone.json").write_text(json.dumps(results, indent=1))
    for r in results:
        print(f"interval {r['interval_s']} s, scraped {r['scraped_every_s']}: {r['cpu_s_per_hour']} CPU-s/h "
              f"({r['percent_of_one_core']} % of a core, {r['cpu_ms_per_tick']} ms/tick) over {r['wall_s']} s")


if __name__ == "__main__":
    main()
