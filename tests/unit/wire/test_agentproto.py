from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from berth.errors import InvalidArgument
from berth.wire import agentproto as ap

EXEC = ap.Exec(("sh", "-c", "echo hi"), ("PATH=/bin", "A=b=c"), "/tmp", 1000, 1000, True, "/mnt/rootfs", 24, 80)

# (frame bytes, type, id, payload decoder or None, decoded value) -- one table for both directions
CASES: list[tuple[bytes, ap.T, int, Callable[[bytes], Any] | None, Any]] = [
    (ap.encode_mount(1, ap.Mount("rootfs", "/mnt/rootfs")), ap.T.MOUNT, 1, ap.decode_mount,
     ap.Mount("rootfs", "/mnt/rootfs", True)),
    (ap.encode_mount(2, ap.Mount("data", "/data", False)), ap.T.MOUNT, 2, ap.decode_mount,
     ap.Mount("data", "/data", False)),
    (ap.encode_mount(3, ap.Mount("rootfs", "/mnt/rootfs", True, True)), ap.T.MOUNT, 3, ap.decode_mount,
     ap.Mount("rootfs", "/mnt/rootfs", True, True)),
    (ap.encode_netconf(4, ap.NetConf("02:42:ac:11:00:02", "172.17.0.2/16", "172.17.0.1")), ap.T.NETCONF, 4,
     ap.decode_netconf, ap.NetConf("02:42:ac:11:00:02", "172.17.0.2/16", "172.17.0.1")),
    (ap.encode_netconf(5, ap.NetConf("02:42:ac:11:00:02", "10.1.0.2/24")), ap.T.NETCONF, 5,
     ap.decode_netconf, ap.NetConf("02:42:ac:11:00:02", "10.1.0.2/24", "")),
    (ap.encode_exec(7, EXEC), ap.T.EXEC, 7, ap.decode_exec, EXEC),
    (ap.exec_frame(8, ["true"]), ap.T.EXEC, 8, ap.decode_exec, ap.Exec(("true",))),
    (ap.encode_stdin(7, b"input\n")[0], ap.T.STDIN, 7, None, b"input\n"),
    (ap.encode_stdin_eof(7), ap.T.STDIN_EOF, 7, None, b""),
    (ap.encode_signal(7, 15), ap.T.SIGNAL, 7, ap.decode_signal, 15),
    (ap.encode_resize(7, 50, 132), ap.T.RESIZE, 7, ap.decode_resize, (50, 132)),
    (ap.encode_settime(3, 1_700_000_000_123_456_789), ap.T.SETTIME, 3, ap.decode_settime,
     1_700_000_000_123_456_789),
    (ap.encode_rngseed(4, b"\x00\xff" * 32), ap.T.RNGSEED, 4, None, b"\x00\xff" * 32),
    (ap.encode_shutdown(), ap.T.SHUTDOWN, 0, None, b""),
    (ap.encode_ready("6.1.0-56-amd64"), ap.T.READY, 0, ap.decode_ready, "6.1.0-56-amd64"),
    (ap.encode_started(7, 42), ap.T.STARTED, 7, ap.decode_started, 42),
    (ap.encode_output(ap.T.STDOUT, 7, b"out")[0], ap.T.STDOUT, 7, None, b"out"),
    (ap.encode_output(ap.T.STDERR, 7, b"err")[0], ap.T.STDERR, 7, None, b"err"),
    (ap.encode_exit(7, 137), ap.T.EXIT, 7, ap.decode_exit, 137),
    (ap.encode_exit(7, -1), ap.T.EXIT, 7, ap.decode_exit, -1),
    (ap.encode_error(7, "exec nope: No such file"), ap.T.ERROR, 7, ap.decode_error, "exec nope: No such file"),
    (ap.encode_ok(3), ap.T.OK, 3, None, b""),
]


def _check(frame: ap.Frame, type_: ap.T, id_: int, decode: Callable[[bytes], Any] | None, value: Any) -> None:
    assert (frame.type, frame.id) == (type_, id_)
    assert (decode(frame.payload) if decode else frame.payload) == value


@pytest.mark.parametrize("raw,type_,id_,decode,value", CASES)
def test_header_layout(raw: bytes, type_: ap.T, id_: int, decode: Any, value: Any) -> None:
    length, t, i = struct.unpack(">IBI", raw[:9])
    assert (length, t, i) == (len(raw) - 9, int(type_), id_)


