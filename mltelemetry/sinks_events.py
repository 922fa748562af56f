"""Events live: the workload's windows as series in Prometheus and InfluxDB, and as Grafana annotations.

Publishers for :class:`mltelemetry.workload.events.EventRecorder` (``window_opened`` /
``window_closed``), following the push-backend contract in :mod:`mltelemetry.schema`:

- **Prometheus** (the workload's own ``/metrics``): ``mltelemetry_workload_info`` with value 1 and
  the labels of what runs now (campaign, scenario, run, action, epoch; gone when nothing runs), and
  for every finished window ``mltelemetry_event_start_seconds``, ``..._end_seconds`` and
  ``mltelemetry_event_field_value{field=...}`` for its numeric fields, each with the ``host`` label, for
  ``EVENT_KEEP_S`` after it ended (long enough for every scraper to take it; the page stays bounded through any
  campaign).
- **InfluxDB**: every finished window as a point of ``mltelemetry_event`` (tagged ``host``; text
  fields such as framework, device and error kept as string fields); ``workload_info`` as a
  sample each time what runs changes.
- **Grafana** (``--grafana-url``, token from ``$GRAFANA_TOKEN``): every finished window as a region
  annotation tagged ``mltelemetry``, ``campaign:...``, ``scenario:...``, ``run:...``, ``action:...``.

"What runs now" is the innermost open window: its scenario and run, its action (the enclosing
one for an epoch window, so a training epoch reads action="train", epoch="3") and the innermost
epoch number.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from mltelemetry import schema
from mltelemetry.cliutil import SinkOptions, current_sink_options
from mltelemetry.errors import MltelemetryError, UsageError
from mltelemetry.influx import event_line, event_tags, is_numeric_field
from mltelemetry.schema import Event, Sample
from mltelemetry.sinks import PostFailed, PostRefused, PrometheusSink, Sink, http_post

log = logging.getLogger(__name__)

GRAFANA_TOKEN_ENV = "GRAFANA_TOKEN"
# A finished event stays on /metrics this long: every scraper (Prometheus, VictoriaMetrics, at up to a
# minute apart) takes it a few times, and the page stays small through a campaign of thousands of epochs.
# Prometheus, InfluxDB, the store and Grafana's annotations keep every event.
EVENT_KEEP_S = 120.0


class _OpenWindows:
    """The stack of open windows, outermost first, and the info labels it gives."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._stack: list[Event] = []
        self._lock = threading.Lock()

    def opened(self, event: Event) -> None:
        with self._lock:
            self._stack.append(event)

    def closed(self, event: Event) -> None:
        with self._lock:
            for i in range(len(self._stack) - 1, -1, -1):
                e = self._stack[i]
                if (e.action, e.scenario, e.run, e.epoch, e.start_ns) == (event.action, event.scenario, event.run,
                                                                         event.epoch, event.start_ns):
                    del self._stack[i]
                    break

    def info_labels(self) -> dict[str, str] | None:
        """Labels of ``mltelemetry_workload_info`` for what runs now; None when no window is open."""
        with self._lock:
            if not self._stack:
                return None
            inner = self._stack[-1]
            action = next((e.action for e in reversed(self._stack) if e.action != "epoch"), inner.action)
            epoch = next((e.epoch for e in reversed(self._stack) if e.epoch is not None), None)
            return {"host": self.host, "campaign": inner.campaign, "scenario": inner.scenario, "run": str(inner.run),
                    "action": action, "epoch": "" if epoch is None else str(epoch)}


EVENT_METRICS = (schema.EVENT_START, schema.EVENT_END, schema.EVENT_FIELD)


def event_samples(event: Event, host: str | None = None) -> list[Sample]:
    """A finished window as Prometheus series: its start, its end and each numeric field, labelled with the host
    the workload runs on (so a dashboard or query can tell two SUTs' campaigns apart)."""
    labels = event_tags(event, host)
    samples = [Sample(schema.EVENT_START, labels, event.start_ns / 1e9, event.end_ns),
               Sample(schema.EVENT_END, labels, event.end_ns / 1e9, event.end_ns)]
    samples += [Sample(schema.EVENT_FIELD, {**labels, "field": name}, float(value), event.end_ns)
                for name, value in sorted(event.fields.items()) if is_numeric_field(value)]
    return samples


class PrometheusEvents:
    """Serves what runs now (info gauge) and every finished window on the workload's ``/metrics``."""

    def __init__(self, sink: PrometheusSink, host: str) -> None:
        self.sink, self.windows = sink, _OpenWindows(host)
        self._changed = threading.Lock()

    def _publish_info(self) -> None:
        labels = self.windows.info_labels()
        with self._changed:
            self.sink.forget(schema.WORKLOAD_INFO)
            if labels is not None:
                self.sink.publish([Sample(schema.WORKLOAD_INFO, labels, 1.0, time.time_ns())])

    def window_opened(self, event: Event) -> None:
        self.windows.opened(event)
        self._publish_info()

    def window_closed(self, event: Event) -> None:
        self.windows.closed(event)
        self.sink.publish(event_samples(event, self.windows.host))
        self._publish_info()


