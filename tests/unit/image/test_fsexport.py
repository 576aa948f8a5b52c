"""Tests for berth.image.fsexport.iter_tree_tar: real trees in temp dirs (as root), read back
with tarfile, GNU tar and berth's own apply_layer."""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from berth.errors import NotFound
from berth.image import fsexport
from berth.image.archive import apply_layer
from berth.image.fsexport import coalesce, iter_tree_tar

MTIME = 1_600_000_000
LONG = "d" * 60 + "/" + "f" * 120


def make_tree(root: Path, outside: Path) -> None:
    """A tree holding one of everything export must handle."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_bytes(b"box\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 16)
    os.chmod(root / "bin" / "tool", 0o4755)
    os.link(root / "bin" / "tool", root / "bin" / "tool-again")
    os.symlink("/etc/shadow", root / "abs-link")           # must stay a link, never be read
    os.symlink(str(outside), root / "outside-dir")          # a link to a directory outside: not walked
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(root / "dev" / "null", 0o666)
    os.mknod(root / "dev" / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    os.mkfifo(root / "fifo", 0o600)
    (root / "owned").write_bytes(b"o")
    os.chown(root / "owned", 123456, 4321)
    os.setxattr(root / "owned", "user.note", b"hello\xff")
    os.setxattr(root / "owned", "trusted.overlay.origin", b"x")  # overlayfs' own: left out
    (root / Path(LONG).parent).mkdir()
    (root / LONG).write_bytes(b"long")
    (root / "big").write_bytes(os.urandom(3 << 20) + b"end")
    with open(os.path.join(os.fsencode(root), b"latin-\xe9"), "wb") as f:
        f.write(b"not utf-8 name")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    sock.close()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    make_tree(tmp_path / "root", outside)
    return tmp_path / "root"


def export(root: Path) -> bytes:
    return b"".join(iter_tree_tar(root))


def test_members_keep_types_modes_ids_links_and_xattrs(tree: Path) -> None:
    data = export(tree)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("big").read().endswith(b"end")  # type: ignore[union-attr]
    assert "." not in members and "./" not in members and "sock" not in members
    assert "outside-dir/secret" not in members
    assert members["etc"].isdir()
    assert members["abs-link"].issym() and members["abs-link"].linkname == "/etc/shadow"
    assert members["outside-dir"].issym()
    tool, again = members["bin/tool"], members["bin/tool-again"]
    assert tool.isreg() and tool.mode == 0o4755
    assert again.islnk() and again.linkname == "bin/tool"
    null = members["dev/null"]
    assert null.ischr() and (null.devmajor, null.devminor, null.mode) == (1, 3, 0o666)
    loop = members["dev/loop9"]
    assert loop.isblk() and (loop.devmajor, loop.devminor) == (7, 9)
    assert members["fifo"].isfifo()
    owned = members["owned"]
    assert (owned.uid, owned.gid, owned.uname, owned.gname) == (123456, 4321, "", "")
    assert owned.pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") == b"hello\xff"
    assert not any("overlay" in k for m in members.values() for k in m.pax_headers)
    assert members[LONG].size == 4
    assert all(m.mtime == MTIME for m in members.values())
    assert os.fsdecode(b"latin-\xe9") in members


def test_order_is_sorted_with_parents_first(tree: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(export(tree))) as tar:
        names = tar.getnames()
    assert names.index("bin") < names.index("bin/tool") < names.index("bin/tool-again")
    top = [n for n in names if "/" not in n]
    assert top == sorted(top)
    assert export(tree) == export(tree)


def test_chunks_are_bounded(tree: Path) -> None:
    sizes = [len(c) for c in iter_tree_tar(tree)]
    assert max(sizes) <= 2 << 20
    assert sum(sizes) % 512 == 0


def test_gnu_tar_reads_it(tree: Path, tmp_path: Path) -> None:
    archive = tmp_path / "export.tar"
    archive.write_bytes(export(tree))
    listing = subprocess.run(["tar", "-tvf", str(archive)], capture_output=True, check=True).stdout
    assert b"bin/tool-again link to bin/tool" in listing
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "-xpf", str(archive), "-C", str(out), "--xattrs", "--xattrs-include=user.*"],
                   check=True, capture_output=True)
    assert (out / "big").read_bytes() == (tree / "big").read_bytes()
    assert os.getxattr(out / "owned", "user.note") == b"hello\xff"


def test_round_trip_through_apply_layer(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    apply_layer(io.BytesIO(export(tree)), str(out))

    def snapshot(root: Path) -> dict[str, tuple]:
        found = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                if stat.S_ISSOCK(st.st_mode):
                    continue
                content = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else \
                    os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
                found[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev,
                                                   int(st.st_mtime), st.st_nlink, content)
        return found

    assert snapshot(out) == snapshot(tree)


def test_missing_root_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="not a directory"):
        iter_tree_tar(tmp_path / "nope")


def test_files_that_vanish_after_listing_are_left_out(tmp_path: Path) -> None:
    root = tmp_path / "live"
    root.mkdir()
    (root / "gone").write_bytes(b"x")
    (root / "kept").write_bytes(b"y")
    writer = fsexport.TarWriter()
    chunks: list[bytes] = []
    for e in fsexport.walk(root):  # an Entry's path is valid while the walk holds its directory
        if e.name == "gone":
            os.unlink(root / "gone")
        chunks += writer.entry(e)
    data = b"".join(chunks) + fsexport.END_OF_ARCHIVE
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["kept"]


@pytest.mark.parametrize("announced, on_disk, expected", [
    (4, b"12345678", b"1234"),            # grew while read: cut to the header's size
    (10, b"012", b"012" + b"\0" * 7),     # shrank: zero-filled
])
def test_file_member_sends_exactly_the_announced_size(tmp_path: Path, announced: int, on_disk: bytes,
                                                      expected: bytes) -> None:
    path = tmp_path / "f"
    path.write_bytes(on_disk)
    info = tarfile.TarInfo("f")
    info.size = announced
    fd = os.open(path, os.O_RDONLY)
    try:
        data = b"".join(fsexport.file_member(info, fd)) + fsexport.END_OF_ARCHIVE
    finally:
        os.close(fd)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.extractfile("f").read() == expected  # type: ignore[union-attr]


def test_coalesce_regroups_without_losing_bytes() -> None:
    pieces = [b"a" * n for n in (1, 0, 5, 700, 3, 2000, 1, 1)]
    out = list(coalesce(pieces, 1000))
    assert b"".join(out) == b"".join(pieces)
    assert all(len(c) >= 1000 for c in out[:-1])


def test_directory_swapped_for_a_symlink_mid_walk_exports_no_host_file(tmp_path: Path) -> None:
    """The container swaps a directory for a symlink to a host directory after the walk listed it."""
    root, host = tmp_path / "live", tmp_path / "host"
    (root / "d").mkdir(parents=True)
    (root / "d" / "mine").write_bytes(b"mine")
    host.mkdir()
    (host / "secret").write_bytes(b"HOST SECRET")
    writer = fsexport.TarWriter()
    chunks: list[bytes] = []
    for e in fsexport.walk(root):
        if e.name == "d":
            os.rename(root / "d", root / "d.old")
            os.symlink(str(host), root / "d")
        chunks += writer.entry(e)
    data = b"".join(chunks) + fsexport.END_OF_ARCHIVE
    assert b"HOST SECRET" not in data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert not any(n.startswith("d/") and "secret" in n for n in tar.getnames())


def test_file_swapped_for_a_device_or_symlink_mid_walk_is_left_out(tmp_path: Path) -> None:
    """A regular file listed, then replaced by a device node or a symlink to a host file before it is read."""
    root, host = tmp_path / "live", tmp_path / "host"
    root.mkdir()
    host.mkdir()
    (host / "secret").write_bytes(b"HOST SECRET")
    for name in ("dev", "link"):
        (root / name).write_bytes(b"mine")
    writer = fsexport.TarWriter()
    chunks: list[bytes] = []
    for e in fsexport.walk(root):
        os.unlink(root / e.name)
        if e.name == "dev":
            os.mknod(root / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: never opened
        else:
            os.symlink(str(host / "secret"), root / "link")
        chunks += writer.entry(e)
    data = b"".join(chunks) + fsexport.END_OF_ARCHIVE
    assert b"HOST SECRET" not in data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == []
