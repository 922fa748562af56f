"""Runs of framework scenarios (``cnn``, ``transfer``, ...) in a child process of their own.

The paper ran one script per run: the framework is imported, the GPU context created and the
process gone at the run's end, so the next baseline measures an idle machine and not one
holding a CUDA context and cached memory. The campaign process never imports a framework.

The child is started with ``spawn`` and sends everything back over a pipe: each window as it
opens and closes, progress, and its outcome. The parent owns the recorder, so the windows go
to the store and to every live publisher (/metrics, InfluxDB, Grafana) as before. Ctrl-C and
SIGTERM reach the parent, which passes SIGINT on to the child (in a process group of its own,
so the terminal's Ctrl-C arrives once) and waits: the child records its windows ``aborted``.
A child whose parent dies (SIGKILL) ends itself.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mltelemetry.publisher import Capability, Publisher, WindowChange
from mltelemetry.workload.events import EventRecorder


class ChildRunFailed(Exception):
    """The run's process raised (its error is the message) or died without saying how it ended."""


class _PipePublisher(Publisher):
    """The child's record: every window, as it opens and closes, goes to the parent, which records it."""

    name = "parent"
    capabilities = frozenset({Capability.EVENTS, Capability.RECORD})

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def publish_events(self, change: WindowChange) -> None:
        self.connection.send(("closed" if change.closed else "opened", change.event))

    def progress(self, **values: Any) -> None:
        self.connection.send(("progress", values))


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)  # the campaign is gone: nothing could be recorded any more


def _child(function: Callable, context: dict[str, Any], connection: Any) -> None:
    os.setpgrp()  # the terminal's Ctrl-C goes to the parent only; it passes it on
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    from mltelemetry.workload.scenarios import RunContext
    parent = _PipePublisher(connection)
    recorder = EventRecorder(parent, context.pop("campaign"), labels=context.pop("labels"))
    ctx = RunContext(recorder, progress=parent.progress, **context)
    try:
        try:
            function(ctx)
        finally:  # the settings the scenario put on its run event (precision, batch size, ...), whatever the end
            connection.send(("run_fields", dict(ctx.run_fields)))
        connection.send(("ok", None))
    except KeyboardInterrupt:
        connection.send(("aborted", None))
    except BaseException as e:
        connection.send(("failed", f"{type(e).__name__}: {e}"))
    finally:
        connection.close()


@contextmanager
def _signals_passed_on(interrupted: list[int], process: Any) -> Iterator[None]:
    """SIGINT and SIGTERM to this process are noted and passed on to ``process`` as SIGINT."""
    def pass_on(signum: int, frame: object) -> None:
        interrupted.append(signum)
        if process.pid is not None and process.exitcode is None:
            os.kill(process.pid, signal.SIGINT)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_in_child(function: Callable, ctx: Any) -> None:
    """Run scenario ``function`` with ``ctx`` (a RunContext) in a spawned child; raise as the child's run ended:
    KeyboardInterrupt when interrupted, :class:`ChildRunFailed` when it failed."""
    spawn = multiprocessing.get_context("spawn")
    receiver, sender = spawn.Pipe(duplex=False)
    recorder: EventRecorder = ctx.recorder
    context = {"campaign": recorder.campaign, "labels": recorder.labels, "scenario": ctx.scenario, "run": ctx.run,
               "seconds": ctx.seconds, "config": ctx.config, "idle_import": ctx.idle_import}
    # not a daemon: a run may start processes of its own (lm-train's DDP ranks); it ends with its parent anyway
    process = spawn.Process(target=_child, args=(function, context, sender), daemon=False,
                            name=f"mltelemetry {ctx.scenario} run {ctx.run}")
    interrupted: list[int] = []
    outcome: tuple[str, Any] | None = None
    with _signals_passed_on(interrupted, process):
        process.start()
        sender.close()
        try:
            while True:
                try:
                    kind, payload = receiver.recv()
                except EOFError:
                    break
                if kind == "opened":
                    recorder.opened(payload)
                elif kind == "closed":
                    recorder.closed(payload)
                elif kind == "progress":
                    ctx.progress(**payload)
                elif kind == "run_fields":
                    ctx.run_fields.update(payload)
                else:
                    outcome = (kind, payload)
        except BaseException:
            process.kill()  # the parent cannot record any more (a store write failed): the run stops
            raise
        finally:
            process.join()
            receiver.close()
    if interrupted or (outcome is not None and outcome[0] == "aborted"):
        raise KeyboardInterrupt
    if outcome is None:
        code = process.exitcode
        how = f"signal {-code} ({signal.Signals(-code).name})" if code is not None and code < 0 else f"code {code}"
        raise ChildRunFailed(f"the run's process ended with {how} before its end")
    if outcome[0] == "failed":
        raise ChildRunFailed(outcome[1])
