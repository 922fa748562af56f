"""Power-meter drivers: the fastest sustained reading rate against each emulator, and exporter CPU at 1 Hz.

Every emulator runs as its own process (``mltelemetry pm emulate``), so it does not share the
reader's interpreter. Two parts:

1. Rate: one driver object reads back to back for ``--rate-seconds`` and counts valid readings per
   second, plus the reader's CPU per reading. Pseudo-terminals have no baud rate, so the table also
   gives the bound the serial line itself sets (bytes per reading × 10 bits / baud).
   - wt300 --no-sync: each read is one ``:NUM:NORM:VAL?`` round trip (values repeat between updates);
   - wt300 synchronised at ``:RATE 100MS``, the meter's fastest update: one new update per read;
   - mcp39f511 with N=1 (40 ms windows at 50 Hz): two frames per read;
   - ptd at a 100 ms period (``Go,100``), the shortest the client accepts: one ``RL`` per sample.
2. CPU: one exporter process per driver at ``--interval 1`` writing to a store (``--listen off``),
   side by side with a sleeping Python process (the floor), for ``--seconds``; CPU seconds
   (user + system) per hour of each, measured after ``--warmup``.

    .venv/bin/python bench/pm_bench.py --rate-seconds 20 --seconds 300
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from overhead_bench import free_port
from provenance import provenance
from rich.console import Console
from rich.progress import Progress

MLT = [sys.executable, "-m", "mltelemetry"]
console = Console(stderr=True)


def start_emulator(driver: str, where: str, profile: str = "constant:150") -> tuple[subprocess.Popen, str]:
    """An emulator process and the address its banner names."""
    place = ["--tcp", where] if where.startswith("127.") else ["--link", where]
    process = subprocess.Popen([*MLT, "pm", "emulate", "--driver", driver, *place, "--profile", profile,
                                "--update-interval", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    banner = process.stdout.readline()
    if " on " not in banner:
        process.kill()
        sys.exit(f"the {driver} emulator did not start: {banner!r}")
    return process, banner.split(" on ")[1].split(" ")[0]


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def open_driver(name: str, address: str):
    if name == "wt300 --no-sync":
        from mltelemetry.exporters.pm.wt300 import Wt300

        return Wt300(address, rate_s=0.1, sync=False, integration=False)
    if name == "wt300 sync, :RATE 100MS":
        from mltelemetry.exporters.pm.wt300 import Wt300

        return Wt300(address, rate_s=0.1)
    if name == "mcp39f511, N=1":
        from mltelemetry.exporters.pm.mcp39f511 import Mcp39f511

        return Mcp39f511(address, accumulation_n=1)
    from mltelemetry.exporters.pm.ptd import Ptd

    return Ptd(address, period_ms=100)


# bytes on the wire per reading, and the line speed, for the bound the serial line sets
LINE = {
    "wt300 --no-sync": (len(b":NUM:NORM:VAL?\n") + len(b"1.5000E+02,2.3000E+02,6.5217E-01\r\n"), 9600),
    "wt300 sync, :RATE 100MS": (len(b":COMM:WAIT 1;:STAT:EESR?;:NUM:NORM:VAL?\n")
                                + len(b"1;1.5000E+02,2.3000E+02,6.5217E-01,1.23456E+00,36\r\n"), 9600),
    "mcp39f511, N=1": (8 + 31 + 8 + 11, 115200),
}


def measure_rate(name: str, address: str, seconds: float, progress: Progress) -> dict:
    from mltelemetry.exporters.pm.meter import InvalidReading

    driver = open_driver(name, address)
    task = progress.add_task(f"rate: {name}", total=seconds)
    valid = invalid = 0
    try:
        for _ in range(3):
            driver.read()  # warm up
        cpu0, began = time.process_time(), time.monotonic()
        while (elapsed := time.monotonic() - began) < seconds:
            try:
                driver.read()
                valid += 1
            except InvalidReading:
                invalid += 1
            progress.update(task, completed=elapsed)
        cpu = time.process_time() - cpu0
    finally:
        driver.close()
    elapsed = time.monotonic() - began
    line = LINE.get(name)
    return {"driver": name, "rate": valid / elapsed, "invalid": invalid, "cpu_ms": 1000 * cpu / max(valid, 1),
            "line_bound": line[1] / (10 * line[0]) if line else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-seconds", type=float, default=20, help="reading time per driver in part 1")
    parser.add_argument("--seconds", type=float, default=300, help="measured window of part 2")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    parser.add_argument("--warmup", type=float, default=15, help="seconds before part 2's window starts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        emulators: list[subprocess.Popen] = []
        try:
            # --- part 1: rates ---
            rates = []
            with Progress(console=console, transient=True) as progress:
                for name, driver, where in (
                        ("wt300 --no-sync", "wt300", str(tmp_path / "wt-a")),
                        ("wt300 sync, :RATE 100MS", "wt300", str(tmp_path / "wt-b")),
                        ("mcp39f511, N=1", "mcp39f511", str(tmp_path / "mcp-a")),
                        ("ptd, Go,100", "ptd", f"127.0.0.1:{free_port()}")):
                    emulator, address = start_emulator(driver, where)
                    emulators.append(emulator)
                    rates.append(measure_rate(name, address, args.rate_seconds, progress))
                    emulator.send_signal(signal.SIGTERM)
                    emulator.wait(10)
            # --- part 2: exporter CPU at 1 Hz ---
            exporters: dict[str, subprocess.Popen] = {}
            for driver, where in (("wt300", str(tmp_path / "wt-c")), ("mcp39f511", str(tmp_path / "mcp-c")),
                                  ("ptd", f"127.0.0.1:{free_port()}")):
                emulator, address = start_emulator(driver, where)
                emulators.append(emulator)
                exporters[f"pm exporter --driver {driver}"] = subprocess.Popen(
                    [*MLT, "exporter", "pm", "--driver", driver, "--port", address, "--listen", "off",
                     "--store", str(tmp_path / f"{driver}.db"), "--interval", "1"], stderr=subprocess.DEVNULL)
            exporters["sleeping python (floor)"] = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(10**6)"])
            time.sleep(args.warmup)
            start = {name: cpu_seconds(p.pid) for name, p in exporters.items()}
            began = time.monotonic()
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("exporter CPU at 1 Hz", total=args.seconds)
                while (elapsed := time.monotonic() - began) < args.seconds:
                    time.sleep(1)
                    progress.update(task, completed=elapsed)
            window = time.monotonic() - began
            per_hour = {name: (cpu_seconds(p.pid) - start[name]) / window * 3600 for name, p in exporters.items()}
            for p in exporters.values():
                p.send_signal(signal.SIGTERM)
                p.wait(20)
        finally:
            for p in emulators:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.wait(10)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{psutil.cpu_count()} CPUs; rate window {args.rate_seconds:g} s per driver, CPU window {window:.0f} s\n")
    print("| driver against its emulator | valid readings/s | invalid | reader CPU per reading | "
          "serial-line bound |")
    print("|---|---|---|---|---|")
    for r in rates:
        bound = f"{r['line_bound']:.0f}/s" if r["line_bound"] else "n/a (TCP)"
        print(f"| {r['driver']} | {r['rate']:.1f} | {r['invalid']} | {r['cpu_ms']:.2f} ms | {bound} |")
    print("\n| process (1 s interval, store only) | CPU-s per hour | % of one core |")
    print("|---|---|---|")
    for name, value in per_hour.items():
        print(f"| {name} | {value:.2f} | {value / 36:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({**provenance(), "rate_seconds": args.rate_seconds, "window_s": window,
                                        "rates": rates, "cpu_s_per_hour": per_hour}, indent=1) + "\n")


if __name__ == "__main__":
    main()