class InfluxEvents:
    """Writes every finished window to InfluxDB, and ``workload_info`` whenever what runs changes."""

    def __init__(self, sink, host: str) -> None:  # sink: mltelemetry.influx.InfluxSink
        self.sink, self.windows = sink, _OpenWindows(host)

    def _publish_info(self, ts_ns: int) -> None:
        labels = self.windows.info_labels()
        if labels is not None:
            self.sink.publish([Sample(schema.WORKLOAD_INFO, labels, 1.0, ts_ns)])

    def window_opened(self, event: Event) -> None:
        self.windows.opened(event)
        self._publish_info(event.start_ns)

    def window_closed(self, event: Event) -> None:
        self.windows.closed(event)
        self.sink.publish_lines([event_line(event, self.windows.host)])
        self._publish_info(event.end_ns + 1)  # after the closing window's own info point


class GrafanaAnnotations:
    """Posts every finished window to Grafana's ``/api/annotations`` from a background thread.

    Annotations are a convenience next to the events in Prometheus and InfluxDB: a post that fails is
    logged and counted (``failed``), not retried.
    """

    def __init__(self, url: str, token: str | None, timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--grafana-url wants http(s)://HOST:PORT, got {url!r}")
        if not token:
            raise MltelemetryError(f"--grafana-url needs a service-account token in ${GRAFANA_TOKEN_ENV}")
        self.url = url.rstrip("/") + "/api/annotations"
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.timeout_s = timeout_s
        self.posted = self.failed = 0
        self._queue: queue.Queue[dict | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="grafana-annotations", daemon=True)
        self._thread.start()

    @staticmethod
    def annotation(event: Event) -> dict:
        tags = ["mltelemetry", f"campaign:{event.campaign}", f"scenario:{event.scenario}", f"run:{event.run}",
                f"action:{event.action}", f"status:{event.status}"]
        if event.epoch is not None:
            tags.append(f"epoch:{event.epoch}")
        text = f"{event.action} · {event.scenario} run {event.run}" + \
            (f" epoch {event.epoch}" if event.epoch is not None else "") + f" · {event.status}"
        return {"time": event.start_ns // 10**6, "timeEnd": event.end_ns // 10**6, "tags": tags, "text": text}

    def window_opened(self, event: Event) -> None:
        pass

    def window_closed(self, event: Event) -> None:
        self._queue.put(self.annotation(event))

    def _run(self) -> None:
        while (body := self._queue.get()) is not None:
            try:
                http_post(self.url, json.dumps(body).encode(), self._headers, self.timeout_s)
                self.posted += 1
            except PostRefused as e:
                self.failed += 1
                log.warning("Grafana refused an annotation: %s", e)
            except PostFailed as e:
                self.failed += 1
                log.warning("cannot post an annotation: %s", e)
            except Exception:  # a bug: say it, and keep the thread for the next annotation
                self.failed += 1
                log.exception("posting an annotation to %s failed", self.url)

    def close(self) -> None:
        """Post what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()


def _wait_for_scrape(sink: PrometheusSink, linger_s: float) -> None:
    """Keep ``/metrics`` up until it was scraped once more (the last events), or ``linger_s`` passed."""
    seen = sink.scrapes
    deadline = time.monotonic() + linger_s
    if linger_s > 0:
        log.info("waiting up to %.0f s for a last scrape of /metrics", linger_s)
    while sink.scrapes == seen and time.monotonic() < deadline:
        time.sleep(0.05)


@contextmanager
def live_events(*, listen: str = "off", host: str, grafana_url: str | None = None,
                options: SinkOptions | None = None, linger_s: float = 15.0) -> Iterator[list]:
    """Publish the windows recorded inside the block live (Prometheus /metrics, InfluxDB, Grafana).

    ``options`` (default: the running command's) names InfluxDB and /metrics security. Yields the
    publishers, also made those of every EventRecorder created in the block.
    """
    from mltelemetry.exporters.runtime import build_sinks
    from mltelemetry.workload.events import publishing

    options = options or current_sink_options()
    publishers: list = []
    with ExitStack() as stack:
        sinks: Sequence[Sink] = build_sinks(listen, None, options, name="workload",
                                            keep_s=dict.fromkeys(EVENT_METRICS, EVENT_KEEP_S))
        for sink in sinks:
            stack.callback(sink.close)
            if isinstance(sink, PrometheusSink):
                publishers.append(PrometheusEvents(sink, host))
            else:
                publishers.append(InfluxEvents(sink, host))
        if grafana_url:
            grafana = GrafanaAnnotations(grafana_url, os.environ.get(GRAFANA_TOKEN_ENV))
            stack.callback(grafana.close)
            publishers.append(grafana)
        with publishing(publishers):
            yield publishers
        for sink in sinks:  # the last events are on /metrics: let Prometheus see them before leaving
            if isinstance(sink, PrometheusSink):
                _wait_for_scrape(sink, linger_s)
