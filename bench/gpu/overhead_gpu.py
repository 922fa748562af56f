"""GPU exporter overhead and window energy on a real GPU (issue 11), for the device machine.

Four GPU exporters on GPU 0 side by side, each writing to a store and serving /metrics, each scraped
every second (by Prometheus when it is installed, else by a keep-alive client here):

- ``--interval 1``;
- ``--interval 0.1`` (slow indicators once a second, the energy counter every tick);
- ``--interval 0.1 --counter-interval 0.5`` and ``1`` (the counter every 0.5 s / once a second, shaped by
  power in between).

Around ``load.py`` (bursty bf16 GEMMs, NVML's counter read directly every 0.5 s: the reference), it
prints each exporter's CPU-s per hour and RSS over the load, and the energy of every window of 5 s and
more between two direct reads, from each store, against the counter read directly (|error| median /
p95 / max, share within 0.5 %). Writes ``overhead_gpu.json`` and each exporter's store
(``overhead_gpu_N.db``, N in the order above) under ``--out``.

    python3 bench/gpu/overhead_gpu.py --out /tmp/out [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests

from mltelemetry import schema
from mltelemetry.analysis.energy import increases
from mltelemetry.store import Store

RUNS = {"1 s": ["--interval", "1"], "0.1 s": ["--interval", "0.1"],
        "0.1 s, counter every 0.5 s": ["--interval", "0.1", "--counter-interval", "0.5"],
        "0.1 s, counter every 1 s": ["--interval", "0.1", "--counter-interval", "1"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def scrape_every_second(urls: list[str], stop: threading.Event) -> None:
    sessions = [requests.Session() for _ in urls]
    while not stop.wait(1.0):
        for session, url in zip(sessions, urls):
            try:
                session.get(url, timeout=2)
            except requests.RequestException:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="load.py's --scale")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    ports = {name: free_port() for name in RUNS}
    exporters = {name: subprocess.Popen(
        [sys.executable, "-m", "mltelemetry", "exporter", "gpu", "--gpus", "0", *flags, "--host-label", "bench",
         "--store", str(tmp / f"{i}.db"), "--listen", f"127.0.0.1:{ports[name]}"],
        stderr=(out / f"overhead_gpu_exporter_{i}.log").open("wb")) for i, (name, flags) in enumerate(RUNS.items())}
    stop, background = threading.Event(), []
    urls = [f"http://127.0.0.1:{port}/metrics" for port in ports.values()]
    if shutil.which("prometheus"):
        config = tmp / "prometheus.yml"
        targets = [f"127.0.0.1:{port}" for port in ports.values()]
        config.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: b\n"
                          f"    honor_timestamps: true\n    static_configs: [{{targets: {targets!r}}}]\n")
        background.append(subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/p",
                                            f"--web.listen-address=127.0.0.1:{free_port()}"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        scraper = "Prometheus"
    else:
        threading.Thread(target=scrape_every_second, args=(urls, stop), daemon=True).start()
        scraper = "a keep-alive client"
    try:
        time.sleep(10)  # start-up, imports, first scrapes
        before = {name: cpu_seconds(p.pid) for name, p in exporters.items()}
        began = time.monotonic()
        load_script = str(Path(__file__).with_name("load.py"))
        subprocess.run([sys.executable, load_script, "--gpu", "0", "--out", str(out / "overhead_load.json"),
                        "--scale", str(args.scale)], check=True)
        window = time.monotonic() - began
        cpu = {name: (cpu_seconds(p.pid) - before[name]) / window * 3600 for name, p in exporters.items()}
        rss = {name: psutil.Process(p.pid).memory_info().rss / 1e6 for name, p in exporters.items()}
        time.sleep(3)  # the shaped series reaches the store up to a second late
    finally:
        stop.set()
        for p in [*exporters.values(), *background]:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
    load = json.loads((out / "overhead_load.json").read_text())
    marks = np.array(load["marks"], np.int64)
    inside = (marks[:, 0] >= load["load_start_ns"] - 3e9) & (marks[:, 0] <= load["load_end_ns"] + 3e9)
    marks = marks[inside]
    pairs = [(i, j) for i in range(len(marks)) for j in range(i + 1, len(marks)) if marks[j, 0] - marks[i, 0] >= 5e9]
    starts = np.array([marks[i, 0] for i, _ in pairs])
    ends = np.array([marks[j, 0] for _, j in pairs])
    exact = np.array([(marks[j, 1] - marks[i, 1]) / 1000 for i, j in pairs])
    results = {"scraper": scraper, "window_s": window, "windows": len(pairs), "runs": {}}
    print(f"GPU 0 ({load['name']}), load {window:.0f} s, /metrics scraped every 1 s by {scraper}; "
          f"{len(pairs)} windows >= 5 s between direct counter reads")
    print("| exporter | CPU-s per hour | RSS MB | window energy |error| median | p95 | max | windows within 0.5 % "
          "| method |")
    print("|---|---|---|---|---|---|---|---|")
    for i, name in enumerate(RUNS):
        with Store(tmp / f"{i}.db", create=False) as store:
            frame = store.query(schema.GPU_ENERGY, {"gpu": "0"})
        ts, values = frame["ts_ns"].to_numpy(np.int64), frame["value"].to_numpy(np.float64)
        error = np.abs(increases(ts, values, starts, ends) / exact - 1)
        method = ",".join(sorted(set(frame["method"])))
        results["runs"][name] = {"cpu_s_per_hour": cpu[name], "rss_mb": rss[name], "method": method,
                                 "error_median": float(np.nanmedian(error)),
                                 "error_p95": float(np.nanpercentile(error, 95)), "error_max": float(np.nanmax(error)),
                                 "within_0_5_percent": float(np.mean(error[~np.isnan(error)] <= 0.005)),
                                 "windows_without_energy": int(np.isnan(error).sum())}
        r = results["runs"][name]
        print(f"| {name} | {cpu[name]:.1f} | {rss[name]:.0f} | {100 * r['error_median']:.3f} % | "
              f"{100 * r['error_p95']:.3f} % | {100 * r['error_max']:.3f} % | {100 * r['within_0_5_percent']:.1f} % | "
              f"{method} |")
    (out / "overhead_gpu.json").write_text(json.dumps(results, indent=1))
    for i in range(len(RUNS)):  # each exporter's store, for a look at its power against its counter
        shutil.copy(tmp / f"{i}.db", out / f"overhead_gpu_{i}.db")


if __name__ == "__main__":
    main()
