"""GPU exporter overhead and window energy on a real GPU (issue 11), for the device machine.

Four GPU exporters on GPU 0, side by side (or one at a time with ``--sequential``), each writing to a store
and serving /metrics, each scraped every second (by Prometheus when it is installed, else by a keep-alive
client here):

- ``--interval 1``;
- ``--interval 0.1 --counter-interval 0`` (slow indicators once a second, the energy counter every tick);
- ``--interval 0.1 --counter-interval 0.5``, ``--interval 0.1 --counter-interval 1`` and ``--interval 0.1``
  (the counter every 0.5 s / every second / every 2 s, the default since issue 11's fourth session; shaped by
  power in between).

Around ``load.py`` (bursty bf16 GEMMs, NVML's counter read directly every 0.5 s: the reference), it
prints each exporter's CPU-s per hour and RSS over the load, and the energy of every window of 5 s and
more between two direct reads, from each store, against the counter read directly (|error| median /
p95 / max, share within 0.5 %). Writes ``overhead_gpu.json`` and each exporter's store
(``overhead_gpu_N.db``, N in the order above) under ``--out``.

    python3 bench/gpu/overhead_gpu.py --out /tmp/out [--scale 1.0] [--sequential] [--codecarbon DIR]
        [--base-site DIR] [--repeat N]

``--base-site DIR``: beside each exporter the same exporter of another version of mltelemetry (installed with
``pip install --target DIR``), around the same load: the ratio of the two is what a change is worth on a machine
whose load moves every figure between runs. ``--repeat N``: the whole measurement N times.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
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

sys.path.insert(0, str(Path(__file__).parents[1]))  # bench/: the CodeCarbon tracker and free_port of overhead_bench
from overhead_bench import CODECARBON, cpu_seconds, free_port, python_env  # noqa: E402

RUNS = {"1 s": ["--interval", "1"], "0.1 s, counter every tick": ["--interval", "0.1", "--counter-interval", "0"],
        "0.1 s, counter every 0.5 s": ["--interval", "0.1", "--counter-interval", "0.5"],
        "0.1 s, counter every 1 s": ["--interval", "0.1", "--counter-interval", "1"],
        "0.1 s, counter every 2 s (the default)": ["--interval", "0.1"]}


def scrape_every_second(urls: list[str], stop: threading.Event) -> None:
    sessions = [requests.Session() for _ in urls]
    while not stop.wait(1.0):
        for session, url in zip(sessions, urls):
            try:
                session.get(url, timeout=2)
            except requests.RequestException:
                pass


def start_scraper(ports: list[int], tmp: Path, stop: threading.Event) -> tuple[str, subprocess.Popen | None]:
    """Prometheus scraping every second where it is installed, else a keep-alive client."""
    if shutil.which("prometheus"):
        config = tmp / "prometheus.yml"
        targets = [f"127.0.0.1:{port}" for port in ports]
        config.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: b\n"
                          f"    honor_timestamps: true\n    static_configs: [{{targets: {targets!r}}}]\n")
        return "Prometheus", subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/p",
             f"--web.listen-address=127.0.0.1:{free_port()}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    threading.Thread(target=scrape_every_second, args=(urls, stop), daemon=True).start()
    return "a keep-alive client", None


CODECARBON_RUN = "codecarbon OfflineEmissionsTracker(measure_power_secs=1)"


def start_codecarbon(path: str) -> subprocess.Popen:
    """CodeCarbon's tracker in a process of its own, importing from ``path`` (its wheels, kept out of the
    exporters' environment), as bench/overhead_bench.py runs it; returns once it tracks."""
    process = subprocess.Popen([sys.executable, "-c", CODECARBON], stdout=subprocess.PIPE, text=True,
                               env=python_env(sys.executable, path))
    if process.stdout.readline().strip() != "ready":
        sys.exit("codecarbon did not start")
    return process


BASE = " (base)"  # a run of the --base-site version


