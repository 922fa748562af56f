"""``mltelemetry demo``: the whole method end to end on the embedded store, with no server.

A WT300 emulator whose power follows this machine's CPU utilisation stands in for the meter;
the host and power-meter exporters run as their own processes, as they would in a lab; a
short campaign (baseline, idle, cpu) runs; then the analysis prints the result.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mltelemetry import schema
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.analysis.cli import FORMATS, print_analysis
from mltelemetry.cliutil import one_line_errors
from mltelemetry.errors import MltelemetryError
from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, run_campaign

DEMO_PROFILE = "cpu:55,85"  # idle watts, watts at full CPU utilisation above idle
STARTUP_TIMEOUT_S = 20.0


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "mltelemetry", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until(condition, what: str, processes: dict[str, subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not condition():
        for name, process in processes.items():
            if process.poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-1:]
                raise MltelemetryError(f"{name} exited before {what}: {' '.join(tail) or 'no output'}")
        if time.monotonic() > deadline:
            raise MltelemetryError(f"timed out after {STARTUP_TIMEOUT_S:.0f} s waiting for {what}")
        time.sleep(0.2)


def _has_samples(store_path: Path, metric: str) -> bool:
    if not store_path.exists():
        return False
    with Store(store_path) as store:
        return not store.query(metric).empty


def demo_plan(runs: int, seconds: float, ml: bool, export_dir: Path) -> CampaignPlan:
    """baseline, idle and cpu; plus cnn and transfer on small synthetic images where a framework is installed
    (PyTorch first: it trains these small models several times faster than Keras on a 2-core machine)."""
    from mltelemetry.workload.config import demo_config, installed_backends

    scenarios = ["baseline", "idle", "cpu"]
    config = None
    if ml:
        backends = installed_backends()
        config = demo_config(export_dir=export_dir, backend="torch" if "torch" in backends else None)
    if config is None:
        return CampaignPlan("demo", scenarios, runs, seconds)
    return CampaignPlan("demo", [*scenarios, "cnn", "transfer"], runs, seconds, config=config)


def run_demo(store_path: Path, runs: int, seconds: float, console: Console, ml: bool = True) -> dict:
    """Record a demo campaign into ``store_path`` and return its analysis as a dict."""
    with tempfile.TemporaryDirectory(prefix="mltelemetry-demo-") as tmp, ExitStack() as stack:
        logs, link = Path(tmp), Path(tmp) / "wt310"
        processes: dict[str, subprocess.Popen] = {}

        def start(name: str, args: list[str]) -> None:
            processes[name] = _spawn(args, logs / f"{name}.log")
            stack.callback(_stop, processes[name])

        console.print(f"[bold]1/4[/] starting the WT310 emulator (profile {DEMO_PROFILE}) on a pseudo-terminal")
        start("emulator", ["pm", "emulate", "--driver", "wt300", "--link", str(link), "--profile", DEMO_PROFILE])
        _wait_until(link.exists, "the emulator's port", processes, logs)
        console.print(f"[bold]2/4[/] starting the host and power-meter exporters, writing to {store_path}")
        common = ["--store", str(store_path), "--listen", "off", "--interval", "1"]
        start("pm-exporter", ["exporter", "pm", "--driver", "wt300", "--port", str(link), "--meter", "demo-wt310",
                              *common])
        start("host-exporter", ["exporter", "host", *common])
        _wait_until(lambda: _has_samples(store_path, schema.PM_ENERGY)
                    and _has_samples(store_path, schema.HOST_CPU_UTILIZATION), "the first samples", processes, logs)
        time.sleep(1.5)  # a sample before the first window's start

        plan = demo_plan(runs, seconds, ml, logs / "exports")
        campaign = plan.campaign
        backend = f" ({plan.config.backend}, small synthetic images)" if "cnn" in plan.scenarios else ""
        console.print(f"[bold]3/4[/] running campaign {campaign!r}: {', '.join(plan.scenarios)}{backend} × {runs} "
                      f"runs; baseline, idle and cpu last {seconds:g} s")
        if ml and "cnn" not in plan.scenarios:
            console.print("    (no ML framework installed: pip install 'mltelemetry[torch]' adds cnn and transfer)")
        run_campaign(store_path, plan)
        time.sleep(2.5)  # samples after the last window's end, so its edge can be interpolated
        console.print("[bold]4/4[/] stopping the exporters (they flush the store) and analysing")
        for name in ("pm-exporter", "host-exporter", "emulator"):
            _stop(processes[name])
    with Store(store_path, create=False) as store:
        return analyze_campaign(store, campaign)


@one_line_errors
def demo_command(
    runs: Annotated[int, typer.Option(min=1, help="Runs of each scenario.")] = 3,
    seconds: Annotated[float, typer.Option(min=1, help="Length of each run in seconds.")] = 8.0,
    store: Annotated[Path | None, typer.Option(help="New store file (default: a fresh, timestamped one).")] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    ml: Annotated[bool, typer.Option("--ml/--no-ml", help="Add cnn and transfer if a framework is installed.")] = True,
) -> None:
    """Measure a short campaign end to end (emulated meter, real exporters) and print its analysis."""
    if format not in FORMATS:
        raise MltelemetryError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    store = store or Path(f"mltelemetry-demo-{datetime.now():%Y%m%d-%H%M%S}.db")
    if store.exists():
        raise MltelemetryError(f"{store} already exists; the demo writes a new store")
    console = Console(stderr=True)
    result = run_demo(store.resolve(), runs, seconds, console, ml)
    print_analysis(result, format)
    console.print(f"store kept at {store}: re-analyse with `mltelemetry analyze --campaign demo --source {store}`")
