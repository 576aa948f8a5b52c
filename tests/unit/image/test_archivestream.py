"""Tests for berth.image.archivestream: forward-only streams for tarfile, and the gzip reader."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zlib

import pytest

from berth.image.archivestream import Forward, Gunzip, open_tar
from berth.testing.tars import files_tar as tar_of


class Trickle(io.RawIOBase):
    """A stream that hands out at most *step* bytes per read (a pipe, a socket)."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._data, self._step, self.reads = data, step, []

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and size >= 0, "unbounded read"
        self.reads.append(size)
        n = min(size, self._step)
        out, self._data = self._data[:n], self._data[n:]
        return out




# --------------------------------------------------------------------------- Forward


def test_forward_reads_full_sizes_from_short_reads() -> None:
    f = Forward(Trickle(b"abcdefghijklmnopqrstuvwxyz"))  # type: ignore[arg-type]
    assert f.peek(3) == b"abc"
    assert f.tell() == 0
    assert f.read(20) == b"abcdefghijklmnopqrst"
    assert f.tell() == 20
    assert f.read(20) == b"uvwxyz"  # short only at the end
    assert f.read(5) == b""


def test_forward_seeks_forward_by_reading_and_refuses_backward() -> None:
    f = Forward(io.BytesIO(bytes(range(100))))
    assert f.seek(10) == 10
    assert f.read(2) == bytes([10, 11])
    assert f.seek(5, io.SEEK_CUR) == 17
    assert f.read(1) == bytes([17])
    with pytest.raises(tarfile.StreamError):
        f.seek(3)
    assert f.seek(1000) == 100  # past the end: stops there; the next read finds nothing
    assert f.read(1) == b""


def test_forward_never_reads_unbounded() -> None:
    with pytest.raises(io.UnsupportedOperation):
        Forward(io.BytesIO(b"x")).read()


# --------------------------------------------------------------------------- Gunzip


@pytest.mark.parametrize("size", [0, 1, 5000, (1 << 20) + 17])
def test_gunzip_round_trip_in_bounded_reads(size: int) -> None:
    data = os.urandom(size // 2) + b"z" * (size - size // 2)
    g = Gunzip(io.BytesIO(gzip.compress(data)), chunk=4096)  # type: ignore[arg-type]
    out = []
    while chunk := g.read(1000):
        assert len(chunk) <= 1000
        out.append(chunk)
    assert b"".join(out) == data


def test_gunzip_reads_concatenated_members_and_zero_padding() -> None:
    raw = gzip.compress(b"one ") + b"\0" * 700 + gzip.compress(b"two") + b"\0" * 3
    g = Gunzip(Trickle(raw, 5))  # type: ignore[arg-type]
    got = b""
    while chunk := g.read(3):
        got += chunk
    assert got == b"one two"


def test_gunzip_truncated_is_eof_error() -> None:
    raw = gzip.compress(os.urandom(10000))
    g = Gunzip(io.BytesIO(raw[:-9]))  # type: ignore[arg-type]
    with pytest.raises(EOFError):
        while g.read(1 << 16):
            pass


def test_gunzip_wrong_crc_is_bad_gzip() -> None:
    raw = bytearray(gzip.compress(b"hello world" * 100))
    raw[-8] ^= 0xFF  # the CRC
    g = Gunzip(io.BytesIO(bytes(raw)))  # type: ignore[arg-type]
    with pytest.raises(gzip.BadGzipFile):
        while g.read(1 << 16):
            pass


def test_gunzip_garbage_after_a_member_is_bad_gzip() -> None:
    g = Gunzip(io.BytesIO(gzip.compress(b"ok") + b"not gzip"))  # type: ignore[arg-type]
    with pytest.raises(gzip.BadGzipFile):
        while g.read(1 << 16):
            pass


def test_gunzip_matches_gzipfile_on_a_deflate_stream() -> None:
    data = os.urandom(3000) * 50
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    raw = co.compress(data) + co.flush()
    assert gzip.GzipFile(fileobj=io.BytesIO(raw)).read() == data
    g = Gunzip(io.BytesIO(raw))  # type: ignore[arg-type]
    assert b"".join(iter(lambda: g.read(65536), b"")) == data


# --------------------------------------------------------------------------- open_tar


@pytest.mark.parametrize("compress", [lambda b: b, gzip.compress, bz2.compress, lzma.compress])
def test_open_tar_sniffs_and_reads_members_in_order(compress) -> None:  # type: ignore[no-untyped-def]
    files = {"a": b"1" * 5000, "b/c": os.urandom(70000), "d": b""}
    source = Trickle(compress(tar_of(files)), 4096)
    with open_tar(source) as tar:  # type: ignore[arg-type]
        got = {}
        for member in tar:
            f = tar.extractfile(member)
            assert f is not None
            got[member.name] = f.read()
    assert got == files
    assert max(source.reads) <= 1 << 20  # every read bounded


def test_open_tar_skips_unread_members() -> None:
    files = {"skip": os.urandom(100000), "keep": b"kept"}
    with open_tar(io.BytesIO(gzip.compress(tar_of(files)))) as tar:
        names = []
        for member in tar:
            names.append(member.name)
            if member.name == "keep":
                f = tar.extractfile(member)
                assert f is not None and f.read() == b"kept"
    assert names == ["skip", "keep"]


@pytest.mark.parametrize("raw", [b"", b"not a tar at all" * 100, gzip.compress(b"not a tar" * 100)])
def test_open_tar_refuses_what_is_not_a_tar(raw: bytes) -> None:
    with pytest.raises(tarfile.TarError):
        with open_tar(io.BytesIO(raw)) as tar:
            list(tar)


def test_open_tar_truncated_gzip_is_a_tar_error() -> None:
    raw = gzip.compress(tar_of({"big": os.urandom(200000)}))
    with pytest.raises(tarfile.TarError):
        with open_tar(io.BytesIO(raw[: len(raw) // 2])) as tar:
            for member in tar:
                f = tar.extractfile(member)
                assert f is not None
                f.read()
