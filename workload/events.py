"""Annotations: named, nestable windows written as events to the store.

The same API serves the campaign runner and users' own training scripts::

    recorder = EventRecorder(store, campaign="resnet-sweep")
    with recorder.window("train", scenario="resnet", run=1) as fields:
        ...
        fields["val_accuracy"] = 0.91

A window is written when it closes, with its start and end on the exporters' wall clock.
A window left by an exception is recorded ``failed`` (with the error), or ``aborted`` on
Ctrl-C, and the exception goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mltelemetry.schema import Event
from mltelemetry.store import Store


class EventRecorder:
    """Writes the windows of one campaign to a store."""

    def __init__(self, store: Store, campaign: str, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.campaign = campaign
        self._clock = clock
        self._open: list[tuple[str, str, int, int | None]] = []

    @contextmanager
    def window(self, action: str, *, scenario: str, run: int, epoch: int | None = None,
               **fields: Any) -> Iterator[dict[str, Any]]:
        """Record ``action`` of ``scenario``/``run`` for the duration of the block; yields its fields to fill."""
        key = (action, scenario, run, epoch)
        if key in self._open:
            raise ValueError(f"window {action!r} of {scenario!r} run {run} epoch {epoch} is already open")
        self._open.append(key)
        start = self._clock()
        status = "ok"
        try:
            yield fields
        except KeyboardInterrupt:
            status = "aborted"
            raise
        except BaseException as e:
            status = "failed"
            fields["error"] = f"{type(e).__name__}: {e}"
            raise
        finally:
            self._open.remove(key)
            self.store.write_events([Event(campaign=self.campaign, scenario=scenario, run=run, action=action,
                                           epoch=epoch, start_ns=start, end_ns=self._clock(), status=status,
                                           fields=fields)])
