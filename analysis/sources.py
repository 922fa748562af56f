"""Where the analysis reads samples and events: the embedded store, a Prometheus-compatible API, or InfluxDB.

Every source answers the same three questions, in the shape ``Store`` answers them:

- ``query(metric, labels, start_ns, end_ns)``: a DataFrame with ``ts_ns`` (UTC ns), ``value`` (base
  units) and one column per label, for every series of ``metric`` whose labels include ``labels``;
- ``events(campaign)``: the campaign's :class:`~mltelemetry.schema.Event` records;
- ``campaigns()``: the campaign names the source knows (for error messages);
- ``time_notes()``: which time its energy counters carry (each reading's own, or a scraper's), for the
  analysis' notes.

``open_source`` picks one from the ``--source`` text:

- a path (the default): the embedded store file;
- ``http(s)://HOST:PORT[/prefix]`` (or ``prometheus+http(s)://``): the Prometheus HTTP API, as
  Prometheus, VictoriaMetrics, Thanos and Mimir answer it (``/api/v1/query``);
- ``influxdb+http(s)://[USER:PASSWORD@]HOST:PORT/DATABASE[?rp=POLICY]``: InfluxQL on ``/query``, as
  InfluxDB 1.x answers it, 2.x through its v1 compatibility API and 3.x; a token is taken from the
  ``INFLUX_TOKEN`` environment variable, never from the command line.

How samples and events are laid out in each backend is the push-backend contract in
``mltelemetry.schema``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np
import pandas as pd

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError, UsageError
from mltelemetry.influx import influxql_ident, influxql_tag_equals
from mltelemetry.schema import Event
from mltelemetry.store import Store, newest_per_timestamp

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK_S = 31 * 86400
_EMPTY = pd.DataFrame({"ts_ns": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64")})


class Source(Protocol):
    description: str

    def query(self, metric: str, labels: dict[str, str] | None = None,
              start_ns: int | None = None, end_ns: int | None = None) -> pd.DataFrame: ...

    def events(self, campaign: str) -> list[Event]: ...

    def campaigns(self) -> list[str]: ...

    def time_notes(self) -> list[str]: ...

    def close(self) -> None: ...


def open_source(spec: str | Path | Store | Source, *, lookback_s: float = DEFAULT_LOOKBACK_S) -> Source:
    """The source named by ``spec`` (see the module docstring); a ``Store`` or a source is used as it is."""
    if isinstance(spec, Store):
        return StoreSource(spec, close_store=False)
    if not isinstance(spec, (str, Path)):
        return spec
    text = str(spec)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("http", "https", "prometheus+http", "prometheus+https"):
        return PrometheusSource(text, lookback_s=lookback_s)
    if scheme in ("influxdb+http", "influxdb+https", "influx+http", "influx+https"):
        return InfluxSource(text)
    if scheme:
        raise UsageError(f"--source {text!r}: unknown scheme {scheme!r}; use a store path, http(s)://… "
                               "for a Prometheus-compatible API or influxdb+http(s)://HOST:PORT/DATABASE")
    return StoreSource(Store(text, create=False))


class StoreSource:
    """The embedded store (``Store``) as a source."""

    def __init__(self, store: Store, *, close_store: bool = True) -> None:
        self.store = store
        self.description = str(store.path)
        self._close_store = close_store

    def query(self, metric, labels=None, start_ns=None, end_ns=None) -> pd.DataFrame:
        return self.store.query(metric, labels, start_ns, end_ns)

    def events(self, campaign: str) -> list[Event]:
        return self.store.events(campaign)

    def campaigns(self) -> list[str]:
        return self.store.campaigns()

    def time_notes(self) -> list[str]:
        return [f"{self.description}: samples at each reading's own time, as the exporter stamped it"]

    def close(self) -> None:
        if self._close_store:
            self.store.close()


def _frame(parts: dict[tuple, list[tuple[np.ndarray, np.ndarray]]], start_ns: int | None,
           end_ns: int | None) -> pd.DataFrame:
    """One Store-shaped frame from per-series parts: sorted by time, clipped, a repeated timestamp kept once
    (its last value, see :func:`mltelemetry.store.newest_per_timestamp`)."""
    frames = []
    for key, chunks in sorted(parts.items()):
        ts = np.concatenate([c[0] for c in chunks])
        values = np.concatenate([c[1] for c in chunks])
        keep = np.ones(len(ts), bool)
        if start_ns is not None:
            keep &= ts >= start_ns
        if end_ns is not None:
            keep &= ts <= end_ns
        ts, values = newest_per_timestamp(ts[keep], values[keep])
        frame = pd.DataFrame({"ts_ns": ts, "value": values})
        for k, v in key:
            frame[k] = v
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else _EMPTY.copy()


def _http_error(what: str, url: str, error: Exception) -> MltelemetryError:
    return MltelemetryError(f"cannot read {what} at {url}: {type(error).__name__}: {error}".splitlines()[0])


# --- Prometheus HTTP API -----------------------------------------------------------------------
def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def promql_selector(metric: str, labels: dict[str, str] | None = None) -> str:
    matchers = ",".join(f"{k}={promql_string(v)}" for k, v in sorted((labels or {}).items()))
    return f"{metric}{{{matchers}}}"


class PrometheusSource:
    """A Prometheus-compatible query API: raw samples through range selectors, events through their series.

    Samples are read as raw points (``metric{…}[Nms]`` evaluated at the end of each chunk of
    ``chunk_s``), so no server-side resampling touches the counters. Events: the campaign's own
    event gives its span; the other events are then read in one instant query over that span and
    ``after_end_s`` beyond (the workload serves each finished event for a while after its end, and
    events pushed through the InfluxDB protocol are points at their end: either way they are there).

    Time: the energy counters (``schema.EXPOSED_WITH_READING_TIME``) must carry each reading's own time
    (the exporters expose it; the scraper must honour it). A counter whose samples fall on the scrapes
    of its target (its ``up`` series) was stamped at scrape time, up to one interval late at both edges
    of every window: :meth:`time_notes` says which time each counter carried, and warns.
    """

    def __init__(self, url: str, *, lookback_s: float = DEFAULT_LOOKBACK_S, chunk_s: float = 6 * 3600,
                 timeout_s: float = 120.0, after_end_s: float = 300.0) -> None:
        import requests

        self.url = re.sub(r"^prometheus\+", "", url, flags=re.I).rstrip("/")
        self.description = self.url
        self.lookback_s = lookback_s
        self.chunk_ms = int(chunk_s * 1000)
        self.timeout_s = timeout_s
        self.after_end_s = after_end_s
        self._session = requests.Session()
        self._times: dict[str, str] = {}  # energy counter → which time its samples carry

    def close(self) -> None:
        self._session.close()

    def _api(self, path: str, params: dict[str, Any], method: str = "POST") -> Any:
        import requests

        url = f"{self.url}/api/v1/{path}"
        try:
            if method == "GET":  # label values: GET only in Prometheus
                response = self._session.get(url, params=params, timeout=self.timeout_s)
            else:  # queries: POST, so long selectors never meet a URL length limit
                response = self._session.post(url, data=params, timeout=self.timeout_s)
        except requests.RequestException as e:
            raise _http_error("the Prometheus API", self.url, e) from e
        try:
            body = response.json()
        except ValueError:
            raise MltelemetryError(f"{url} answered HTTP {response.status_code} without JSON: is it a Prometheus-"
                                   f"compatible API? ({response.text[:80].strip()!r})") from None
        if response.status_code >= 400 or body.get("status") != "success":
            raise MltelemetryError(f"{url} answered HTTP {response.status_code}: "
                                   f"{body.get('errorType', '')} {body.get('error', '')}".strip())
        return body["data"]

    def instant(self, query: str, at_s: float) -> list[dict]:
        return self._api("query", {"query": query, "time": f"{at_s:.3f}"})["result"]

    def query(self, metric, labels=None, start_ns=None, end_ns=None) -> pd.DataFrame:
        if start_ns is None or end_ns is None:
            now_ns = time.time_ns()
            end_ns = now_ns if end_ns is None else end_ns
            start_ns = int(end_ns - self.lookback_s * 1e9) if start_ns is None else start_ns
        selector = promql_selector(metric, labels)
        lo_ms, hi_ms = math.ceil(start_ns / 1e6), math.floor(end_ns / 1e6)
        parts: dict[tuple, list] = {}
        for a in range(lo_ms, hi_ms + 1, self.chunk_ms):
            b = min(a + self.chunk_ms - 1, hi_ms)
            # [a-1 ms, b] or (a-1 ms, b] depending on the server: points before a are dropped below.
            for series in self.instant(f"{selector}[{b - a + 1}ms]", b / 1000):
                values = series.get("values") or []
                if not values:
                    continue
                t = np.array([v[0] for v in values], np.float64)
                ts_ms = np.rint(t * 1000).astype(np.int64)
                numbers = np.array([v[1] for v in values], np.float64)
                # A NaN is no reading: VictoriaMetrics returns the staleness marker of a failed scrape as one.
                keep = (ts_ms >= a) & np.isfinite(numbers)
                key = tuple(sorted((k, v) for k, v in series["metric"].items() if k != "__name__"))
                parts.setdefault(key, []).append((ts_ms[keep] * 1_000_000, numbers[keep]))
        frame = _frame(parts, start_ns, end_ns)
        if metric in schema.EXPOSED_WITH_READING_TIME and len(frame) and metric not in self._times:
            self._times[metric] = self._sample_time(frame)
        return frame

    def _sample_time(self, frame: pd.DataFrame) -> str:
        """Which time a counter's samples carry: "scrape" when most fall on the scrapes of their target (its
        ``up`` samples), "pushed" when nothing scraped them (written with their own time), else "reading"."""
        if "instance" not in frame:  # a scraped series always has its target's instance label
            return "pushed"
        on_scrape = total = scrapes = 0
        for instance, samples in frame.groupby("instance"):
            ts_ms = np.sort(samples["ts_ns"].to_numpy(np.int64))[:60] // 1_000_000  # its first minute or so
            lo, hi = int(ts_ms[0]), int(ts_ms[-1])
            up = self.instant(f"up{{instance={promql_string(str(instance))}}}[{hi - lo + 1}ms]", hi / 1000)
            scraped = [round(float(v[0]) * 1000) for series in up for v in series.get("values") or []]
            on_scrape += int(np.isin(ts_ms, scraped).sum())
            total += len(ts_ms)
            scrapes += len(scraped)
        if scrapes == 0:
            return "pushed"
        return "scrape" if on_scrape > total / 2 else "reading"

    def time_notes(self) -> list[str]:
        notes = []
        for metric, time_used in sorted(self._times.items()):
            if time_used == "scrape":
                note = (f"{self.description}: {metric} carries scrape times, not reading times (an exporter older "
                        "than reading-time exposition, or a scraper with honor_timestamps: false): window energies "
                        "read the counter up to one scrape interval late at each edge (about 1 % on 10 s windows)")
                log.warning("%s", note)
            elif time_used == "reading":
                note = f"{self.description}: {metric} at each reading's own time (explicit timestamps, honoured)"
            else:
                note = f"{self.description}: {metric} at each reading's own time (pushed)"
            notes.append(note)
        return notes

    def campaigns(self) -> list[str]:
        try:
            return sorted(self._api("label/campaign/values", {"match[]": schema.EVENT_END}, "GET"))
        except MltelemetryError:
            return []

    def events(self, campaign: str) -> list[Event]:
        c = promql_string(campaign)
        now = time.time()
        lookback = f"{int(self.lookback_s)}s"
        span_starts = self.instant(
            f'last_over_time({schema.EVENT_START}{{campaign={c},action="campaign"}}[{lookback}])', now)
        span_ends = self.instant(
            f'last_over_time({schema.EVENT_END}{{campaign={c},action="campaign"}}[{lookback}])', now)
        every = f'{{__name__=~"{schema.PREFIX}event_.+",campaign={c}}}'
        if span_starts and span_ends:
            t0 = min(float(s["value"][1]) for s in span_starts)
            t1 = max(float(s["value"][1]) for s in span_ends)
            w = self.after_end_s
            results = self.instant(f"last_over_time({every}[{math.ceil(t1 - t0 + 2 * w)}s])", t1 + w)
        else:  # no campaign event (the workload died?): everything within the look-back
            results = self.instant(f"last_over_time({every}[{lookback}])", now)
        return _events_from_series(campaign, ((r["metric"], float(r["value"][1])) for r in results))


def seconds_to_ns(seconds: float) -> int:
    """Event time from float seconds since the epoch: float64 holds them to about 0.24 µs, so they are taken
    to the microsecond (every backend then gives the same window edges)."""
    return round(seconds * 1e6) * 1000


def _events_from_series(campaign: str, series: Iterable[tuple[dict[str, str], float]]) -> list[Event]:
    """Events from their series: start/end seconds and fields, keyed by the event labels."""
    found: dict[tuple, dict] = {}
    field_prefix = schema.PREFIX + "event_"
    for labels, value in series:
        name = labels.get("__name__", "")
        key = (labels.get("scenario", ""), labels.get("run", "0"), labels.get("action", ""),
               labels.get("epoch", ""), labels.get("status", "ok"))
        entry = found.setdefault(key, {"fields": {}})
        if name == schema.EVENT_START:
            entry["start"] = value
        elif name == schema.EVENT_END:
            entry["end"] = value
        elif name == schema.EVENT_FIELD:
            entry["fields"][labels.get("field", "value")] = value
        elif name.startswith(field_prefix):
            entry["fields"][name[len(field_prefix):]] = value
    events = []
    for (scenario, run, action, epoch, status), entry in found.items():
        if "start" not in entry or "end" not in entry:
            continue
        events.append(Event(campaign=campaign, scenario=scenario, run=int(float(run or 0)), action=action,
                            start_ns=seconds_to_ns(entry["start"]), end_ns=seconds_to_ns(entry["end"]),
                            epoch=int(float(epoch)) if epoch not in ("", None) else None, status=status,
                            fields=entry["fields"]))
    return sorted(events, key=lambda e: (e.start_ns, e.end_ns))


# --- InfluxDB (InfluxQL) -----------------------------------------------------------------------
class InfluxSource:
    """InfluxQL over HTTP (``/query``): samples as points of measurement <metric> with field ``value``.

    Names are quoted, and tag values looked up as stored, by the writer's own helpers (``mltelemetry.influx``):
    a campaign, host or label is found by the name it was recorded under.
    """

    def __init__(self, url: str, *, chunk_s: float = 6 * 3600, timeout_s: float = 120.0) -> None:
        import requests

        parts = urlsplit(url)
        scheme = parts.scheme.split("+", 1)[1]
        self.database = parts.path.strip("/")
        if not self.database:
            raise UsageError(f"--source {url!r} names no database: influxdb+http://HOST:PORT/DATABASE")
        options = parse_qs(parts.query)
        self.retention_policy = options.get("rp", [None])[0]
        host = parts.hostname or "localhost"
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port else ""
        self.url = urlunsplit((scheme, netloc, "", "", ""))
        self.description = f"{self.url}/{self.database}"
        self.chunk_ns = int(chunk_s * 1e9)
        self.timeout_s = timeout_s
        self._session = requests.Session()
        if parts.username:
            self._session.auth = (parts.username, parts.password or "")
        token = os.environ.get("INFLUX_TOKEN")
        if token:
            self._session.headers["Authorization"] = f"Token {token}"

    def close(self) -> None:
        self._session.close()

    def influxql(self, statement: str) -> list[dict]:
        import requests

        params = {"db": self.database, "q": statement, "epoch": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        try:
            response = self._session.post(f"{self.url}/query", data=params, timeout=self.timeout_s)
        except requests.RequestException as e:
            raise _http_error("InfluxDB", self.url, e) from e
        try:
            body = response.json()
        except ValueError:
            raise MltelemetryError(f"{self.url}/query answered HTTP {response.status_code} without JSON: is it "
                                   "InfluxDB?") from None
        error = body.get("error") or next((r["error"] for r in body.get("results", []) if "error" in r), None)
        if response.status_code >= 400 or error:
            raise MltelemetryError(f"InfluxDB at {self.url} answered HTTP {response.status_code}: {error}")
        return [s for r in body.get("results", []) for s in r.get("series", [])]

    def query(self, metric, labels=None, start_ns=None, end_ns=None) -> pd.DataFrame:
        where = [influxql_tag_equals(k, v) for k, v in sorted((labels or {}).items())]
        ranges: list[tuple[int | None, int | None]]
        if start_ns is None or end_ns is None:
            ranges = [(start_ns, end_ns)]
        else:
            ranges = [(a, min(a + self.chunk_ns - 1, end_ns)) for a in range(int(start_ns), int(end_ns) + 1,
                                                                               self.chunk_ns)]
        parts: dict[tuple, list] = {}
        for a, b in ranges:
            conditions = list(where)
            if a is not None:
                conditions.append(f"time >= {int(a)}")
            if b is not None:
                conditions.append(f"time <= {int(b)}")
            statement = f"SELECT {influxql_ident(schema.SAMPLE_FIELD)} FROM {influxql_ident(metric)}"
            if conditions:
                statement += " WHERE " + " AND ".join(conditions)
            for series in self.influxql(statement + " GROUP BY *"):
                rows = series.get("values") or []
                column = series["columns"].index(schema.SAMPLE_FIELD)
                key = tuple(sorted((k, v) for k, v in (series.get("tags") or {}).items() if v != ""))
                parts.setdefault(key, []).append((np.array([r[0] for r in rows], np.int64),
                                                  np.array([r[column] for r in rows], np.float64)))
        return _frame(parts, start_ns, end_ns)

    def time_notes(self) -> list[str]:
        return [f"{self.description}: samples at each reading's own time, as the exporter pushed it"]

    def campaigns(self) -> list[str]:
        try:
            series = self.influxql(f"SHOW TAG VALUES FROM {influxql_ident(schema.EVENT_MEASUREMENT)} "
                                   'WITH KEY = "campaign"')
        except MltelemetryError:
            return []
        return sorted({row[1] for s in series for row in s.get("values", [])})

    def events(self, campaign: str) -> list[Event]:
        series = self.influxql(f"SELECT * FROM {influxql_ident(schema.EVENT_MEASUREMENT)} "
                               f"WHERE {influxql_tag_equals('campaign', campaign)} GROUP BY *")
        events = []
        for s in series:
            tags = s.get("tags") or {}
            columns = s["columns"]
            for row in s.get("values") or []:
                point = dict(zip(columns, row))
                start, end = point.pop("start_seconds", None), point.pop("end_seconds", None)
                time_ns = point.pop("time")
                if start is None:
                    continue
                epoch = tags.get("epoch", "")
                events.append(Event(
                    campaign=campaign, scenario=tags.get("scenario", ""), run=int(float(tags.get("run") or 0)),
                    action=tags.get("action", ""), start_ns=seconds_to_ns(start),
                    end_ns=int(time_ns) if time_ns is not None else seconds_to_ns(end),
                    epoch=int(float(epoch)) if epoch != "" else None, status=tags.get("status") or "ok",
                    fields={k: v for k, v in point.items() if v is not None and k not in tags}))
        return sorted(events, key=lambda e: (e.start_ns, e.end_ns))


# --- series of the exporters a lab already runs (dcgm-exporter, node_exporter) ------------------------------
# Read where ours are absent (or when told, ``--sensor-exporters``), as Store-shaped frames in joules with our
# label names, so the figures are computed by the same code; ``method`` tags where each figure came from.
# Neither exporter has our ``host`` label: a series belongs to the host named by its ``host`` or dcgm-exporter's
# ``Hostname`` label, else by the host part of Prometheus' ``instance`` ("sut-01:9100" -> "sut-01").

DCGM_ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"  # mJ since the driver loaded, NVML's hardware counter
NODE_RAPL = "node_rapl_{zone}_joules_total"  # node_exporter's RAPL zone counters in J (index, path labels)
NODE_RAPL_ZONE_LABEL = "node_rapl_joules_total"  # the same with --collector.rapl.enable-zone-label (rapl_zone)
METHOD_DCGM = "dcgm-exporter"
METHOD_NODE_EXPORTER = "node_exporter"
SENSOR_EXPORTERS = ("auto", "mltelemetry", "standard")


def series_host(labels: dict[str, str]) -> str:
    """The host a series of another exporter describes: its host or Hostname label, else instance's host part."""
    for key in ("host", "Hostname"):
        if labels.get(key):
            return labels[key]
    instance = labels.get("instance", "")
    host, sep, port = instance.rpartition(":")
    return (host if sep and port.isdigit() else instance).strip("[]")


