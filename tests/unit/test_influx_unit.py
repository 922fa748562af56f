"""The InfluxDB sink in memory: line protocol and InfluxQL escaping, tokens, settings, the spool (both write paths
against real servers: tests/integration/test_influx.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_influx import HOSTILE

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.influx import (
    InfluxConfig,
    encode_point,
    event_line,
    influxql_ident,
    influxql_string,
    influxql_tag_equals,
    read_token,
    sample_line,
    stored_tag_value,
)
from mltelemetry.schema import Event, Sample
from mltelemetry.spool import Spool

# What every backend stores for them (the documented mapping: line breaks → \n, escape-like backslashes → /).
STORED = {'quo"te': 'quo"te', "new\nline": "new\\nline", "cr\rlf": "cr\\rlf", "back\\slash": "back\\slash",
          "trail\\": "trail/", 'mix \\" ,=\\,\n\ttab': 'mix /" ,=/,\\n\ttab', "\\\\double": "/\\double",
          'a"b\\"c': 'a"b/"c'}


def test_line_protocol_escapes_tags_fields_and_measurement():
    sample = Sample(schema.PM_POWER, {"host": "sut 1", "meter": 'wt,3"10=a\\'}, 87.5, 1_700_000_000_123_456_789)
    assert sample_line(sample) == ('mltelemetry_pm_power_watts,host=sut\\ 1,meter=wt\\,3"10\\=a/ value=87.5 '
                                   "1700000000123456789")
    assert encode_point("m e,x", {"k": "v\nw", "empty": ""}, {"f ield": 1e-05, "nan": float("nan")}, 5) == \
        "m\\ e\\,x,k=v\\nw f\\ ield=1e-05 5"
    assert encode_point("m", {}, {"value": float("inf")}, 5) is None  # line protocol has no NaN or Inf
    event = Event("c,1", "resnet 50", 3, "epoch", start_ns=1_000_000_000, end_ns=2_500_000_000, epoch=7,
                  fields={"loss": 0.25, "parameters": 11, "framework": "torch", "ok": True, "z=z": 1,
                          "error": 'bad "x"\\\nline 2', "run": "a field named like a tag is left out"})
    assert event_line(event, "sut 1") == (
        "mltelemetry_event,action=epoch,campaign=c\\,1,epoch=7,host=sut\\ 1,run=3,scenario=resnet\\ 50,"
        "status=ok start_seconds=1.0,end_seconds=2.5,loss=0.25,parameters=11.0,z\\=z=1.0,"
        'error="bad \\"x\\"\\\\\\nline 2",framework="torch",ok=true 2500000000')
    no_epoch = Event("c", "s", 1, "run", start_ns=1, end_ns=2)
    assert ",epoch=" not in event_line(no_epoch)


def test_stored_values_of_hostile_names():
    for name in HOSTILE:
        assert stored_tag_value(name) == STORED.get(name, name)


@given(st.text())
def test_stored_tag_value_is_stable_and_never_ends_an_escape(value):
    stored = stored_tag_value(value)
    assert stored_tag_value(stored) == stored
    assert "\n" not in stored and "\r" not in stored and not stored.endswith("\\")
    for i, ch in enumerate(stored[:-1]):
        if ch == "\\":
            assert stored[i + 1] not in '\\,= "'
    if not any(c in value for c in "\\\n\r"):
        assert stored == value


def test_influxql_quoting():
    assert influxql_string("it's a \\ test\n") == "'it\\'s a \\\\ test\\n'"
    assert influxql_ident('my "db"') == '"my \\"db\\""'
    assert influxql_tag_equals("campaign", "a\nb'") == "\"campaign\" = 'a\\\\nb\\''"


def test_token_comes_from_a_file_or_the_environment_only(tmp_path, monkeypatch):
    monkeypatch.setenv("INFLUX_TOKEN", "from-env")
    assert read_token() == "from-env"
    (tmp_path / "token").write_text("from-file\n")
    assert read_token(tmp_path / "token") == "from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(MltelemetryError, match="empty"):
        read_token(tmp_path / "empty")
    monkeypatch.delenv("INFLUX_TOKEN")
    assert read_token() is None


def test_config_refuses_bad_settings():
    with pytest.raises(MltelemetryError, match="http"):
        InfluxConfig("localhost:8086", "b", "v1")
    with pytest.raises(MltelemetryError, match="org"):
        InfluxConfig("http://localhost:8086", "b", "v2")
    with pytest.raises(MltelemetryError, match="v1 or v2"):
        InfluxConfig("http://localhost:8086", "b", "v3")  # type: ignore[arg-type]


# --- spool -------------------------------------------------------------------------------------------

def test_spool_keeps_order_across_reopen_and_drops_oldest_when_full(tmp_path):
    spool = Spool(tmp_path / "s", max_bytes=10_000, fsync=False)
    for i in range(5):
        spool.append([f"m v={i}.0 {i}", f"m v={i}.5 {i}5"])
    spool.close()
    (tmp_path / "s" / ".tmp-00000000000000000099-1.lp").write_text("half a batch")  # a writer died mid-write
    spool = Spool(tmp_path / "s", max_bytes=10_000, fsync=False)
    assert spool.lines == 10 and not (tmp_path / "s" / ".tmp-00000000000000000099-1.lp").exists()
    segments, lines = spool.peek(5)
    assert lines == ["m v=0.0 0", "m v=0.5 05", "m v=1.0 1", "m v=1.5 15"]  # whole segments, at most 5 lines
    spool.pop(segments)
    spool.append(["m v=9.0 9"])
    assert spool.peek(100)[1] == [f"m v={i}{f} {i}{s}" for i in range(2, 5) for f, s in ((".0", ""), (".5", "5"))] \
        + ["m v=9.0 9"]
    with pytest.raises(ValueError, match="not the oldest"):
        spool.pop(spool.peek(100)[0][1:])
    spool.close()

    small = Spool(tmp_path / "small", max_bytes=100, fsync=False)
    for i in range(10):
        small.append([f"measurement value={i}.0 {i:020d}"])  # 43 bytes a batch: two fit
    assert small.peek(100)[1] == ["measurement value=8.0 00000000000000000008",
                                  "measurement value=9.0 00000000000000000009"]
    assert small.dropped_lines == 8 and small.bytes == 86 and small.fill_ratio == pytest.approx(0.86)
    small.close()


def test_a_spool_folder_has_one_owner(tmp_path):
    first = Spool(tmp_path / "s")
    with pytest.raises(MltelemetryError, match="in use by another process"):
        Spool(tmp_path / "s")
    first.close()
    Spool(tmp_path / "s").close()
