"""``mltelemetry demo``: the whole method end to end on the embedded store, with no server.

A WT300 emulator whose power follows this machine's CPU utilisation stands in for the meter;
the host and power-meter exporters run as their own processes, as they would in a lab (and the
GPU exporter where NVML answers: cnn and transfer then train on the GPU); a short campaign
(baseline, idle, cpu, and cnn and transfer where a framework is installed) runs; then the
analysis prints its per-scenario summary and writes the HTML report.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from mltelemetry import schema
from mltelemetry.analysis.campaign import CampaignAnalysis, analyze_campaign
from mltelemetry.analysis.cli import Format, print_analysis
from mltelemetry.cliutil import one_line_errors, writable_folder
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


@dataclass(frozen=True)
class GpuChoice:
    """Whether the demo measures GPUs: how many NVML sees (0: none) and the line that tells the user."""

    gpus: int
    line: str


def choose_gpu(nvml_module: Any = None) -> GpuChoice:
    """Ask NVML (``nvml_module``: pynvml by default, the fake NVML in tests) how many GPUs it sees."""
    from mltelemetry.exporters.gpu.nvml import NvmlError, open_nvml

    try:
        nvml = open_nvml(nvml_module)
    except NvmlError as e:
        return GpuChoice(0, f"no GPU measured ({e}); the demo runs on the CPU")
    try:
        count = nvml.device_count()
        names = sorted({nvml.gpu(i).name for i in range(count)})
    except NvmlError as e:
        return GpuChoice(0, f"no GPU measured (NVML started but {e}); the demo runs on the CPU")
    finally:
        nvml.close()
    if count == 0:
        return GpuChoice(0, "no GPU measured (NVML sees none); the demo runs on the CPU")
    return GpuChoice(count, f"{count} GPU(s) ({', '.join(names)}): the GPU exporter runs beside the others and "
                            "cnn and transfer train on the GPU")


def exporter_commands(store_path: Path, link: Path, gpu: GpuChoice) -> dict[str, list[str]]:
    """The exporters the demo starts, by name: power meter and host, and the GPU exporter where NVML sees one."""
    common = ["--store", str(store_path), "--listen", "off", "--interval", "1"]
    commands = {"pm-exporter": ["exporter", "pm", "--driver", "wt300", "--port", str(link), "--meter", "demo-wt310",
                                *common],
                "host-exporter": ["exporter", "host", *common]}
    if gpu.gpus:
        commands["gpu-exporter"] = ["exporter", "gpu", *common]
    return commands


def demo_plan(runs: int, seconds: float, ml: bool, export_dir: Path, gpu: GpuChoice | None = None) -> CampaignPlan:
    """baseline, idle and cpu; plus cnn and transfer on small synthetic images where a framework is installed
    (PyTorch first: it trains these small models several times faster than Keras on a 2-core machine), on the
    GPU (``cuda``) where the demo measures one."""
    from mltelemetry.workload.config import demo_config, installed_backends

    scenarios = ["baseline", "idle", "cpu"]
    config = None
    if ml:
        backends = installed_backends()
        config = demo_config(export_dir=export_dir, backend="torch" if "torch" in backends else None)
    if config is None:
        return CampaignPlan("demo", scenarios, runs, seconds)
    if gpu is not None and gpu.gpus:
        config = replace(config, device="cuda")  # keras places work on a visible GPU by itself
    return CampaignPlan("demo", [*scenarios, "cnn", "transfer"], runs, seconds, config=config)


def run_demo(store_path: Path, runs: int, seconds: float, console: Console, ml: bool = True,
             gpu: GpuChoice | None = None) -> CampaignAnalysis:
    """Record a demo campaign into ``store_path`` and return its analysis (with the power traces of the report)."""
    gpu = gpu if gpu is not None else choose_gpu()
    with tempfile.TemporaryDirectory(prefix="mltelemetry-demo-") as tmp, ExitStack() as stack:
        logs, link = Path(tmp), Path(tmp) / "wt310"
        processes: dict[str, subprocess.Popen] = {}

        def start(name: str, args: list[str]) -> None:
            processes[name] = _spawn(args, logs / f"{name}.log")
            stack.callback(_stop, processes[name])

        console.print(f"[bold]1/4[/] starting the WT310 emulator (profile {DEMO_PROFILE}) on a pseudo-terminal")
        start("emulator", ["pm", "emulate", "--driver", "wt300", "--link", str(link), "--profile", DEMO_PROFILE])
        _wait_until(link.exists, "the emulator's port", processes, logs)
        commands = exporter_commands(store_path, link, gpu)
        names = [c.removesuffix("-exporter") for c in commands]
        console.print(f"[bold]2/4[/] starting the {', '.join(names[:-1])} and {names[-1]} exporters, writing to "
                      f"{store_path}")
        console.print(f"    {gpu.line}", markup=False, highlight=False)
        for name, args in commands.items():
            start(name, args)
        metrics = [schema.PM_ENERGY, schema.HOST_CPU_UTILIZATION] + ([schema.GPU_UP] if gpu.gpus else [])
        _wait_until(lambda: all(_has_samples(store_path, m) for m in metrics), "the first samples", processes, logs)
        time.sleep(1.5)  # a sample before the first window's start

        plan = demo_plan(runs, seconds, ml, logs / "exports", gpu)
        campaign = plan.campaign
        backend = (f" ({plan.config.backend} on {plan.config.device}, small synthetic images)"
                   if "cnn" in plan.scenarios else "")
        console.print(f"[bold]3/4[/] running campaign {campaign!r}: {', '.join(plan.scenarios)}{backend} × {runs} "
                      f"runs; baseline, idle and cpu last {seconds:g} s")
        if ml and "cnn" not in plan.scenarios:
            console.print("    (no ML framework installed: pip install 'mltelemetry[torch]' adds cnn and transfer)")
        run_campaign(store_path, plan)
        time.sleep(2.5)  # samples after the last window's end, so its edge can be interpolated
        console.print("[bold]4/4[/] stopping the exporters (they flush the store) and analysing")
        for name in [*commands, "emulator"]:
            _stop(processes[name])
    with Store(store_path, create=False) as store:
        return analyze_campaign(store, campaign, traces=True)


@one_line_errors
def demo_command(
    runs: Annotated[int, typer.Option(min=1, help="Runs of each scenario.")] = 3,
    seconds: Annotated[float, typer.Option(min=1, help="Length of each run in seconds.")] = 8.0,
    store: Annotated[Path | None, typer.Option(help="New store file (default: a fresh, timestamped one).")] = None,
    format: Annotated[Format, typer.Option("--format", help="Output on stdout.")] = Format.table,
    ml: Annotated[bool, typer.Option("--ml/--no-ml", help="Add cnn and transfer if a framework is installed.")] = True,
    report: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Folder of the HTML report (default: beside the store, STORE-report).")] = None,
    detail: Annotated[bool, typer.Option(help="Tables: also every action, run and epoch.")] = False,
) -> None:
    """Measure a short campaign end to end (emulated meter, real exporters), print its per-scenario summary and
    write its HTML report."""
    from mltelemetry.analysis.report import write_report

    store = store or Path(f"mltelemetry-demo-{datetime.now():%Y%m%d-%H%M%S}.db")
    if store.exists():
        raise MltelemetryError(f"{store} already exists; the demo writes a new store")
    report = writable_folder(report or store.with_name(f"{store.stem}-report"), "--report")
    console = Console(stderr=True, soft_wrap=True)  # a log on a pipe: no wrapping at 80 columns
    result = run_demo(store.resolve(), runs, seconds, console, ml)
    print_analysis(result, format.value, detail)
    console.print(f"report written to {write_report(result, report)}", markup=False, highlight=False,
                  soft_wrap=True)
    console.print(f"store kept at {store}: re-analyse with `mltelemetry analyze --campaign demo --source {store}`",
                  markup=False, highlight=False, soft_wrap=True)
