"""Tests for berth.image.archive.apply_layer: real extraction into temp dirs.

Every archive is built in memory with tarfile. The malicious cases extract into
<sandbox>/root beside <sandbox>/sentinel and check that the sentinel (and the
sandbox itself) are exactly as they were.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.image.archive import apply_layer

MTIME = 1_600_000_000


# --------------------------------------------------------------------------- #
# Building archives


@dataclass
class E:
    """One archive entry."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = MTIME
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)


def d(name: str, mode: int = 0o755, **kw) -> E:
    return E(name, tarfile.DIRTYPE, mode=mode, **kw)


def f(name: str, data: bytes = b"", mode: int = 0o644, **kw) -> E:
    return E(name, tarfile.REGTYPE, data=data, mode=mode, **kw)


def sym(name: str, target: str) -> E:
    return E(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hard(name: str, target: str) -> E:
    return E(name, tarfile.LNKTYPE, linkname=target)


def build(entries: list[E], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = e.kind
            ti.mode = e.mode
            ti.uid, ti.gid = e.uid, e.gid
            ti.mtime = e.mtime
            ti.linkname = e.linkname
            ti.devmajor, ti.devminor = e.devmajor, e.devminor
            ti.pax_headers = dict(e.pax)
            if e.kind == tarfile.REGTYPE:
                ti.size = len(e.data)
                tar.addfile(ti, io.BytesIO(e.data))
            else:
                tar.addfile(ti)
    raw = buf.getvalue()
    return gzip.compress(raw) if gz else raw


def apply(entries: list[E], root: Path, gz: bool = False) -> int:
    return apply_layer(io.BytesIO(build(entries, gz)), str(root))


# --------------------------------------------------------------------------- #
# Snapshots of a directory tree, to prove nothing outside the root changed


def snapshot(top: Path) -> dict[str, tuple]:
    """Every entry under *top* (and *top* itself), by lstat and content."""
    out: dict[str, tuple] = {}

    def one(p: Path) -> None:
        st = os.lstat(p)
        extra: object = None
        if stat.S_ISREG(st.st_mode):
            extra = hashlib.sha256(p.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(p)
        xattrs = tuple(sorted(os.listxattr(p, follow_symlinks=False)))
        out[str(p.relative_to(top.parent))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                               st.st_mtime_ns, st.st_nlink, extra, xattrs)

    one(top)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            one(Path(dirpath) / name)
    return out


@pytest.fixture
def sandbox(tmp_path: Path):
    """(root, sentinel): an empty target root and a populated sibling directory."""
    box = tmp_path / "sandbox"
    root = box / "root"
    sentinel = box / "sentinel"
    root.mkdir(parents=True)
    (sentinel / "sub").mkdir(parents=True)
    (sentinel / "file").write_bytes(b"keep me\n")
    (sentinel / "sub" / "inner").write_bytes(b"inner\n")
    os.chmod(sentinel, 0o700)
    os.utime(sentinel / "file", (1000, 1000))
    os.utime(sentinel, (2000, 2000))
    return root, sentinel


# --------------------------------------------------------------------------- #
# Ordinary content


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_regular_files_dirs_and_bytes_count(tmp_path: Path, gz: bool) -> None:
    root = tmp_path / "root"
    n = apply([d("etc"), f("etc/hostname", b"box\n"), f("bin/sh", b"\x7fELF" * 10, 0o755),
               f("empty")], root, gz=gz)
    assert n == 4 + 40
    assert (root / "etc/hostname").read_bytes() == b"box\n"
    assert (root / "bin/sh").read_bytes() == b"\x7fELF" * 10
    assert (root / "empty").read_bytes() == b""
    assert (root / "bin").is_dir()  # implicit parent created


def test_target_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "root"
    apply([f("x", b"1")], root)
    assert (root / "x").read_bytes() == b"1"


def test_dot_slash_names_are_normalised(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([d("./", mode=0o751), d("./usr/"), f("./usr//./lib", b"L")], root)
    assert (root / "usr/lib").read_bytes() == b"L"
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o751


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o755, 0o4755, 0o2755, 0o6711, 0o444, 0o000])
def test_file_modes_including_setuid(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "root"
    apply([f("f", b"x", mode=mode, uid=1000, gid=1000)], root)
    st = os.lstat(root / "f")
    assert stat.S_IMODE(st.st_mode) == mode  # chown must not clear setuid afterwards
    assert (st.st_uid, st.st_gid) == (1000, 1000)


@pytest.mark.parametrize("mode", [0o755, 0o1777, 0o700, 0o2775, 0o555])
def test_directory_modes_including_sticky(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "root"
    apply([d("dir", mode=mode, uid=12, gid=34), f("dir/inside", b"i")], root)
    st = os.lstat(root / "dir")
    assert stat.S_IMODE(st.st_mode) == mode
    assert (st.st_uid, st.st_gid) == (12, 34)
    assert (root / "dir/inside").read_bytes() == b"i"


def test_ownership_is_numeric(tmp_path: Path) -> None:
    # Names in the tar header (uname/gname) must not be looked up on the host.
    root = tmp_path / "root"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo("owned")
        ti.size = 1
        ti.uid, ti.gid = 4321, 8765
        ti.uname, ti.gname = "root", "root"
        tar.addfile(ti, io.BytesIO(b"o"))
    apply_layer(io.BytesIO(buf.getvalue()), str(root))
    st = os.lstat(root / "owned")
    assert (st.st_uid, st.st_gid) == (4321, 8765)


def test_mtimes_of_files_dirs_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([d("dir", mtime=111_111), f("dir/file", b"x", mtime=222_222), sym("dir/link", "file"),
           ], root)
    # The symlink gets the default mtime; set it explicitly for a second check.
    entries = [d("dir", mtime=111_111), f("dir/file", b"x", mtime=222_222),
               E("dir/link", tarfile.SYMTYPE, linkname="file", mtime=333_333)]
    root2 = tmp_path / "root2"
    apply(entries, root2)
    assert os.lstat(root2 / "dir/file").st_mtime == 222_222
    assert os.lstat(root2 / "dir/link").st_mtime == 333_333
    # The directory's time is applied after its content was written.
    assert os.lstat(root2 / "dir").st_mtime == 111_111
    assert os.lstat(root / "dir").st_mtime == 111_111


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/shadow", "file", "/", "..",
                                    "does/not/exist", "x" * 200, "sp ace"])
def test_symlink_targets_kept_verbatim_never_followed(tmp_path: Path, target: str) -> None:
    root = tmp_path / "root"
    apply([f("file", b"x"), sym("link", target)], root)
    assert os.readlink(root / "link") == target
    assert stat.S_ISLNK(os.lstat(root / "link").st_mode)


def test_symlink_ownership(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([E("l", tarfile.SYMTYPE, linkname="/nowhere", uid=7, gid=8)], root)
    st = os.lstat(root / "l")
    assert (st.st_uid, st.st_gid) == (7, 8)


def test_symlink_replaced_by_file_writes_no_further(sandbox) -> None:
    root, sentinel = sandbox
    before = snapshot(sentinel.parent / "sentinel")
    apply([sym("file", str(sentinel / "file")), f("file", b"replaced")], root)
    assert not os.path.islink(root / "file")
    assert (root / "file").read_bytes() == b"replaced"
    assert snapshot(sentinel) == before


def test_hard_links_inside_the_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([d("bin"), f("bin/busybox", b"BB", mode=0o755), hard("bin/sh", "bin/busybox"),
           hard("bin/ls", "./bin/busybox")], root)
    a, b, c = (os.lstat(root / p) for p in ("bin/busybox", "bin/sh", "bin/ls"))
    assert a.st_ino == b.st_ino == c.st_ino
    assert a.st_nlink == 3
    assert (root / "bin/sh").read_bytes() == b"BB"


def test_hard_link_to_a_symlink_links_the_symlink_itself(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([sym("s", "/etc/passwd"), hard("h", "s")], root)
    assert os.readlink(root / "h") == "/etc/passwd"
    assert os.lstat(root / "h").st_ino == os.lstat(root / "s").st_ino


def test_device_nodes_and_fifos(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([d("dev"),
           E("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
           E("dev/sda", tarfile.BLKTYPE, mode=0o660, devmajor=8, devminor=0, gid=6),
           E("dev/fifo", tarfile.FIFOTYPE, mode=0o620)], root)
    st = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    st = os.lstat(root / "dev/sda")
    assert stat.S_ISBLK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (8, 0)
    assert st.st_gid == 6
    st = os.lstat(root / "dev/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620


def test_xattrs_from_pax_headers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    binary = b"\x01\x00\x00\x02\xff\xfe".decode("utf-8", "surrogateescape")
    apply([d("dir", pax={"SCHILY.xattr.user.dirattr": "on-dir"}),
           f("dir/file", b"x", pax={"SCHILY.xattr.user.comment": "hello",
                                    "SCHILY.xattr.trusted.bin": binary}),
           f("plain", b"p", pax={"comment": "not an xattr"})], root)
    assert os.getxattr(root / "dir", "user.dirattr") == b"on-dir"
    assert os.getxattr(root / "dir/file", "user.comment") == b"hello"
    assert os.getxattr(root / "dir/file", "trusted.bin") == b"\x01\x00\x00\x02\xff\xfe"
    assert not [a for a in os.listxattr(root / "plain") if not a.startswith("security.")]


def test_whiteout_becomes_a_0_0_char_device(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([d("etc"), f("etc/.wh.motd"), f(".wh.toplevel")], root)
    for p in ("etc/motd", "toplevel"):
        st = os.lstat(root / p)
        assert stat.S_ISCHR(st.st_mode)
        assert st.st_rdev == os.makedev(0, 0)
    assert not os.path.lexists(root / "etc/.wh.motd")
    assert not os.path.lexists(root / ".wh.toplevel")


def test_whiteout_replaces_an_entry_of_the_same_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([d("gone"), f("gone/a", b"a"), f(".wh.gone")], root)
    st = os.lstat(root / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_opaque_whiteout_sets_the_overlay_xattr(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([d("var"), d("var/cache"), f("var/cache/.wh..wh..opq"), f("var/cache/new", b"n")], root)
    assert os.getxattr(root / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(root / "var/cache/.wh..wh..opq")
    assert os.listdir(root / "var/cache") == ["new"]
    with pytest.raises(OSError):
        os.getxattr(root / "var", "trusted.overlay.opaque")


def test_read_only_directory_still_gets_filled(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([d("ro", mode=0o555), f("ro/a", b"a"), d("ro/sub", mode=0o500), f("ro/sub/b", b"b"),
           hard("ro/c", "ro/a")], root)
    assert (root / "ro/sub/b").read_bytes() == b"b"
    assert stat.S_IMODE(os.lstat(root / "ro").st_mode) == 0o555
    assert stat.S_IMODE(os.lstat(root / "ro/sub").st_mode) == 0o500


def test_later_entry_replaces_earlier(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply([f("x", b"old"), f("x", b"new"), d("y"), f("y/z", b"z"), f("y", b"now a file"),
           f("w", b"file"), d("w")], root)
    assert (root / "x").read_bytes() == b"new"
    assert (root / "y").read_bytes() == b"now a file"
    assert (root / "w").is_dir()


def test_large_file_streams(tmp_path: Path) -> None:
    root = tmp_path / "root"
    # Incompressible and bigger than the 1 MiB copy chunk.
    data = os.urandom(5 * 1024 * 1024 + 123)
    n = apply([f("big", data)], root, gz=True)
    assert n == len(data)
    assert os.path.getsize(root / "big") == len(data)
    assert hashlib.sha256((root / "big").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_stream_is_read_once_not_seeked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    raw = build([f("a", b"1" * 5000), f("b", b"2")], gz=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        os.write(w, raw)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        apply_layer(pipe, str(root))
    os.waitpid(pid, 0)
    assert (root / "a").read_bytes() == b"1" * 5000


# --------------------------------------------------------------------------- #
# Malicious archives: InvalidArgument and nothing written outside the root


def _escape_cases(sentinel: Path) -> dict[str, list[E]]:
    return {
        "dotdot": [f("../escape", b"evil")],
        "dotdot-inside": [f("a/../../escape", b"evil")],
        "dotdot-into-sentinel": [f("../sentinel/file", b"evil")],
        "absolute": [f("/etc/evil-berth-test", b"evil")],
        "absolute-into-sentinel": [f(str(sentinel / "file"), b"evil")],
        "dir-dotdot": [d("../sentinel/newdir")],
        "symlink-abs-then-write": [sym("link", str(sentinel)), f("link/file", b"evil")],
        "symlink-abs-then-mkdir": [sym("link", str(sentinel)), d("link/newdir")],
        "symlink-abs-then-deep": [sym("link", str(sentinel)), f("link/sub/inner", b"evil")],
        "symlink-dotdot-then-write": [sym("up", ".."), f("up/sentinel/file", b"evil")],
        "symlink-dotdot-nested": [d("a"), sym("a/up", "../.."), f("a/up/sentinel/new", b"evil")],
        "symlink-then-whiteout": [sym("link", str(sentinel)), f("link/.wh.file")],
        "symlink-then-opaque": [sym("link", str(sentinel)), f("link/.wh..wh..opq")],
        "symlink-then-device": [sym("link", str(sentinel)),
                                E("link/dev", tarfile.CHRTYPE, devmajor=1, devminor=3)],
        "hardlink-dotdot": [hard("h", "../sentinel/file")],
        "hardlink-abs": [hard("h", "/etc/passwd")],
        "hardlink-abs-sentinel": [hard("h", str(sentinel / "file"))],
        "hardlink-through-symlink": [sym("link", str(sentinel)), hard("h", "link/file")],
        "hardlink-through-dotdot-symlink": [sym("up", ".."), hard("h", "up/sentinel/file")],
        "hardlink-name-through-symlink": [f("real", b"r"), sym("link", str(sentinel)),
                                          hard("link/h", "real")],
    }


ESCAPE_IDS = list(_escape_cases(Path("/x")).keys())


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", ESCAPE_IDS)
def test_escapes_are_refused(sandbox, case: str, gz: bool) -> None:
    root, sentinel = sandbox
    before = snapshot(sentinel)
    outside_before = sorted(os.listdir(sentinel.parent))
    entries = _escape_cases(sentinel)[case]
    assert not os.path.lexists("/etc/evil-berth-test")
    with pytest.raises(InvalidArgument):
        apply(entries, root, gz=gz)
    assert snapshot(sentinel) == before
    assert sorted(os.listdir(sentinel.parent)) == outside_before
    assert not os.path.lexists("/etc/evil-berth-test")
    assert not os.path.lexists(sentinel.parent / "escape")


@pytest.mark.parametrize("name", [".wh...", "a/.wh...", ".wh..", "a/.wh..", ".wh."])
def test_whiteout_naming_dotdot_is_refused(tmp_path: Path, name: str) -> None:
    # Nested one level deeper than `sandbox` so that whatever a buggy _remove
    # deletes stays inside tmp_path.
    box = tmp_path / "outer" / "box"
    root, sentinel = box / "root", box / "sentinel"
    root.mkdir(parents=True)
    sentinel.mkdir()
    (sentinel / "file").write_bytes(b"keep")
    (root / "pre-existing").write_bytes(b"from an earlier step")
    sentinel_before = snapshot(sentinel)
    entries = [d("a")] if name.startswith("a/") else []
    with pytest.raises(InvalidArgument):
        apply(entries + [f(name)], root)
    assert snapshot(sentinel) == sentinel_before
    assert (root / "pre-existing").read_bytes() == b"from an earlier step"


def test_directory_replaced_by_symlink_does_not_chmod_through_it(sandbox) -> None:
    root, sentinel = sandbox
    before = snapshot(sentinel)
    try:
        apply([d("d", mode=0o4777, mtime=12345), sym("d", str(sentinel / "file"))], root)
    except InvalidArgument:
        pass
    assert snapshot(sentinel) == before


def test_directory_replaced_by_symlink_to_a_dir_is_not_touched(sandbox) -> None:
    root, sentinel = sandbox
    before = snapshot(sentinel)
    try:
        apply([d("d", mode=0o777, uid=1234, mtime=12345), sym("d", str(sentinel))], root)
    except InvalidArgument:
        pass
    assert snapshot(sentinel) == before


def test_directory_whose_parent_became_a_symlink_is_not_touched(sandbox) -> None:
    root, sentinel = sandbox
    before = snapshot(sentinel)
    try:
        # sentinel/sub exists; a/sub is recorded as a directory, then a -> sentinel
        apply([d("a"), d("a/sub", mode=0o4777, uid=1234, mtime=12345), sym("a", str(sentinel))], root)
    except InvalidArgument:
        pass
    assert snapshot(sentinel) == before


def test_truncated_tar_is_refused(sandbox) -> None:
    root, sentinel = sandbox
    before = snapshot(sentinel)
    raw = build([f("a", os.urandom(20000)), f("b", b"b" * 700)])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        b = tar.getmember("b")
    # mid-header, mid-content of a, b's header without its content, half of b's content
    for cut in (100, 600, 5000, b.offset_data, b.offset_data + 300):
        with pytest.raises(InvalidArgument):
            apply_layer(io.BytesIO(raw[:cut]), str(root / str(cut)))
    assert snapshot(sentinel) == before


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    raw = build([f("a", os.urandom(50000))], gz=True)
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(raw[: len(raw) // 2]), str(tmp_path / "root"))


def test_corrupt_gzip_is_refused(tmp_path: Path) -> None:
    raw = bytearray(build([f("a", b"z" * 50000), f("b", b"b")], gz=True))
    for i in range(20, len(raw) - 10):
        raw[i] ^= 0x5A
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(bytes(raw)), str(tmp_path / "root"))


@pytest.mark.parametrize("raw", [b"", b"hello, world\n" * 100, b"\x00" * 10, b"PK\x03\x04" + b"\x01" * 600,
                                 gzip.compress(b"not a tar at all" * 50)],
                         ids=["empty", "text", "short-zeros", "zip", "gzip-of-text"])
def test_non_tar_stream_is_refused(tmp_path: Path, raw: bytes) -> None:
    root = tmp_path / "root"
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(raw), str(root))
    assert not root.exists() or os.listdir(root) == []
