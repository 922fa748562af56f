"""Annotations: named, nestable windows written as events to the store.

The same API serves the campaign runner and users' own training scripts::

    recorder = EventRecorder(store, campaign="resnet-sweep")
    with recorder.window("train", scenario="resnet", run=1) as fields:
        ...
        fields["val_accuracy"] = 0.91

A window is written when it closes, with its start and end on the exporters' wall clock.
A window left by an exception is recorded ``failed`` (with the error), or ``aborted`` on
Ctrl-C, and the exception goes on.

Publishers (``publishers=``, or those of an enclosing ``with publishing([...])``) also hear of
every window as it opens and closes: the live view (Prometheus, InfluxDB, Grafana) is built on
them. A publisher that fails is logged and never stops the workload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from mltelemetry.schema import Event
from mltelemetry.store import Store

log = logging.getLogger(__name__)


class EventPublisher(Protocol):
    def window_opened(self, event: Event) -> None:
        """A window began; ``event.end_ns`` equals its start until it closes."""
        ...

    def window_closed(self, event: Event) -> None:
        """A window ended; ``event`` is the record the store got."""
        ...


_publishers: ContextVar[tuple[EventPublisher, ...]] = ContextVar("event_publishers", default=())


@contextmanager
def publishing(publishers: Sequence[EventPublisher]) -> Iterator[None]:
    """Recorders created inside the block (that name no publishers) also tell ``publishers``."""
    token = _publishers.set(tuple(publishers))
    try:
        yield
    finally:
        _publishers.reset(token)


class EventRecorder:
    """Writes the windows of one campaign to a store (and tells its publishers)."""

    def __init__(self, store: Store, campaign: str, clock: Callable[[], int] = time.time_ns,
                 publishers: Sequence[EventPublisher] | None = None) -> None:
        self.store = store
        self.campaign = campaign
        self._clock = clock
        self._open: list[tuple[str, str, int, int | None]] = []
        self.publishers = list(_publishers.get() if publishers is None else publishers)

    def _notify(self, method: str, event: Event) -> None:
        for publisher in self.publishers:
            try:
                getattr(publisher, method)(event)
            except Exception:
                log.exception("event publisher %s failed", type(publisher).__name__)

    @contextmanager
    def window(self, action: str, *, scenario: str, run: int, epoch: int | None = None,
               **fields: Any) -> Iterator[dict[str, Any]]:
        """Record ``action`` of ``scenario``/``run`` for the duration of the block; yields its fields to fill."""
        key = (action, scenario, run, epoch)
        if key in self._open:
            raise ValueError(f"window {action!r} of {scenario!r} run {run} epoch {epoch} is already open")
        self._open.append(key)
        start = self._clock()
        self._notify("window_opened", Event(campaign=self.campaign, scenario=scenario, run=run, action=action,
                                            epoch=epoch, start_ns=start, end_ns=start, fields=dict(fields)))
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
            event = Event(campaign=self.campaign, scenario=scenario, run=run, action=action, epoch=epoch,
                          start_ns=start, end_ns=self._clock(), status=status, fields=fields)
            self.store.write_events([event])
            self._notify("window_closed", event)
