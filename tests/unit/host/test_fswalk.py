"""berth.host.fswalk against real trees in temp dirs (as root) that change while they are walked:
directories swapped for symlinks to the host, files for FIFOs and devices. Nothing here may block
(a SIGALRM guard around each test)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from berth_host_conftest import canary

from berth.host import fswalk

pytestmark = pytest.mark.usefixtures("no_hang")


def test_walk_lists_without_following(tree: Path) -> None:
    os.symlink(str(tree.parent / "host"), tree / "hostdir")
    (tree / "etc" / "sub").mkdir()
    (tree / "etc" / "sub" / "f").write_text("f")
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = [e.name for e in fswalk.walk(fd)]
    finally:
        os.close(fd)
    assert names == ["etc", "etc/passwd", "etc/sub", "etc/sub/f", "hostdir"]


def test_walk_never_descends_a_directory_swapped_for_a_symlink(tree: Path) -> None:
    """Swap etc/sub for a symlink to the host after it is listed and before it is descended."""
    (tree / "etc" / "sub").mkdir()
    (tree / "etc" / "sub" / "f").write_text("f")
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    seen = []
    try:
        for e in fswalk.walk(fd):
            seen.append(e.name)
            if e.name == "etc/sub":
                os.rename(tree / "etc" / "sub", tree / "moved")
                os.symlink(str(tree.parent / "host"), tree / "etc" / "sub")
    finally:
        os.close(fd)
    assert "etc/sub/canary" not in seen and "etc/sub/f" not in seen


def test_walk_entry_open_checks_kind(tree: Path) -> None:
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for e in fswalk.walk(fd):
            if e.name == "etc/passwd":
                os.unlink(tree / "etc" / "passwd")
                os.symlink(str(canary(tree)), tree / "etc" / "passwd")
                assert e.open() is None          # now a symlink: O_NOFOLLOW refuses it
                os.unlink(tree / "etc" / "passwd")
                os.mkfifo(tree / "etc" / "passwd")
                assert e.open() is None          # now a FIFO: opened without blocking, refused
                os.unlink(tree / "etc" / "passwd")
                os.mknod(tree / "etc" / "passwd", stat.S_IFCHR | 0o600, os.makedev(1, 5))
                assert e.open() is None          # now a device: pinned and fstat'ed, never opened
                os.unlink(tree / "etc" / "passwd")
                (tree / "etc" / "passwd").write_text("again")
                f = e.open()
                assert f is not None
                try:
                    assert os.read(f, 10) == b"again"
                finally:
                    os.close(f)
    finally:
        os.close(fd)


def test_walk_race_in_a_loop(tree: Path) -> None:
    """A thread swaps a directory and a symlink to the host back and forth while we walk many times."""
    host = tree.parent / "host"
    for i in range(50):
        (host / f"h{i}").write_text("host")
    (tree / "d").mkdir()
    (tree / "d" / "inside").write_text("i")
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            try:
                os.rename(tree / "d", tree / "d.real")
                os.symlink(str(host), tree / "d")
                os.unlink(tree / "d")
                os.rename(tree / "d.real", tree / "d")
            except OSError:
                pass

    t = threading.Thread(target=swapper)
    t.start()
    try:
        for _ in range(200):
            fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for e in fswalk.walk(fd):
                    assert not e.name.startswith(("d/h", "d.real/h")), e.name
                    if stat.S_ISREG(e.st.st_mode):
                        f = e.open()
                        if f is not None:
                            try:
                                assert os.read(f, 100) != b"host"
                            finally:
                                os.close(f)
            finally:
                os.close(fd)
    finally:
        stop.set()
        t.join()
