"""Grafana annotations: every finished workload window as a region annotation (``--grafana-url``).

Tagged ``mltelemetry``, ``campaign:...``, ``scenario:...``, ``run:...``, ``action:...``, ``status:...`` (and
``epoch:...``); the token comes from ``$GRAFANA_TOKEN``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading

from mltelemetry.errors import MltelemetryError, UsageError
from mltelemetry.publisher import Capability, Publisher, PublisherSettings, WindowChange
from mltelemetry.schema import Event
from mltelemetry.sinks import PostFailed, PostRefused, http_post

log = logging.getLogger(__name__)

GRAFANA_TOKEN_ENV = "GRAFANA_TOKEN"


class GrafanaAnnotations(Publisher):
    """Posts every finished window to Grafana's ``/api/annotations`` from a background thread.

    Annotations are a convenience next to the events in Prometheus and InfluxDB: a post that fails is
    logged and counted (``failed``), not retried.
    """

    name = "grafana"
    capabilities = frozenset({Capability.EVENTS})

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

    def publish_events(self, change: WindowChange) -> None:
        if change.closed:
            self._queue.put(self.annotation(change.event))

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


def grafana_publisher(settings: PublisherSettings) -> GrafanaAnnotations | None:
    """Annotations in the Grafana ``--grafana-url`` names, if it names one."""
    if not settings.grafana_url:
        return None
    return GrafanaAnnotations(settings.grafana_url, os.environ.get(GRAFANA_TOKEN_ENV))
