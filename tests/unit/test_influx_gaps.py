"""The InfluxDB sink's settings and fallbacks that mutation testing found unchecked (bench/mutation.md): the
memory backlog's fill ratio, a batch put back in front of the queue when the spool fails, the number of default
spool slots, the v2 client's timeout and retries, the default close timeout. In-process, on a fake clock."""

from __future__ import annotations

import errno

import pytest

from mltelemetry.errors import MltelemetryError
from mltelemetry.influx import (
    DEFAULT_SPOOL_SLOTS,
    InfluxConfig,
    InfluxSink,
    V2Writer,
    WriteFailed,
    default_spool_dir,
    open_spool,
)
from mltelemetry.spool import Spool

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
    assert now[0] == 6.0
    reopened = Spool(tmp_path / "spool", fsync=False)
    try:
        assert reopened.lines == 4  # the rest waits for the next start
    finally:
        reopened.close()
