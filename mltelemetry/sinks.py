"""Two publishers (see :mod:`mltelemetry.publisher`): the embedded store and Prometheus ``/metrics``.

- ``StoreSink`` buffers samples and writes them to the embedded store at least once per ``flush_interval_s``;
  it writes events at once, and keeps the record of truth.
- ``PrometheusSink`` keeps the latest value of every series and serves it on ``/metrics``
  (optionally over TLS and behind HTTP basic auth), and what runs now and the finished events of a workload.
- ``mltelemetry.influx.InfluxSink`` pushes line protocol to InfluxDB, ``mltelemetry.annotations`` posts events to
  Grafana (their own modules).
"""

from __future__ import annotations

import logging
import math
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mltelemetry import schema
from mltelemetry.cliutil import SinkOptions
from mltelemetry.errors import MltelemetryError, StoreWriteError, UsageError
from mltelemetry.event_series import event_samples, running_labels
from mltelemetry.httpserver import MetricsServer, Page, Routes, ServerLimits
from mltelemetry.process_metrics import ProcessMetrics, ProcessValue
from mltelemetry.publisher import Capability, Publisher, PublisherSettings, WindowChange
from mltelemetry.schema import EXPOSED_WITH_READING_TIME, METRICS, Event, Sample
from mltelemetry.store import Store

if TYPE_CHECKING:  # ssl, urllib.request and http.client where they are used: an exporter that pushes nowhere and
    import ssl  # serves /metrics without TLS does not hold them (≈ 5 MB)

log = logging.getLogger(__name__)

EventKey = tuple[str, str, int, str, "int | None", int]


def _event_key(event: Event) -> EventKey:
    """What tells a window apart: its opening and its closing record share it."""
    return event.campaign, event.scenario, event.run, event.action, event.epoch, event.start_ns


