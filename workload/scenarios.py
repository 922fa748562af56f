"""Scenarios: what one run does. Each is a function of a ``RunContext`` that wraps its actions in windows.

A scenario registers itself in ``SCENARIOS`` by name; the ML scenarios plug in the same way.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mltelemetry.workload.cpu_burn import hash_until
from mltelemetry.workload.events import EventRecorder


@dataclass
class RunContext:
    """One run of one scenario: where its windows go and how long its main action lasts."""

    recorder: EventRecorder
    scenario: str
    run: int
    seconds: float

    @contextmanager
    def action(self, action: str, **fields: Any) -> Iterator[dict[str, Any]]:
        with self.recorder.window(action, scenario=self.scenario, run=self.run, **fields) as window_fields:
            yield window_fields


Scenario = Callable[[RunContext], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(function: Scenario) -> Scenario:
        SCENARIOS[name] = function
        return function
    return register


@scenario("baseline")
def baseline(ctx: RunContext) -> None:
    """Nothing runs but the recorder: the machine's own draw, subtracted from every other scenario."""
    with ctx.action("baseline"):
        time.sleep(ctx.seconds)


@scenario("idle")
def idle(ctx: RunContext) -> None:
    """The workload's Python process started and sleeping."""
    with ctx.action("idle", interpreter=sys.executable):
        subprocess.run([sys.executable, "-c", f"import time; time.sleep({ctx.seconds!r})"], check=True)


@scenario("cpu")
def cpu(ctx: RunContext) -> None:
    """A CPU-bound synthetic workload: prepare data, hash on every core for ``seconds``, clean up."""
    workdir = Path(tempfile.mkdtemp(prefix="mltelemetry-cpu-"))
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
