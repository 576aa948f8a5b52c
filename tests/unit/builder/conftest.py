"""Trees and archives shared by the builder's unit tests.

A build context (`src`), an overlay-style image (`image`), the passwd and
group files that image holds, and small writers for files and tars. The
helpers are importable as ``from berth_builder_conftest import ...``
(pytest runs with --import-mode=importlib, so ``conftest`` itself is not on
sys.path).
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tarfile
from pathlib import Path

import pytest

from berth.builder.imagetree import ImageTree
from berth.builder.sources import find_sources

MTIME = 1_600_000_000

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
bob:x:1000:1001:Bob:/home/bob:/bin/sh
daemon:x:2:2::/:/usr/sbin/nologin
"""
GROUP = """root:x:0:
staff:x:50:bob
bobs:x:1001:
"""


def write(root: Path, rel: str, data: bytes = b"", mode: int = 0o644) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, (MTIME, MTIME))
    return path


def names(root: Path, patterns: list[str]) -> list[str]:
    return [os.path.relpath(p, root) for p in find_sources(root, patterns)]


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, body in members:
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    buf.seek(0)
    return buf


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 1_500_000
    return info


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A build context:

        a.txt (0644 "A")   b.txt (0600 "B")   run.sh (0755)   .hidden
        dir/x.txt  dir/sub/y.txt (0640)  dir/link -> x.txt  dir/abs -> /etc/passwd
        weird[1].txt   star*.txt
        toplink -> dir/x.txt   abslink -> /dir   outlink -> ../../../etc
    """
    root = tmp_path / "ctx"
    root.mkdir()
    write(root, "a.txt", b"A")
    write(root, "b.txt", b"B", 0o600)
    write(root, "run.sh", b"#!/bin/sh\n", 0o755)
    write(root, ".hidden", b"H")
    write(root, "dir/x.txt", b"X")
    write(root, "dir/sub/y.txt", b"Y", 0o640)
    os.symlink("x.txt", root / "dir/link")
    os.symlink("/etc/passwd", root / "dir/abs")
    write(root, "weird[1].txt", b"W")
    write(root, "star*.txt", b"S")
    os.symlink("dir/x.txt", root / "toplink")
    os.symlink("/dir", root / "abslink")
    os.symlink("../../../etc", root / "outlink")
    os.utime(root / "dir/sub", (MTIME, MTIME))
    os.utime(root / "dir", (MTIME, MTIME))
    return root


@pytest.fixture
def image(tmp_path: Path) -> ImageTree:
    """Two overlay-style layers:

        lower: bin -> usr/bin, usr/bin/sh, etc/ (0700, 0:0), etc/passwd, opt/old, gone/f
        upper: usr/local (0775, 7:7), opt/ (opaque), opt/new, gone (whiteout), etc/ (0710, 5:5), etc/hosts
    """
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in (lower / "usr/bin", lower / "etc", lower / "opt", lower / "gone", upper / "usr/local", upper / "opt",
              upper / "etc"):
        d.mkdir(parents=True)
    os.symlink("usr/bin", lower / "bin")
    write(lower, "usr/bin/sh", b"sh", 0o755)
    os.chmod(lower / "etc", 0o700)
    write(lower, "etc/passwd", PASSWD.encode())
    write(lower, "opt/old", b"old")
    write(lower, "gone/f", b"f")
    os.chown(upper / "etc", 5, 5)
    os.chmod(upper / "etc", 0o710)
    os.chown(upper / "usr/local", 7, 7)
    os.chmod(upper / "usr/local", 0o775)
    os.setxattr(upper / "opt", "trusted.overlay.opaque", b"y")
    write(upper, "opt/new", b"new")
    os.mknod(upper / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    write(upper, "etc/hosts", b"h")
    return ImageTree([upper, lower])


sys.modules.setdefault("berth_builder_conftest", sys.modules[__name__])
