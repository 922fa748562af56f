"""Edges of the InfluxDB sink (mltelemetry/influx.py) that mutation testing found unchecked (bench/mutation.md)."""

from mltelemetry.influx import InfluxSink, WriteFailed, WriteRejected, _http_failure, default_spool_dir
from mltelemetry.spool import Spool


def test_the_default_spool_folder_name_is_stable_across_versions(tmp_path, monkeypatch):
    # a backlog spooled by one version must be found by the next: the name is the first 10 hex digits of
    # sha256("http://influx.lab:8086\nenergy") = bedff48013…, a literal here on purpose
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    spool = tmp_path / "mltelemetry" / "spool"
    assert default_spool_dir("pm", "http://influx.lab:8086", "energy") == spool / "pm-bedff48013"
    assert default_spool_dir("pm", "http://influx.lab:8086", "energy", slot=2) == spool / "pm-bedff48013-2"


def test_a_server_error_quotes_at_most_300_characters_of_its_body():
    rejected = _http_failure(400, "  " + "x" * 400 + "\n", "http://influx.lab:8086")
    assert isinstance(rejected, WriteRejected)
    assert str(rejected) == "http://influx.lab:8086 answered HTTP 400: " + "x" * 300
    assert isinstance(_http_failure(503, "busy", "http://h"), WriteFailed)  # the server may take it later


def test_a_batch_too_large_for_the_server_is_refused_for_good_not_retried():
    # 413: however often it is sent, the server will not take it; dropped and counted like the points it refuses
    assert isinstance(_http_failure(413, "request entity too large", "http://h"), WriteRejected)
    assert isinstance(_http_failure(412, "precondition failed", "http://h"), WriteFailed)


class DownWriter:
    """An InfluxDB that does not answer: every write fails; remembers the (fake) time of each attempt."""

    def __init__(self, clock) -> None:
        self.clock, self.attempts = clock, []

    def write(self, lines) -> None:
        self.attempts.append(self.clock())
        raise WriteFailed("scripted: connection refused")

    def close(self) -> None:
        pass


def test_while_the_server_is_away_the_retries_back_off_doubling_up_to_the_cap(tmp_path):
    now = [0.0]
    writer = DownWriter(lambda: now[0])
    # flushes driven here on a fake clock (the sink's own thread waits 1000 s between flushes: idle meanwhile)
    sink = InfluxSink(writer, Spool(tmp_path / "spool", fsync=False), flush_interval_s=1000.0,
                      max_backoff_s=10_000.0, clock=lambda: now[0])
    try:
        sink.publish_lines(["m v=1 1"])
        for t in range(0, 20_001, 500):
            now[0] = float(t)
            sink._flush()
        # fails at 0 s, then waits 1000 s (the flush interval), 2000, 4000, 8000, then the 10000-s cap
        assert writer.attempts == [0.0, 1000.0, 3000.0, 7000.0, 15_000.0]
        assert sink.errors_total == 5 and sink.spool.lines == 1  # the line waits in the spool
    finally:
        sink.close_timeout_s = 0
        sink.close()
