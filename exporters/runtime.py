"""The sampling loop every exporter shares.

Ticks fall on absolute deadlines ``start + k * interval`` of the monotonic clock, so the loop
does not drift over hours. A tick that runs past the next deadline makes the loop skip to the
first deadline still ahead and count the skipped ones in ``exporter_missed_ticks_total``: a
late tick is counted, never run twice to catch up.

The exporter's own series (build info, tick duration, counts, the sinks' health) are reported at most once
a second (``health_every_s``), and once more when the loop ends if ticks ran since: at ``--interval 0.1``
they would otherwise be most of each tick's samples. Counters lose nothing by that; the tick duration
reported is the longest since the previous report.
"""

from __future__ import annotations

import logging
import math
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
    health_every_s: float = 1.0  # the exporter's own series at most this often
    _health_at: float = field(default=-math.inf, init=False, repr=False)  # monotonic time of its last report
    _longest_tick_s: float = field(default=0.0, init=False, repr=False)  # since that report
    _unreported_ticks: int = field(default=0, init=False, repr=False)  # ticks since that report

    def _self_metrics(self, ts_ns: int) -> list[Sample]:
        labels = {"host": self.host, "exporter": self.collector.name}
        samples = [
            Sample(schema.BUILD_INFO, build_info_labels(self.collector, self.host), 1.0, ts_ns),
            Sample(schema.EXPORTER_SAMPLE_DURATION, labels, self._longest_tick_s, ts_ns),
            Sample(schema.EXPORTER_SAMPLES, labels, self.samples_total, ts_ns),
            Sample(schema.EXPORTER_ERRORS, labels, self.errors_total, ts_ns),
            Sample(schema.EXPORTER_MISSED_TICKS, labels, self.missed_ticks_total, ts_ns),
        ]
        for sink in self.sinks:  # push sinks and the store report their spool and write counts
            samples += sink.health(labels, ts_ns)
        return samples

    def tick(self) -> list[Sample]:
        ts_ns = self.wall_ns()
        began = self.monotonic()
        try:
            samples = self.collector.sample(ts_ns)
        except Exception:
            self.errors_total += 1
            log.exception("%s: sampling failed", self.collector.name)
            samples = []
        self.samples_total += len(samples)
        self._longest_tick_s = max(self._longest_tick_s, self.monotonic() - began)
        self._unreported_ticks += 1
        # half an interval of slack: a tick that woke a little early still reports (at 1 s and more: every tick)
        if began - self._health_at >= self.health_every_s - self.interval_s / 2:
            samples = samples + self._self_metrics(ts_ns)
            self._health_at, self._longest_tick_s, self._unreported_ticks = began, 0.0, 0
        self._publish(samples)
        return samples

    def _publish(self, samples: list[Sample]) -> None:
        for sink in self.sinks:
            if Capability.SAMPLES not in sink.capabilities:
                continue
            try:
                sink.publish_samples(samples)
            except Exception:
                self.errors_total += 1
                log.exception("%s: sink %s failed", self.collector.name, type(sink).__name__)

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
            if self._unreported_ticks:  # the last word on the counts: ticks ran since the last report
                self._publish(self._self_metrics(self.wall_ns()))
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
