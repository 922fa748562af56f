"""Edges of the InfluxDB sink (mltelemetry/influx.py) that mutation testing found unchecked (bench/mutation.md)."""

from mltelemetry.influx import WriteFailed, WriteRejected, _http_failure, default_spool_dir


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
