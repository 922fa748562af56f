"""Sinks: where an exporter's samples go. Every sink reads the same samples; no collector knows them.

- ``StoreSink`` buffers and writes to the embedded store at least once per ``flush_interval_s``.
- ``PrometheusSink`` keeps the latest value of every series and serves it on ``/metrics``
  (optionally over TLS and behind HTTP basic auth).
- ``mltelemetry.influx.InfluxSink`` pushes line protocol to InfluxDB (its own module: an optional extra).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import http.client
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import Metric as PromMetric

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError, StoreWriteError, UsageError
from mltelemetry.schema import METRICS, Sample
from mltelemetry.store import Store

log = logging.getLogger(__name__)


class Sink(Protocol):
    def publish(self, samples: Sequence[Sample]) -> None: ...

    def close(self) -> None: ...


class StoreSink:
    """Writes samples to the embedded store in batches, at most ``flush_interval_s`` apart.

    A write the store refuses (disk full, read-only, damaged: :class:`StoreWriteError`) keeps the batch for
    the next flush and logs the cause, naming the file, once a minute at most; at most ``max_buffered``
    samples wait: past that the oldest are dropped and counted in ``dropped_samples``, so a store that keeps
    failing cannot eat the exporter's memory. Every sample received ends up counted once: stored
    (``written_samples``), refused as not finite (``store.dropped_non_finite``) or lost (``dropped_samples``).
    """

    kind = "store"

    def __init__(self, path: str | Path, flush_interval_s: float = 1.0, clock=time.monotonic,
                 max_buffered: int = 200_000) -> None:
        self.store = Store(path)
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

    def publish(self, samples: Sequence[Sample]) -> None:
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
        labels = {**labels, "sink": self.kind}
        return [
            Sample(schema.EXPORTER_SPOOL_FILL, labels, min(1.0, len(self._buffer) / self.max_buffered), ts_ns),
            Sample(schema.EXPORTER_SPOOL_DROPPED, labels, float(self.dropped_samples), ts_ns),
            Sample(schema.EXPORTER_SINK_WRITTEN, labels, float(self.written_samples), ts_ns),
            Sample(schema.EXPORTER_SINK_REJECTED, labels, float(self.store.dropped_non_finite), ts_ns),
            Sample(schema.EXPORTER_SINK_ERRORS, labels, float(self.write_errors), ts_ns),
        ]

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
            (log.warning if self.dropped_samples else log.info)("store %s: %s", self.store.path, summary)
        finally:
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


def _require_basic_auth(app: Callable, users: Mapping[str, str]) -> Callable:
    """WSGI middleware: 401 unless the request carries one of ``users``' credentials (compared in constant time)."""
    expected = [f"{user}:{password}".encode() for user, password in users.items()]

    def guarded(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        try:
            given = base64.b64decode(encoded, validate=True) if scheme.lower() == "basic" else b""
        except (binascii.Error, ValueError):
            given = b""
        if given and any(hmac.compare_digest(given, credentials) for credentials in expected):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="mltelemetry"'),
                                            ("Content-Type", "text/plain; charset=utf-8")])
        return [b"401 Unauthorized\n"]

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr for every scrape
        pass


def _serve_wsgi(app: Callable, host: str, port: int, context: ssl.SSLContext | None,
                handshake_timeout_s: float = 10.0) -> WSGIServer:
    """A threaded WSGI server on HOST:PORT (IPv4 or IPv6), TLS-wrapped when ``context`` is given.

    The TLS handshake runs in each connection's own thread and gives up after ``handshake_timeout_s``,
    so a client that connects and says nothing holds one thread for a while, never the accept loop.
    """

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            if context is not None:
                try:
                    request.settimeout(handshake_timeout_s)
                    request.do_handshake()
                    request.settimeout(None)
                except (OSError, ValueError) as e:  # ssl.SSLError and TimeoutError are OSErrors
                    log.debug("TLS handshake with %s failed: %s", client_address, e)
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)

    server = make_server(host, port, app, Server, handler_class=_QuietHandler)
    if context is not None:  # accept() only accepts; the handshake waits for the connection's thread
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, name=f"metrics-{port}", daemon=True).start()
    return server


class PrometheusSink:
    """Serves the latest value of every series on ``http://HOST:PORT/metrics`` (``https`` with TLS).

    Values are exposed without timestamps: Prometheus stamps them at scrape time, and the
    ``*_joules_total`` counters make the scrape interval irrelevant to window energy.
    """

    def __init__(self, host: str, port: int, security: WebSecurity | None = None,
                 stale_after_s: float | None = None, clock=time.monotonic) -> None:
        self._latest: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        # A series not published for stale_after_s is dropped (a GPU that fell off the bus, a meter item
        # gone NAN), so /metrics never shows an old value as current. None keeps every series.
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._published_at: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._lock = threading.Lock()
        self.scrapes = 0  # how often /metrics was read
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)
        security = security or WebSecurity()
        app = make_wsgi_app(self.registry)
        if security.basic_auth:
            app = _require_basic_auth(app, security.basic_auth)
        try:
            self._server = _serve_wsgi(app, host, port, security.ssl_context())
        except (OSError, socket.gaierror) as e:
            raise MltelemetryError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
        self.port = self._server.server_port
        self.scheme = "https" if security.tls_cert else "http"

    def publish(self, samples: Sequence[Sample]) -> None:
        now = self._clock()
        with self._lock:
            for s in samples:
                key = (s.metric, tuple(sorted(s.labels.items())))
                self._latest[key] = s.value
                self._published_at[key] = now

    def forget(self, metric: str) -> None:
        """Stop serving every series of ``metric`` (an info gauge whose labels changed, say)."""
        with self._lock:
            for key in [key for key in self._latest if key[0] == metric]:
                del self._latest[key], self._published_at[key]

    def collect(self) -> Iterable[PromMetric]:
        families: dict[str, PromMetric] = {}
        with self._lock:
            if self.stale_after_s is not None:
                oldest = self._clock() - self.stale_after_s
                for key in [k for k, at in self._published_at.items() if at < oldest]:
                    del self._latest[key], self._published_at[key]
            latest = sorted(self._latest.items())
            self.scrapes += 1
        for (name, labels), value in latest:
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
