"""Tests for berth.image.archiveextract: malicious tars refused, benign links and compression
accepted."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.image.archiveextract import extract_archive


@dataclass
class E:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""


def tar_of(*entries: E, compress: bool = False) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.kind
            info.linkname = e.linkname
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            if e.kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            tar.addfile(info, io.BytesIO(e.data) if e.kind == tarfile.REGTYPE else None)
    data = buf.getvalue()
    return io.BytesIO(gzip.compress(data) if compress else data)


def sym(name: str, target: str) -> E:
    return E(name, tarfile.SYMTYPE, linkname=target)


def hard(name: str, target: str) -> E:
    return E(name, tarfile.LNKTYPE, linkname=target)


EVIL = {
    "dotdot": ([E("../evil", data=b"x")], "leaves the archive"),
    "dotdot-inside": ([E("a/../../evil", data=b"x")], "leaves the archive"),
    "absolute": ([E("/tmp/evil", data=b"x")], "absolute path"),
    "symlink-absolute": ([sym("l", "/etc")], "absolute path"),
    "symlink-dotdot": ([sym("d/l", "../../x")], "points outside"),
    "symlink-chain": ([sym("d/x", ".."), sym("d/c", "x/../..")], "resolves outside"),
    "write-through-symlink": ([E("sub", tarfile.DIRTYPE), sym("l", "sub"), E("l/f", data=b"x")], "a symlink"),
    "hardlink-dotdot": ([hard("h", "../sentinel")], "leaves the archive"),
    "hardlink-absolute": ([hard("h", "/etc/passwd")], "absolute path"),
    "hardlink-missing": ([hard("h", "nothing")], "not \\(yet\\) in the archive"),
    "hardlink-through-symlink": ([sym("l", "."), E("f", data=b"x"), hard("h", "l/f")], "a symlink"),
    "device": ([E("dev/null", tarfile.CHRTYPE)], "character device"),
    "fifo": ([E("p", tarfile.FIFOTYPE)], "fifo"),
    "dir-then-file": ([E("d", tarfile.DIRTYPE), E("d", data=b"x")], "both a directory and a file"),
}


@pytest.mark.parametrize("case", sorted(EVIL))
def test_malicious_archives_are_refused(tmp_path: Path, case: str) -> None:
    entries, message = EVIL[case]
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "sentinel").write_bytes(b"untouched")
    before = sorted(os.listdir(sandbox))
    with pytest.raises(InvalidArgument, match=message):
        extract_archive(tar_of(*entries), sandbox / "root")
    assert sorted(os.listdir(sandbox)) == sorted(before + ["root"])
    assert (sandbox / "sentinel").read_bytes() == b"untouched"
    assert not (tmp_path / "evil").exists()


def test_benign_links_and_compression_are_accepted(tmp_path: Path) -> None:
    stream = tar_of(E("a/f", data=b"data"), sym("b/l", "../a/f"), hard("c", "a/f"), sym("dot", "."),
                    E("a/f2", data=b"replaced-later"), E("a/f2", data=b"final"), compress=True)
    assert extract_archive(stream, tmp_path / "r") == 4 + 14 + 5
    assert (tmp_path / "r" / "b" / "l").read_bytes() == b"data"
    assert (tmp_path / "r" / "c").stat().st_ino == (tmp_path / "r" / "a" / "f").stat().st_ino
    assert (tmp_path / "r" / "a" / "f2").read_bytes() == b"final"


def test_not_a_tar_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        extract_archive(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"zstd is not read" * 100), tmp_path / "r")
