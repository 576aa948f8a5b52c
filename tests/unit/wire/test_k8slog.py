"""Tests for berth.wire.k8slog: conmon's k8s-file log lines."""

from __future__ import annotations

import pytest

from berth import timefmt
from berth.wire.k8slog import Entry, Parser

T1 = "2024-01-02T03:04:05.123456789+00:00"
T1_NS = 1_704_164_645_123_456_789
T2 = "2024-01-02T04:04:06.000000001+01:00"   # 03:04:06.000000001Z
T2_NS = 1_704_164_646_000_000_001

LOG = (
    f"{T1} stdout F hello world\n"
    f"{T1} stderr F oops\n"
    f"{T2} stdout P part one, \n"
    f"{T2} stdout P part two, \n"
    f"{T2} stdout F end\n"
    f"{T2} stdout F \n"
    f"{T2} stderr F   leading and trailing spaces  \n"
).encode()

EXPECTED = [
    Entry("stdout", b"hello world\n", T1_NS),
    Entry("stderr", b"oops\n", T1_NS),
    Entry("stdout", b"part one, ", T2_NS),
    Entry("stdout", b"part two, ", T2_NS),
    Entry("stdout", b"end\n", T2_NS),
    Entry("stdout", b"\n", T2_NS),
    Entry("stderr", b"  leading and trailing spaces  \n", T2_NS),
]


def test_whole_log() -> None:
    assert Parser().feed(LOG) == EXPECTED


def test_one_byte_at_a_time_gives_the_same_entries() -> None:
    p = Parser()
    got: list[Entry] = []
    for i in range(len(LOG)):
        got.extend(p.feed(LOG[i:i + 1]))
    assert got == EXPECTED


@pytest.mark.parametrize("size", [2, 3, 7, 13, 64])
def test_any_split_gives_the_same_entries(size: int) -> None:
    p = Parser()
    got: list[Entry] = []
    for i in range(0, len(LOG), size):
        got.extend(p.feed(LOG[i:i + size]))
    assert got == EXPECTED


def test_incomplete_line_waits_for_its_newline() -> None:
    p = Parser()
    assert p.feed(f"{T1} stdout F no newline yet".encode()) == []
    assert p.feed(b"") == []
    assert p.feed(b" - now\n") == [Entry("stdout", b"no newline yet - now\n", T1_NS)]


def test_p_pieces_join_into_the_line() -> None:
    entries = Parser().feed(LOG)
    assert b"".join(e.data for e in entries[2:5]) == b"part one, part two, end\n"


def test_empty_f_line_is_a_newline() -> None:
    # conmon writes "F " then nothing for an empty line; accept the bare "F" too.
    p = Parser()
    assert p.feed(f"{T1} stdout F \n{T1} stderr F\n".encode()) == [
        Entry("stdout", b"\n", T1_NS), Entry("stderr", b"\n", T1_NS)]


def test_binary_and_utf8_text_kept_as_bytes() -> None:
    raw = "héllo ✓".encode() + b"\xff\x00\x01"
    line = f"{T1} stdout F ".encode() + raw + b"\n"
    assert Parser().feed(line) == [Entry("stdout", raw + b"\n", T1_NS)]


def test_carriage_return_kept() -> None:
    line = f"{T1} stdout F progress 50%\r\n".encode()
    assert Parser().feed(line)[0].data == b"progress 50%\r\n"


def test_time_agrees_with_timefmt() -> None:
    (entry,) = Parser().feed(f"{T2} stdout F x\n".encode())
    assert timefmt.format_ns(entry.time_ns) == "2024-01-02T03:04:06.000000001Z"


@pytest.mark.parametrize("bad", [
    b"garbage\n",
    b"\n",
    b"not-a-time stdout F text\n",
    f"{T1}\n".encode(),
    f"{T1} stdout\n".encode(),
    b"2024-01-02 03:04:05 stdout F text\n",
])
def test_bad_lines_are_skipped(bad: bytes) -> None:
    good = f"{T1} stdout F ok\n".encode()
    assert Parser().feed(good + bad + good) == [Entry("stdout", b"ok\n", T1_NS)] * 2


@pytest.mark.parametrize("bad", [
    f"{T1} bogus F text\n".encode(),
    f"{T1} stdout X text\n".encode(),
    f"{T1} \xff F text\n".encode("latin-1"),
])
def test_lines_with_bad_stream_or_tag_are_skipped(bad: bytes) -> None:
    good = f"{T1} stdout F ok\n".encode()
    assert Parser().feed(good + bad + good) == [Entry("stdout", b"ok\n", T1_NS)] * 2


def test_parsers_are_independent() -> None:
    a, b = Parser(), Parser()
    a.feed(f"{T1} stdout F half".encode())
    assert b.feed(f"{T1} stderr F other\n".encode()) == [Entry("stderr", b"other\n", T1_NS)]
    assert a.feed(b"\n") == [Entry("stdout", b"half\n", T1_NS)]


# ---- bounds and tail ------------------------------------------------------------------------

from berth.wire import k8slog  # noqa: E402


def test_a_record_longer_than_the_bound_is_dropped_not_buffered() -> None:
    p = Parser()
    assert p.feed(f"{T1} stdout F ".encode()) == []
    for _ in range(3):
        assert p.feed(b"x" * (k8slog.MAX_RECORD // 2)) == []
    assert len(p._buf) <= k8slog.MAX_RECORD
    assert p.feed(b"still the long one\n" + f"{T1} stdout F after\n".encode()) == [
        Entry("stdout", b"after\n", T1_NS)]


def _lines(n: int, stream: str = "stdout") -> bytes:
    return b"".join(f"{T1} {stream} F line {i}\n".encode() for i in range(n))


def _tail(data: bytes, n: int, block: int, wanted=lambda e: True) -> int:  # type: ignore[no-untyped-def]
    old = k8slog.BLOCK
    k8slog.BLOCK = block
    try:
        return k8slog.tail_start(lambda off, size: data[off:off + size], len(data), n, wanted)
    finally:
        k8slog.BLOCK = old


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("n", [0, 1, 3, 10, 11, 50])
def test_tail_start_matches_the_last_n_records(block: int, n: int) -> None:
    data = _lines(10) + f"{T1} stdout F unfinished".encode()
    start = _tail(data, n, block)
    got = Parser().feed(data[start:])
    assert [e.data for e in got] == [e.data for e in Parser().feed(data)][max(0, 10 - n):] if n else got == []


@pytest.mark.parametrize("block", [5, 4096])
def test_tail_start_counts_only_wanted_records(block: int) -> None:
    data = b"".join(_lines(1, "stdout") + _lines(1, "stderr") for _ in range(6))
    start = _tail(data, 2, block, lambda e: e.stream == "stderr")
    got = Parser().feed(data[start:])
    assert [e.stream for e in got if e.stream == "stderr"] == ["stderr", "stderr"]
    assert got[0].stream == "stderr"


def test_tail_start_skips_an_overlong_record() -> None:
    data = _lines(2) + f"{T1} stdout F ".encode() + b"y" * (k8slog.MAX_RECORD + 10) + b"\n" + _lines(1)
    start = _tail(data, 2, 4096)
    got = Parser().feed(data[start:])
    assert [e.data for e in got] == [b"line 1\n", b"line 0\n"]
