"""Sinks: where an exporter's samples go. Every sink reads the same samples; no collector knows them.

- ``StoreSink`` buffers and writes to the embedded store at least once per ``flush_interval_s``.
- ``PrometheusSink`` keeps the latest value of every series and serves it on ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric as PromMetric

from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import METRICS, Sample
from mltelemetry.store import Store

log = logging.getLogger(__name__)


class Sink(Protocol):
    def publish(self, samples: Sequence[Sample]) -> None: ...

    def close(self) -> None: ...


class StoreSink:
    """Writes samples to the embedded store in batches, at most ``flush_interval_s`` apart."""

    def __init__(self, path: str | Path, flush_interval_s: float = 1.0, clock=time.monotonic) -> None:
        self.store = Store(path)
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._buffer: list[Sample] = []
        self._last_flush = clock()

    def publish(self, samples: Sequence[Sample]) -> None:
        self._buffer.extend(samples)
        if self._clock() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.store.write(self._buffer)
            self._buffer = []
        self._last_flush = self._clock()

    def close(self) -> None:
        self.flush()
        self.store.close()


def parse_listen(listen: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) or ``off``; the default binds loopback only."""
    if listen.lower() in ("off", "none", ""):
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise MltelemetryError(f"--listen wants HOST:PORT or 'off', got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class PrometheusSink:
    """Serves the latest value of every series on ``http://HOST:PORT/metrics``.

    Values are exposed without timestamps: Prometheus stamps them at scrape time, and the
    ``*_joules_total`` counters make the scrape interval irrelevant to window energy.
    """

    def __init__(self, host: str, port: int) -> None:
        self._latest: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise MltelemetryError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
        self.port = self._server.server_port

    def publish(self, samples: Sequence[Sample]) -> None:
        for s in samples:
            self._latest[(s.metric, tuple(sorted(s.labels.items())))] = s.value

    def collect(self) -> Iterable[PromMetric]:
        families: dict[str, PromMetric] = {}
        for (name, labels), value in sorted(self._latest.items()):
            spec = METRICS[name]
            family = families.get(name)
            if family is None:  # counter and info families are named without their suffix; samples carry it
                family = families[name] = PromMetric(name.removesuffix("_total").removesuffix("_info"), spec.help,
                                                     spec.type)
            family.add_sample(name, dict(labels), value)
        yield from families.values()

    def describe(self) -> Iterable[PromMetric]:
        return []

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
