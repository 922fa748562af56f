"""The small HTTP server behind every ``/metrics``: bounded, keep-alive, optionally TLS and basic auth.

It answers three paths: ``/metrics`` (the page a :class:`~mltelemetry.sinks.PrometheusSink` rendered),
``/`` (a short page that links it) and ``/healthz`` (whether the exporter ticks). Under pressure it
stays bounded instead of falling over:

- a listen backlog of ``ServerLimits.backlog`` (socketserver's default is 5);
- a connection cap (``max_connections``, kept below ``RLIMIT_NOFILE``): at the cap a new connection
  closes the one that has waited longest for its next request, or, when none waits, is itself closed;
  both are logged. So idle clients can never use up the threads or descriptors nor lock a scraper out;
- an idle timeout (a keep-alive connection with no request for ``idle_timeout_s`` is closed) and a header
  timeout (the TLS handshake plus the request line and headers must arrive within ``header_timeout_s``);
- running out of descriptors anyway (``EMFILE`` on accept) is logged and backed off, never spun on.
"""

from __future__ import annotations

import base64
import binascii
import errno
import itertools
import logging
import os
import resource
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from mltelemetry import __version__

if TYPE_CHECKING:  # ssl is imported where TLS is configured (≈ 4 MB an exporter without it does not hold)
    import ssl

log = logging.getLogger(__name__)

# Descriptors kept for everything but connections: the listening socket, the store, the meter's port, logs.
_RESERVED_DESCRIPTORS = 32