class StoreSink(Publisher):
    """Writes samples to the embedded store in batches, at most ``flush_interval_s`` apart, and events at once.

    ``store`` is a path (the sink opens the store and closes it) or an open :class:`Store` (left open).

    A write the store refuses (disk full, read-only, damaged: :class:`StoreWriteError`) keeps the batch for
    the next flush and logs the cause, naming the file, once a minute at most; at most ``max_buffered``
    samples wait: past that the oldest are dropped and counted in ``dropped_samples``, so a store that keeps
    failing cannot eat the exporter's memory. Every sample received ends up counted once: stored
    (``written_samples``), refused as not finite (``store.dropped_non_finite``) or lost (``dropped_samples``).

    An event the store refuses raises :class:`StoreWriteError` with the store's reason: the store keeps the
    record of truth, so the workload stops rather than go on unrecorded. A claim (an opening with
    ``change.claim``) is written at once and replaced by the window's final record when it closes.
    """

    name = "store"
    capabilities = frozenset({Capability.SAMPLES, Capability.EVENTS, Capability.RECORD})

    def __init__(self, store: str | Path | Store, flush_interval_s: float = 1.0, clock=time.monotonic,
                 max_buffered: int = 200_000) -> None:
        self._owns_store = not isinstance(store, Store)
        self.store = Store(store) if self._owns_store else store
        self._claims: dict[EventKey, int] = {}  # the store's row of each open window's claim
        self.flush_interval_s = flush_interval_s
        self.max_buffered = max_buffered
        self.received_samples = 0
        self.written_samples = 0
        self.dropped_samples = 0
        self.write_errors = 0
        self._clock = clock
        self._buffer: list[Sample] = []
        self._last_flush = clock()
        self._warned_at: float | None = None
        self._failing_since: float | None = None
        self._non_finite_warned: tuple[float, int] | None = None  # when, and how many had been refused then

    def _warn(self, message: str, *args: object) -> None:
        if self._warned_at is None or self._clock() - self._warned_at >= 60:  # once a minute at most
            self._warned_at = self._clock()
            log.error(message, *args)

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        self.received_samples += len(samples)
        self._buffer.extend(samples)
        excess = len(self._buffer) - self.max_buffered
        if excess > 0:
            del self._buffer[:excess]
            self.dropped_samples += excess
            self._warn("the store %s takes no samples: %d buffered, dropping the oldest, %d lost so far",
                       self.store.path, self.max_buffered, self.dropped_samples)
        if self._clock() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def health(self, labels: Mapping[str, str], ts_ns: int) -> list[Sample]:
        """This sink's own series (as the InfluxDB sink's): the buffer's fill (1: full, the oldest get dropped),
        samples stored, refused as not finite, lost, and failed writes."""
        labels = {**labels, "sink": self.name}
        return [
            Sample(schema.EXPORTER_SPOOL_FILL, labels, min(1.0, len(self._buffer) / self.max_buffered), ts_ns),
            Sample(schema.EXPORTER_SPOOL_DROPPED, labels, float(self.dropped_samples), ts_ns),
            Sample(schema.EXPORTER_SINK_WRITTEN, labels, float(self.written_samples), ts_ns),
            Sample(schema.EXPORTER_SINK_REJECTED, labels, float(self.store.dropped_non_finite), ts_ns),
            Sample(schema.EXPORTER_SINK_ERRORS, labels, float(self.write_errors), ts_ns),
        ]

    def publish_events(self, change: WindowChange) -> None:
        """Write a closed window (replacing its claim), or an opening that is a claim."""
        event = change.event
        try:
            if not change.closed:
                if change.claim is not None:
                    self._claims[_event_key(event)] = self.store.claim_event(event, change.claim)
                return
            row = self._claims.pop(_event_key(event), None)
            if row is None:
                self.store.write_events([event])
            else:
                self.store.replace_event(row, event)
        except sqlite3.Error as e:
            # A failed COMMIT can leave no transaction to roll back: the first error is the cause.
            cause = e.__context__ if isinstance(e.__context__, sqlite3.Error) else e
            raise StoreWriteError(f"cannot write to the store {self.store.path}: {cause}", self.store.path) from e

    def flush(self) -> StoreWriteError | None:
        """Write the buffer; on a refusal keep it for the next flush and return the store's error."""
        self._last_flush = self._clock()
        if not self._buffer:
            return None
        try:
            self.written_samples += self.store.write(self._buffer)
        except StoreWriteError as e:
            self.write_errors += 1
            if self._failing_since is None:
                self._failing_since = self._clock()
            self._warn("%s; keeping %d samples for the next attempt (at most %d), %d lost so far", e,
                       len(self._buffer), self.max_buffered, self.dropped_samples)
            return e
        refused, now = self.store.dropped_non_finite, self._clock()
        last = self._non_finite_warned
        if refused > (last[1] if last else 0) and (last is None or now - last[0] >= 60):  # new ones, once a minute
            self._non_finite_warned = (now, refused)
            log.warning("the store %s refused %d sample(s) so far whose value was no finite number (NAN, INF)",
                        self.store.path, self.store.dropped_non_finite)
        if self._failing_since is not None:
            log.warning("the store %s takes samples again after %.0f s; the %d buffered ones are written",
                        self.store.path, self._clock() - self._failing_since, len(self._buffer))
            self._failing_since, self._warned_at = None, None
        self._buffer = []
        return None

    def close(self) -> None:
        """Flush what is buffered, then close the store, also when the flush fails.

        Raises StoreWriteError, saying how many samples are lost, when the last flush fails.
        """
        try:
            error = self.flush()
            unwritten = len(self._buffer)
            self.dropped_samples += unwritten
            self._buffer = []
            summary = (f"{self.received_samples} samples received, {self.written_samples} stored, "
                       f"{self.store.dropped_non_finite} refused as not finite, {self.dropped_samples} lost")
            if error is not None:
                raise StoreWriteError(f"{error}; {unwritten} buffered samples are lost ({summary})",
                                      error.path, error.disk_full)
            if self.received_samples or self._owns_store:
                (log.warning if self.dropped_samples else log.info)("store %s: %s", self.store.path, summary)
        finally:
            if self._owns_store:
                self.store.close()


class PostFailed(Exception):
    """A POST that got no usable answer: no connection, a timeout, a broken HTTP response."""


