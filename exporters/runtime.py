"""The sampling loop every exporter shares.

Ticks fall on absolute deadlines ``start + k * interval`` of the monotonic clock, so the loop
does not drift over hours. A tick that runs past the next deadline makes the loop skip to the
first deadline still ahead and count the skipped ones in ``exporter_missed_ticks_total``: a
late tick is counted, never run twice to catch up.
"""

from __future__ import annotations

import logging
import platform
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mltelemetry import __version__, schema
from mltelemetry.backends import build_publishers
from mltelemetry.cliutil import SinkOptions
from mltelemetry.publisher import Capability, Publisher, PublisherSettings
from mltelemetry.schema import Sample

log = logging.getLogger(__name__)


class Collector(Protocol):
    """Turns one device's readings into samples of the schema's metrics."""

    name: str

    def sample(self, ts_ns: int) -> list[Sample]:
        """Samples for this tick, stamped ``ts_ns`` (UTC wall-clock ns) unless the reading has its own time."""
        ...

    def close(self) -> None: ...


def build_info_labels(collector: Collector, host: str) -> dict[str, str]:
    """``mltelemetry_build_info``'s labels; ``driver`` is the collector's ``driver_version`` where it has one."""
    return {"host": host, "exporter": collector.name, "version": __version__,
            "python": platform.python_version(), "driver": str(getattr(collector, "driver_version", "") or "")}


def next_tick(start: float, interval: float, tick: int, now: float) -> tuple[int, int]:
    """The index of the next tick to run after ``tick`` at monotonic time ``now``, and how many were missed."""
    following = tick + 1
    if now <= start + following * interval:
        return following, 0
    first_ahead = int((now - start) // interval) + 1
    return first_ahead, first_ahead - following


def stale_after_s(interval_s: float) -> float:
    """A series missing from three ticks in a row (a lost GPU, a meter item gone invalid) leaves /metrics."""
    return max(5.0, 3 * interval_s)


@dataclass
class Exporter:
    """Runs one collector on a fixed interval and hands its samples, and its own health, to the sinks: the
    publishers (:mod:`mltelemetry.publisher`) that take samples."""

    collector: Collector
    sinks: Sequence[Publisher]
    interval_s: float = 1.0
    host: str = field(default_factory=socket.gethostname)
    monotonic: Callable[[], float] = time.monotonic
    wall_ns: Callable[[], int] = time.time_ns
    samples_total: int = 0
    errors_total: int = 0
    missed_ticks_total: int = 0
    unflushed_sinks: int = 0  # sinks whose closing flush failed: what they held is lost

    def _self_metrics(self, ts_ns: int, duration_s: float) -> list[Sample]:
        labels = {"host": self.host, "exporter": self.collector.name}
        samples = [
            Sample(schema.BUILD_INFO, build_info_labels(self.collector, self.host), 1.0, ts_ns),
            Sample(schema.EXPORTER_SAMPLE_DURATION, labels, duration_s, ts_ns),
            Sample(schema.EXPORTER_SAMPLES, labels, self.samples_total, ts_ns),
            Sample(schema.EXPORTER_ERRORS, labels, self.errors_total, ts_ns),
            Sample(schema.EXPORTER_MISSED_TICKS, labels, self.missed_ticks_total, ts_ns),
        ]
        for sink in self.sinks:  # push sinks and the store report their spool and write counts
            samples += sink.health(labels, ts_ns)
        return samples

    def tick(self) -> list[Sample]:
        ts_ns = self.wall_ns()
        began = time.perf_counter()
        try:
            samples = self.collector.sample(ts_ns)
        except Exception:
            self.errors_total += 1
            log.exception("%s: sampling failed", self.collector.name)
            samples = []
        self.samples_total += len(samples)
        samples = samples + self._self_metrics(ts_ns, time.perf_counter() - began)
        for sink in self.sinks:
            if Capability.SAMPLES not in sink.capabilities:
                continue
            try:
                sink.publish_samples(samples)
            except Exception:
                self.errors_total += 1
                log.exception("%s: sink %s failed", self.collector.name, type(sink).__name__)
        return samples

    def run(self, stop: threading.Event, max_ticks: int | None = None) -> None:
        """Tick until ``stop`` is set (or ``max_ticks`` ran), then close the collector and flush the sinks."""
        start, tick, ran = self.monotonic(), 0, 0
        try:
            while not stop.is_set():
                self.tick()
                ran += 1
                if max_ticks is not None and ran >= max_ticks:
                    break
                tick, missed = next_tick(start, self.interval_s, tick, self.monotonic())
                if missed:
                    self.missed_ticks_total += missed
                    log.warning("%s: tick ran late, %d tick(s) skipped", self.collector.name, missed)
                stop.wait(max(0.0, start + tick * self.interval_s - self.monotonic()))
        finally:
            close = getattr(self.collector, "close", None)
            try:
                if close:
                    close()
            except Exception as e:  # a device that fails to close must not cost the sinks their flush
                self.errors_total += 1
                log.error("%s: closing the collector failed: %s", self.collector.name, e)
            for sink in self.sinks:  # one sink failing to close must not keep the others from flushing
                try:
                    sink.close()
                except Exception as e:
                    self.errors_total += 1
                    self.unflushed_sinks += 1
                    log.error("%s: closing sink %s failed: %s", self.collector.name, type(sink).__name__, e)


def exporter_sinks(name: str, *, listen: str, store: str | None, interval_s: float,
                   options: SinkOptions, store_flush_s: float = 1.0) -> list[Publisher]:
    """The publishers an exporter command's options name (``name``: the exporter's, for its spool folder)."""
    return build_publishers(PublisherSettings(options, listen=listen, store=store, name=name,
                                              store_flush_s=store_flush_s,
                                              stale_after_s=stale_after_s(interval_s)))


def serve(collector: Collector, sinks: Sequence[Publisher], *, interval_s: float, host: str) -> None:
    """Run ``collector`` until SIGINT or SIGTERM, publishing to ``sinks`` (the command built them); closes both."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    exporter = Exporter(collector, sinks, interval_s=interval_s, host=host)
    log.info("%s exporter running every %.3g s", collector.name, interval_s)
    exporter.run(stop)
    if exporter.unflushed_sinks:
        log.error("%s exporter stopped; %d sink(s) could not write what they held (see above)", collector.name,
                  exporter.unflushed_sinks)
    else:
        log.info("%s exporter stopped after flushing its sinks", collector.name)
