"""Tests for berth.image.layerdiff: upper directories made by hand (mknod, setxattr as root)
and by a real overlayfs mount, turned into layers and applied back."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from berth.errors import FailedPrecondition, NotFound
from berth.image.archive import apply_layer
from berth.image.layerdiff import (
    Hashed,
    gzip_chunks,
    iter_layer_from_upper,
    layer_digests,
)


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def members(upper: Path) -> dict[str, tarfile.TarInfo]:
    data = b"".join(iter_layer_from_upper(upper))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_whiteouts_and_opaque_directories_become_oci_markers(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_bytes(b"new motd\n")
    whiteout(upper / "etc" / "removed.conf")
    whiteout(upper / "gone")
    (upper / "var" / "cache").mkdir(parents=True)
    os.setxattr(upper / "var" / "cache", "trusted.overlay.opaque", b"y")
    (upper / "var" / "cache" / "fresh").write_bytes(b"f")
    (upper / "notopaque").mkdir()
    os.setxattr(upper / "notopaque", "trusted.overlay.opaque", b"x")  # "has xwhiteouts", not opaque
    os.setxattr(upper / "etc", "trusted.overlay.origin", b"\x00\xfb")
    got = members(upper)
    assert set(got) == {"etc", "etc/motd", "etc/.wh.removed.conf", ".wh.gone", "var", "var/cache",
                        "var/cache/.wh..wh..opq", "var/cache/fresh", "notopaque"}
    for name in (".wh.gone", "etc/.wh.removed.conf", "var/cache/.wh..wh..opq"):
        assert got[name].isreg() and got[name].size == 0
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in got.values() for k in m.pax_headers)


def test_xwhiteout_files_are_whiteouts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "old").write_bytes(b"")
    os.setxattr(upper / "old", "trusted.overlay.whiteout", b"")
    (upper / "empty-but-real").write_bytes(b"")
    assert set(members(upper)) == {".wh.old", "empty-but-real"}


@pytest.mark.parametrize("xattr, kind", [("trusted.overlay.redirect", "dir"),
                                          ("user.overlay.metacopy", "file")])
def test_redirect_and_metacopy_are_refused(tmp_path: Path, xattr: str, kind: str) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    target = upper / "x"
    if kind == "dir":
        target.mkdir()
    else:
        target.write_bytes(b"")
    os.setxattr(target, xattr, b"/old")
    with pytest.raises(FailedPrecondition, match="lower layer"):
        b"".join(iter_layer_from_upper(upper))


def test_missing_upper_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        iter_layer_from_upper(tmp_path / "absent")


def _tree(root: Path) -> dict[str, bytes | str | None]:
    out: dict[str, bytes | str | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "->" + os.readlink(p)
            elif os.path.isfile(p):
                out[rel] = open(p, "rb").read()
            else:
                out[rel] = None
    return out


def _mount(lower: str, target: Path, upper: Path | None = None, work: Path | None = None) -> None:
    opts = f"lowerdir={lower}" + (f",upperdir={upper},workdir={work}" if upper else "")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], check=True, capture_output=True)


def test_real_overlay_changes_survive_the_round_trip(tmp_path: Path) -> None:
    """Change a real overlay mount, turn its upper dir into a layer, apply that layer as a new
    lower directory: base + layer must show exactly what the container saw."""
    base, upper, work, merged = (tmp_path / n for n in ("base", "upper", "work", "merged"))
    for d in (base, upper, work, merged):
        d.mkdir()
    (base / "keep").write_bytes(b"keep")
    (base / "remove-me").write_bytes(b"bye")
    (base / "dir" / "sub").mkdir(parents=True)
    (base / "dir" / "sub" / "old").write_bytes(b"old")
    (base / "dir" / "stays").write_bytes(b"stays")
    (base / "edit").write_bytes(b"v1")
    _mount(str(base), merged, upper, work)
    try:
        os.unlink(merged / "remove-me")
        subprocess.run(["rm", "-rf", str(merged / "dir" / "sub")], check=True)
        (merged / "dir" / "sub").mkdir()                       # recreated: overlayfs makes it opaque
        (merged / "dir" / "sub" / "new").write_bytes(b"new")
        (merged / "edit").write_bytes(b"v2")
        os.symlink("keep", merged / "link")
        os.link(merged / "keep", merged / "keep-hardlink")     # copies up, then links in upper
        expected = _tree(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)

    layer = b"".join(iter_layer_from_upper(upper))
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        names = set(tar.getnames())
    assert {".wh.remove-me", "dir/sub/.wh..wh..opq", "dir/sub/new"} <= names

    applied, view = tmp_path / "applied", tmp_path / "view"
    view.mkdir()
    apply_layer(io.BytesIO(layer), str(applied))
    _mount(f"{applied}:{base}", view)
    try:
        assert _tree(view) == expected
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_digest_helpers(tmp_path: Path) -> None:
    upper = tmp_path / "u"
    upper.mkdir()
    (upper / "f").write_bytes(os.urandom(100_000))
    raw = b"".join(iter_layer_from_upper(upper))
    diff_id, size = layer_digests(iter_layer_from_upper(upper))
    assert (diff_id, size) == ("sha256:" + hashlib.sha256(raw).hexdigest(), len(raw))

    hashed = Hashed(iter_layer_from_upper(upper))
    with pytest.raises(RuntimeError):
        _ = hashed.digest
    compressed = b"".join(gzip_chunks(hashed))
    assert hashed.digest == diff_id
    assert gzip.decompress(compressed) == raw
    assert b"".join(gzip_chunks(iter_layer_from_upper(upper))) == compressed  # reproducible
