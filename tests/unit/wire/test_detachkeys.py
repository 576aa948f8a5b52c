"""wire.detachkeys: the spelling, and the sequence found across reads."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.wire import detachkeys


@pytest.mark.parametrize("spec, keys", [
    ("", b"\x10\x11"), (None, b"\x10\x11"), ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-p", b"\x10"),
    ("ctrl-x", b"\x18"), ("a,ctrl-@,ctrl-[,ctrl-_", b"a\x00\x1b\x1f"), ("ctrl-P", b"\x10"),
])
def test_parse(spec, keys) -> None:
    assert detachkeys.parse(spec) == keys


@pytest.mark.parametrize("spec", ["ctrl-", "ctrl-1", "ab", "ctrl-pq", ",", "é"])
def test_parse_refuses(spec) -> None:
    with pytest.raises(InvalidArgument, match="invalid detach keys"):
        detachkeys.parse(spec)


def _run(keys: bytes, chunks: list[bytes]) -> tuple[bytes, bool]:
    d = detachkeys.Detector(keys)
    out = b"".join(d.feed(c) for c in chunks)
    if not d.detached:
        out += d.flush()
    return out, d.detached


@pytest.mark.parametrize("chunks, passed, detached", [
    ([b"\x10", b"\x11"], b"", True),                      # typed one key at a time (docker-py's test)
    ([b"abc\x10\x11def"], b"abc", True),                  # in one read: what came before goes on
    ([b"ab\x10", b"x\x10", b"\x11"], b"ab\x10x", True),   # a lone ctrl-p is passed on once it is not the sequence
    ([b"\x10", b"\x10", b"\x11"], b"\x10", True),
    ([b"hello", b"\x10"], b"hello\x10", False),           # held, then flushed at the end
    ([b"\x11\x10"], b"\x11\x10", False),
])
def test_detector(chunks, passed, detached) -> None:
    assert _run(b"\x10\x11", chunks) == (passed, detached)


def test_detector_byte_at_a_time_matches_whole() -> None:
    data = b"x\x10y\x10\x10\x11tail"
    assert _run(b"\x10\x11", [bytes([b]) for b in data]) == _run(b"\x10\x11", [data]) == (b"x\x10y\x10", True)


def test_single_key_and_none() -> None:
    assert _run(b"\x10", [b"ab", b"\x10", b"zz"]) == (b"ab", True)
    assert _run(b"", [b"\x10\x11"]) == (b"\x10\x11", False)
