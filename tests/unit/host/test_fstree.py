"""berth.host.fstree against real hostile trees in temp dirs (as root), with openat2 and with the
userspace walk. Nothing here may block: FIFOs are opened only by the code under test, with a timeout
guard (SIGALRM) around each test that touches one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from berth_host_conftest import canary

from berth.errors import FileTooLarge, InvalidArgument, NotRegularFile, SymlinkLoop
from berth.host import fstree, openat2
from berth.host.fstree import Root

pytestmark = pytest.mark.usefixtures("no_hang")

MODES = [pytest.param(True, id="openat2"), pytest.param(False, id="fallback")]


@pytest.fixture(params=MODES)
def use_openat2(request: pytest.FixtureRequest) -> bool:
    if request.param and not openat2.openat2_available():
        pytest.skip("this kernel has no openat2")
    return bool(request.param)


# --------------------------------------------------------------------------- #
# read_regular


def test_read_plain_file(tree: Path, use_openat2: bool) -> None:
    with Root(tree, use_openat2=use_openat2) as r:
        assert r.openat2 is use_openat2
        assert fstree.read_regular(r, "/etc/passwd", 1024) == b"root:x:0:0:root:/root:/bin/sh\n"
        assert fstree.read_regular(r, "etc/passwd", 1024) is not None


def test_missing_file_and_parent_are_none(tree: Path, use_openat2: bool) -> None:
    (tree / "file").write_text("x")
    with Root(tree, use_openat2=use_openat2) as r:
        assert fstree.read_regular(r, "/etc/group", 1024) is None
        assert fstree.read_regular(r, "/nope/passwd", 1024) is None
        assert fstree.read_regular(r, "/file/passwd", 1024) is None   # a file in the middle


@pytest.mark.parametrize("target", ["ABS", "../../host/canary", "../../../../../../../../{host}/canary",
                                    "/../../../{host}/canary"])
def test_symlink_escapes_resolve_inside(tree: Path, use_openat2: bool, target: str) -> None:
    host = tree.parent / "host"
    target = str(host / "canary") if target == "ABS" else target.format(host=str(host).lstrip("/"))
    os.unlink(tree / "etc" / "passwd")
    os.symlink(target, tree / "etc" / "passwd")
    with Root(tree, use_openat2=use_openat2) as r:
        assert fstree.read_regular(r, "/etc/passwd", 1024) is None   # nothing there inside the root
    # The same target re-created inside the root is what the link names.
    inside = tree / str(host / "canary").lstrip("/")
    inside.parent.mkdir(parents=True)
    inside.write_text("inside\n")
    with Root(tree, use_openat2=use_openat2) as r:
        got = fstree.read_regular(r, "/etc/passwd", 1024)
    if target.startswith("../../host"):
        assert got is None  # ../.. stops at the root: /host/canary, not the host's
    else:
        assert got == b"inside\n"
    assert canary(tree).read_text() == "HOST SECRET\n"


def test_symlinked_parent_directory_stays_inside(tree: Path, use_openat2: bool) -> None:
    os.rename(tree / "etc", tree / "real-etc")
    os.symlink(str(tree.parent / "host"), tree / "etc")   # absolute host path
    with Root(tree, use_openat2=use_openat2) as r:
        assert fstree.read_regular(r, "/etc/canary", 1024) is None
    os.unlink(tree / "etc")
    os.symlink("real-etc", tree / "etc")                  # a relative link inside works
    with Root(tree, use_openat2=use_openat2) as r:
        assert fstree.read_regular(r, "/etc/passwd", 1024) is not None


def test_symlink_loop_is_eloop(tree: Path, use_openat2: bool) -> None:
    os.symlink("b", tree / "a")
    os.symlink("a", tree / "b")
    os.unlink(tree / "etc" / "passwd")
    os.symlink("/etc/passwd", tree / "etc" / "passwd")
    with Root(tree, use_openat2=use_openat2) as r:
        with pytest.raises(SymlinkLoop, match="too many levels"):
            fstree.read_regular(r, "/a", 1024)
        with pytest.raises(SymlinkLoop):
            fstree.read_regular(r, "/etc/passwd", 1024)


def test_long_chain_under_the_limit(tree: Path, use_openat2: bool) -> None:
    os.symlink("/etc/passwd", tree / "l0")
    for i in range(1, 30):
        os.symlink(f"l{i - 1}", tree / f"l{i}")
    with Root(tree, use_openat2=use_openat2) as r:
        assert fstree.read_regular(r, "/l29", 1024) is not None


def test_fifo_is_refused_without_blocking(tree: Path, use_openat2: bool) -> None:
    os.mkfifo(tree / "fifo")
    os.unlink(tree / "etc" / "passwd")
    os.symlink("/fifo", tree / "etc" / "passwd")
    with Root(tree, use_openat2=use_openat2) as r:
        with pytest.raises(NotRegularFile, match=r"^/etc/passwd is not a regular file \(a FIFO\)"):
            fstree.read_regular(r, "/etc/passwd", 1024)


def test_devices_are_refused(tree: Path, use_openat2: bool) -> None:
    os.mknod(tree / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    os.mknod(tree / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.symlink("/dev/zero", tree / "etc" / "group")  # /dev/zero does not exist inside: missing
    with Root(tree, use_openat2=use_openat2) as r:
        with pytest.raises(NotRegularFile, match="character device"):
            fstree.read_regular(r, "/zero", 1 << 20)
        with pytest.raises(NotRegularFile, match="block device"):
            fstree.read_regular(r, "/blk", 1 << 20)
        assert fstree.read_regular(r, "/etc/group", 1024) is None


def test_socket_and_directory_are_refused(tree: Path, use_openat2: bool) -> None:
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tree / "sock"))
    try:
        with Root(tree, use_openat2=use_openat2) as r:
            with pytest.raises(NotRegularFile, match="socket"):
                fstree.read_regular(r, "/sock", 1024)
            with pytest.raises(NotRegularFile, match="^/etc is not a regular file"):
                fstree.read_regular(r, "/etc", 1024)
    finally:
        s.close()


def test_size_limit(tree: Path, use_openat2: bool) -> None:
    (tree / "big").write_bytes(b"x" * 5000)
    with Root(tree, use_openat2=use_openat2) as r:
        assert len(fstree.read_regular(r, "/big", 5000) or b"") == 5000
        with pytest.raises(FileTooLarge, match="/big is larger than 4999 bytes"):
            fstree.read_regular(r, "/big", 4999)


def test_errors_are_invalid_argument() -> None:
    for cls in (NotRegularFile, FileTooLarge, SymlinkLoop):
        assert issubclass(cls, InvalidArgument)


# --------------------------------------------------------------------------- #
# write_file, mkdirs, open_dir


@pytest.mark.parametrize("link", ["ABS", "../../host/canary", "/../../host/canary"])
def test_write_replaces_a_planted_symlink(tree: Path, use_openat2: bool, link: str) -> None:
    target = str(canary(tree)) if link == "ABS" else link
    os.symlink(target, tree / "etc" / "hosts")
    with Root(tree, use_openat2=use_openat2) as r:
        fstree.write_file(r, "/etc/hosts", b"127.0.0.1 localhost\n", 0o644)
    assert canary(tree).read_text() == "HOST SECRET\n"
    assert not (tree / "etc" / "hosts").is_symlink()
    assert (tree / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert stat.S_IMODE(os.stat(tree / "etc" / "hosts").st_mode) == 0o644
    assert [n for n in os.listdir(tree / "etc") if n.startswith(".berth-tmp")] == []


def test_write_through_symlinked_parent_stays_inside(tree: Path, use_openat2: bool) -> None:
    os.rename(tree / "etc", tree / "real-etc")
    os.symlink(str(tree.parent / "host"), tree / "etc")
    with Root(tree, use_openat2=use_openat2) as r:
        fstree.write_file(r, "/etc/canary", b"overwritten\n")
    assert canary(tree).read_text() == "HOST SECRET\n"
    assert (tree / str(tree.parent / "host" / "canary").lstrip("/")).read_text() == "overwritten\n"


def test_write_makes_missing_parents(tree: Path, use_openat2: bool) -> None:
    old = os.umask(0o077)
    try:
        _write_makes_missing_parents(tree, use_openat2)
    finally:
        os.umask(old)


def _write_makes_missing_parents(tree: Path, use_openat2: bool) -> None:
    with Root(tree, use_openat2=use_openat2) as r:
        fstree.write_file(r, "/a/b/c/file", b"x", 0o600)
        fd = fstree.mkdirs(r, "/x/y")
        os.close(fd)
    assert (tree / "a" / "b" / "c" / "file").read_bytes() == b"x"
    assert stat.S_IMODE(os.stat(tree / "a" / "b").st_mode) == 0o755
    assert (tree / "x" / "y").is_dir()


def test_write_over_empty_directory_and_refuses_full_one(tree: Path, use_openat2: bool) -> None:
    (tree / "etc" / "hostname").mkdir()
    (tree / "etc" / "resolv.conf").mkdir()
    (tree / "etc" / "resolv.conf" / "keep").write_text("k")
    with Root(tree, use_openat2=use_openat2) as r:
        fstree.write_file(r, "/etc/hostname", b"box\n")
        with pytest.raises(NotRegularFile, match="/etc/resolv.conf is not a regular file"):
            fstree.write_file(r, "/etc/resolv.conf", b"nameserver 1.1.1.1\n")
    assert (tree / "etc" / "hostname").read_text() == "box\n"
    assert [n for n in os.listdir(tree / "etc") if n.startswith(".berth-tmp")] == []


def test_write_under_a_file_is_refused(tree: Path, use_openat2: bool) -> None:
    with Root(tree, use_openat2=use_openat2) as r:
        with pytest.raises(InvalidArgument, match="/etc/passwd is not a directory"):
            fstree.write_file(r, "/etc/passwd/x", b"")
        with pytest.raises(InvalidArgument):
            fstree.write_file(r, "/", b"")


def test_mkdirs_through_dangling_link_stays_inside(tree: Path, use_openat2: bool) -> None:
    os.symlink(str(tree.parent / "host" / "newdir"), tree / "mnt")
    with Root(tree, use_openat2=use_openat2) as r:
        try:
            os.close(fstree.mkdirs(r, "/mnt/data"))
        except InvalidArgument:
            pass
    assert not (tree.parent / "host" / "newdir").exists()


def test_open_dir_and_kind(tree: Path, use_openat2: bool) -> None:
    os.symlink("/", tree / "up")
    with Root(tree, use_openat2=use_openat2) as r:
        assert fstree.open_dir(r, "/nothing") is None
        with pytest.raises(InvalidArgument, match="/etc/passwd is not a directory"):
            fstree.open_dir(r, "/etc/passwd")
        fd = fstree.open_dir(r, "/up/etc")
        assert fd is not None
        try:
            assert "passwd" in os.listdir(fd)
        finally:
            os.close(fd)
        assert fstree.kind(r, "/etc") == "dir"
        assert fstree.kind(r, "/etc/passwd") == "file"
        assert fstree.kind(r, "/nothing") == "missing"
        st = fstree.lstat(r, "/up")
        assert st is not None and stat.S_ISLNK(st.st_mode)
