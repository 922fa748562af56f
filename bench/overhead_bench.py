"""Exporter overhead: CPU seconds per hour of the host and PM exporters at 1 s, against CodeCarbon.

All processes run side by side over the same window, so the machine's noise hits them alike:
- our host exporter and our PM exporter (reading a WT310 emulator on a pseudo-terminal), each
  twice: writing to the embedded store only, and writing to the store while serving /metrics
  scraped every second by a real Prometheus (when one is installed);
- CodeCarbon's ``OfflineEmissionsTracker(measure_power_secs=1)`` in a process of its own;
- a bare sleeping Python process, the floor.
The emulator and Prometheus are not measured. CPU time = user + system of each process between
the end of a warm-up and the end of the window; RSS at its end. Also: how long ``mltelemetry --help``
takes, wall and CPU (median of 5), beside a Python that only imports typer.

    .venv/bin/python bench/overhead_bench.py --seconds 300 [--out bench/results/overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from provenance import provenance
from rich.progress import Progress

CODECARBON = """
import signal, threading, logging
from codecarbon import OfflineEmissionsTracker
tracker = OfflineEmissionsTracker(measure_power_secs=1, country_iso_code="DEU", save_to_file=False,
                                  log_level="error")
tracker.start()
print("ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
tracker.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_env(python: str, first: str | None = None) -> dict[str, str]:
    """The environment of a child run by ``python`` (another interpreter's path, e.g. a plain venv's, or this one;
    compared as paths: a venv's python is a link to the interpreter of every other venv made from it):
    ``first`` first on its import path, then this process' import path (PYTHONPATH and, for another interpreter,
    this one's site-packages last: found there, without their .pth start-up hooks running)."""
    path = [first] if first else []
    path += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if python != sys.executable:
        import site
        path += site.getsitepackages()
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def cpu_seconds(process: subprocess.Popen) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def cpu_and_rss(measured: dict[str, subprocess.Popen], seconds: float,
                show_progress: bool = True) -> tuple[float, dict[str, float], dict[str, float]]:
    """The window measured (s), and each process' CPU-s per hour over it and RSS (MB) at its end."""
    start = {name: cpu_seconds(p) for name, p in measured.items()}
    began = time.monotonic()
    with Progress(disable=not show_progress) as progress:
        task = progress.add_task("measuring", total=seconds)
        while (elapsed := time.monotonic() - began) < seconds:
            time.sleep(min(1.0, seconds - elapsed))
            progress.update(task, completed=elapsed)
    window = time.monotonic() - began
    per_hour = {name: (cpu_seconds(p) - start[name]) / window * 3600 for name, p in measured.items()}
    return window, per_hour, {name: psutil.Process(p.pid).memory_info().rss / 1e6 for name, p in measured.items()}


def stop_all(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)


def timed(command: list[str], runs: int = 5) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``runs`` runs of ``command``."""
    wall, cpu = [], []
    for _ in range(runs):
        before, began = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall.append(time.perf_counter() - began)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="measured window")
    parser.add_argument("--warmup", type=float, default=15, help="seconds before the window starts")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args()
    mlt = [sys.executable, "-m", "mltelemetry"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        links = [tmp_path / "wt310-a", tmp_path / "wt310-b"]  # one emulated meter per PM exporter
        host_port, pm_port = free_port(), free_port()
        background = [subprocess.Popen([*mlt, "pm", "emulate", "--driver", "wt300", "--link", str(link),
                                        "--profile", "constant:100"], stderr=subprocess.DEVNULL) for link in links]
        while not all(link.exists() for link in links):
            time.sleep(0.1)
        host = [*mlt, "exporter", "host"]
        pm = [*mlt, "exporter", "pm", "--driver", "wt300", "--port"]
        measured = {
            "host exporter, store + /metrics scraped": subprocess.Popen(
                [*host, "--store", str(tmp_path / "h.db"), "--listen", f"127.0.0.1:{host_port}"],
                stderr=subprocess.DEVNULL),
            "host exporter, store only": subprocess.Popen(
                [*host, "--store", str(tmp_path / "h2.db"), "--listen", "off"], stderr=subprocess.DEVNULL),
            "pm exporter, store + /metrics scraped": subprocess.Popen(
                [*pm, str(links[0]), "--store", str(tmp_path / "p.db"), "--listen", f"127.0.0.1:{pm_port}"],
                stderr=subprocess.DEVNULL),
            "pm exporter, store only": subprocess.Popen(
                [*pm, str(links[1]), "--store", str(tmp_path / "p2.db"), "--listen", "off"],
                stderr=subprocess.DEVNULL),
            "codecarbon OfflineEmissionsTracker(measure_power_secs=1)": subprocess.Popen(
                [sys.executable, "-c", CODECARBON], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True),
            "sleeping python (floor)": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10**6)"]),
        }
        scraped = shutil.which("prometheus") is not None
        if scraped:
            config = tmp_path / "prometheus.yml"
            config.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: b\n    static_configs:\n"
                              f"      - targets: ['127.0.0.1:{host_port}', '127.0.0.1:{pm_port}']\n")
            background.append(subprocess.Popen(
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{free_port()}"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        try:
            codecarbon = measured["codecarbon OfflineEmissionsTracker(measure_power_secs=1)"]
            if codecarbon.stdout.readline().strip() != "ready":
                sys.exit("codecarbon did not start (pip install codecarbon)")
            time.sleep(args.warmup)
            window, per_hour, rss_mb = cpu_and_rss(measured, args.seconds)
        finally:
            stop_all([*measured.values(), *background])
    reference = per_hour["codecarbon OfflineEmissionsTracker(measure_power_secs=1)"]
    # Wall time depends on the machine's load; the CPU time (user + system) of the same runs much less. The
    # floor: a Python that only imports typer, which the root command needs.
    help_s, help_cpu_s = timed([*mlt, "--help"])
    typer_s, typer_cpu_s = timed([sys.executable, "-c", "import typer"])
    print(f"window {window:.0f} s, 1 s interval, /metrics scraped every 1 s by Prometheus: {scraped}")
    print("| process | CPU-s per hour | % of one core | ratio to CodeCarbon | RSS MB |")
    print("|---|---|---|---|---|")
    for name, value in per_hour.items():
        print(f"| {name} | {value:.2f} | {value / 36:.3f} | {value / reference:.2f} | {rss_mb[name]:.0f} |")
    print(f"mltelemetry --help: median {statistics.median(help_s):.2f} s wall, {statistics.median(help_cpu_s):.2f} s "
          f"CPU of 5 (python -c 'import typer': {statistics.median(typer_s):.2f} s wall, "
          f"{statistics.median(typer_cpu_s):.2f} s CPU)")
    if args.out:
        args.out.write_text(json.dumps({**provenance(), "window_s": window, "scraped": scraped,
                                        "cpu_s_per_hour": per_hour, "rss_mb": rss_mb, "help_s": help_s,
                                        "help_cpu_s": help_cpu_s, "import_typer_s": typer_s,
                                        "import_typer_cpu_s": typer_cpu_s, "load_average": os.getloadavg()},
                                       indent=1) + "\n")


if __name__ == "__main__":
    main()