class PostRefused(Exception):
    """A POST the server answered with an HTTP error status; ``body`` is the start of its answer."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body.strip()[:300]}")
        self.status, self.body = status, body


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> None:
    """POST ``body`` to ``url`` with the standard library; every failure is PostRefused or PostFailed.

    The push sinks (InfluxDB 1.x, Grafana annotations) share it, so an error that is neither an
    HTTP status nor an OSError (``http.client.IncompleteRead``, ``BadStatusLine``) cannot slip past one of them.
    """
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as e:
        try:
            answer = e.read().decode(errors="replace")
        except (OSError, http.client.HTTPException):
            answer = ""
        raise PostRefused(e.code, answer) from e
    except (OSError, http.client.HTTPException) as e:
        raise PostFailed(f"{url}: {getattr(e, 'reason', None) or e!r}") from e


def parse_listen(listen: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) or ``off``; the default binds loopback only."""
    if listen.lower() in ("off", "none", ""):
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen wants HOST:PORT or 'off', got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class WebSecurity:
    """TLS (a PEM certificate and key) and HTTP basic auth (user → password) for ``/metrics``; both optional."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    basic_auth: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("TLS needs both --tls-cert and --tls-key")

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        except (OSError, ssl.SSLError) as e:
            raise MltelemetryError(f"cannot load the TLS certificate {self.tls_cert} and key {self.tls_key}: "
                                   f"{getattr(e, 'strerror', None) or e}") from e
        return context


def read_basic_auth_file(path: str | Path) -> dict[str, str]:
    """``user:password`` lines (blank lines and ``#`` comments skipped) → {user: password}."""
    try:
        path = Path(path)
        text = path.read_text()
        if path.stat().st_mode & 0o077:
            log.warning("%s can be read by other users; chmod 600 it", path)
    except OSError as e:
        raise MltelemetryError(f"cannot read the basic-auth file {path}: {e.strerror or e}") from e
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise MltelemetryError(f"{path}:{number}: want user:password")
        users[user] = password
    if not users:
        raise MltelemetryError(f"the basic-auth file {path} names no user")
    return users


# OpenMetrics unit words for the schema's (UCUM) units; "1" is a unit only for ratios.
_OPENMETRICS_UNITS = {"W": "watts", "V": "volts", "A": "amperes", "J": "joules", "s": "seconds", "B": "bytes",
                      "Cel": "celsius", "Hz": "hertz"}


def openmetrics_unit(family: str, unit: str) -> str:
    """The ``# UNIT`` of a family: the schema's unit as OpenMetrics spells it, where the name ends in it."""
    word = _OPENMETRICS_UNITS.get(unit, "ratio" if unit == "1" else "")
    return word if word and family.endswith("_" + word) else ""


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class _Series:
    """What the /metrics page knows of one series. Held by reference where a tick's samples are taken, so a sample
    costs one lookup of its metric and labels and no hashing of the series key (tuples do not keep their hash)."""

    __slots__ = ("key", "value", "ts_ns", "published_at", "readings", "labels", "line", "line_value", "gone")

    def __init__(self, key: SeriesKey, readings: deque[tuple[int, float, int]] | None) -> None:
        self.key = key
        self.value, self.ts_ns, self.published_at = math.nan, 0, 0.0
        self.readings = readings  # a reading-time series' last readings: (tick, value, reading time in ns)
        self.labels: str | None = None  # name{labels}, rendered once
        self.line: str | None = None  # the page's line for line_value (series without a reading time)
        self.line_value = math.nan
        self.gone = False  # forgotten: a sample of it makes a new record


PROCESS_EVERY_S = 5.0
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_FORMAT = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def go_float(value: float) -> str:
    """A value as Prometheus (Go) writes it: prometheus-client's ``floatToGoString`` (Apache-2.0), with Python's
    repr taken at once where the two agree (a finite number below 1e6 written without an exponent: most values)."""
    text = repr(float(value))
    dot = text.find(".")
    if 0 <= dot <= 6 and "e" not in text:
        return text
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value > 0 and dot > 6:  # a seventh digit before the point: Go writes an exponent where Python's repr does not
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def label_text(labels: tuple[tuple[str, str], ...]) -> str:
    """``{a="x",b="y"}`` with the values escaped as both formats want (label names come from the schema)."""
    escaped = (f'{k}="{_escape_label_value(v)}"' for k, v in labels)
    return "{" + ",".join(escaped) + "}" if labels else ""


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def family_header(name: str, openmetrics: bool) -> str:
    """``# HELP``/``# TYPE`` (and ``# UNIT`` in OpenMetrics) of a schema metric, as prometheus-client writes them:
    counter and info families are named without their suffix in OpenMetrics, info is a gauge in the text format."""
    spec = METRICS[name]
    help_text = spec.help.replace("\\", r"\\").replace("\n", r"\n")
    if not openmetrics:
        kind = "gauge" if spec.type == "info" else spec.type
        return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
    family = name.removesuffix("_total") if spec.type == "counter" else name.removesuffix("_info")
    unit = openmetrics_unit(family, spec.unit)
    help_text = help_text.replace('"', r'\"')
    return (f"# HELP {family} {help_text}\n# TYPE {family} {spec.type}\n"
            + (f"# UNIT {family} {unit}\n" if unit else ""))


def process_text(values: Sequence[ProcessValue], openmetrics: bool) -> bytes:
    """The process_* families (:mod:`mltelemetry.process_metrics`) as prometheus-client writes them; in OpenMetrics a
    counter's family is named without ``_total``, and ``# EOF`` ends the page."""
    lines = []
    for family, kind, help_text, value in values:
        name = family + "_total" if kind == "counter" else family
        header = family if openmetrics else name
        lines.append(f"# HELP {header} {help_text}\n# TYPE {header} {kind}\n{name} {go_float(value)}\n")
    return ("".join(lines) + ("# EOF\n" if openmetrics else "")).encode()


class PrometheusSink(Routes, Publisher):
    """Serves the latest value of every series on ``http://HOST:PORT/metrics`` (``https`` with TLS).

    The page is rendered at most once per tick and format (text or OpenMetrics): the first scrape after a
    publish renders it, the others get the same bytes; a format scraped during the previous tick is rendered
    at the publish itself (the tick just touched every series: 120 µs there against 280 µs in a scrape half a
    second later, for a host exporter's page). Beside the samples it serves the process' own CPU
    time and memory (``process_*``).

    The series in ``schema.EXPOSED_WITH_READING_TIME`` (the energy counters) carry their reading's time as
    an explicit timestamp; the others are stamped by the scraper. A scraper whose scrapes fall between two
    ticks would miss a reading now and then, and read the counter across two intervals at a window's
    edge; so each scraper (told apart by address and User-Agent) that missed a tick gets, on its next
    scrape, the readings it missed (oldest first, up to ``history`` ticks back) before the latest, and a
    scraper new to the exporter all of the last ``history`` (the readings of an exporter's first seconds,
    or of a Prometheus restart, are not lost). Every reading reaches a scraper once, in time order, none
    older than one it was given (Prometheus would drop that as out of order). A scraper that keeps up gets
    the shared page rendered once per tick.

    ``/healthz`` answers 200 while something was published within ``healthy_within_s`` (None: always).
    ``keep_s`` names metrics whose series leave the page that long after they were last published (the
    workload's finished events), whatever ``stale_after_s`` says.

    Events: what runs now as ``mltelemetry_workload_info`` and every finished window's series (see
    :mod:`mltelemetry.event_series`), labelled ``host_label``. ``linger_s``: :meth:`close` keeps the page up
    until it was scraped once more (the last events), that long at most.
    """

    name = "prometheus"
    capabilities = frozenset({Capability.SAMPLES, Capability.EVENTS})

    def __init__(self, host: str, port: int, security: WebSecurity | None = None,
                 stale_after_s: float | None = None, clock=time.monotonic, *,
                 healthy_within_s: float | None = None, limits: ServerLimits | None = None,
                 history: int = 60, keep_s: Mapping[str, float] | None = None, host_label: str | None = None,
                 linger_s: float = 0.0) -> None:
        self.host_label, self.linger_s = host_label, linger_s
        self._series: dict[SeriesKey, _Series] = {}  # every series on the page
        self._keys: dict[tuple, _Series] = {}  # a sample's metric and labels as they come → its series
        self._tick = 0  # publishes so far
        self._timed: dict[SeriesKey, _Series] = {}  # the reading-time series: they keep their last readings
        self.history = history
        self._scrapers: dict[str, tuple[int, float]] = {}  # scraper → (the last tick it was served, when)
        # A series not published for stale_after_s is dropped (a GPU that fell off the bus, a meter item
        # gone NAN), so /metrics never shows an old value as current. None keeps every series.
        self.stale_after_s = stale_after_s
        self.keep_s = dict(keep_s or {})
        self.healthy_within_s = healthy_within_s
        self._clock = clock
        self._expires_at = math.inf  # no series leaves the page before then (a bound: it may leave later)
        self._last_publish: float | None = None
        self._lock = threading.Lock()
        self._pages: dict[str, Page] = {}  # rendered pages by content type, until the next publish
        self._scraped: set[str] = set()  # the content types scraped since the last publish
        self.scrapes = 0  # how often /metrics was read
        self.renders = 0  # how often the page was rendered
        self._order: list[_Series] | None = None  # the series in page order, until one comes or goes
        self._headers: dict[tuple[str, bool], str] = {}  # each family's header lines, per format
        self.process = ProcessMetrics()  # the process' own CPU time and memory
        self._process_parts: dict[bool, tuple[float, bytes]] = {}  # per format: (when rendered, the lines)
        security = security or WebSecurity()
        try:
            self._server = MetricsServer(host, port, self, context=security.ssl_context(),
                                         basic_auth=security.basic_auth, limits=limits)
        except (OSError, socket.gaierror) as e:
            raise MltelemetryError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
        self.port = self._server.server_port
        self.scheme = "https" if security.tls_cert else "http"

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        with self._lock:
            scraped, self._scraped = self._scraped, set()  # the formats scraped since the previous publish
            self._publish(samples)
            for content_type in scraped:  # likely scraped again in this tick
                self.renders += 1
                self._pages[content_type] = Page(self._render(content_type == OPENMETRICS_FORMAT), content_type)

    def _publish(self, samples: Sequence[Sample]) -> None:
        """Under the lock: take one tick's samples."""
        now = self._clock()
        keys, tick = self._keys, self._tick + 1
        for s in samples:
            series = keys.get((s.metric, *s.labels.items()))
            if series is None or series.gone:
                series = self._series_of(s, now)
            series.published_at = now
            readings = series.readings
            if readings is not None:
                if readings and s.ts_ns < readings[-1][2]:  # the wall clock stepped back: Prometheus
                    continue  # would drop it as out of order, and the counter's newest reading stays
                if readings and s.ts_ns == readings[-1][2]:  # the same reading again
                    readings.pop()
                readings.append((tick, s.value, s.ts_ns))
            series.value, series.ts_ns = s.value, s.ts_ns
        self._tick = tick
        self._last_publish = now
        self._pages.clear()

    def _series_of(self, sample: Sample, now: float) -> _Series:
        """The series of a sample whose metric and labels were not looked up before in this order (made if new)."""
        key = (sample.metric, tuple(sorted(sample.labels.items())))  # labels sorted once per series and order
        series = self._series.get(key)
        if series is None:
            timed = sample.metric in EXPOSED_WITH_READING_TIME
            series = self._series[key] = _Series(key, deque(maxlen=self.history) if timed else None)
            if timed:
                self._timed[key] = series
            self._order = None
            self._expires_at = min(self._expires_at, now + self._kept_for(sample.metric))
        self._keys[(sample.metric, *sample.labels.items())] = series
        return series

    def publish_events(self, change: WindowChange) -> None:
        """What runs now replaces the info gauge's series (in one step: no scrape sees none or two); a closed
        window's series are added."""
        labels = running_labels(change.running, self.host_label)
        with self._lock:
            if change.closed:
                self._publish(event_samples(change.event, self.host_label))
            for series in [series for key, series in self._series.items() if key[0] == schema.WORKLOAD_INFO]:
                self._forget(series)
            self._pages.clear()
            if labels is not None:
                self._publish([Sample(schema.WORKLOAD_INFO, labels, 1.0, time.time_ns())])

    def _forget(self, series: _Series) -> None:
        self._order = None
        series.gone = True
        del self._series[series.key]
        self._timed.pop(series.key, None)
        if len(self._keys) > 4 * len(self._series) + 1000:  # series come and go (workload events)
            self._keys.clear()

    def _kept_for(self, metric: str) -> float:
        """How long a series of ``metric`` stays on the page after it was last published."""
        return self.keep_s.get(metric, math.inf if self.stale_after_s is None else self.stale_after_s)

    def _drop_stale(self) -> None:
        """Under the lock: forget the series not published for stale_after_s, or their metric's keep_s (and the
        pages that showed them). The series are looked through only once the first of them may have expired."""
        now = self._clock()
        if now <= self._expires_at:
            return
        stale = [series for key, series in self._series.items() if now - series.published_at > self._kept_for(key[0])]
        for series in stale:
            self._forget(series)
        if stale:
            self._pages.clear()
        self._expires_at = min((series.published_at + self._kept_for(key[0]) for key, series in self._series.items()),
                               default=math.inf)

    def metrics(self, accept: str, scraper: str = "") -> Page:
        """The page for a scraper (its Accept header): the shared one of this tick, rendered at most once,
        unless the scraper missed a tick since its last scrape: then its own, with the readings it missed."""
        openmetrics = "application/openmetrics-text" in accept  # Prometheus asks for it first
        content_type = OPENMETRICS_FORMAT if openmetrics else TEXT_FORMAT
        with self._lock:
            self.scrapes += 1
            self._drop_stale()
            now = self._clock()
            last_served = self._scrapers.get(scraper, (0, now))[0]  # new: everything in the history
            self._scrapers[scraper] = (self._tick, now)
            if len(self._scrapers) > 64:  # forget scrapers gone for ten minutes (curl, a restarted server)
                self._scrapers = {k: v for k, v in self._scrapers.items() if now - v[1] < 600}
            if any(len(series.readings) > 1 and series.readings[-2][0] > last_served
                   for series in self._timed.values()):  # it missed a reading before the latest
                self.renders += 1
                return Page(self._render(openmetrics, since=last_served), content_type)
            self._scraped.add(content_type)
            page = self._pages.get(content_type)
            if page is None:
                self.renders += 1
                page = self._pages[content_type] = Page(self._render(openmetrics), content_type)
        return page

    def healthz(self) -> Page:
        with self._lock:
            last = self._last_publish
        if self.healthy_within_s is None:
            return Page(b"ok\n", "text/plain; charset=utf-8")
        if last is None:
            return Page(b"starting: nothing sampled yet\n", "text/plain; charset=utf-8", 503)
        age = self._clock() - last
        if age > self.healthy_within_s:
            return Page(f"stale: last sample {age:.1f} s ago\n".encode(), "text/plain; charset=utf-8", 503)
        return Page(f"ok: last sample {age:.1f} s ago\n".encode(), "text/plain; charset=utf-8")

    def _render(self, openmetrics: bool, since: int | None = None) -> bytes:
        """The page (under the lock): every series' latest value, a reading-time series' readings after tick
        ``since`` when given, then the process' own series. Labels and headers are rendered once and kept."""
        lines: list[str] = []
        family = None
        if self._order is None:
            self._order = sorted(self._series.values(), key=lambda series: series.key)
        for series in self._order:
            name, value = series.key[0], series.value
            if name != family:
                family = name
                header = self._headers.get((name, openmetrics))
                if header is None:
                    header = self._headers[(name, openmetrics)] = family_header(name, openmetrics)
                lines.append(header)
            labels = series.labels
            if labels is None:
                labels = series.labels = name + label_text(series.key[1])
            if series.readings is None:  # the same line in both formats: made when its value changes
                if series.line is None or series.line_value != value:
                    series.line, series.line_value = f"{labels} {go_float(value)}\n", value
                lines.append(series.line)
                continue
            readings = [(v, t) for tick, v, t in series.readings if tick > since] if since is not None else []
            for v, t in readings or [(value, series.ts_ns)]:  # the reading's own time: s.ns or ms
                when = f"{t // 10**9}.{t % 10**9:09d}" if openmetrics else str(t // 10**6)
                lines.append(f"{labels} {go_float(v)} {when}\n")
        return "".join(lines).encode() + self._process_part(openmetrics)  # OpenMetrics' "# EOF" ends it

    def _process_part(self, openmetrics: bool) -> bytes:
        """The process_* series, read from /proc at most every PROCESS_EVERY_S (reading them costs more than
        rendering an exporter's own series)."""
        rendered_at, part = self._process_parts.get(openmetrics, (-math.inf, b""))
        if time.monotonic() - rendered_at >= PROCESS_EVERY_S:
            part = process_text(self.process.values(), openmetrics)
            self._process_parts[openmetrics] = (time.monotonic(), part)
        return part

    def close(self) -> None:
        seen = self.scrapes
        deadline = time.monotonic() + self.linger_s
        if self.linger_s > 0:
            log.info("waiting up to %.0f s for a last scrape of /metrics", self.linger_s)
        while self.scrapes == seen and time.monotonic() < deadline:
            time.sleep(0.05)
        self._server.close()


def web_security(options: SinkOptions) -> WebSecurity:
    """TLS and basic auth for /metrics from the command's options."""
    users = read_basic_auth_file(options.basic_auth_file) if options.basic_auth_file else None
    return WebSecurity(options.tls_cert, options.tls_key, users)


def prometheus_publisher(settings: PublisherSettings) -> PrometheusSink | None:
    """/metrics on the address ``--listen`` names, unless it says off."""
    address = parse_listen(settings.listen)
    if address is None:
        return None
    sink = PrometheusSink(*address, security=web_security(settings.options), stale_after_s=settings.stale_after_s,
                          healthy_within_s=settings.stale_after_s, keep_s=settings.keep_s,
                          host_label=settings.host_label, linger_s=settings.linger_s)
    log.info("serving /metrics on %s://%s:%d/metrics", sink.scheme, address[0], sink.port)
    return sink


def store_publisher(settings: PublisherSettings) -> StoreSink | None:
    """The embedded store ``--store`` names, if it names one."""
    return StoreSink(settings.store, flush_interval_s=settings.store_flush_s) if settings.store else None
