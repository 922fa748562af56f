"""The store's chunk encoding, written without numpy, against hand-computed bytes and numpy's own encoding
(the one the files written before used): the on-disk format did not change."""

import zlib

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mltelemetry.store import decode_chunk, encode_chunk


def numpy_encode_chunk(ts_ns: np.ndarray, values: np.ndarray) -> bytes:
    """The encoding as the store wrote it with numpy up to 0.2.0."""
    def shuffle(array: np.ndarray) -> bytes:
        return array.view(np.uint8).reshape(-1, 8).T.tobytes()

    deltas = np.diff(ts_ns.astype("<i8"), prepend=ts_ns[0])
    return zlib.compress(shuffle(deltas) + shuffle(values.astype("<f8")), 6)


def test_two_samples_by_hand():
    # deltas [0, 3] as little-endian int64: 00*8 | 03 00*7; shuffled, byte 0 of each first: 00 03, then 14 zeros.
    # 1.0 = 0x3FF0000000000000 (LE: 00*6 F0 3F), 2.0 = 0x4000000000000000 (LE: 00*7 40); shuffled: bytes 0..5
    # of both are 12 zeros, byte 6: F0 00, byte 7: 3F 40.
    raw = zlib.decompress(encode_chunk([10, 13], [1.0, 2.0]))
    assert raw == b"\x00\x03" + b"\x00" * 14 + b"\x00" * 12 + b"\xf0\x00" + b"\x3f\x40"
    ts, values = decode_chunk(encode_chunk([10, 13], [1.0, 2.0]), 10, 2)
    assert ts.tolist() == [10, 13] and values.tolist() == [1.0, 2.0]


int64 = st.integers(-(2**63), 2**63 - 1)


@given(st.lists(st.tuples(int64, st.floats(allow_nan=False, width=64)), min_size=1, max_size=700))
def test_same_bytes_as_numpy(samples):
    ts = [t for t, _ in samples]
    values = [v for _, v in samples]
    # deltas past int64 (timestamps near both ends) wrap as numpy's do, so even those bytes are the same
    with np.errstate(over="ignore"):
        expected = numpy_encode_chunk(np.array(ts, np.int64), np.array(values, np.float64))
    assert encode_chunk(ts, values) == expected
    assert encode_chunk(np.array(ts, np.int64), np.array(values)) == expected  # numpy arrays still do
    decoded_ts, decoded_values = decode_chunk(expected, ts[0], len(ts))
    assert decoded_values.tobytes() == np.array(values, np.float64).tobytes()  # -0.0 stays -0.0
    with np.errstate(over="ignore"):
        assert decoded_ts.tolist() == ts