@pytest.mark.parametrize("raw,type_,id_,decode,value", CASES)
def test_decode_whole(raw: bytes, type_: ap.T, id_: int, decode: Any, value: Any) -> None:
    dec = ap.Decoder()
    frames = dec.feed(raw)
    assert len(frames) == 1 and dec.pending == 0
    _check(frames[0], type_, id_, decode, value)


def test_decode_one_byte_at_a_time_all_cases() -> None:
    stream = b"".join(c[0] for c in CASES)
    dec = ap.Decoder()
    got: list[ap.Frame] = []
    for i in range(len(stream)):
        got += dec.feed(stream[i:i + 1])
    assert len(got) == len(CASES) and dec.pending == 0
    for frame, (_, type_, id_, decode, value) in zip(got, CASES):
        _check(frame, type_, id_, decode, value)


def test_golden_bytes() -> None:
    assert ap.encode_signal(0x01020304, 9) == b"\x00\x00\x00\x04\x05\x01\x02\x03\x04\x00\x00\x00\x09"
    assert ap.encode_mount(1, ap.Mount("r", "/m")) == (
        b"\x00\x00\x00\x0f\x01\x00\x00\x00\x01" b"\x00\x00\x00\x01" b"\x00\x00\x00\x01r" b"\x00\x00\x00\x02/m")


def test_large_data_is_split_at_the_cap() -> None:
    data = bytes(range(256)) * 600  # 153600 bytes
    frames = ap.encode_stdin(5, data)
    assert [len(f) - ap.HEADER_LEN for f in frames] == [ap.MAX_PAYLOAD, ap.MAX_PAYLOAD, len(data) - 2 * ap.MAX_PAYLOAD]
    got = ap.Decoder().feed(b"".join(frames))
    assert b"".join(f.payload for f in got) == data
    assert ap.encode_stdin(5, b"") == []


def test_refusals() -> None:
    with pytest.raises(InvalidArgument):
        ap.frame(ap.T.STDOUT, 1, b"x" * (ap.MAX_PAYLOAD + 1))
    with pytest.raises(InvalidArgument):
        ap.encode_exec(1, ap.Exec(()))
    with pytest.raises(InvalidArgument):
        ap.encode_exec(1, ap.Exec(("x",), ("NOEQUALS",)))
    with pytest.raises(InvalidArgument):
        ap.encode_mount(1, ap.Mount("tag", "relative"))
    with pytest.raises(InvalidArgument):
        ap.encode_signal(1, 0)
    with pytest.raises(InvalidArgument):
        ap.encode_resize(1, 70000, 1)
    with pytest.raises(InvalidArgument):
        ap.encode_output(ap.T.EXIT, 1, b"x")


def test_decoder_rejects_oversized_and_unknown_frames() -> None:
    with pytest.raises(InvalidArgument, match="exceeds"):
        ap.Decoder().feed(struct.pack(">IBI", ap.MAX_PAYLOAD + 1, int(ap.T.STDOUT), 1))
    with pytest.raises(InvalidArgument, match="unknown"):
        ap.Decoder().feed(struct.pack(">IBI", 0, 0x7F, 1))


def test_truncated_and_trailing_payloads() -> None:
    with pytest.raises(InvalidArgument, match="truncated"):
        ap.decode_exec(ap.encode_exec(1, EXEC)[ap.HEADER_LEN:-1])
    with pytest.raises(InvalidArgument, match="trailing"):
        ap.decode_exit(b"\x00\x00\x00\x01\x00")


@pytest.mark.parametrize("conf", [
    ap.NetConf("02:42:ac:11:00", "10.0.0.2/24"),         # short MAC
    ap.NetConf("02:42:ac:11:00:02", "10.0.0.2"),          # no prefix
    ap.NetConf("02:42:ac:11:00:02", "10.0.0.2/33"),
    ap.NetConf("02:42:ac:11:00:02", "fd00::2/64"),        # the guest card is IPv4 only
    ap.NetConf("02:42:ac:11:00:02", "10.0.0.2/24", "nope"),
])
def test_netconf_refuses_what_the_agent_could_not_apply(conf: ap.NetConf) -> None:
    with pytest.raises(InvalidArgument):
        ap.encode_netconf(1, conf)
