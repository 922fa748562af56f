"""WT300 driver in memory: the reply parsers on hand-written and random lines, rate commands, VXI-11 records (the
driver against the emulator over a pty, USB-TMC and TCP: tests/integration/test_pm_wt300.py)."""

from __future__ import annotations

import math

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from mltelemetry.exporters.pm.collector import InvalidReading, MeterDisconnected, MeterError
from mltelemetry.exporters.pm.wt300 import (
    OVER_RANGE,
    Wt300,
    parse_identity,
    parse_rate,
    parse_reply,
    parse_sync_reply,
    rate_command,
)


# --- parser --------------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "expected"), [
    (b"87.654E+00,229.87E+00,0.38134E+00\r\n", (87.654, 229.87, 0.38134)),
    (b"8.7654E+01,2.2987E+02,3.8134E-01\n", (87.654, 229.87, 0.38134)),  # LF only
    (b"-1.5E+00,230,.5\r\n", (-1.5, 230.0, 0.5)),  # NR1/NR2 and a negative power
    (b"NAN,229.87E+00,INF\r\n", (None, 229.87, None)),
    (b"nan,-INF,+INF\r\n", (None, None, None)),
    (b"9.91E+37,9.9E+37,-9.91E+37\r\n", (None, None, None)),  # the meter's error markers
    (b"1E+999,1.0E+00,2.0E+00\r\n", (None, 1.0, 2.0)),  # overflows to inf
    (b"9.89E+37,0,0\r\n", (9.89e37, 0.0, 0.0)),  # just below the marker: a number
])
def test_parse_reply_values(line, expected):
    assert parse_reply(line, 3) == expected


@pytest.mark.parametrize("line", [
    b"",  # silence
    b"123.45E+00,",  # partial: no terminator
    b"87.654E+00,229.87E+00,0.38134E+00",  # complete values, but no terminator
    b"\r\n",
    b"87.654E+00,229.87E+00\r\n",  # too few fields
    b"1,2,3,4\r\n",  # too many
    b"\x00\x8c\xcf\r\n",  # line noise
    b"1_0,2,3\r\n",  # float() would accept it
    b"infinity,2,3\r\n",
    b"0x10,2,3\r\n",
    b"1.0E+00,,3\r\n",
    b"1.0E+00,2.0E+00,3.0E+00\r\n1.0E+00,2.0\r\n",  # two lines glued
    b"YOKOGAWA,WT310,EMU00001\r\n",
])
def test_parse_reply_rejects(line):
    with pytest.raises(InvalidReading):
        parse_reply(line, 3)


def _check_parsed(line: bytes) -> None:
    try:
        values = parse_reply(line, 3)
    except InvalidReading:
        return
    assert len(values) == 3
    for v in values:
        assert v is None or (math.isfinite(v) and abs(v) < OVER_RANGE)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_parse_reply_random_bytes(data):
    _check_parsed(data)
    _check_parsed(data + b"\r\n")


@settings(max_examples=600, deadline=None)
@given(st.lists(st.text(alphabet="0123456789.+-EeNnAaIiFf9_ x", max_size=12), min_size=1, max_size=4))
def test_parse_reply_random_number_like_fields(fields):
    _check_parsed(",".join(fields).encode() + b"\r\n")


def _check_sync_parsed(line: bytes) -> None:
    try:
        register, values = parse_sync_reply(line, 5)
    except InvalidReading:
        return
    assert 0 <= register <= 99999 and len(values) == 5
    for v in values:
        assert v is None or (math.isfinite(v) and abs(v) < OVER_RANGE)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_parse_sync_reply_random_bytes(data):
    _check_sync_parsed(data)
    _check_sync_parsed(data + b"\r\n")
    _check_sync_parsed(b"1;" + data + b"\r\n")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789;,.+-EeNnAaIiF x", max_size=40))
def test_parse_sync_reply_random_text(text):
    _check_sync_parsed(text.encode() + b"\r\n")


def test_parse_sync_reply():
    assert parse_sync_reply(b"1;1.5E+02,2.3E+02,6.5E-01,1.2E-01,36\r\n", 5) == (1, (150.0, 230.0, 0.65, 0.12, 36.0))
    assert parse_sync_reply(b"65;NAN,NAN,NAN,NAN,NAN\r\n", 5) == (65, (None,) * 5)
    for bad in (b"1.5E+02,2.3E+02,6.5E-01,1.2E-01,36\r\n", b"x;1,2,3,4,5\r\n", b"1;1,2,3\r\n", b"1;1,2,3,4,5"):
        with pytest.raises(InvalidReading):
            parse_sync_reply(bad, 5)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parse_identity_never_fails(text):
    identity = parse_identity(text)
    assert isinstance(identity.model, str) and isinstance(identity.line(), str)


@pytest.mark.parametrize(("text", "seconds"), [
    ("1.0000E+00", 1.0), ("2.5000E-01", 0.25), ("250MS", 0.25), ("5S", 5.0), (":RATE 500.0E-03", 0.5)])
def test_parse_rate(text, seconds):
    assert parse_rate(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("seconds", "command"), [
    (0.1, ":RATE 100MS"), (0.25, ":RATE 250MS"), (0.5, ":RATE 500MS"), (1.0, ":RATE 1S"), (5, ":RATE 5S")])
def test_rate_command(seconds, command):
    assert rate_command(seconds) == command


def test_rate_command_refuses_rates_the_meter_lacks():
    with pytest.raises(MeterError, match="no update rate of 0.3"):
        rate_command(0.3)


def test_wt300_and_ptd_decode_replies_with_the_one_shared_function():
    from mltelemetry.exporters.pm import meter, ptd, wt300

    assert wt300.decode_reply is ptd.decode_reply is meter.decode_reply
    assert wt300.NUMBER is ptd.NUMBER is meter.NUMBER
    assert meter.decode_reply(b"1.5E+2,230\r\n") == "1.5E+2,230"
    for line, message in ((b"1.5", "partial"), (b"", "no reply"), (b"\xff1\n", "garbage"), (b"1\x002\n", "garbage")):
        with pytest.raises(InvalidReading, match=message):
            meter.decode_reply(line)
    assert parse_reply(b"1.5e+2,2.3E2,5\n", 3) == (150.0, 230.0, 5.0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_vxi11_records_from_random_bytes(data):
    """Random bytes in RPC record framing: whole records or ValueError, and the server never crashes."""
    from mltelemetry.exporters.pm.vxi11 import Vxi11ServerLink, _record, _split_records

    for buffer in (bytearray(data), bytearray(_record(data))):
        try:
            records = _split_records(buffer)
        except ValueError:
            continue
        server = Vxi11ServerLink()
        for record in records:
            try:
                server._handle(_NullClient(), record, 0.0)
            except ValueError:
                pass


class _NullClient:
    class sock:  # noqa: N801 (stands in for a socket)
        @staticmethod
        def sendall(data: bytes) -> None:
            pass

        @staticmethod
        def close() -> None:
            pass


def test_missing_port_is_meter_disconnected(tmp_path):
    with pytest.raises(MeterDisconnected) as info:
        Wt300(str(tmp_path / "nothing-here"))
    assert isinstance(info.value.__cause__, serial.SerialException)
