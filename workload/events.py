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

The store is the recorder's record (a :class:`~mltelemetry.publisher.Publisher` with the ``RECORD``
capability; a :class:`Store` given is wrapped in one). ``publishers`` (the live view: Prometheus,
InfluxDB, Grafana) also hear of every window as it opens and closes, with what runs now
(:class:`~mltelemetry.publisher.WindowChange`); one that fails is logged and never stops the workload.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from mltelemetry.publisher import Capability, ClaimCheck, Publisher, WindowChange
from mltelemetry.schema import Event
from mltelemetry.sinks import StoreSink
from mltelemetry.store import Store
from mltelemetry.workload import claims

log = logging.getLogger(__name__)

T = TypeVar("T")


class WindowStack(Generic[T]):
    """Open windows, outermost first, each under a key; closing one removes the innermost of that key."""

    def __init__(self) -> None:
        self._entries: list[tuple[Hashable, T]] = []
        self._lock = threading.Lock()

    def push(self, key: Hashable, value: T) -> None:
        with self._lock:
            self._entries.append((key, value))

    def pop(self, key: Hashable) -> T | None:
        """Remove the innermost window under ``key`` and return its value; None when none is open."""
        with self._lock:
            for i in range(len(self._entries) - 1, -1, -1):
                if self._entries[i][0] == key:
                    return self._entries.pop(i)[1]
        return None

    def get(self, key: Hashable) -> T | None:
        """The value of the innermost window under ``key``; None when none is open."""
        with self._lock:
            return next((value for k, value in reversed(self._entries) if k == key), None)

    def innermost(self) -> Hashable | None:
        """The key of the innermost open window."""
        with self._lock:
            return self._entries[-1][0] if self._entries else None

    def keys(self) -> tuple[Hashable, ...]:
        with self._lock:
            return tuple(key for key, _ in self._entries)

    def values(self) -> tuple[T, ...]:
        with self._lock:
            return tuple(value for _, value in self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.keys()


def window_key(event: Event) -> tuple[str, str, int, int | None, int]:
    """What tells an open window apart: its action, scenario, run, epoch and start."""
    return event.action, event.scenario, event.run, event.epoch, event.start_ns


class EventRecorder:
    """Writes the windows of one campaign to its record (the store) and tells its publishers.

    ``labels`` (see :meth:`labelled`) are fields every window opened meanwhile carries (a run's variant).
    A window opened with ``claim`` is written when it opens, as a ``running`` claim owned by this process
    (see :mod:`.claims`), and replaced by its final event when it closes; a callable ``claim`` sees the
    campaign's events first, in the claim's transaction, and raises to refuse or returns fields to add.

    ``record`` keeps the record: a :class:`Store` (written through a :class:`StoreSink`) or a publisher with the
    ``RECORD`` capability (a child process' pipe to its parent); ``publishers`` are told of every window too.
    """

    def __init__(self, record: Store | Publisher, campaign: str, clock: Callable[[], int] = time.time_ns,
                 publishers: Sequence[Publisher] = (), labels: dict[str, Any] | None = None) -> None:
        self.record = StoreSink(record) if isinstance(record, Store) else record
        # The record publishers first: a window is shown live only once it is recorded.
        self.publishers = sorted((p for p in (self.record, *publishers) if Capability.EVENTS in p.capabilities),
                                 key=lambda p: Capability.RECORD not in p.capabilities)
        self.campaign = campaign
        self._clock = clock
        self._open: WindowStack[Event] = WindowStack()  # the openings of the open windows, by window_key
        self._epochs: set[tuple] = set()  # epochs recorded, by enclosing window: a repeated number is refused
        self.labels = dict(labels or {})

    def _publish(self, event: Event, closed: bool, claim: ClaimCheck | None = None) -> None:
        """Tell every publisher: a record publisher's failure is the caller's, the others' are logged."""
        change = WindowChange(event, closed, self._open.values(), claim)
        for publisher in self.publishers:
            if Capability.RECORD in publisher.capabilities:
                publisher.publish_events(change)
                continue
            try:
                publisher.publish_events(change)
            except Exception:
                log.exception("event publisher %s failed", type(publisher).__name__)

    def opened(self, event: Event) -> None:
        """A window opened elsewhere (the child-process runner relays its child's windows here)."""
        self._open.push(window_key(event), event)
        self._publish(event, closed=False)

    def closed(self, event: Event) -> None:
        """A window closed elsewhere: write it and tell the publishers."""
        self._open.pop(window_key(event))
        self._publish(event, closed=True)

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
        parent = next((e for e in reversed(self._open.values()) if e.epoch is None), None)
        numbered = (key, window_key(parent) if parent else None)
        if numbered in self._epochs:
            raise ValueError(f"{key[0]} {key[3]} of {key[1]!r} run {key[2]} was already recorded in this "
                             f"{parent.action if parent else 'campaign'} window")
        self._epochs.add(numbered)

    @contextmanager
    def window(self, action: str, *, scenario: str, run: int, epoch: int | None = None,
               claim: bool | ClaimCheck = False, **fields: Any) -> Iterator[dict[str, Any]]:
        """Record ``action`` of ``scenario``/``run`` for the duration of the block; yields its fields to fill."""
        key = (action, scenario, run, epoch)
        if any(k[:4] == key for k in self._open.keys()):
            raise ValueError(f"window {action!r} of {scenario!r} run {run} epoch {epoch} is already open")
        self._check_epoch(key)
        fields = {**self.labels, **fields}
        start = self._clock()
        opening = Event(campaign=self.campaign, scenario=scenario, run=run, action=action, epoch=epoch,
                        start_ns=start, end_ns=start, fields=dict(fields))
        if claim:
            opening.status = claims.RUNNING
            opening.fields.update(claims.owner())
        # The claim is checked and written before the window counts as open: a refused one leaves nothing open.
        self._open.push(window_key(opening), opening)
        try:
            self._publish(opening, closed=False, claim=(claim if callable(claim) else _accept) if claim else None)
        except BaseException:
            self._open.pop(window_key(opening))
            raise
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
            if self._open.innermost() != window_key(opening):
                log.warning("window %r of %r run %d closed before the windows opened inside it", action, scenario,
                            run)
            self._open.pop(window_key(opening))
            event = Event(campaign=self.campaign, scenario=scenario, run=run, action=action, epoch=epoch,
                          start_ns=start, end_ns=self._clock(), status=status, fields=fields)
            self._publish(event, closed=True)


def _accept(rows: list[tuple[int, Event]]) -> None:
    """A claim with nothing to check."""
    return None
