"""berth.host.fstree against real hostile trees in temp dirs (as root), with openat2 and with the
userspace walk. Nothing here may block: FIFOs are opened only by the code under test, with a timeout
guard (SIGALRM) around each test that touches one."""

from __future__ import annotations

import os
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.errors import FileTooLarge, InvalidArgument, NotRegularFile, SymlinkLoop
from berth.host import fstree
from berth.host.fstree import Root

MODES = [pytest.param(True, id="openat2"), pytest.param(False, id="fallback")]


@pytest.fixture(params=MODES)
def use_openat2(request: pytest.FixtureRequest) -> bool:
    if request.param and not fstree.openat2_available():
        pytest.skip("this kernel has no openat2")
    return bool(request.param)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A container root beside a host directory holding a canary."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    host = tmp_path / "host"
    host.mkdir()
    (host / "canary").write_text("HOST SECRET\n")
    return root


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    def boom(*_: object) -> None:
        raise TimeoutError("fstree blocked")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def canary(tree: Path) -> Path:
    return tree.parent / "host" / "canary"


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


# --------------------------------------------------------------------------- #
# walk


def test_walk_lists_without_following(tree: Path) -> None:
    os.symlink(str(tree.parent / "host"), tree / "hostdir")
    (tree / "etc" / "sub").mkdir()
    (tree / "etc" / "sub" / "f").write_text("f")
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = [e.name for e in fstree.walk(fd)]
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
        for e in fstree.walk(fd):
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
        for e in fstree.walk(fd):
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
                for e in fstree.walk(fd):
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


# --------------------------------------------------------------------------- #
# Creating entries at a directory descriptor (the tar extractors)


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
        os.close(fstree.open_beneath(fd, ["a", "b"], create=True, mode=0o750))
        assert (top / "a" / "b").is_dir() and (top / "a" / "b").stat().st_mode & 0o777 == 0o750
        with pytest.raises(fstree.NotADirectoryBelow) as info:
            fstree.open_beneath(fd, ["link", "sub"], create=True)
        assert (info.value.part, info.value.what) == ("link", "a symlink")
        with pytest.raises(fstree.NotADirectoryBelow, match="not a directory"):
            fstree.open_beneath(fd, ["file", "x"], create=True)
        with pytest.raises(FileNotFoundError):
            fstree.open_beneath(fd, ["missing"])
        with pytest.raises(InvalidArgument):
            fstree.open_beneath(fd, [".."])
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
            fstree.create_file_at(fd, "f")
        with pytest.raises(FileExistsError):
            fstree.mkdir_at(fd, "d")
        assert fstree.mkdir_at(fd, "real") is True and fstree.mkdir_at(fd, "real") is False
        # Attributes of a symlink are its own: the target keeps its owner, mode and times.
        before = (outside / "sub").stat()
        fstree.set_attrs_at(fd, "d", fstree.Attrs(1234, 1234, 0o777, 42.0))
        after = (outside / "sub").stat()
        assert (after.st_mode, after.st_uid, after.st_mtime) == (before.st_mode, before.st_uid, before.st_mtime)
        assert os.lstat(top / "d").st_uid == 1234 and os.lstat(top / "d").st_mtime == 42.0
        # remove_at removes the link, not what it points at; a directory goes with its content.
        fstree.remove_at(fd, "d")
        (top / "real" / "x").write_text("x")
        fstree.remove_at(fd, "real")
        assert sorted(os.listdir(top)) == ["f"]
        assert sorted(os.listdir(outside)) == ["secret", "sub"]
        fstree.remove_at(fd, "f")
        out = fstree.create_file_at(fd, "f")
        try:
            with open(__file__, "rb") as src:
                n = fstree.copy_stream(out, src, 100)
            fstree.set_attrs_fd(out, fstree.Attrs(0, 0, 0o640, 7.0, (("user.k", b"v"),)))
        finally:
            os.close(out)
        assert (top / "f").stat().st_size == n and (top / "f").stat().st_mode & 0o777 == 0o640
        fstree.symlink_at(fd, "l", "/etc/passwd")
        fstree.mknod_at(fd, "p", stat.S_IFIFO | 0o600)
        fstree.link_at(fd, "f", fd, "h")
        assert os.readlink(top / "l") == "/etc/passwd" and stat.S_ISFIFO(os.lstat(top / "p").st_mode)
        assert os.path.samefile(top / "f", top / "h")
    finally:
        os.close(fd)
    assert (outside / "secret").read_text() == "host"


def test_pax_xattrs():
    assert fstree.pax_xattrs({"SCHILY.xattr.user.a": "b", "path": "x"}) == (("user.a", b"b"),)
