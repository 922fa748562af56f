"""The InfluxDB sink's settings and fallbacks that mutation testing found unchecked (bench/mutation.md): the
memory backlog's fill ratio, a batch put back in front of the queue when the spool fails, the number of default
spool slots, the v2 client's timeout and retries, the default close timeout. In-process, on a fake clock."""

from __future__ import annotations

import errno
import logging
import sys

import pytest

from mltelemetry import schema
from mltelemetry.cliutil import SinkOptions
from mltelemetry.errors import MltelemetryError, UsageError
from mltelemetry.influx import (
    DEFAULT_SPOOL_SLOTS,
    InfluxConfig,
    InfluxSink,
    V1Writer,
    V2Writer,
    WriteFailed,
    WriteRejected,
    _http_failure,
    _string_field,
    default_spool_dir,
    event_line,
    influx_publisher,
    open_spool,
    sample_line,
    stored_tag_value,
)
from mltelemetry.publisher import PublisherSettings, WindowChange
from mltelemetry.schema import Event, Sample
from mltelemetry.spool import Spool

S = 10**9

IDLE = 1e6  # the sink's own thread waits this long between flushes: the tests drive every flush themselves


class FullDiskSpool(Spool):
    """A real spool whose disk takes nothing (ENOSPC on every append)."""

    def append(self, lines) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


class ScriptedWriter:
    """An InfluxDB that takes every write (or fails each, ``down``), and moves the fake clock by ``write_s``."""

    def __init__(self, now: list[float], write_s: float = 0.0, down: bool = False, during_write=None) -> None:
        self.now, self.write_s, self.down, self.during_write = now, write_s, down, during_write
        self.batches: list[list[str]] = []

    def write(self, lines) -> None:
        self.now[0] += self.write_s
        if self.during_write:
            self.during_write()
        if self.down:
            raise WriteFailed("scripted: connection refused")
        self.batches.append(list(lines))

    def close(self) -> None:
        pass


def closed(sink: InfluxSink) -> None:
    sink.close_timeout_s = 0
    sink.close()


def test_the_memory_backlog_fill_ratio_is_the_lines_waiting_over_the_limit(tmp_path):
    now = [0.0]
    sink = InfluxSink(ScriptedWriter(now), Spool(tmp_path / "spool", fsync=False), flush_interval_s=IDLE,
                      max_pending_lines=100, clock=lambda: now[0])
    try:
        sink.publish_lines([f"m v={i} {i}" for i in range(25)])
        assert sink.fill_ratio == 25 / 100  # = 0.25; the spool is empty (0.0), so the memory's share counts
        assert sink.dropped_pending_lines == 0  # under the limit: nothing dropped
    finally:
        closed(sink)


def test_a_batch_the_spool_cannot_take_goes_back_in_front_of_the_lines_that_came_meanwhile(tmp_path):
    now = [0.0]
    sink = None

    def two_more_arrive() -> None:  # published while the first batch is on its way to the server
        sink.publish_lines(["m v=3 3", "m v=4 4"])

    writer = ScriptedWriter(now, down=True, during_write=two_more_arrive)
    sink = InfluxSink(writer, FullDiskSpool(tmp_path / "spool", fsync=False), flush_interval_s=IDLE,
                      clock=lambda: now[0])
    try:
        sink.publish_lines(["m v=1 1", "m v=2 2"])
        sink._flush()
        # the write failed (1 error), the spool refused the batch (2 errors): it waits in memory, oldest first
        assert sink._pending == ["m v=1 1", "m v=2 2", "m v=3 3", "m v=4 4"]
        assert sink.errors_total == 2
        assert sink.fill_ratio == 4 / 100_000  # the default limit of lines in memory
    finally:
        closed(sink)