def _of_host(frame: pd.DataFrame, host: str | None, metric: str) -> pd.DataFrame:
    """The rows of ``host``'s series with their host label set; one host's only, or an error naming them."""
    if frame.empty:
        return frame
    labels = frame[[c for c in frame.columns if c not in ("ts_ns", "value")]].fillna("").astype(str)
    series = labels.drop_duplicates()  # one host per series, not per sample
    series = series.assign(_host=[series_host({k: v for k, v in row.items() if v}) for row in
                                  series.to_dict(orient="records")])
    hosts = labels.merge(series, how="left", on=list(labels.columns))["_host"].to_numpy()
    if host is not None:
        frame, hosts = frame[hosts == host].copy(), hosts[hosts == host]
    else:
        found = sorted(set(hosts))
        if len(found) > 1:
            raise MltelemetryError(f"{metric} was recorded on {len(found)} hosts ({', '.join(found)}): "
                                   "name one with --host")
        frame = frame.copy()
    frame["host"] = host if host is not None else hosts
    return frame


def _relabelled(frame: pd.DataFrame, labels: dict[str, pd.Series | str], scale: float) -> pd.DataFrame:
    out = pd.DataFrame({"ts_ns": frame["ts_ns"].to_numpy(np.int64), "value": frame["value"].to_numpy() * scale})
    for name, values in labels.items():
        out[name] = values if isinstance(values, str) else values.to_numpy()
    return out


