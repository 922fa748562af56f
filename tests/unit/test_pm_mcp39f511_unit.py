"""MCP39F511N in memory: frames against the verified bytes, the parsers on random bytes (the driver against the
emulator on a real pty: tests/integration/test_pm_mcp39f511.py)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mltelemetry.exporters.pm.mcp39f511 import (
    ACK,
    BLOCK_SIZE,
    CSFAIL,
    MAX_POWER_W,
    NAK,
    checksum,
    decode_block,
    parse_ack,
    parse_read_reply,
    read_request,
    write_request,
)
from mltelemetry.exporters.pm.meter import InvalidReading


# --- frames --------------------------------------------------------------------------------
def test_requests_match_the_verified_bytes():
    # reference/power-meters.md §2: bytes verified against the forum packet and GMT's source
    assert read_request(0x0016, 8) == bytes.fromhex("a5 08 41 00 16 4e 08 5a")
    assert read_request(0x0006, 2) == bytes.fromhex("a5 08 41 00 06 4e 02 44")
    assert read_request(0x002E, 16) == bytes.fromhex("a5 08 41 00 2e 4e 10 7a")
    assert write_request(0x00A8, bytes([1, 0])) == bytes.fromhex("a5 0a 41 00 a8 4d 02 01 00 e8")


def test_read_reply_of_the_verified_bytes():
    data = parse_read_reply(bytes.fromhex("06 0b 39 30 00 00 00 00 00 00 7a"), 8)
    assert struct.unpack("<II", data) == (12345, 0)  # P1 = 123.45 W, P2 = 0


@pytest.mark.parametrize(("reply", "message"), [
    (b"", "no reply"),
    (bytes([NAK]), "NAK"),
    (bytes([CSFAIL]), "checksum failed"),
    (bytes.fromhex("07 0b 39 30 00 00 00 00 00 00 7a"), "garbage"),
    (bytes([ACK]), "short read"),
    (bytes.fromhex("06 0b 39 30 00 00"), "short read"),
    (bytes.fromhex("06 0b 39 30 00 00 00 00 00 00 7b"), "bad checksum"),
    (bytes.fromhex("06 0b 39 30 00 00 00 00 00 00 7a 00"), "after the frame"),
    (bytes.fromhex("06 07 39 30 76"), "reply of 7 bytes"),
])
def test_read_reply_rejects(reply, message):
    with pytest.raises(InvalidReading, match=message):
        parse_read_reply(reply, 8)


def test_write_reply():
    parse_ack(bytes([ACK]))
    for bad in (b"", bytes([NAK]), bytes([CSFAIL]), b"\x06\x06", b"\x00"):
        with pytest.raises(InvalidReading):
            parse_ack(bad)


def _block(status=0x50, volts=2300, amps1=8696, watts1=20000, watts2=0) -> bytes:
    return struct.pack("<HHHHhhIIII", status, 0x5216, volts, 50000, 31130, 0, amps1, 0, watts1, watts2)


def test_decode_block_scaling_and_sign():
    reading = decode_block(_block(), 1)
    assert (reading.power_w, reading.voltage_v, reading.current_a) == (200.0, 230.0, 0.8696)
    assert decode_block(_block(status=0x40), 1).power_w == -200.0  # sign bit 4 clear: export
    assert decode_block(_block(watts2=1234, status=0x40), 2).power_w == 12.34
    assert decode_block(_block(watts2=1234, status=0x10), 2).power_w == -12.34
    impossible = decode_block(_block(volts=60000, watts1=2**32 - 1), 1)
    assert impossible.voltage_v is None and impossible.power_w is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40), st.integers(1, 32))
def test_read_reply_random_bytes(data, count):
    try:
        parsed = parse_read_reply(data, count)
    except InvalidReading:
        return
    assert len(parsed) == count and data[0] == ACK and checksum(data[:-1]) == data[-1]


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=BLOCK_SIZE, max_size=BLOCK_SIZE), st.sampled_from([1, 2]))
def test_decoded_registers_are_never_invalid_numbers(data, channel):
    reading = decode_block(data, channel)
    for value, limit in ((reading.power_w, MAX_POWER_W), (reading.voltage_v, 1000), (reading.current_a, 100)):
        assert value is None or (math.isfinite(value) and abs(value) <= limit)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_random_reply_through_the_whole_read_path(data):
    """Random bytes framed with a valid header and checksum still never become an invalid number."""
    frame = bytes([ACK, BLOCK_SIZE + 3]) + (data + bytes(BLOCK_SIZE))[:BLOCK_SIZE]
    frame += bytes([checksum(frame)])
    reading = decode_block(parse_read_reply(frame, BLOCK_SIZE), 1)
    assert all(v is None or math.isfinite(v) for v in (reading.power_w, reading.voltage_v, reading.current_a))
