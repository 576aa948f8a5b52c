from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.wire import stdcopy

# (stream, payload, encoded frame) -- drives both encode and decode
CASES = [
    (stdcopy.STDOUT, b"hi\n", b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"),
    (stdcopy.STDERR, b"err", b"\x02\x00\x00\x00\x00\x00\x00\x03err"),
    (stdcopy.STDIN, b"", b"\x00\x00\x00\x00\x00\x00\x00\x00"),
    (stdcopy.SYSTEMERR, b"boom", b"\x03\x00\x00\x00\x00\x00\x00\x04boom"),
    (stdcopy.STDOUT, b"x" * 300, b"\x01\x00\x00\x00\x00\x00\x01\x2c" + b"x" * 300),
    (stdcopy.STDOUT, bytes(range(256)), b"\x01\x00\x00\x00\x00\x00\x01\x00" + bytes(range(256))),
]


@pytest.mark.parametrize("stream,payload,frame", CASES)
def test_encode(stream: int, payload: bytes, frame: bytes) -> None:
    assert stdcopy.encode(stream, payload) == frame
    assert stdcopy.encode_header(stream, len(payload)) == frame[:8]


@pytest.mark.parametrize("stream,payload,frame", CASES)
def test_decode_whole(stream: int, payload: bytes, frame: bytes) -> None:
    dec = stdcopy.Decoder()
    dec.feed(frame)
    assert list(dec) == [(stream, payload)]
    assert dec.pending == 0
    dec.close()


def test_decode_one_byte_at_a_time_all_cases() -> None:
    stream_bytes = b"".join(frame for _, _, frame in CASES)
    dec = stdcopy.Decoder()
    got = []
    for i in range(len(stream_bytes)):
        dec.feed(stream_bytes[i:i + 1])
        got.extend(dec)
    assert got == [(s, p) for s, p, _ in CASES]
    assert dec.pending == 0


def test_partial_frame_waits_and_close_complains() -> None:
    dec = stdcopy.Decoder()
    dec.feed(b"\x01\x00\x00\x00\x00\x00\x00\x05abc")
    assert list(dec) == []
    assert dec.pending == 11
    with pytest.raises(InvalidArgument):
        dec.close()


@pytest.mark.parametrize("header", [
    b"\x04\x00\x00\x00\x00\x00\x00\x00",  # unknown stream
    b"\x01\x00\x01\x00\x00\x00\x00\x00",  # non-zero padding
])
def test_malformed_header(header: bytes) -> None:
    dec = stdcopy.Decoder()
    dec.feed(header)
    with pytest.raises(InvalidArgument):
        list(dec)


def test_encode_rejects_bad_stream() -> None:
    with pytest.raises(InvalidArgument):
        stdcopy.encode(7, b"x")
