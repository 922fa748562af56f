"""Scenarios: what one run does. Each is a function of a ``RunContext`` that wraps its actions in windows.

A scenario registers itself in ``SCENARIOS`` by name; the ML scenarios (``cnn``, ``transfer``,
in :mod:`.ml`) plug in the same way.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.cpu_burn import hash_until
from mltelemetry.workload.events import EventRecorder
from mltelemetry.workload.instrument import Annotator


def _no_progress(**_: Any) -> None:
    pass


@dataclass
class RunContext:
    """One run of one scenario: where its windows go, how long its main action lasts (``seconds``, for
    baseline, idle and cpu), the ML settings, a progress hook (``progress(epoch=, max_epochs=,
    val_accuracy=)``), the module the idle process imports before it sleeps (``None``: nothing), and
    ``run_fields``: the fields of the run's own ``run`` event, which the scenario may add to (settings such as
    precision and batch size, so runs can be grouped by them)."""

    recorder: EventRecorder
    scenario: str
    run: int
    seconds: float
    config: MLConfig = field(default_factory=MLConfig)
    progress: Callable[..., None] = _no_progress
    idle_import: str | None = None
    run_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def annotator(self) -> Annotator:
        """The public annotation API for this run (what users' own scripts use)."""
        return Annotator(self.recorder, scenario=self.scenario, run=self.run)

    @contextmanager
    def action(self, action: str, **fields: Any) -> Iterator[dict[str, Any]]:
        with self.recorder.window(action, scenario=self.scenario, run=self.run, **fields) as window_fields:
            yield window_fields


Scenario = Callable[[RunContext], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, *, uses_framework: bool = False, backend: str | None = None
             ) -> Callable[[Scenario], Scenario]:
    """Register a scenario. One that ``uses_framework`` (imports an ML framework, reads ``ctx.config``) runs in a
    child process of its own (:mod:`.child`) and is varied by ``--vary``; its framework is that of ``backend``
    (``None``: the campaign's ``--backend``)."""
    def register(function: Scenario) -> Scenario:
        function.uses_framework = uses_framework  # type: ignore[attr-defined]
        function.backend = backend  # type: ignore[attr-defined]
        SCENARIOS[name] = function
        return function
    return register


def uses_framework(name: str) -> bool:
    return getattr(SCENARIOS.get(name), "uses_framework", False)


def backend_of(name: str, config: MLConfig) -> str:
    """The backend a framework scenario runs on: its own (lm-* are torch models) or the campaign's."""
    return getattr(SCENARIOS.get(name), "backend", None) or config.backend


# A run's working folders carry its process id, so the campaign can tell those of killed runs.
_STALE_DIR = re.compile(r"^mltelemetry-.+-p(\d+)-[^-]+$")


def run_dir(kind: str, parent: Path | None = None) -> Path:
    """A new working folder ``mltelemetry-<kind>-p<pid>-XXXX`` under ``parent`` (default: the temporary folder)."""
    return Path(tempfile.mkdtemp(prefix=f"mltelemetry-{kind}-p{os.getpid()}-", dir=parent))


def reclaim_stale_dirs(parent: Path | None = None) -> list[Path]:
    """Delete the working folders under ``parent`` whose process is gone (a run killed with SIGKILL leaves its
    data there); returns them."""
    folder = Path(parent or tempfile.gettempdir())
    stale = []
    for path in folder.glob("mltelemetry-*-p*-*"):
        match = _STALE_DIR.match(path.name)
        if match and path.is_dir() and not psutil.pid_exists(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            stale.append(path)
    return stale


@scenario("baseline")
def baseline(ctx: RunContext) -> None:
    """Nothing runs but the recorder: the machine's own draw, subtracted from every other scenario."""
    with ctx.action("baseline"):
        time.sleep(ctx.seconds)


@scenario("idle")
def idle(ctx: RunContext) -> None:
    """The workload's Python process started, its framework (``ctx.idle_import``) imported, sleeping.

    The window starts when the process reports that the import is done, so it holds only the sleep;
    the import lies inside the run, as in the paper's script.
    """
    module = ctx.idle_import
    code = (f"import {module}\n" if module else "") + \
        f"import time\nprint('ready', flush=True)\ntime.sleep({ctx.seconds!r})"
    started = time.time()
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as process:
        try:
            ready = process.stdout.readline().strip() if process.stdout else ""
            if ready != "ready":
                raise RuntimeError(f"the idle process exited before sleeping (import {module or 'nothing'}: "
                                   f"exit code {process.wait()})")
            with ctx.action("idle", interpreter=sys.executable, framework=module or "none",
                            import_s=round(time.time() - started, 3)):
                if process.wait() != 0:
                    raise RuntimeError(f"the idle process exited with code {process.returncode}")
        finally:
            if process.poll() is None:
                process.kill()


@scenario("cpu")
def cpu(ctx: RunContext) -> None:
    """A CPU-bound synthetic workload: prepare data, hash on every core for ``seconds``, clean up."""
    workdir = run_dir("cpu", ctx.config.workdir)
    try:
        with ctx.action("prepare_data") as fields:
            data = workdir / "input.bin"
            data.write_bytes(os.urandom(16 * 2**20))
            fields["bytes"] = data.stat().st_size
        workers = os.cpu_count() or 1
        # The pool starts outside the compute window, so the window holds only the work.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(hash_until, [0.0] * workers)  # wait until every worker is up
            with ctx.action("compute", workers=workers) as fields:
                deadline = time.time() + ctx.seconds
                fields["hash_rounds"] = sum(pool.map(hash_until, [deadline] * workers))
    finally:
        with ctx.action("cleanup"):
            shutil.rmtree(workdir, ignore_errors=True)


# The ML scenarios register themselves on import (their frameworks are imported only when they run).
from mltelemetry.workload import lm, ml  # noqa: E402, F401
