"""Tests for berth.host.fs on real files: private directories, syncfs, atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from berth.errors import FailedPrecondition
from berth.host import fs


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_private_dir_creates_with_the_mode(tmp_path: Path) -> None:
    d = tmp_path / "a" / "root"
    fs.private_dir(str(d), 0o710)
    assert d.is_dir() and _mode(d) == 0o710


def test_private_dir_tightens_a_wider_one_and_keeps_a_narrower_one(tmp_path: Path) -> None:
    wide, narrow = tmp_path / "wide", tmp_path / "narrow"
    wide.mkdir()
    os.chmod(wide, 0o1777)
    narrow.mkdir()
    os.chmod(narrow, 0o700)
    fs.private_dir(str(wide), 0o710)
    fs.private_dir(str(narrow), 0o710)
    assert _mode(wide) == 0o710 and _mode(narrow) == 0o700


def test_private_dir_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.chmod(target, 0o755)
    link = tmp_path / "root"
    link.symlink_to(target)
    with pytest.raises(FailedPrecondition, match="symlink"):
        fs.private_dir(str(link), 0o700)
    assert _mode(target) == 0o755  # not followed


def test_private_dir_refuses_a_file(tmp_path: Path) -> None:
    f = tmp_path / "root"
    f.write_text("x")
    with pytest.raises(FailedPrecondition):
        fs.private_dir(str(f), 0o700)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_private_dir_refuses_one_owned_by_someone_else(tmp_path: Path) -> None:
    d = tmp_path / "root"
    d.mkdir()
    os.chown(d, 65534, 65534)
    with pytest.raises(FailedPrecondition, match="owned by uid 65534"):
        fs.private_dir(str(d), 0o700)


def test_syncfs_on_a_directory_and_a_missing_one(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 4096)
    fs.syncfs(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        fs.syncfs(str(tmp_path / "missing"))


def test_atomic_write(tmp_path: Path) -> None:
    p = tmp_path / "f"
    fs.atomic_write(str(p), b"one", 0o600)
    fs.atomic_write(str(p), b"two", 0o600)
    assert p.read_bytes() == b"two" and _mode(p) == 0o600
    assert os.listdir(tmp_path) == ["f"]
