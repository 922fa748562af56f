"""Annotations: named, nestable windows written as events to the store.

The same API serves the campaign runner and users' own training scripts::

    recorder = EventRecorder(store, campaign="resnet-sweep")
    with recorder.window("train", scenario="resnet", run=1) as fields:
        ...
        fields["val_accuracy"] = 0.91

A window is written when it closes, with its start and end on the exporters' wall clock.
A window left by an exception is recorded ``failed`` (with the error), or ``aborted`` on
Ctrl-C, and the exception goes on. A window closed while one opened inside it is still open is
logged; an epoch number recorded twice inside the same enclosing window is refused. A store that
refuses a write raises :class:`StoreWriteError` with the store's reason.

Publishers (``publishers=``, or those of an enclosing ``with publishing([...])``) also hear of
every window as it opens and closes: the live view (Prometheus, InfluxDB, Grafana) is built on
them. A publisher that fails is logged and never stops the workload.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from mltelemetry.errors import StoreWriteError
from mltelemetry.schema import Event
from mltelemetry.store import Store
from mltelemetry.workload import claims

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


Claim = Callable[[list[tuple[int, Event]]], "dict[str, Any] | None"]


class EventRecorder:
    """Writes the windows of one campaign to a store (and tells its publishers).

    ``labels`` (see :meth:`labelled`) are fields every window opened meanwhile carries (a run's variant).
    A window opened with ``claim`` is written when it opens, as a ``running`` claim owned by this process
    (see :mod:`.claims`), and replaced by its final event when it closes; a callable ``claim`` sees the
    campaign's events first, in the claim's transaction, and raises to refuse or returns fields to add.
    """

    def __init__(self, store: Store, campaign: str, clock: Callable[[], int] = time.time_ns,
                 publishers: Sequence[EventPublisher] | None = None, labels: dict[str, Any] | None = None) -> None:
        self.store = store
        self.campaign = campaign
        self._clock = clock
        self._open: list[tuple[tuple[str, str, int, int | None], int]] = []  # (key, start) of open windows
        self._epochs: set[tuple] = set()  # epochs recorded, by enclosing window: a repeated number is refused
        self.labels = dict(labels or {})
        self.publishers = list(_publishers.get() if publishers is None else publishers)

    def _notify(self, method: str, event: Event) -> None:
        for publisher in self.publishers:
            try:
                getattr(publisher, method)(event)
            except Exception:
                log.exception("event publisher %s failed", type(publisher).__name__)

    def _write(self, what: str, *args: Any) -> Any:
        try:
            return getattr(self.store, what)(*args)
        except sqlite3.Error as e:
            # A failed COMMIT can leave no transaction to roll back: the first error is the cause.
            cause = e.__context__ if isinstance(e.__context__, sqlite3.Error) else e
            path = getattr(self.store, "path", "")
            raise StoreWriteError(f"cannot write to the store {path}: {cause}", path) from e

    def opened(self, event: Event) -> None:
        """Tell the publishers a window opened (the child-process runner relays its child's windows here)."""
        self._notify("window_opened", event)

    def record(self, event: Event) -> None:
        """Write a closed window and tell the publishers."""
        self._write("write_events", [event])
        self._notify("window_closed", event)

    @contextmanager
    def labelled(self, labels: dict[str, Any]) -> Iterator[None]:
        """Every window opened inside the block also carries ``labels`` as fields."""
        previous, self.labels = self.labels, {**self.labels, **labels}
        try:
            yield
        finally:
            self.labels = previous

    def _check_epoch(self, key: tuple[str, str, int, int | None]) -> None:
        if key[3] is None:
            return
        parent = next(((k, start) for k, start in reversed(self._open) if k[3] is None), None)
        numbered = (key, parent)
        if numbered in self._epochs:
            raise ValueError(f"{key[0]} {key[3]} of {key[1]!r} run {key[2]} was already recorded in this "
                             f"{parent[0][0] if parent else 'campaign'} window")
        self._epochs.add(numbered)

    @contextmanager
    def window(self, action: str, *, scenario: str, run: int, epoch: int | None = None,
               claim: bool | Claim = False, **fields: Any) -> Iterator[dict[str, Any]]:
        """Record ``action`` of ``scenario``/``run`` for the duration of the block; yields its fields to fill."""
        key = (action, scenario, run, epoch)
        if any(k == key for k, _ in self._open):
            raise ValueError(f"window {action!r} of {scenario!r} run {run} epoch {epoch} is already open")
        self._check_epoch(key)
        fields = {**self.labels, **fields}
        start = self._clock()
        opening = Event(campaign=self.campaign, scenario=scenario, run=run, action=action, epoch=epoch,
                        start_ns=start, end_ns=start, fields=dict(fields))
        row = None
        if claim:
            opening.status = claims.RUNNING
            opening.fields.update(claims.owner())
            row = self._write("claim_event", opening, claim if callable(claim) else None)
        self._open.append((key, start))
        self._notify("window_opened", opening)
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
            if self._open[-1] != (key, start):
                log.warning("window %r of %r run %d closed before the windows opened inside it", action, scenario,
                            run)
            self._open.remove((key, start))
            event = Event(campaign=self.campaign, scenario=scenario, run=run, action=action, epoch=epoch,
                          start_ns=start, end_ns=self._clock(), status=status, fields=fields)
            if row is None:
                self._write("write_events", [event])
            else:
                self._write("replace_event", row, event)
            self._notify("window_closed", event)
