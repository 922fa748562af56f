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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mltelemetry import __version__, schema
from mltelemetry.cliutil import SinkOptions, current_sink_options
from mltelemetry.schema import Sample
from mltelemetry.sinks import PrometheusSink, Sink, StoreSink, WebSecurity, parse_listen, read_basic_auth_file

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


@dataclass
class Exporter:
    """Runs one collector on a fixed interval and hands its samples, and its own health, to the sinks."""

    collector: Collector
    sinks: Sequence[Sink]
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
        for sink in self.sinks:  # push sinks report their spool and write counts
            health = getattr(sink, "health", None)
            if health is not None:
                samples += health(labels, ts_ns)
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
            try:
                sink.publish(samples)
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


def web_security(options: SinkOptions) -> WebSecurity:
    """TLS and basic auth for /metrics from the command's options."""
    users = read_basic_auth_file(options.basic_auth_file) if options.basic_auth_file else None
    return WebSecurity(options.tls_cert, options.tls_key, users)


def influx_sink(options: SinkOptions, name: str) -> Sink:
    """The InfluxDB sink the options describe (the token from --influx-token-file or $INFLUX_TOKEN)."""
    from mltelemetry.influx import InfluxConfig, InfluxSink, read_token

    assert options.influx_url
    config = InfluxConfig(options.influx_url, options.influx_bucket, options.influx_api,  # type: ignore[arg-type]
                          options.influx_org, read_token(options.influx_token_file), options.spool_dir,
                          int(options.spool_max_mb * 2**20))
    return InfluxSink.open(config, name)


def build_sinks(listen: str, store: str | None, options: SinkOptions | None = None,
                name: str = "exporter", stale_after_s: float | None = None,
                keep_s: Mapping[str, float] | None = None) -> list[Sink]:
    """The sinks the options name; ``options`` defaults to those of the running command.
    ``stale_after_s``: /metrics drops a series not published for that long, and /healthz says the exporter
    is stale once nothing was published for that long (None: never); ``keep_s``: /metrics drops the series of
    these metrics that long after they were published."""
    options = options or current_sink_options()
    sinks: list[Sink] = []
    address = parse_listen(listen)
    try:
        if address:
            prometheus = PrometheusSink(*address, security=web_security(options), stale_after_s=stale_after_s,
                                        healthy_within_s=stale_after_s, keep_s=keep_s)
            sinks.append(prometheus)
            log.info("serving /metrics on %s://%s:%d/metrics", prometheus.scheme, address[0], prometheus.port)
        if store:
            sinks.append(StoreSink(store))
        if options.influx_url:
            sinks.append(influx_sink(options, name))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def serve(collector: Collector, *, listen: str, store: str | None, interval_s: float, host: str,
          options: SinkOptions | None = None) -> None:
    """Run ``collector`` until SIGINT or SIGTERM, publishing to the sinks the options name."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # A series missing from three ticks in a row (a lost GPU, a meter item gone invalid) leaves /metrics.
    sinks = build_sinks(listen, store, options, name=collector.name, stale_after_s=max(5.0, 3 * interval_s))
    exporter = Exporter(collector, sinks, interval_s=interval_s, host=host)
    log.info("%s exporter running every %.3g s", collector.name, interval_s)
    exporter.run(stop)
    if exporter.unflushed_sinks:
        log.error("%s exporter stopped; %d sink(s) could not write what they held (see above)", collector.name,
                  exporter.unflushed_sinks)
    else:
        log.info("%s exporter stopped after flushing its sinks", collector.name)
