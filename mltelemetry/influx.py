"""The InfluxDB sink: samples and events as line protocol, pushed in batches, spooled while the server is away.

Two write paths share one encoder, so what lands in the database does not depend on the path:

- ``v2``: InfluxDB 2.x/3.x (and VictoriaMetrics' ``/api/v2/write``) through influxdb-client, an
  optional extra imported only when this path is used (``pip install mltelemetry[influx]``);
- ``v1``: InfluxDB 1.x's ``/write`` with the standard library alone.

What is written follows the push-backend contract in :mod:`mltelemetry.schema`: a sample is a
point of measurement <metric name> with its labels as tags and one float field ``value``; an event
is a point of measurement ``mltelemetry_event`` with the event labels as tags, float fields
``start_seconds``, ``end_seconds`` and its numeric fields, stamped with its end.

**Tag values from users** (campaign and scenario names, labels) are escaped for line protocol
(``,``, ``=`` and space). Two things no InfluxDB 1.x/2.x parser can store verbatim are mapped the
same way for every backend by :func:`stored_tag_value`: a line break becomes the two characters
``\\n`` (``\\r`` likewise), and a backslash that would read as an escape (one before ``\\``, ``,``,
``=``, space, ``"``, a line break, or at the end) becomes ``/``. Every other character, quotes and
backslashes included, is stored as given. Query a tag with :func:`influxql_tag_equals`, which
applies the mapping and InfluxQL's quoting.

**Delivery.** ``publish`` only encodes and queues; a background thread writes every
``flush_interval_s`` in batches of at most ``batch_lines``. A write that fails (server down, an
HTTP error other than a refusal of the points themselves) moves the batch to the :class:`Spool`
on disk; spooled batches are sent oldest first before anything newer, with back-off between
attempts, so the series arrive complete and in order once the server is back, also after an
exporter restart. Points the server refuses for good (HTTP 400, 413, 422: malformed or too
large) are dropped and counted rather than retried forever.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError, UsageError
from mltelemetry.event_series import event_tags, is_numeric_field, running_labels
from mltelemetry.publisher import Capability, Publisher, PublisherSettings, WindowChange
from mltelemetry.schema import Event, Sample
from mltelemetry.sinks import PostFailed, PostRefused, http_post
from mltelemetry.spool import Spool, SpoolInUse

log = logging.getLogger(__name__)

Api = Literal["v1", "v2"]
APIS: tuple[Api, ...] = ("v1", "v2")
TOKEN_ENV = "INFLUX_TOKEN"

# --- line protocol -------------------------------------------------------------------------------

_BREAKS = {"\n": "\\n", "\r": "\\r"}
_ESCAPE_READ_AFTER_BACKSLASH = frozenset('\\,= "\n\r')
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_NEEDS_ESCAPING = re.compile(r"[,= \\\n\r]")
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})


def stored_tag_value(value: str) -> str:
    """The value InfluxDB (and VictoriaMetrics) will hold for the tag value (or field key) ``value``.

    Identity for everything but line breaks (``\\n`` → the two characters backslash-n) and a
    backslash that a parser would read as an escape (→ ``/``); see the module's docstring.
    """
    if "\\" not in value and "\n" not in value and "\r" not in value:
        return value
    out = []
    for i, ch in enumerate(value):
        if ch == "\\":
            following = value[i + 1] if i + 1 < len(value) else ""
            out.append("/" if not following or following in _ESCAPE_READ_AFTER_BACKSLASH else "\\")
        else:
            out.append(_BREAKS.get(ch, ch))
    return "".join(out)


@functools.lru_cache(maxsize=8192)  # label values repeat tick after tick
def _key(value: str) -> str:
    if _NEEDS_ESCAPING.search(value) is None:
        return value
    return stored_tag_value(value).translate(_KEY_ESCAPES)


@functools.lru_cache(maxsize=1024)
def _measurement(name: str) -> str:
    return name.translate(_MEASUREMENT_ESCAPES)


@functools.lru_cache(maxsize=8192)
def _tag_part(tags: tuple[tuple[str, str], ...]) -> str:
    return "".join(f",{_key(k)}={_key(v)}" for k, v in sorted(tags) if v != "")


def encode_point(measurement: str, tags: Mapping[str, str], fields: Mapping[str, float], ts_ns: int) -> str | None:
    """One line of line protocol; tags with empty values are left out (as Prometheus treats them).

    Non-finite fields are left out (line protocol has no NaN); None when no field is left.
    """
    field_part = ",".join(f"{_key(k)}={float(v)!r}" for k, v in fields.items() if math.isfinite(v))
    if not field_part:
        return None
    return f"{_measurement(measurement)}{_tag_part(tuple(tags.items()))} {field_part} {int(ts_ns)}"


def sample_line(sample: Sample) -> str | None:
    """A sample as a point: measurement = metric name, tags = labels, one float field ``value``."""
    return encode_point(sample.metric, sample.labels, {schema.SAMPLE_FIELD: sample.value}, sample.ts_ns)


MAX_STRING_FIELD = 16384  # characters of a text field kept (InfluxDB takes up to 64 KiB per string field)


def _string_field(value: str) -> str:
    """A line-protocol string field: quotes and backslashes escaped, line breaks as the two characters ``\\n``."""
    text = value[:MAX_STRING_FIELD].replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\n", "\\n").replace("\r", "\\r") + '"'


def event_line(event: Event, host: str | None = None) -> str:
    """An event as a point of ``mltelemetry_event``: start and end in seconds plus its fields (numbers as floats,
    flags as booleans, text and anything else as strings; a field named like a tag is left out)."""
    fields: dict[str, float] = {"start_seconds": event.start_ns / 1e9, "end_seconds": event.end_ns / 1e9}
    tags = event_tags(event, host)
    others: list[str] = []
    for name, value in sorted(event.fields.items()):
        if name in fields or name in tags or value is None:
            continue
        if is_numeric_field(value):
            fields[name] = float(value)
        elif isinstance(value, bool):
            others.append(f"{_key(name)}={'true' if value else 'false'}")
        elif not isinstance(value, (int, float)):  # NaN and infinities have no line-protocol form
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            others.append(f"{_key(name)}={_string_field(text)}")
    line = encode_point(schema.EVENT_MEASUREMENT, tags, fields, event.end_ns)
    assert line is not None  # start and end are always finite
    if not others:
        return line
    head, timestamp = line.rsplit(" ", 1)
    return f"{head},{','.join(others)} {timestamp}"


# --- InfluxQL ------------------------------------------------------------------------------------

def _influxql_quote(value: str, quote: str) -> str:
    escaped = value.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")
    return f"{quote}{escaped}{quote}"


def influxql_string(value: str) -> str:
    """``value`` as an InfluxQL string literal (single quotes)."""
    return _influxql_quote(value, "'")


def influxql_ident(name: str) -> str:
    """``name`` as an InfluxQL quoted identifier (measurement, tag key, field key)."""
    return _influxql_quote(name, '"')


def influxql_tag_equals(key: str, value: str) -> str:
    """An InfluxQL condition matching the tag ``key`` written with the value ``value`` by this module."""
    return f"{influxql_ident(key)} = {influxql_string(stored_tag_value(value))}"


# --- writers -------------------------------------------------------------------------------------

class WriteFailed(Exception):
    """The server did not take the batch but may later: it is down, slow, or answered a server error."""


class WriteRejected(Exception):
    """The server refused the points themselves (malformed, too large): sending them again cannot help."""


_REJECTED_STATUSES = (400, 413, 422)


def _http_failure(status: int, body: str, url: str) -> Exception:
    message = f"{url} answered HTTP {status}: {body.strip()[:300]}"
    return WriteRejected(message) if status in _REJECTED_STATUSES else WriteFailed(message)


class Writer(Protocol):
    def write(self, lines: Sequence[str]) -> None:
        """Write the lines or raise WriteFailed / WriteRejected."""
        ...

    def close(self) -> None: ...


class V1Writer:
    """InfluxDB 1.x ``/write?db=...&precision=ns`` with the standard library.

    ``database`` may name a retention policy as ``db/rp``. A token ``user:password`` is sent as
    HTTP basic auth; any other token as ``Authorization: Token ...`` (InfluxDB 1.8+).
    """

    def __init__(self, url: str, database: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        db, _, rp = database.partition("/")
        query = {"db": db, "precision": "ns"} | ({"rp": rp} if rp else {})
        self.url = f"{url.rstrip('/')}/write?{urllib.parse.urlencode(query)}"
        self.timeout_s = timeout_s
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if token and ":" in token:
            self._headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        elif token:
            self._headers["Authorization"] = f"Token {token}"

    def write(self, lines: Sequence[str]) -> None:
        try:
            http_post(self.url, ("\n".join(lines) + "\n").encode(), self._headers, self.timeout_s)
        except PostRefused as e:
            raise _http_failure(e.status, e.body, self.url) from e
        except PostFailed as e:
            raise WriteFailed(str(e)) from e

    def close(self) -> None:
        pass


class V2Writer:
    """InfluxDB 2.x/3.x ``/api/v2/write`` through influxdb-client (imported here, when used)."""

    def __init__(self, url: str, org: str, bucket: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        try:
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS
        except ImportError as e:
            raise MltelemetryError("the InfluxDB v2 path needs influxdb-client: "
                                   "pip install 'mltelemetry[influx]' (or use --influx-api v1)") from e
        self.url, self.org, self.bucket = url, org, bucket
        # retries=False: our spool retries, in order; the client's own retries would reorder nothing but
        # would block the sink thread for minutes.
        self._client = InfluxDBClient(url=url, token=token or "", org=org, timeout=int(timeout_s * 1000),
                                      retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.client.write_api import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._api.write(bucket=self.bucket, org=self.org, record="\n".join(lines),
                            write_precision=WritePrecision.NS)
        except ApiException as e:
            raise _http_failure(e.status or 0, str(e.body or e.reason), self.url) from e
        except Exception as e:  # urllib3's connection errors, timeouts
            raise WriteFailed(f"{self.url}: {e}") from e

    def close(self) -> None:
        self._client.close()


# --- configuration -------------------------------------------------------------------------------

def read_token(token_file: str | Path | None = None) -> str | None:
    """The token from ``token_file`` if given, else from the environment (INFLUX_TOKEN); never an argument.

    A token file other users can read is warned about, as the basic-auth file is.
    """
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
            if Path(token_file).stat().st_mode & 0o077:
                log.warning("the token file %s can be read by other users; chmod 600 it", token_file)
        except OSError as e:
            raise MltelemetryError(f"cannot read the token file {token_file}: {e.strerror or e}") from e
        if not token:
            raise MltelemetryError(f"the token file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


DEFAULT_SPOOL_SLOTS = 16


def default_spool_dir(name: str, url: str, bucket: str, slot: int = 1) -> Path:
    """``$XDG_STATE_HOME/mltelemetry/spool/<name>-<hash of url and bucket>[-<slot>]``: a backlog only goes
    where it was meant.

    Several exporters of one kind pushing to the same server and bucket (two PM exporters, one per
    meter) each take the first free slot (1 has no suffix, then ``-2``, ``-3``, ...). Any backlog in
    a slot is bound for that same server and bucket, and its points carry their own tags, so it does
    not matter which of them sends it after a restart.
    """
    import hashlib  # here: it loads OpenSSL's libcrypto (≈ 3.5 MB), which an exporter without InfluxDB does not need

    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(f"{url}\n{bucket}".encode()).hexdigest()[:10]
    return state / "mltelemetry" / "spool" / (f"{name}-{digest}" + (f"-{slot}" if slot > 1 else ""))


def open_spool(config: InfluxConfig, name: str) -> Spool:
    """``config.spool_dir`` (refused when another process holds it), else the first free default slot."""
    if config.spool_dir:
        return Spool(config.spool_dir, config.spool_max_bytes)
    for slot in range(1, DEFAULT_SPOOL_SLOTS + 1):
        try:
            return Spool(default_spool_dir(name, config.url, config.bucket, slot), config.spool_max_bytes)
        except SpoolInUse:
            continue
    raise MltelemetryError(f"all {DEFAULT_SPOOL_SLOTS} default spool folders of {name} for {config.url} are in "
                           "use; give this exporter its own --spool-dir")


@dataclass(frozen=True)
class InfluxConfig:
    """Where and how to push: the server, API, organisation, bucket (v1: database[/rp]), token, spool."""

    url: str
    bucket: str
    api: Api = "v2"
    org: str = ""
    token: str | None = None
    spool_dir: Path | None = None
    spool_max_bytes: int = 512 * 2**20
    flush_interval_s: float = 1.0

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if "@" in parsed.netloc:  # shown by ps and in every log line naming the server: refuse, never echo it
            raise MltelemetryError("--influx-url must not hold credentials (USER:PASSWORD@): they would show in "
                                   "ps and the logs; put them in --influx-token-file (v1: user:password) or "
                                   f"${TOKEN_ENV}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UsageError(f"--influx-url wants http(s)://HOST:PORT, got {self.url!r}")
        if self.api not in APIS:
            raise UsageError(f"--influx-api must be v1 or v2, got {self.api!r}")
        if not self.bucket:
            raise UsageError("--influx-bucket is required with --influx-url (v1: the database)")
        if self.api == "v2" and not self.org:
            raise UsageError("--influx-org is required with --influx-api v2")

    def writer(self) -> Writer:
        if self.api == "v1":
            return V1Writer(self.url, self.bucket, self.token)
        return V2Writer(self.url, self.org, self.bucket, self.token)


# --- the sink ------------------------------------------------------------------------------------

class InfluxSink(Publisher):
    """Pushes samples and events to InfluxDB in batches, through the spool while the server is away.

    Events: every finished window as a point of ``mltelemetry_event`` (tagged ``host_label``; text fields such as
    framework, device and error kept as string fields), and ``mltelemetry_workload_info`` as a sample each time
    what runs changes.
    """

    name = "influxdb"
    capabilities = frozenset({Capability.SAMPLES, Capability.EVENTS})

    def __init__(self, writer: Writer, spool: Spool, *, flush_interval_s: float = 1.0, batch_lines: int = 5000,
                 max_backoff_s: float = 10.0, close_timeout_s: float = 5.0, clock=time.monotonic,
                 max_pending_lines: int = 100_000, host_label: str | None = None) -> None:
        self.writer, self.spool, self.host_label = writer, spool, host_label
        self.flush_interval_s, self.batch_lines = flush_interval_s, batch_lines
        self.max_backoff_s, self.close_timeout_s = max_backoff_s, close_timeout_s
        # Lines wait in memory between flushes, and longer while the spool cannot take them (its disk is full):
        # at most max_pending_lines; past that the oldest are dropped and counted in dropped_pending_lines.
        self.max_pending_lines = max_pending_lines
        self._clock = clock
        self.written_total = 0
        self.rejected_total = 0
        self.errors_total = 0
        self.dropped_pending_lines = 0
        self._warned_at: dict[str, float] = {}
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._backoff_s = 0.0
        self._next_attempt = 0.0
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="influx-sink", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, config: InfluxConfig, name: str, **kwargs: Any) -> InfluxSink:
        """The sink for ``config``, spooling under ``config.spool_dir`` or the default folder for ``name``."""
        spool = open_spool(config, name)
        try:
            writer = config.writer()
        except BaseException:
            spool.close()
            raise
        log.info("pushing to %s (%s API, bucket %s), spooling in %s", config.url, config.api, config.bucket,
                 spool.directory)
        return cls(writer, spool, flush_interval_s=config.flush_interval_s, **kwargs)

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        self.publish_lines([line for s in samples if (line := sample_line(s)) is not None])

    def publish_events(self, change: WindowChange) -> None:
        """A closed window as its point; what runs now as an info sample, just after the window's own edge."""
        event = change.event
        if change.closed:
            self.publish_lines([event_line(event, self.host_label)])
        labels = running_labels(change.running, self.host_label)
        if labels is not None:
            when = event.end_ns + 1 if change.closed else event.start_ns  # after the closing window's own point
            self.publish_samples([Sample(schema.WORKLOAD_INFO, labels, 1.0, when)])

    def publish_lines(self, lines: Sequence[str]) -> None:
        """Queue lines of line protocol (events, or samples encoded elsewhere) for the next write."""
        with self._lock:
            self._pending.extend(lines)
            self._bound_pending()
            full = len(self._pending) >= self.batch_lines
        if full:
            self._wake.set()

    def _bound_pending(self) -> None:
        """Drop the oldest waiting lines past ``max_pending_lines`` (hold ``_lock``)."""
        excess = len(self._pending) - self.max_pending_lines
        if excess > 0:
            del self._pending[:excess]
            self.dropped_pending_lines += excess
            self._warn("memory", "InfluxDB sink: %d line(s) wait in memory (the spool %s takes none): dropping the "
                       "oldest, %d so far", self.max_pending_lines, self.spool.directory, self.dropped_pending_lines)

    def _warn(self, what: str, message: str, *args: object) -> None:
        """``log.error`` once a minute at most per kind of trouble ``what``."""
        now = self._clock()
        if what not in self._warned_at or now - self._warned_at[what] >= 60:
            self._warned_at[what] = now
            log.error(message, *args)

    @property
    def fill_ratio(self) -> float:
        """How full the backlog is, 0 to 1: the spool on disk or, when its disk takes nothing, the lines in memory."""
        with self._lock:
            waiting = len(self._pending)
        return max(self.spool.fill_ratio, min(1.0, waiting / self.max_pending_lines))

    def health(self, labels: Mapping[str, str], ts_ns: int) -> list[Sample]:
        """This sink's own series: spool fill, lines written, refused and dropped, failed writes."""
        labels = {**labels, "sink": self.name}
        return [
            Sample(schema.EXPORTER_SPOOL_BYTES, labels, float(self.spool.bytes), ts_ns),
            Sample(schema.EXPORTER_SPOOL_FILL, labels, self.fill_ratio, ts_ns),
            Sample(schema.EXPORTER_SPOOL_DROPPED, labels, float(self.spool.dropped_lines + self.dropped_pending_lines),
                   ts_ns),
            Sample(schema.EXPORTER_SINK_WRITTEN, labels, float(self.written_total), ts_ns),
            Sample(schema.EXPORTER_SINK_REJECTED, labels, float(self.rejected_total), ts_ns),
            Sample(schema.EXPORTER_SINK_ERRORS, labels, float(self.errors_total), ts_ns),
        ]

    def close(self) -> None:
        """Stop the thread, then write what is queued and what is spooled, for at most ``close_timeout_s``.

        What cannot be written by then stays in the spool for the next start.
        """
        self._stop.set()
        self._wake.set()
        self._thread.join()
        deadline = self._clock() + self.close_timeout_s
        self._next_attempt = 0.0
        self._flush(deadline)
        if self._pending:
            log.warning("%d line(s) could be neither written nor spooled and are lost", len(self._pending))
        if not self.spool.empty:
            log.warning("%d line(s) stay spooled in %s until the next start", self.spool.lines, self.spool.directory)
        self.spool.close()
        self.writer.close()

    # the writing thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._flush()
            except Exception:  # a bug or a full disk: say it, keep the exporter alive, try again next time
                self.errors_total += 1
                log.exception("InfluxDB sink: flush failed")

    def _take_pending(self) -> list[str]:
        with self._lock:
            batch, self._pending = self._pending, []
        return batch

    def _flush(self, deadline: float | None = None) -> None:
        batch = self._take_pending()
        may_send = self._clock() >= self._next_attempt
        if batch:
            if self.spool.empty and may_send:
                for start in range(0, len(batch), self.batch_lines):
                    if not self._send(batch[start:start + self.batch_lines]):
                        self._spool(batch[start:])
                        return
                return
            self._spool(batch)  # if that fails the batch waits in memory; the older spool may still drain
        while not self.spool.empty and self._clock() >= self._next_attempt:
            if deadline is not None and self._clock() > deadline:
                return
            segments, lines = self.spool.peek(self.batch_lines)
            if not segments:  # every segment left was unreadable and is dropped
                break
            if not self._send(lines):
                return
            self.spool.pop(segments)

    def _spool(self, lines: list[str]) -> None:
        """Append ``lines`` to the spool; when that fails (disk full, folder gone) put them back at the front
        of the queue, in order, for the next flush."""
        try:
            self.spool.append(lines)
        except OSError as e:
            with self._lock:
                self._pending[:0] = lines
                self._bound_pending()
                waiting = len(self._pending)
            self.errors_total += 1
            self._warn("spool", "InfluxDB sink: cannot spool in %s (%s); %d line(s) wait in memory, at most %d",
                       self.spool.directory, e.strerror or e, waiting, self.max_pending_lines)

    def _send(self, lines: list[str]) -> bool:
        """Write one batch; False (and the next attempt pushed back) when the server did not take it."""
        try:
            self.writer.write(lines)
        except WriteRejected as e:
            self.rejected_total += len(lines)
            log.error("InfluxDB refused %d line(s), dropped: %s", len(lines), e)
            return True
        except WriteFailed as e:
            self.errors_total += 1
            self._backoff_s = min(self.max_backoff_s, max(self.flush_interval_s, self._backoff_s * 2))
            self._next_attempt = self._clock() + self._backoff_s
            if self._down_since is None:
                self._down_since = self._clock()
                log.warning("InfluxDB write failed, spooling until it answers again: %s", e)
            return False
        if self._down_since is not None:
            log.info("InfluxDB answers again after %.0f s; sending the spool", self._clock() - self._down_since)
            self._down_since = None
        self._backoff_s = 0.0
        self._next_attempt = 0.0
        self.written_total += len(lines)
        return True


def influx_publisher(settings: PublisherSettings) -> InfluxSink | None:
    """The InfluxDB ``--influx-url`` names, if it names one (the token from --influx-token-file or $INFLUX_TOKEN)."""
    options = settings.options
    if not options.influx_url:
        return None
    config = InfluxConfig(options.influx_url, options.influx_bucket, options.influx_api,  # type: ignore[arg-type]
                          options.influx_org, read_token(options.influx_token_file), options.spool_dir,
                          int(options.spool_max_mb * 2**20))
    return InfluxSink.open(config, settings.name, host_label=settings.host_label)
