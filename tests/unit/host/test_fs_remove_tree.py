"""berth.host.fs.remove_tree: a tree nested deeper than shutil.rmtree's recursion still goes (a container makes one)."""

from __future__ import annotations

import asyncio
import os
import subprocess

from berth.host import fs


def _nest(top, levels: int) -> None:
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
    finally:
        os.close(fd)


def test_a_deep_tree_is_removed(tmp_path):
    top = tmp_path / "ctr"
    top.mkdir()
    _nest(top, 3000)
    asyncio.run(fs.remove_tree(str(top)))
    assert not top.exists()


def test_a_plain_tree_and_a_missing_one(tmp_path):
    top = tmp_path / "ctr"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "f").write_text("x")
    asyncio.run(fs.remove_tree(str(top)))
    assert not top.exists()
    asyncio.run(fs.remove_tree(str(top)))  # nothing there: nothing to do


def test_a_symlink_below_is_removed_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host file")
    top = tmp_path / "ctr"
    top.mkdir()
    (top / "link").symlink_to(outside)
    (top / "dir").mkdir()
    (top / "dir" / "up").symlink_to("../../outside/keep")
    fs.rmtree(str(top))
    assert not top.exists()
    assert (outside / "keep").read_text() == "host file"


def test_the_path_itself_a_symlink_is_unlinked_not_entered(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host file")
    link = tmp_path / "ctr"
    link.symlink_to(outside)
    fs.rmtree(str(link))
    assert not link.is_symlink()
    assert (outside / "keep").read_text() == "host file"


def test_a_file_path_is_unlinked(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    fs.rmtree(str(f))
    assert not f.exists()


def test_a_mount_below_is_left_in_place(tmp_path):
    top = tmp_path / "ctr"
    mnt = top / "mnt"
    mnt.mkdir(parents=True)
    (top / "other").write_text("x")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "precious").write_text("still here")
        fs.rmtree(str(top))
        assert (mnt / "precious").read_text() == "still here"
        assert not (top / "other").exists()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    fs.rmtree(str(top))
    assert not top.exists()


def test_atomic_write_without_fsync_still_replaces_whole(tmp_path):
    target = tmp_path / "hosts"
    target.write_text("old\n")
    fs.atomic_write(str(target), b"new\n", durable=False)
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["hosts"]  # no temporary file left beside it