def dcgm_gpu_energy(source: Source, host: str | None, start_ns: int, end_ns: int) -> pd.DataFrame:
    """dcgm-exporter's GPU energy counter (mJ) as ours: joules, labels host, gpu, uuid, name, method."""
    frame = _of_host(source.query(DCGM_ENERGY, None, start_ns, end_ns), host, DCGM_ENERGY)
    if frame.empty:
        return _EMPTY.copy()
    column = lambda name: frame[name].fillna("").astype(str) if name in frame else ""  # noqa: E731
    return _relabelled(frame, {"host": frame["host"], "gpu": column("gpu"), "uuid": column("UUID"),
                               "name": column("modelName"), "method": METHOD_DCGM}, 1e-3)


def node_rapl_energy(source: Source, host: str | None, start_ns: int, end_ns: int) -> pd.DataFrame:
    """node_exporter's RAPL package and DRAM counters (J) as ours: labels host, zone ("package-0", "dram-1") and
    method. (node_exporter passes energy_uj on as it is: where the zone's counter wraps, increase() sees a reset
    and loses what it counted between the last scrape and the wrap, at most one scrape interval's energy.)"""
    parts = []
    for zone in ("package", "dram"):
        per_zone = source.query(NODE_RAPL.format(zone=zone), None, start_ns, end_ns)
        if per_zone.empty:  # run with --collector.rapl.enable-zone-label: one name, the zone as a label
            labelled = source.query(NODE_RAPL_ZONE_LABEL, None, start_ns, end_ns)
            if "rapl_zone" in labelled:
                per_zone = labelled[labelled["rapl_zone"].astype(str).str.startswith(zone)]
        frame = _of_host(per_zone, host, NODE_RAPL.format(zone=zone))
        if frame.empty:
            continue
        index = frame["index"].fillna("0").astype(str) if "index" in frame else pd.Series("0", index=frame.index)
        labels = {"host": frame["host"], "zone": zone + "-" + index, "method": METHOD_NODE_EXPORTER}
        if "path" in frame:  # two zones of one name and index (sub-zones of two packages) stay two series
            labels["path"] = frame["path"].fillna("").astype(str)
        parts.append(_relabelled(frame, labels, 1.0))
    return pd.concat(parts, ignore_index=True) if parts else _EMPTY.copy()
