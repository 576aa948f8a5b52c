"""Apply a layer tarball to a directory, safely.

Strategy: the tar is read as a stream (gzip detected by tarfile), member by
member. Every name is normalised and must stay inside the target: absolute
names and `..` components are refused, and no write ever goes through a
symlink (each parent directory is checked with lstat, files are opened with
O_NOFOLLOW). Symlinks may point anywhere: they are resolved inside the
container, never by us. Hard links must name an entry already inside the
target. OCI whiteouts (.wh.NAME, .wh..wh..opq) become overlayfs whiteouts
(a 0/0 character device, the trusted.overlay.opaque xattr), so each layer can
be a lower directory of its own. Directory modes and times are applied last,
so a read-only directory can still be filled.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from typing import BinaryIO

from berth.errors import InvalidArgument

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


def clean_name(name: str, what: str, *, refused: str = "layer refused", inside: str = "the root") -> str:
    """A tar member's name as a clean relative path; absolute names and `..` are refused.

    Shared by every tar berth extracts (layers, image archives): *refused* and
    *inside* only change the words of the error.
    """
    if name.startswith("/"):
        raise InvalidArgument(f"{refused}: {what} {name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"{refused}: {what} {name!r} leaves {inside} with '..'")
    return "/".join(parts)


def _clean(name: str, what: str) -> str:
    return clean_name(name, what)


def make_parents(root: str, rel: str, *, refused: str = "layer refused") -> None:
    """Create the missing parents of *rel* inside *root*; refuse a parent that is a symlink or not a
    directory (a write through it could leave the root). Shared by every tar berth extracts."""
    path = root
    for part in rel.split("/")[:-1]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise InvalidArgument(f"{refused}: {rel!r} would be written below {part!r}, which is {kind}")


def _check_parents(root: str, rel: str) -> None:
    make_parents(root, rel)


def _real_dir_inside(root: str, path: str) -> bool:
    """True when *path* and every parent up to *root* are real directories (no symlinks)."""
    rel = os.path.relpath(path, root)
    current = root
    for part in ([] if rel == "." else rel.split(os.sep)):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
    return True


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        for entry in os.listdir(path):
            _remove(os.path.join(path, entry))
        os.rmdir(path)
    else:
        os.unlink(path)


def apply_layer(stream: BinaryIO, root: str) -> int:
    """Extract the tar read from *stream* into *root*; return the bytes of file content.

    Raises:
        InvalidArgument: a member would escape *root*, or the archive is not a tar.
    """
    os.makedirs(root, exist_ok=True)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    total = 0
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
    except tarfile.TarError as exc:
        raise InvalidArgument(f"not a tar archive (plain, gzip, bzip2 or xz): {exc}") from exc
    with tar:
        try:
            for member in tar:
                total += _apply_member(tar, member, root, dirs)
        except tarfile.TarError as exc:
            raise InvalidArgument(f"layer is not a valid tar archive: {exc}") from exc
    for path, member in reversed(dirs):
        if not _real_dir_inside(root, path):
            continue  # it, or a parent, was replaced later in the layer (by a symlink, say)
        os.lchown(path, member.uid, member.gid)
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
    return total


def _apply_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: str,
                  dirs: list[tuple[str, tarfile.TarInfo]]) -> int:
    rel = _clean(member.name, "entry")
    if not rel:
        if member.isdir():
            dirs.append((root, member))
        return 0
    _check_parents(root, rel)
    path = os.path.join(root, rel)
    base = posixpath.basename(rel)

    if base == OPAQUE:
        os.setxattr(os.path.dirname(path), "trusted.overlay.opaque", b"y")
        return 0
    if base.startswith(WHITEOUT_PREFIX):
        hidden = base[len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", "..") or "/" in hidden:
            raise InvalidArgument(f"layer refused: whiteout {rel!r} names no file")
        target = os.path.join(os.path.dirname(path), hidden)
        _remove(target)
        os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return 0

    if member.isdir():
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                _remove(path)
                os.mkdir(path, 0o755)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
        dirs.append((path, member))
        _xattrs(path, member)
        return 0

    _remove(path)
    size = 0
    if member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
                size += len(chunk)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        target_rel = _clean(member.linkname, "hard link target")
        _check_parents(root, target_rel)
        target = os.path.join(root, target_rel)
        if not os.path.lexists(target):
            raise InvalidArgument(f"layer refused: hard link {rel!r} names {member.linkname!r}, not in the layer")
        os.link(target, path, follow_symlinks=False)
        return 0
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        os.mkfifo(path, member.mode & 0o7777)
    else:
        raise InvalidArgument(f"layer refused: {rel!r} has an unsupported tar type {member.type!r}")

    os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    _xattrs(path, member)
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
    return size


def _xattrs(path: str, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            try:
                os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError:
                pass