def measure(names: list[str], tmp: Path, out: Path, scale: float, codecarbon: str | None = None,
            base_site: str | None = None, python: str = sys.executable) -> dict:
    """Run the exporters ``names`` side by side (with the interpreter ``python``) around one load.py (and
    CodeCarbon's tracker where ``codecarbon`` names its wheels' folder); their CPU-s/h, RSS and stores' windows.
    A name ending in BASE runs the version installed in ``base_site``."""
    ports = {name: free_port() for name in names}
    index = {name: f"{list(RUNS).index(name.removesuffix(BASE))}{'b' if name.endswith(BASE) else ''}"
             for name in names}
    exporters = {name: subprocess.Popen(
        [python, "-m", "mltelemetry", "exporter", "gpu", "--gpus", "0", *RUNS[name.removesuffix(BASE)],
         "--host-label", "bench", "--store", str(tmp / f"{index[name]}.db"), "--listen", f"127.0.0.1:{ports[name]}"],
        env=python_env(python, base_site if name.endswith(BASE) else None),
        stderr=(out / f"overhead_gpu_exporter_{index[name]}.log").open("wb")) for name in names}
    stop = threading.Event()
    scraper, prometheus = start_scraper(list(ports.values()), tmp, stop)
    measured = dict(exporters)
    if codecarbon:
        measured[CODECARBON_RUN] = start_codecarbon(codecarbon)
    load_file = out / f"overhead_load_{index[names[0]]}.json"
    try:
        time.sleep(10)  # start-up, imports, first scrapes
        before = {name: cpu_seconds(p) for name, p in measured.items()}
        began = time.monotonic()
        load_script = str(Path(__file__).with_name("load.py"))
        subprocess.run([sys.executable, load_script, "--gpu", "0", "--out", str(load_file), "--scale", str(scale)],
                       check=True)
        window = time.monotonic() - began
        cpu = {name: (cpu_seconds(p) - before[name]) / window * 3600 for name, p in measured.items()}
        rss = {name: psutil.Process(p.pid).memory_info().rss / 1e6 for name, p in measured.items()}
        time.sleep(3)  # the shaped series reaches the store up to a second late
    finally:
        stop.set()
        for p in [*measured.values(), *([prometheus] if prometheus else [])]:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
    load = json.loads(load_file.read_text())
    marks = np.array(load["marks"], np.int64)
    inside = (marks[:, 0] >= load["load_start_ns"] - 3e9) & (marks[:, 0] <= load["load_end_ns"] + 3e9)
    marks = marks[inside]
    pairs = [(i, j) for i in range(len(marks)) for j in range(i + 1, len(marks)) if marks[j, 0] - marks[i, 0] >= 5e9]
    starts = np.array([marks[i, 0] for i, _ in pairs])
    ends = np.array([marks[j, 0] for _, j in pairs])
    exact = np.array([(marks[j, 1] - marks[i, 1]) / 1000 for i, j in pairs])
    runs = {}
    if codecarbon:
        runs[CODECARBON_RUN] = {"cpu_s_per_hour": cpu[CODECARBON_RUN], "rss_mb": rss[CODECARBON_RUN],
                                "beside": names, "load_s": window, "gpu": load["name"]}
    for name in names:
        with Store(tmp / f"{index[name]}.db", create=False) as store:
            frame = store.query(schema.GPU_ENERGY, {"gpu": "0"})
        ts, values = frame["ts_ns"].to_numpy(np.int64), frame["value"].to_numpy(np.float64)
        error = np.abs(increases(ts, values, starts, ends) / exact - 1)
        method = ",".join(sorted(set(frame["method"])))
        runs[name] = {"cpu_s_per_hour": cpu[name], "rss_mb": rss[name], "method": method,
                      "scraper": scraper, "load_s": window, "windows": len(pairs), "gpu": load["name"],
                      "error_median": float(np.nanmedian(error)), "error_p95": float(np.nanpercentile(error, 95)),
                      "error_max": float(np.nanmax(error)),
                      "within_0_5_percent": float(np.mean(error[~np.isnan(error)] <= 0.005)),
                      "windows_without_energy": int(np.isnan(error).sum())}
        shutil.copy(tmp / f"{index[name]}.db", out / f"overhead_gpu_{index[name]}.db")  # for a look at it later
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="load.py's --scale")
    parser.add_argument("--codecarbon", metavar="DIR",
                        help="also run CodeCarbon's tracker (installed in DIR) beside the 1 s exporter")
    parser.add_argument("--only", action="append", choices=list(RUNS), metavar="RUN",
                        help=f"run only these exporters (repeat; default all): {', '.join(RUNS)}")
    parser.add_argument("--base-site", metavar="DIR", help="beside each exporter, the version installed in DIR")
    parser.add_argument("--python", default=sys.executable,
                        help="the exporters' interpreter, e.g. a plain venv's python (this one's site-packages go "
                             "on its import path, without their .pth start-up hooks)")
    parser.add_argument("--repeat", type=int, default=1, help="measure everything this many times")
    parser.add_argument("--sequential", action="store_true",
                        help="one exporter at a time, each around a load of its own (their counter reads do not "
                             "contend in the driver; four times as long)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    chosen = [name for name in RUNS if not args.only or name in args.only]
    groups = [[name] for name in chosen] if args.sequential else [chosen]
    if args.base_site:  # each exporter beside its base version, around the same load
        groups = [[n for name in names for n in (name, name + BASE)] for names in groups]
    runs = {}
    for k in range(args.repeat):
        for names in groups:
            measured = measure(names, tmp, out, args.scale, args.codecarbon if "1 s" in names else None,
                               args.base_site, args.python)
            runs.update({f"{name} [{k + 1}]" if args.repeat > 1 else name: r for name, r in measured.items()})
    print(f"GPU 0 ({next(iter(runs.values()))['gpu']}), /metrics scraped every 1 s, exporters run by {args.python}; "
          f"{'one exporter at a time' if args.sequential else 'the exporters side by side'}")
    print("| exporter | CPU-s per hour | RSS MB | windows >= 5 s | window energy |error| median | p95 | max "
          "| windows within 0.5 % | method |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        if name.startswith(CODECARBON_RUN):
            print(f"| {name}, beside the 1 s exporter | {r['cpu_s_per_hour']:.1f} | {r['rss_mb']:.0f} | | | | | | |")
            continue
        print(f"| {name} | {r['cpu_s_per_hour']:.1f} | {r['rss_mb']:.0f} | {r['windows']} | "
              f"{100 * r['error_median']:.3f} % | {100 * r['error_p95']:.3f} % | {100 * r['error_max']:.3f} % | "
              f"{100 * r['within_0_5_percent']:.1f} % | {r['method']} |")
    summary = {"sequential": args.sequential, "python": args.python, "runs": runs}
    (out / "overhead_gpu.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
