"""berth.host.fsentries against real directories in temp dirs (as root): entries made by name at a
descriptor never follow a symlink planted at that name. Nothing here may block (a SIGALRM guard
around each test)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.host import fsentries

pytestmark = pytest.mark.usefixtures("no_hang")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    (d / "sub").mkdir(parents=True)
    os.chmod(d / "sub", 0o700)
    (d / "secret").write_text("host")
    return d


def _dir_fd(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def test_open_beneath_makes_directories_and_refuses_symlinks(tmp_path, outside):
    top = tmp_path / "top"
    top.mkdir()
    os.symlink(outside, top / "link")
    (top / "file").write_text("x")
    fd = _dir_fd(top)
    try:
        os.close(fsentries.open_beneath(fd, ["a", "b"], create=True, mode=0o750))
        assert (top / "a" / "b").is_dir() and (top / "a" / "b").stat().st_mode & 0o777 == 0o750
        with pytest.raises(fsentries.NotADirectoryBelow) as info:
            fsentries.open_beneath(fd, ["link", "sub"], create=True)
        assert (info.value.part, info.value.what) == ("link", "a symlink")
        with pytest.raises(fsentries.NotADirectoryBelow, match="not a directory"):
            fsentries.open_beneath(fd, ["file", "x"], create=True)
        with pytest.raises(FileNotFoundError):
            fsentries.open_beneath(fd, ["missing"])
        with pytest.raises(InvalidArgument):
            fsentries.open_beneath(fd, [".."])
    finally:
        os.close(fd)
    assert sorted(os.listdir(outside)) == ["secret", "sub"]


def test_entries_made_at_a_descriptor_never_follow_the_name(tmp_path, outside):
    top = tmp_path / "top"
    top.mkdir()
    os.symlink(outside / "secret", top / "f")
    os.symlink(outside / "sub", top / "d")
    fd = _dir_fd(top)
    try:
        with pytest.raises(FileExistsError):
            fsentries.create_file_at(fd, "f")
        with pytest.raises(FileExistsError):
            fsentries.mkdir_at(fd, "d")
        assert fsentries.mkdir_at(fd, "real") is True and fsentries.mkdir_at(fd, "real") is False
        # Attributes of a symlink are its own: the target keeps its owner, mode and times.
        before = (outside / "sub").stat()
        fsentries.set_attrs_at(fd, "d", fsentries.Attrs(1234, 1234, 0o777, 42.0))
        after = (outside / "sub").stat()
        assert (after.st_mode, after.st_uid, after.st_mtime) == (before.st_mode, before.st_uid, before.st_mtime)
        assert os.lstat(top / "d").st_uid == 1234 and os.lstat(top / "d").st_mtime == 42.0
        # remove_at removes the link, not what it points at; a directory goes with its content.
        fsentries.remove_at(fd, "d")
        (top / "real" / "x").write_text("x")
        fsentries.remove_at(fd, "real")
        assert sorted(os.listdir(top)) == ["f"]
        assert sorted(os.listdir(outside)) == ["secret", "sub"]
        fsentries.remove_at(fd, "f")
        out = fsentries.create_file_at(fd, "f")
        try:
            with open(__file__, "rb") as src:
                n = fsentries.copy_stream(out, src, 100)
            fsentries.set_attrs_fd(out, fsentries.Attrs(0, 0, 0o640, 7.0, (("user.k", b"v"),)))
        finally:
            os.close(out)
        assert (top / "f").stat().st_size == n and (top / "f").stat().st_mode & 0o777 == 0o640
        fsentries.symlink_at(fd, "l", "/etc/passwd")
        fsentries.mknod_at(fd, "p", stat.S_IFIFO | 0o600)
        fsentries.link_at(fd, "f", fd, "h")
        assert os.readlink(top / "l") == "/etc/passwd" and stat.S_ISFIFO(os.lstat(top / "p").st_mode)
        assert os.path.samefile(top / "f", top / "h")
    finally:
        os.close(fd)
    assert (outside / "secret").read_text() == "host"


def test_pax_xattrs():
    assert fsentries.pax_xattrs({"SCHILY.xattr.user.a": "b", "path": "x"}) == (("user.a", b"b"),)
