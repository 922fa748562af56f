"""The one publishing seam: where an exporter's samples and the workload's events go.

Every backend (the embedded store, Prometheus ``/metrics``, InfluxDB v1/v2, Grafana annotations) is a
:class:`Publisher` that declares what it takes in ``capabilities``; the exporter runtime and the workload's
recorder hand it only that, and never ask a backend what it is:

- ``SAMPLES``: :meth:`Publisher.publish_samples` gets every tick's samples;
- ``EVENTS``: :meth:`Publisher.publish_events` gets every workload window as it opens and closes
  (a :class:`WindowChange`, which also says what runs now);
- ``RECORD``: the publisher keeps the record of truth (the store): when it fails to publish an event, the
  workload stops with its error; the failures of the others are logged and the workload goes on.

Every publisher answers :meth:`Publisher.health` (its own series for the exporter's self-metrics; none by
default) and :meth:`Publisher.close`. The backends are registered in :mod:`mltelemetry.backends`, which builds
them from a command's options (:class:`PublisherSettings`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from mltelemetry.cliutil import SinkOptions
from mltelemetry.schema import Event, Sample


class Capability(str, Enum):
    SAMPLES = "samples"
    EVENTS = "events"
    RECORD = "record"


# A claim's check: sees the campaign's stored events (row id, event) in the claim's write transaction, raises to
# refuse the claim or returns fields to add to it (see mltelemetry.workload.claims).
ClaimCheck = Callable[[list[tuple[int, Event]]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class WindowChange:
    """A workload window that opened (``closed`` False: ``event.end_ns`` equals its start) or closed (``event`` is
    its final record), and ``running``: the windows open after the change, outermost first.

    ``claim`` marks an opening written at once as a ``running`` claim (see :mod:`mltelemetry.workload.claims`):
    the record publisher writes it, after ``claim`` accepted it in the write transaction, and replaces it by the
    final record when the window closes. Other publishers ignore it."""

    event: Event
    closed: bool
    running: tuple[Event, ...] = ()
    claim: ClaimCheck | None = None


class Publisher:
    """Where samples and events go. A backend overrides the methods its ``capabilities`` name; ``name`` is the
    ``sink`` label of its own series."""

    name: str = "publisher"
    capabilities: frozenset[Capability] = frozenset()

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        raise NotImplementedError(f"{type(self).__name__} takes no samples")

    def publish_events(self, change: WindowChange) -> None:
        raise NotImplementedError(f"{type(self).__name__} takes no events")

    def health(self, labels: Mapping[str, str], ts_ns: int) -> list[Sample]:
        """This publisher's own series (spool fill, written, refused, lost), labelled ``labels`` and ``sink``."""
        return []

    def close(self) -> None:
        """Write what is buffered and release what the publisher holds."""


@dataclass(frozen=True)
class PublisherSettings:
    """What a command's options say about where its samples and events go; each backend reads its part.

    ``stale_after_s``: /metrics drops a series not published for that long and /healthz says stale (None: never);
    ``keep_s``: /metrics drops the series of these metrics that long after they were published; ``linger_s``:
    /metrics, when closed, waits that long at most for one more scrape (the workload's last events);
    ``store_flush_s``: the store is written at most that long apart (what a SIGKILL could lose; close writes all)."""

    options: SinkOptions = field(default_factory=SinkOptions)
    listen: str = "off"
    store: str | Path | None = None
    name: str = "exporter"
    host_label: str | None = None
    stale_after_s: float | None = None
    keep_s: Mapping[str, float] | None = None
    linger_s: float = 0.0
    store_flush_s: float = 1.0
    grafana_url: str | None = None