def test_a_process_takes_the_first_free_of_the_16_default_spool_slots_and_no_17th(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    config = InfluxConfig("http://influx.lab:8086", "energy", "v1")
    # flock locks are held per open file: spools opened here hold their folders as another exporter would
    held = [Spool(default_spool_dir("pm", config.url, config.bucket, slot)) for slot in range(1, 16)]
    try:
        last = open_spool(config, "pm")  # slots 1 to 15 taken: the 16th
        assert last.directory == default_spool_dir("pm", config.url, config.bucket, 16)
        held.append(last)
        assert DEFAULT_SPOOL_SLOTS == 16
        with pytest.raises(MltelemetryError, match="all 16 default spool folders of pm for http://influx.lab:8086"):
            open_spool(config, "pm")
        assert not default_spool_dir("pm", config.url, config.bucket, 17).exists()
    finally:
        for spool in held:
            spool.close()


def test_the_v2_client_waits_the_timeout_in_milliseconds_and_never_retries_by_itself():
    # nothing is sent: the client connects on the first write
    writer = V2Writer("http://127.0.0.1:8086", "lab", "energy", timeout_s=2.5)
    try:
        assert writer._client.conf.timeout == 2500  # 2.5 s * 1000
        # the spool retries, in order; a retry of the client's own would block the sink's thread
        assert writer._client.retries is False
        writer._client.write_api()  # builds the connection pool, with the Retry urllib3 gets
        retry = writer._client.api_client.rest_client.pool_manager.connection_pool_kw["retries"]
        assert retry.total is False
    finally:
        writer.close()


def test_closing_writes_the_spool_for_5_seconds_by_default(tmp_path):
    now = [0.0]
    spool = Spool(tmp_path / "spool", fsync=False)
    for i in range(10):  # a backlog of 10 batches of one line, from before
        spool.append([f"m v={i} {i}"])
    writer = ScriptedWriter(now, write_s=1.0)  # each write takes 1 s
    sink = InfluxSink(writer, spool, flush_interval_s=IDLE, batch_lines=1, clock=lambda: now[0])
    sink.close()
    # deadline 0 + 5 s; a batch is started while the clock is <= 5 s: at 0, 1, 2, 3, 4 and 5 s, ending at 6 s
    assert [b[0] for b in writer.batches] == [f"m v={i} {i}" for i in range(6)]
    assert now[0] == 6.0 and sink.written_total == 6
    reopened = Spool(tmp_path / "spool", fsync=False)
    try:
        assert reopened.lines == 4  # the rest waits for the next start
    finally:
        reopened.close()


def test_trouble_is_logged_once_a_minute_at_most(tmp_path, caplog):
    now = [100.0]
    sink = InfluxSink(ScriptedWriter(now, down=True), FullDiskSpool(tmp_path / "spool", fsync=False),
                      flush_interval_s=IDLE, clock=lambda: now[0])
    try:
        said = []
        with caplog.at_level(logging.ERROR, logger="mltelemetry"):
            for t in (100.0, 159.0, 160.0):  # the spool fails at each: said at 100 s, not 59 s later, again at 160
                now[0] = t
                caplog.clear()
                sink._spool([f"m v=1 {int(t)}"])
                said.append("cannot spool" in caplog.text)
        assert said == [True, False, True]
        assert sink.errors_total == 3  # each failure counted, said or not
    finally:
        closed(sink)


def test_the_server_back_says_how_long_it_was_away(tmp_path, caplog):
    now = [10.0]
    writer = ScriptedWriter(now, down=True)
    sink = InfluxSink(writer, Spool(tmp_path / "spool", fsync=False), flush_interval_s=IDLE, max_backoff_s=10.0,
                      clock=lambda: now[0])
    try:
        sink.publish_lines(["m v=1 1"])
        sink._flush()  # fails at 10 s: spooled, next attempt at 10 + 10 s (the cap)
        now[0], writer.down = 40.0, False
        with caplog.at_level(logging.INFO, logger="mltelemetry"):
            sink._flush()
        assert "InfluxDB answers again after 30 s; sending the spool" in caplog.text  # 40 s − 10 s
        assert writer.batches == [["m v=1 1"]] and sink.written_total == 1 and sink.spool.empty
    finally:
        closed(sink)


def test_a_closed_window_is_queued_with_what_runs_next_just_after_it(tmp_path):
    now = [0.0]
    sink = InfluxSink(ScriptedWriter(now), Spool(tmp_path / "spool", fsync=False), flush_interval_s=IDLE,
                      clock=lambda: now[0], host_label="sut")
    try:
        run = Event("c", "x", 1, "run", 10 * S, 10 * S)
        epoch = Event("c", "x", 1, "epoch", 11 * S, 12 * S, epoch=0)
        sink.publish_events(WindowChange(epoch, closed=True, running=(run,)))
        labels = {"host": "sut", "campaign": "c", "scenario": "x", "run": "1", "action": "run", "epoch": ""}
        assert sink._pending == [event_line(epoch, "sut"),
                                 sample_line(Sample(schema.WORKLOAD_INFO, labels, 1.0, 12 * S + 1))]
        sink._pending.clear()
        sink.publish_events(WindowChange(run, closed=True, running=()))  # nothing runs after: no info sample
        assert sink._pending == [event_line(run, "sut")]
    finally:
        closed(sink)


def test_the_v1_writer_posts_the_lines_one_a_line_within_10_seconds(monkeypatch):
    posted = []
    monkeypatch.setattr("mltelemetry.influx.http_post", lambda *args: posted.append(args))
    V1Writer("http://influx.lab:8086", "energy").write(["a v=1 1", "b v=2 2"])
    url, body, headers, timeout_s = posted[0]
    assert url == "http://influx.lab:8086/write?db=energy&precision=ns"
    assert body == b"a v=1 1\nb v=2 2\n" and timeout_s == 10.0
    v2 = V2Writer("http://127.0.0.1:8086", "lab", "energy")
    try:
        assert v2._client.conf.timeout == 10_000  # the default 10 s, in milliseconds
    finally:
        v2.close()


def test_the_influx_options_make_the_sink(tmp_path):
    assert influx_publisher(PublisherSettings(SinkOptions())) is None  # no --influx-url: no sink
    options = SinkOptions(influx_url="http://influx.lab:8086", influx_api="v1", influx_bucket="energy",
                          spool_dir=tmp_path / "spool", spool_max_mb=0.5)
    sink = influx_publisher(PublisherSettings(options, name="pm", host_label="sut"))
    try:
        assert isinstance(sink.writer, V1Writer) and sink.host_label == "sut"
        assert sink.spool.directory == tmp_path / "spool"
        assert sink.spool.max_bytes == 524_288  # 0.5 MiB = 0.5 × 1 048 576 bytes
    finally:
        closed(sink)


def without_thread(sink: InfluxSink) -> InfluxSink:
    """Stop the sink's own writing thread: the test drives every flush (no race with a real-time thread)."""
    sink._stop.set()
    sink._wake.set()
    sink._thread.join()
    return sink


def test_by_default_retries_back_off_from_1_s_doubling_up_to_10_s(tmp_path):
    now = [0.0]
    writer = ScriptedWriter(now, down=True)
    sink = without_thread(InfluxSink(writer, Spool(tmp_path / "spool", fsync=False), clock=lambda: now[0]))
    try:
        sink.publish_lines(["m v=1 1"])
        attempts = []
        for t in range(41):
            now[0] = float(t)
            before = sink.errors_total
            sink._flush()
            if sink.errors_total > before:
                attempts.append(t)
        # waits of 1 s (the default flush interval), 2, 4, 8, then the default 10-s cap: 0, 1, 3, 7, 15, 25, 35
        assert attempts == [0, 1, 3, 7, 15, 25, 35]
        assert (sink.flush_interval_s, sink.max_backoff_s, sink.close_timeout_s) == (1.0, 10.0, 5.0)
    finally:
        closed(sink)


def test_by_default_lines_go_in_batches_of_5000(tmp_path):
    now = [0.0]
    writer = ScriptedWriter(now)
    sink = InfluxSink(writer, Spool(tmp_path / "spool", fsync=False), clock=lambda: now[0])
    sink.publish_lines([f"m v={i} {i}" for i in range(5001)])
    sink.close()  # whether its thread or close sent them: 5000 lines, then 1
    assert [len(b) for b in writer.batches] == [5000, 1] and writer.batches[1] == ["m v=5000 5000"]
    assert sink.written_total == 5001


def test_a_full_batch_wakes_the_writing_thread_at_once(tmp_path):
    sink = without_thread(InfluxSink(ScriptedWriter([0.0]), Spool(tmp_path / "spool", fsync=False),
                                     batch_lines=3))
    try:
        sink._wake.clear()
        sink.publish_lines(["a v=1 1", "b v=1 1"])
        assert not sink._wake.is_set()  # 2 lines: they wait for the flush interval
        sink.publish_lines(["c v=1 1"])
        assert sink._wake.is_set()  # 3 = batch_lines
    finally:
        closed(sink)


def test_lines_in_memory_are_dropped_only_past_the_limit(tmp_path, caplog):
    sink = without_thread(InfluxSink(ScriptedWriter([0.0]), FullDiskSpool(tmp_path / "spool", fsync=False),
                                     max_pending_lines=3, clock=lambda: 0.0))
    try:
        with caplog.at_level(logging.ERROR, logger="mltelemetry"):
            sink.publish_lines(["a v=1 1", "b v=1 1", "c v=1 1"])  # exactly the limit: nothing dropped, nothing said
            assert sink.dropped_pending_lines == 0 and "dropping the oldest" not in caplog.text
            sink.publish_lines(["d v=1 1"])  # one past it: the oldest goes
        assert sink._pending == ["b v=1 1", "c v=1 1", "d v=1 1"] and sink.dropped_pending_lines == 1
        assert "dropping the oldest, 1 so far" in caplog.text
    finally:
        closed(sink)


def test_samples_without_a_finite_value_are_not_queued(tmp_path):
    sink = without_thread(InfluxSink(ScriptedWriter([0.0]), Spool(tmp_path / "spool", fsync=False)))
    try:
        sink.publish_samples([Sample("m", {}, float("nan"), 1), Sample("m", {}, 2.0, 2)])
        assert sink._pending == ["m value=2.0 2"]
    finally:
        closed(sink)


def test_after_a_write_the_next_batch_goes_at_once(tmp_path):
    spool = Spool(tmp_path / "spool", fsync=False)
    spool.append(["a v=1 1"])
    spool.append(["b v=2 2"])
    writer = ScriptedWriter([0.2])
    sink = without_thread(InfluxSink(writer, spool, batch_lines=1, clock=lambda: 0.2))
    try:
        sink._flush()  # 0.2 s after the clock's origin: no wait after a successful write
        assert writer.batches == [["a v=1 1"], ["b v=2 2"]]
    finally:
        closed(sink)


def test_line_protocol_text_edges():
    assert stored_tag_value("a\\b") == "a\\b"  # a backslash before a plain character stays
    assert stored_tag_value("a\\,") == "a/,"  # one a parser would read as an escape becomes /
    assert stored_tag_value("a\\") == "a/"
    assert _string_field("x" * 20_000) == '"' + "x" * 16_384 + '"'  # MAX_STRING_FIELD characters kept
    # a field holding a dict is stored as JSON with sorted keys (the same text whatever the insertion order)
    line = event_line(Event("c", "x", 1, "run", 0, S, fields={"opts": {"b": 1, "a": 2}}))
    assert 'opts="{\\"a\\": 2, \\"b\\": 1}"' in line
    assert isinstance(_http_failure(422, "unprocessable", "http://h"), WriteRejected)


def test_the_v1_writer_authenticates_with_basic_auth_or_a_token():
    assert V1Writer("http://h:8086", "db/rp", "user:pw")._headers["Authorization"] == "Basic dXNlcjpwdw=="
    assert V1Writer("http://h:8086", "db", "t0k")._headers["Authorization"] == "Token t0k"
    assert V1Writer("http://h:8086", "db/rp").url == "http://h:8086/write?db=db&precision=ns&rp=rp"


class RaisingApi:
    """influxdb-client's write API answering with ``error`` (what its HTTP layer raises)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def write(self, **kwargs) -> None:
        raise self.error


def test_the_v2_writer_sorts_the_servers_answers_into_refused_and_failed():
    from influxdb_client.rest import ApiException

    writer = V2Writer("http://127.0.0.1:8086", "lab", "energy")
    try:
        writer._api = RaisingApi(ApiException(status=400, reason="Bad Request"))
        with pytest.raises(WriteRejected, match=r"^http://127.0.0.1:8086 answered HTTP 400: Bad Request$"):
            writer.write(["m v=1 1"])
        writer._api = RaisingApi(ApiException(status=None, reason="no status"))  # no HTTP answer at all: 0
        with pytest.raises(WriteFailed, match=r"^http://127.0.0.1:8086 answered HTTP 0: no status$"):
            writer.write(["m v=1 1"])
        writer._api = RaisingApi(ConnectionRefusedError("connection refused"))
        with pytest.raises(WriteFailed, match=r"^http://127.0.0.1:8086: connection refused$"):
            writer.write(["m v=1 1"])
    finally:
        writer.close()


def test_the_v2_path_without_influxdb_client_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "influxdb_client", None)  # import fails as when it is not installed
    with pytest.raises(MltelemetryError, match=r"pip install 'mltelemetry\[influx\]'"):
        V2Writer("http://127.0.0.1:8086", "lab", "energy")


def test_the_configuration_defaults_and_refusals(tmp_path, monkeypatch):
    config = InfluxConfig("http://influx.lab:8086", "energy", "v1")
    assert config.spool_max_bytes == 536_870_912 and config.flush_interval_s == 1.0  # 512 × 2**20; 1 s
    assert isinstance(config.writer(), V1Writer)
    assert isinstance(InfluxConfig("http://127.0.0.1:8086", "energy", "v2", "lab").writer(), V2Writer)
    for url in ("ftp://influx.lab:8086", "http://"):
        with pytest.raises(UsageError, match="--influx-url wants http"):
            InfluxConfig(url, "energy", "v1")
    # no XDG_STATE_HOME: under ~/.local/state; slot 1 first when it is free
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    first = open_spool(config, "pm")
    try:
        assert first.directory == tmp_path / ".local" / "state" / "mltelemetry" / "spool" / "pm-bedff48013"
    finally:
        first.close()
