"""Tests for berth.builder.copyops (COPY/ADD into a layer).

Every test builds a real source tree and a real image (overlay-style lower
directories) under tmp_path, runs the operation into an empty layer directory,
and reads back what the layer holds: names, types, modes, owners, contents.
Tests run as root (berth's tests always do): they chown and mknod.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from berth_builder_conftest import GROUP, MTIME, PASSWD, names, write

from berth.builder.context import Context
from berth.builder.copyops import add_into, copy_into, dest_path
from berth.builder.imagetree import ImageTree
from berth.builder.owners import Owner, resolve_owner
from berth.builder.sources import find_sources
from berth.errors import InvalidArgument

# --------------------------------------------------------------------------- #
# Helpers


@dataclass(frozen=True)
class Seen:
    kind: str          # "f", "d", "l", "c", "p"
    mode: int
    uid: int
    gid: int
    data: bytes | str | None = None


def snapshot(root: Path) -> dict[str, Seen]:
    """Everything below *root*, by relative path."""
    out: dict[str, Seen] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = Seen("l", 0, st.st_uid, st.st_gid, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = Seen("d", mode, st.st_uid, st.st_gid)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = Seen("f", mode, st.st_uid, st.st_gid, Path(path).read_bytes())
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = Seen("c", mode, st.st_uid, st.st_gid)
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = Seen("p", mode, st.st_uid, st.st_gid)
    return out


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    path = tmp_path / "layer"
    path.mkdir()
    return path


def never_dir(path: str) -> bool:
    return False


def do_copy(layer: Path, root: Path, patterns: list[str], dest: str, *, workdir: str = "/",
            dest_is_dir: Callable[[str], bool] = never_dir, owner: Owner | None = None,
            chmod: int | None = None, image: ImageTree | None = None, add: bool = False) -> dict[str, Seen]:
    sources = find_sources(root, patterns, instruction="ADD" if add else "COPY")
    op = add_into if add else copy_into
    op(layer, sources, root, dest, workdir=workdir, dest_is_dir=dest_is_dir, owner=owner, chmod=chmod,
       image=image)
    return snapshot(layer)


# --------------------------------------------------------------------------- #
# Sources resolved in scope


def test_symlink_leaving_the_context_resolves_inside_it(src: Path, layer: Path) -> None:
    # outlink -> ../../../etc is read as /etc of the context, which does not exist
    with pytest.raises(InvalidArgument, match="stat outlink"):
        find_sources(src, ["outlink"])
    (src / "etc").mkdir()
    write(src, "etc/passwd", b"context's own")
    got = do_copy(layer, src, ["outlink"], "/o/")
    assert got["o/passwd"].data == b"context's own"


# --------------------------------------------------------------------------- #
# COPY rules


def test_file_to_file(src: Path, layer: Path) -> None:
    got = do_copy(layer, src, ["b.txt"], "/dst/new.txt")
    assert got == {"dst": Seen("d", 0o755, 0, 0), "dst/new.txt": Seen("f", 0o600, 0, 0, b"B")}
    assert os.lstat(layer / "dst/new.txt").st_mtime == MTIME


def test_file_to_dir_with_slash_and_dot(src: Path, layer: Path) -> None:
    got = do_copy(layer, src, ["a.txt"], "/dst/")
    assert got["dst/a.txt"].data == b"A"
    got = do_copy(layer, src, ["run.sh"], ".", workdir="/app")
    assert got["app/run.sh"] == Seen("f", 0o755, 0, 0, b"#!/bin/sh\n")


def test_relative_dest_is_taken_from_workdir(src: Path, layer: Path) -> None:
    got = do_copy(layer, src, ["a.txt"], "sub/a2", workdir="/srv/app")
    assert got["srv/app/sub/a2"].data == b"A"
    assert dest_path("x/", "/w") == ("/w/x", True)
    assert dest_path("../../..", "/w") == ("/", True)
    assert dest_path("/abs", "/w") == ("/abs", False)


def test_file_onto_existing_image_directory_goes_inside(src: Path, layer: Path) -> None:
    got = do_copy(layer, src, ["a.txt"], "/etc", dest_is_dir=lambda p: p == "/etc")
    assert got["etc/a.txt"].data == b"A"


def test_directory_copies_its_contents(src: Path, layer: Path) -> None:
    got = do_copy(layer, src, ["dir"], "/app")
    assert set(got) == {"app", "app/x.txt", "app/sub", "app/sub/y.txt", "app/link", "app/abs"}
    assert got["app/sub"] == Seen("d", 0o755, 0, 0)
    assert got["app/sub/y.txt"] == Seen("f", 0o640, 0, 0, b"Y")
    assert got["app/link"].data == "x.txt" and got["app/abs"].data == "/etc/passwd"
    assert os.lstat(layer / "app/sub").st_mtime == MTIME


def test_whole_context_to_root(src: Path, layer: Path) -> None:
    before = os.lstat(layer)
    got = do_copy(layer, src, ["."], "/")
    assert got["a.txt"].data == b"A" and got["dir/sub/y.txt"].data == b"Y" and got["toplink"].kind == "l"
    after = os.lstat(layer)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)


def test_several_sources_make_a_directory(src: Path, layer: Path) -> None:
    got = do_copy(layer, src, ["a.txt", "b.txt", "dir"], "/many")
    assert got["many"].kind == "d"
    assert {k for k in got if k.count("/") == 1} == {"many/a.txt", "many/b.txt", "many/x.txt", "many/sub",
                                                        "many/link", "many/abs"}


def test_glob_sources_to_a_directory(src: Path, layer: Path) -> None:
    got = do_copy(layer, src, ["?.txt"], "/g/")
    assert sorted(got) == ["g", "g/a.txt", "g/b.txt"]


def test_top_level_symlink_is_followed_and_keeps_its_name(src: Path, layer: Path) -> None:
    got = do_copy(layer, src, ["toplink", "abslink"], "/s/")
    assert got["s/toplink"] == Seen("f", 0o644, 0, 0, b"X")
    assert got["s/x.txt"].data == b"X"  # abslink -> /dir is the context's dir: its contents


def test_chown_by_name_and_number(src: Path, layer: Path) -> None:
    owner = resolve_owner("bob", PASSWD, GROUP)
    got = do_copy(layer, src, ["dir"], "/home/bob/app", owner=owner)
    assert got["home"] == Seen("d", 0o755, 0, 0) and got["home/bob"] == Seen("d", 0o755, 0, 0)
    assert (got["home/bob/app"].uid, got["home/bob/app"].gid) == (1000, 1001)  # the dest dir it made
    assert all((s.uid, s.gid) == (1000, 1001) for k, s in got.items() if k.startswith("home/bob/app/"))
    layer2 = layer.parent / "layer2"
    layer2.mkdir()
    got = do_copy(layer2, src, ["a.txt"], "/f", owner=resolve_owner("33:50", PASSWD, GROUP))
    assert (got["f"].uid, got["f"].gid) == (33, 50)


def test_chmod_applies_to_files_and_directories_not_symlinks(src: Path, layer: Path) -> None:
    got = do_copy(layer, src, ["dir"], "/c", chmod=0o750)
    assert got["c/x.txt"].mode == 0o750 and got["c/sub"].mode == 0o750 and got["c/sub/y.txt"].mode == 0o750
    assert got["c/link"].kind == "l"
    assert got["c"].mode == 0o755


def test_hard_links_stay_hard_links(src: Path, layer: Path) -> None:
    os.link(src / "dir/x.txt", src / "dir/x-again.txt")
    do_copy(layer, src, ["dir"], "/h")
    assert os.lstat(layer / "h/x.txt").st_ino == os.lstat(layer / "h/x-again.txt").st_ino
    assert os.lstat(layer / "h/x.txt").st_ino != os.lstat(src / "dir/x.txt").st_ino


def test_special_files_are_recreated(tmp_path: Path, layer: Path) -> None:
    root = tmp_path / "stage"
    (root / "dev").mkdir(parents=True)
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(root / "dev/fifo")
    os.chmod(root / "dev/null", 0o666)
    os.chmod(root / "dev/fifo", 0o640)
    got = do_copy(layer, root, ["dev"], "/d")
    assert got["d/null"] == Seen("c", 0o666, 0, 0) and got["d/fifo"] == Seen("p", 0o640, 0, 0)
    assert os.lstat(layer / "d/null").st_rdev == os.makedev(1, 3)


def test_xattrs_are_copied(src: Path, layer: Path) -> None:
    try:
        os.setxattr(src / "a.txt", "user.berth", b"kept")
    except OSError:
        pytest.skip("this file system has no user xattrs")
    do_copy(layer, src, ["a.txt"], "/x/")
    assert os.getxattr(layer / "x/a.txt", "user.berth") == b"kept"


def test_copy_into_refuses_sources_outside_the_root(src: Path, layer: Path, tmp_path: Path) -> None:
    write(tmp_path, "secret", b"S")
    with pytest.raises(InvalidArgument, match="forbidden path outside"):
        copy_into(layer, [tmp_path / "secret"], src, "/x", workdir="/", dest_is_dir=never_dir, owner=None,
                  chmod=None)
    with pytest.raises(InvalidArgument, match="file not found in the source: stat gone"):
        copy_into(layer, [src / "gone"], src, "/x", workdir="/", dest_is_dir=never_dir, owner=None, chmod=None)
    assert snapshot(layer) == {}


# --------------------------------------------------------------------------- #
# .dockerignore


def test_dockerignore_through_a_stub_matcher(src: Path, layer: Path) -> None:
    def excluded(path: str) -> bool:
        return path.endswith(".txt") and not path.startswith("dir/sub") or path == "run.sh"

    ctx = Context.from_directory(src, ignore=excluded)
    with pytest.raises(InvalidArgument, match="excluded by .dockerignore: stat a.txt"):
        ctx.sources(["a.txt"])
    with pytest.raises(InvalidArgument, match="stat \\*.txt"):
        ctx.sources(["*.txt"])
    copy_into(layer, ctx.sources(["."]), ctx.root, "/", workdir="/", dest_is_dir=never_dir, owner=None,
              chmod=None)
    got = snapshot(layer)
    assert "dir/sub/y.txt" in got and "dir/x.txt" not in got and "run.sh" not in got and ".hidden" in got


def test_dockerignore_with_the_real_matcher(src: Path, layer: Path) -> None:
    pytest.importorskip("berth.wire.dockerignore")
    write(src, ".dockerignore", b"*.txt\ndir\n!dir/sub\n")
    ctx = Context.from_directory(src)
    assert names(ctx.root, ["*"]) == [".dockerignore", ".hidden", "abslink", "dir", "outlink", "run.sh",
                                      "toplink"]
    copy_into(layer, ctx.sources(["dir"]), ctx.root, "/d", workdir="/", dest_is_dir=never_dir, owner=None,
              chmod=None)
    assert sorted(snapshot(layer)) == ["d", "d/sub", "d/sub/y.txt"]


# --------------------------------------------------------------------------- #
# The image below the layer


def test_dest_through_an_image_symlink(src: Path, layer: Path, image: ImageTree) -> None:
    got = do_copy(layer, src, ["run.sh"], "/bin/", image=image)
    assert "usr/bin/run.sh" in got and "bin" not in got
    assert got["usr"] == Seen("d", 0o755, 0, 0)


def test_image_directories_keep_their_mode_and_owner(src: Path, layer: Path, image: ImageTree) -> None:
    owner = Owner(1000, 1000)
    got = do_copy(layer, src, ["a.txt"], "/usr/local/share/x/", image=image, owner=owner)
    assert got["usr/local"] == Seen("d", 0o775, 7, 7)
    assert got["usr/local/share"] == Seen("d", 0o755, 0, 0)
    assert got["usr/local/share/x"] == Seen("d", 0o755, 1000, 1000)
    got = do_copy(layer, src, ["b.txt"], "/etc", image=image, dest_is_dir=image.is_dir)
    assert got["etc"] == Seen("d", 0o710, 5, 5) and got["etc/b.txt"].data == b"B"


def test_dest_through_a_relative_image_symlink(src: Path, layer: Path, image: ImageTree) -> None:
    lower = Path(image.lowers[-1])
    (lower / "usr/local").mkdir()
    os.symlink("../../usr/bin", lower / "usr/local/bin")
    got = do_copy(layer, src, ["a.txt"], "local/bin/tool", workdir="/usr", image=image)
    assert sorted(got) == ["usr", "usr/bin", "usr/bin/tool"]  # usr/local is only passed through
    assert image.lstat("/opt/../etc/passwd") is not None and image.lstat("/../../etc/passwd") is not None


def test_dest_below_an_image_file_is_refused(src: Path, layer: Path, image: ImageTree) -> None:
    with pytest.raises(InvalidArgument, match="/etc/hosts is a file in the image, not a directory"):
        do_copy(layer, src, ["a.txt"], "/etc/hosts/", image=image)


# --------------------------------------------------------------------------- #
# ADD


@dataclass
class E:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""


def tar_bytes(entries: list[E]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.uid, info.gid, info.mtime = e.kind, e.mode, e.uid, e.gid, MTIME
            info.linkname = e.link
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == tarfile.REGTYPE else None)
    return buf.getvalue()


GOOD = [
    E("app", tarfile.DIRTYPE, mode=0o750, uid=3, gid=4),
    E("app/bin", tarfile.DIRTYPE),
    E("app/bin/tool", data=b"tool", mode=0o755, uid=5, gid=6),
    E("app/bin/tool-link", tarfile.SYMTYPE, link="tool"),
    E("app/bin/tool-hard", tarfile.LNKTYPE, link="app/bin/tool"),
    E("/abs/ok", data=b"abs"),
    E("etc/conf", data=b"c"),
]

COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda b: b, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
}


@pytest.mark.parametrize("compression", list(COMPRESS))
def test_add_extracts_local_archives(src: Path, layer: Path, compression: str) -> None:
    (src / "pkg.tar.whatever").write_bytes(COMPRESS[compression](tar_bytes(GOOD)))
    got = do_copy(layer, src, ["pkg.tar.whatever"], "/opt/pkg", add=True, owner=Owner(9, 9), chmod=0o600)
    assert got["opt/pkg/app"] == Seen("d", 0o750, 3, 4)
    assert got["opt/pkg/app/bin/tool"] == Seen("f", 0o755, 5, 6, b"tool")
    assert got["opt/pkg/app/bin/tool-link"].data == "tool"
    assert os.lstat(layer / "opt/pkg/app/bin/tool-hard").st_ino == os.lstat(layer / "opt/pkg/app/bin/tool").st_ino
    assert got["opt/pkg/abs/ok"].data == b"abs"
    assert got["opt/pkg"].uid == 9  # the destination directory it made
    assert os.lstat(layer / "opt/pkg/app/bin/tool").st_mtime == MTIME


def test_add_copies_non_archives_as_files(src: Path, layer: Path) -> None:
    (src / "notes.gz").write_bytes(gzip.compress(b"just text, not a tar", mtime=0))
    (src / "empty.tar").write_bytes(tar_bytes([]))
    got = do_copy(layer, src, ["notes.gz", "empty.tar", "a.txt", "dir"], "/n/", add=True)
    assert got["n/notes.gz"].data == gzip.compress(b"just text, not a tar", mtime=0)  # byte for byte
    assert got["n/empty.tar"].kind == "f" and got["n/a.txt"].data == b"A" and got["n/x.txt"].data == b"X"


def test_extra_files_are_copied_but_never_unpacked(src: Path, layer: Path, tmp_path: Path) -> None:
    downloaded = tmp_path / "dl" / "pkg.tar.gz"
    downloaded.parent.mkdir()
    downloaded.write_bytes(gzip.compress(tar_bytes(GOOD)))
    os.chmod(downloaded, 0o600)
    add_into(layer, find_sources(src, ["a.txt"]), src, "/d", workdir="/", dest_is_dir=never_dir, owner=None,
             chmod=None, files=[downloaded])
    got = snapshot(layer)
    assert sorted(got) == ["d", "d/a.txt", "d/pkg.tar.gz"] and got["d/pkg.tar.gz"].mode == 0o600
    layer2 = tmp_path / "layer2"
    layer2.mkdir()
    add_into(layer2, [], src, "/only/name", workdir="/", dest_is_dir=never_dir, owner=None, chmod=None,
             files=[downloaded])
    assert sorted(snapshot(layer2)) == ["only", "only/name"]


def test_copy_never_extracts(src: Path, layer: Path) -> None:
    (src / "pkg.tar").write_bytes(tar_bytes(GOOD))
    got = do_copy(layer, src, ["pkg.tar"], "/p/")
    assert sorted(got) == ["p", "p/pkg.tar"]


@pytest.mark.parametrize("entries,message", [
    ([E("../evil", data=b"x")], "leaves the destination"),
    ([E("a/../../evil", data=b"x")], "leaves the destination"),
    ([E("esc", tarfile.SYMTYPE, link="../../../outside")], "points outside the destination"),
    ([E("a", tarfile.SYMTYPE, link="/"), E("a/evil", data=b"x")], "this ADD made it a symlink"),
    ([E("d", tarfile.DIRTYPE), E("d", tarfile.SYMTYPE, link="/tmp"), E("d/evil", data=b"x")],
     "this ADD made it a symlink"),
    ([E("h", tarfile.LNKTYPE, link="../outside/sentinel")], "not an earlier file"),
    ([E("h", tarfile.LNKTYPE, link="etc/passwd")], "not an earlier file"),
])
def test_add_refuses_hostile_archives(src: Path, tmp_path: Path, entries: list[E], message: str) -> None:
    sandbox = tmp_path / "sandbox"
    (sandbox / "outside").mkdir(parents=True)
    write(sandbox, "outside/sentinel", b"untouched")
    layer = sandbox / "layer"
    layer.mkdir()
    (src / "evil.tar").write_bytes(gzip.compress(tar_bytes(entries)))
    with pytest.raises(InvalidArgument, match=message):
        do_copy(layer, src, ["evil.tar"], "/x", add=True)
    assert sorted(os.listdir(sandbox)) == ["layer", "outside"]
    assert snapshot(sandbox / "outside") == {"sentinel": Seen("f", 0o644, 0, 0, b"untouched")}
    assert not os.path.exists("/evil") and not os.path.exists(tmp_path / "evil")


def test_add_skips_whiteout_names(src: Path, layer: Path) -> None:
    (src / "w.tar").write_bytes(tar_bytes([E("keep", data=b"k"), E(".wh.keep"), E("d/.wh..wh..opq")]))
    got = do_copy(layer, src, ["w.tar"], "/w", add=True)
    assert sorted(got) == ["w", "w/keep"]


def test_add_entry_below_an_image_symlink_loop_is_refused(src: Path, layer: Path, image: ImageTree) -> None:
    lower = Path(image.lowers[-1])
    os.symlink("l2", lower / "l1")
    os.symlink("/l1", lower / "l2")
    (src / "l.tar").write_bytes(tar_bytes([E("l1/x", data=b"x")]))
    with pytest.raises(InvalidArgument, match="entry 'l1/x': too many levels of symbolic links"):
        do_copy(layer, src, ["l.tar"], "/", image=image, add=True)
    assert snapshot(layer) == {}