@dataclass(frozen=True)
class ServerLimits:
    """How much the server takes at once and how long it waits for a client."""

    backlog: int = 128
    max_connections: int = 64
    idle_timeout_s: float = 30.0
    header_timeout_s: float = 10.0

    def connection_cap(self) -> int:
        """``max_connections``, lowered to fit the process' descriptor limit (one descriptor per connection)."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - _RESERVED_DESCRIPTORS))


@dataclass(frozen=True)
class Page:
    """One answer: body bytes and content type."""

    body: bytes
    content_type: str
    status: int = 200


class Routes:
    """What the server asks its owner: the metrics page for a scraper (address and User-Agent) and its Accept
    header, and the health."""

    def metrics(self, accept: str, scraper: str) -> Page:  # pragma: no cover - the interface
        raise NotImplementedError

    def healthz(self) -> Page:  # pragma: no cover - the interface
        raise NotImplementedError


_INDEX = (b"<!doctype html><html><head><title>mltelemetry exporter</title></head><body>"
          b"<h1>mltelemetry exporter</h1><p><a href=\"/metrics\">/metrics</a> &middot; "
          b"<a href=\"/healthz\">/healthz</a></p></body></html>\n")


class _RateLimitedWarning:
    """A warning said at most once a minute, with how often it happened in between."""

    def __init__(self, message: str) -> None:
        self.message, self.count, self._said_at = message, 0, -1e9

    def __call__(self, *args: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._said_at >= 60:
            self._said_at = now
            log.warning(self.message + " (%d time(s) so far)", *args, self.count)


class _HeaderDeadline:
    """``rfile`` whose ``readline`` gives up once the header deadline passed (a client trickling bytes)."""

    def __init__(self, rfile: Any, connection: socket.socket, deadline: float) -> None:
        self.rfile, self.connection, self.deadline = rfile, connection, deadline

    def readline(self, limit: int = -1) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request headers took too long")
        self.connection.settimeout(left)
        return self.rfile.readline(limit)


def _basic_auth_check(users: Mapping[str, str] | None) -> Callable[[str], bool]:
    """Whether an Authorization header carries one of ``users``' credentials (compared in constant time)."""
    if not users:
        return lambda header: True
    import hmac  # here: it loads OpenSSL's libcrypto (≈ 3.5 MB), which an exporter without basic auth does not need

    expected = [f"{user}:{password}".encode() for user, password in users.items()]

    def allowed(header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        try:
            given = base64.b64decode(encoded, validate=True) if scheme.lower() == "basic" else b""
        except (binascii.Error, ValueError):
            given = b""
        return bool(given) and any(hmac.compare_digest(given, credentials) for credentials in expected)

    return allowed


_date: tuple[int, str] = (0, "")  # the Date header of the current second
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _http_date() -> str:
    """The Date header's value (RFC 9110's IMF-fixdate, English whatever the locale), made once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        t = time.gmtime(now)
        _date = (now, f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
                      f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
    return _date[1]


# http.client's limits on a request's header lines, which http.server applies too.
_MAX_LINE = 65536
_MAX_HEADERS = 100


class _Headers(dict):
    """A request's headers by lower-case name (the first of repeated ones, as http.server's ``headers.get``)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.0 and 1.1 GET, kept alive, on socketserver's buffered streams (http.server's handler, which this
    replaces, brings the email package, http.client and ssl: ≈ 7 MB of an exporter's memory)."""

    protocol_version = "HTTP/1.1"  # keep-alive: a scraper reuses its connection
    disable_nagle_algorithm = True  # a small answer goes out at once: no 40 ms wait for a delayed ACK
    server: MetricsServer
    server_header = f"mltelemetry/{__version__}"
    command: str | None = None
    requestline = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.idle_timeout_s)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        """Wait up to the idle timeout for a request to start, then up to the header timeout for its headers."""
        self.server.waiting(self.connection, True)
        try:
            if not self.rfile.peek(1):
                self.close_connection = True
                return
        except (TimeoutError, OSError, ValueError):
            self.close_connection = True
            return
        finally:
            self.server.waiting(self.connection, False)
        if self._answer_buffered_request():
            return
        rfile = self.rfile
        self.rfile = _HeaderDeadline(rfile, self.connection,  # type: ignore[assignment]
                                     time.monotonic() + self.server.limits.header_timeout_s)
        try:
            self._read_and_answer()
        except TimeoutError:  # a read or a write timed out: the connection goes
            self.close_connection = True
        finally:
            self.rfile = rfile
            try:
                self.connection.settimeout(self.server.limits.idle_timeout_s)
            except OSError:
                pass

    def _answer_buffered_request(self) -> bool:
        """Answer a plain GET whose whole head is already in the read buffer (a scraper's request comes in one
        segment) straight from there, without http.server's reading line by line under the header deadline.
        Anything else (a head still arriving, another method, a folded, odd or bare-LF line, too many headers)
        returns False and goes that general way, which answers it as before."""
        buffered = self.rfile.peek(1)  # what the buffer holds: no read
        end = buffered.find(b"\r\n\r\n")
        if end < 0 or not buffered.startswith(b"GET "):
            return False
        head = buffered[:end].decode("iso-8859-1")
        lines = head.split("\r\n")
        words = lines[0].split()
        if (len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1") or len(lines) > _MAX_HEADERS + 1
                or head.count("\n") != len(lines) - 1):
            return False
        headers = _Headers()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            name = name.strip().lower()
            if not sep or not name or line[0] in " \t":
                return False
            headers.setdefault(name, value.strip())
        self.rfile.read(end + 4)  # the head, out of the buffer
        self.requestline = lines[0]
        self.command, self.path, self.request_version = words
        self._take_headers(headers)
        self.do_GET()
        self.wfile.flush()
        return True

    def _read_and_answer(self) -> None:
        """A request read line by line (as http.server reads one), then answered: GET only (501 otherwise)."""
        self.raw_requestline = self.rfile.readline(_MAX_LINE + 1)
        if len(self.raw_requestline) > _MAX_LINE:
            self.send_error(414, "Request line too long")
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        if self.command != "GET":
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        self.do_GET()
        self.wfile.flush()

    def send_error(self, status: int, message: str) -> None:
        """A short plain-text answer, after which the connection closes."""
        self.close_connection = True
        log.debug("%s: %d %s", self.client_address, status, message)
        self._answer(Page(f"{status} {HTTPStatus(status).phrase}: {message}\n".encode("utf-8", "replace"),
                          "text/plain; charset=utf-8", status), [("Connection", "close")])

    def _take_headers(self, headers: _Headers) -> None:
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (self.request_version == "HTTP/1.0"
                                                          and connection != "keep-alive")

    def parse_request(self) -> bool:
        """The request line and headers, as http.server reads them but without its trip through the email package
        (about half of what a scrape costs the exporter). HTTP/1.0 and 1.1 only (400 otherwise); a header line
        over 64 KiB or over 100 headers is a 431; a folded header line continues the one before after a space
        (RFC 9112, 5.2; http.server would keep the line break in the value)."""
        self.command, self.close_connection = None, True
        self.request_version = "HTTP/1.0"  # an error answer has a status line (no HTTP/0.9 here)
        self.requestline = self.raw_requestline.decode("iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(400, f"Bad request {self.requestline!r}")
            return False
        self.command, self.path, self.request_version = words
        headers, name = _Headers(), ""
        for lines in itertools.count():
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.send_error(431, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            if lines >= _MAX_HEADERS:
                self.send_error(431, "Too many headers")
                return False
            text = line.decode("iso-8859-1")
            if text[0] in " \t" and name:  # obsolete line folding
                headers[name] += " " + text.strip()
                continue
            name, sep, value = text.partition(":")
            name = name.strip().lower()
            if not sep or not name:
                self.send_error(400, "Bad header line")
                return False
            headers.setdefault(name, value.strip())
        self._take_headers(headers)
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            if not self.server.authorized(self.headers.get("Authorization", "")):
                self._answer(Page(b"401 Unauthorized\n", "text/plain; charset=utf-8", 401),
                             [("WWW-Authenticate", 'Basic realm="mltelemetry"')])
                return
            scraper = f"{self.client_address[0]} {self.headers.get('User-Agent', '')}"
            self._answer(self.server.routes.metrics(self.headers.get("Accept", ""), scraper))
        elif path == "/healthz":
            self._answer(self.server.routes.healthz())
        elif path == "/":
            self._answer(Page(_INDEX, "text/html; charset=utf-8"))
        else:
            self._answer(Page(b"404 Not Found: see /metrics\n", "text/plain; charset=utf-8", 404))

    def _answer(self, page: Page, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        """Status line, headers and body in one write (one send syscall, one segment for a small page), the
        headers http.server's send_response would write (Server, Date), made in one go."""
        if log.isEnabledFor(logging.DEBUG):  # the access log, at debug level only
            log.debug("%s: %r %d %d", self.client_address, self.requestline, page.status, len(page.body))
        head = [f"{self.protocol_version} {page.status} {HTTPStatus(page.status).phrase}",
                f"Server: {self.server_header}", f"Date: {_http_date()}", f"Content-Type: {page.content_type}",
                f"Content-Length: {len(page.body)}", *(f"{name}: {value}" for name, value in headers), "", ""]
        self.wfile.write("\r\n".join(head).encode("latin-1") + page.body)


class MetricsServer(socketserver.ThreadingTCPServer):
    """A thread per connection, at most ``limits.connection_cap()`` of them; TLS when ``context`` is given."""

    daemon_threads = True
    allow_reuse_address = True  # a restarted exporter takes its port back at once

    def __init__(self, host: str, port: int, routes: Routes, *, context: ssl.SSLContext | None = None,
                 basic_auth: Mapping[str, str] | None = None, limits: ServerLimits | None = None) -> None:
        self.limits = limits or ServerLimits()
        self.request_queue_size = self.limits.backlog
        self.address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        self.routes = routes
        self.authorized = _basic_auth_check(basic_auth)
        self.context = context
        self.max_connections = self.limits.connection_cap()
        self.open_connections = 0
        self.rejected_connections = 0
        self._count_lock = threading.Lock()
        self._waiting: dict[socket.socket, float] = {}  # connections waiting for a request → since when
        self._warn_full = _RateLimitedWarning("/metrics: %d connections open, the cap, none of them idle; "
                                              "closing a new one")
        self._warn_evict = _RateLimitedWarning("/metrics: %d connections open, the cap; closing the one idle "
                                               "longest for a new one")
        self._warn_descriptors = _RateLimitedWarning("/metrics: out of file descriptors accepting a connection "
                                                     "(%s); raise LimitNOFILE or lower the connection cap")
        super().__init__((host, port), _Handler)
        self.server_port = self.server_address[1]
        if context is not None:  # accept() only accepts; the handshake waits for the connection's thread
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self._closing = False
        self._wake_read, self._wake_write = os.pipe()  # close() wakes the accepting thread through it
        self.thread = threading.Thread(target=self._accept_until_closed, name=f"metrics-{self.server_port}",
                                       daemon=True)
        self.thread.start()

    def _accept_until_closed(self) -> None:
        """socketserver's serve_forever without its poll: that wakes twice a second to look for shutdown()
        (≈ 0.5 CPU-s per hour, a tenth of what the exporter may cost); this thread sleeps until a client
        connects or close() writes to the wake-up pipe."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._closing:
                for key, _ in selector.select():
                    if key.fileobj is self and not self._closing:
                        self._handle_request_noblock()

    def get_request(self) -> tuple[Any, Any]:
        try:
            return super().get_request()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                self._warn_descriptors(e.strerror)
                time.sleep(0.1)  # the listening socket stays readable: back off instead of spinning
            raise

    def waiting(self, connection: socket.socket, waits: bool) -> None:
        """Mark a connection as waiting for its next request (it may be closed for a new one) or not."""
        with self._count_lock:
            if waits:
                self._waiting[connection] = time.monotonic()
            else:
                self._waiting.pop(connection, None)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            full = self.open_connections >= self.max_connections
            idlest = min(self._waiting, key=self._waiting.__getitem__) if full and self._waiting else None
            if idlest is not None:
                del self._waiting[idlest]
            if not full or idlest is not None:
                self.open_connections += 1
        if idlest is not None:  # its thread sees the end of the stream and closes it
            self._warn_evict(self.max_connections)
            try:
                socket.socket.shutdown(idlest, socket.SHUT_RDWR)  # the plain socket's: TLS state stays as it is
            except OSError:
                pass
        elif full:
            self.rejected_connections += 1
            self._warn_full(self.max_connections)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self.context is not None:
                try:
                    request.settimeout(self.limits.header_timeout_s)
                    request.do_handshake()
                except (OSError, ValueError) as e:  # ssl.SSLError and TimeoutError are OSErrors
                    log.debug("TLS handshake with %s failed: %s", client_address, e)
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self.open_connections -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("/metrics connection from %s failed", client_address, exc_info=True)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        os.write(self._wake_write, b"x")
        self.thread.join()
        self.server_close()
        os.close(self._wake_read)
        os.close(self._wake_write)
