"""The workload's events as series, for every backend that shows them live.

- **What runs now**: ``mltelemetry_workload_info`` with value 1 and the labels of the innermost open window
  (:func:`running_labels`): its scenario and run, its action (the enclosing one for an epoch window, so a
  training epoch reads action="train", epoch="3") and the innermost epoch number; gone when nothing runs.
- **Finished windows**: ``mltelemetry_event_start_seconds``, ``..._end_seconds`` and
  ``mltelemetry_event_field_value{field=...}`` for its numeric fields (:func:`event_samples`), each with the
  ``host`` label; Prometheus serves them for ``EVENT_KEEP_S`` after the window ended, InfluxDB gets the window as
  one point of ``mltelemetry_event`` (:func:`mltelemetry.influx.event_line`).

These follow the push-backend contract in :mod:`mltelemetry.schema`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mltelemetry import schema
from mltelemetry.schema import Event, Sample

# A finished event stays on /metrics this long: every scraper (Prometheus, VictoriaMetrics, at up to a
# minute apart) takes it a few times, and the page stays small through a campaign of thousands of epochs.
# Prometheus, InfluxDB, the store and Grafana's annotations keep every event.
EVENT_KEEP_S = 120.0
EVENT_METRICS = (schema.EVENT_START, schema.EVENT_END, schema.EVENT_FIELD)


def is_numeric_field(value: Any) -> bool:
    """Whether an event field is written as a float field: int or float (not bool), finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def event_tags(event: Event, host: str | None = None) -> dict[str, str]:
    """The labels of an event's series (EVENT_LABELS): ``epoch`` empty when the event has none, ``host`` that of
    the machine the publisher runs on (empty where it is not known)."""
    return {"host": host or "", "campaign": event.campaign, "scenario": event.scenario, "run": str(event.run),
            "action": event.action, "epoch": "" if event.epoch is None else str(event.epoch), "status": event.status}


def event_samples(event: Event, host: str | None = None) -> list[Sample]:
    """A finished window as Prometheus series: its start, its end and each numeric field, labelled with the host
    the workload runs on (so a dashboard or query can tell two SUTs' campaigns apart)."""
    labels = event_tags(event, host)
    samples = [Sample(schema.EVENT_START, labels, event.start_ns / 1e9, event.end_ns),
               Sample(schema.EVENT_END, labels, event.end_ns / 1e9, event.end_ns)]
    samples += [Sample(schema.EVENT_FIELD, {**labels, "field": name}, float(value), event.end_ns)
                for name, value in sorted(event.fields.items()) if is_numeric_field(value)]
    return samples


def running_labels(running: Sequence[Event], host: str | None) -> dict[str, str] | None:
    """Labels of ``mltelemetry_workload_info`` for the open windows ``running`` (outermost first); None when
    nothing runs."""
    if not running:
        return None
    inner = running[-1]
    action = next((e.action for e in reversed(running) if e.action != "epoch"), inner.action)
    epoch = next((e.epoch for e in reversed(running) if e.epoch is not None), None)
    return {"host": host or "", "campaign": inner.campaign, "scenario": inner.scenario, "run": str(inner.run),
            "action": action, "epoch": "" if epoch is None else str(epoch)}
