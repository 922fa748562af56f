"""PTDaemon client in memory: the reply parsers on real and random lines (the client against the emulator over TCP:
tests/integration/test_pm_ptd.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mltelemetry.exporters.pm.meter import InvalidReading
from mltelemetry.exporters.pm.ptd import (
    parse_identify,
    parse_last,
    parse_sample,
    parse_uncertainty,
)

SPEC_DUMMY = ("Dummy,1000,1,1,1,1,1,1,0,version=9.9.9-1fee1ded-20161226,OS=your uname/whatever output here,"
              "mode=power,1,1,1,0,0,no_cal_date,SPECpower's Dummy Analyzer v1.0")


# --- parsers -------------------------------------------------------------------------------
def test_parse_identify():
    dummy = parse_identify(SPEC_DUMMY)
    assert dummy.meter.model == "Dummy" and dummy.meter.firmware == "PTDaemon 9.9.9-1fee1ded-20161226"
    assert dummy.interval_ms == 1000 and dummy.can_accuracy and dummy.channels == 1
    assert parse_identify("").meter.model == "PTDaemon"


def test_parse_last_and_samples():
    assert parse_last(b"Last 3 samples\r\n") == 3 and parse_last(b"Last 1 sample\n") == 1
    sample = parse_sample(b"Time,01-22-2021 15:05:14.313,Watts,22.97,Volts,227.37,Amps,0.20434,PF,0.4944,Mark,x\r\n")
    assert (sample.watts, sample.volts, sample.amps) == (22.97, 227.37, 0.20434)
    multichannel = parse_sample(b"Time,01-22-2021 15:05:14.313,Watts,30,Volts,230,Amps,0.3,PF,0.5,"
                                b"Ch1,Watts,10,Volts,230,Amps,0.1,PF,0.5\r\n")
    assert multichannel.watts == 30  # the total, not channel 1
    for watts in (b"-1.000000", b"-2", b"nan", b"inf", b"1e12", b"1_0"):
        line = b"Time,01-22-2021 15:05:14.313,Watts," + watts + b",Volts,230,Amps,0.1,PF,1\r\n"
        assert parse_sample(line).watts is None, watts
    for bad in (b"Last 2 samples\r\n", b"Time,x,Volts,230\r\n", b"Time,x,Watts,10,Volts", b"Error: busy\r\n",
                b"\xff\xfe\r\n"):
        with pytest.raises(InvalidReading):
            parse_sample(bad)
    for bad in (b"Error: no measurement running\r\n", b"Last many samples\r\n", b"Last 2 samples", b""):
        with pytest.raises(InvalidReading):
            parse_last(bad)


def test_parse_uncertainty():
    assert parse_uncertainty("Uncertainty,0.002000,0.001500,0.003000,10,0,10,0") == (0.002, 10)
    assert parse_uncertainty("Uncertainty,-1.000000,-1.000000,-1.000000,10,0,0,10") is None  # auto-ranging
    assert parse_uncertainty("Error") is None and parse_uncertainty("Uncertainty,nan,0,0,1,0,1,0") is None


def _finite_or_none(*values) -> bool:
    return all(v is None or (math.isfinite(v) and v >= 0) for v in values)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_parsers_on_random_bytes(data):
    for line in (data, data + b"\r\n", b"Time,x,Watts," + data + b"\r\n"):
        try:
            sample = parse_sample(line)
            assert _finite_or_none(sample.watts, sample.volts, sample.amps, sample.uncertainty)
        except InvalidReading:
            pass
        try:
            assert parse_last(line) >= 0
        except InvalidReading:
            pass
    text = data.decode("latin-1")
    parse_identify(text)
    parsed = parse_uncertainty(text)
    assert parsed is None or (0 <= parsed[0] <= 10 and parsed[1] >= 0)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["Time", "Watts", "Volts", "Amps", "PF", "Mark", "Ch1", "Uncertainty", "-1", "1e5",
                                 "nan", "230", "0.5", "", "x", "-0.0", "1e400"]), max_size=16))
def test_sample_parser_on_random_fields(fields):
    try:
        sample = parse_sample(",".join(fields).encode() + b"\r\n")
    except InvalidReading:
        return
    assert _finite_or_none(sample.watts, sample.volts, sample.amps, sample.uncertainty)
