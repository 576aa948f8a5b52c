"""Apply a layer tarball to a directory, safely.

Strategy: the tar is read as a stream, once, front to back (gzip, bzip2 or xz
sniffed; big reads: image.archivestream), member by member. Every name is
normalised and must stay inside the target: absolute names and `..` components
are refused, and no write ever goes through a
symlink: each parent directory is opened O_NOFOLLOW relative to the one above
it, starting from a descriptor of the target, and every entry is made by name
in its parent's descriptor (berth.host.fsentries: O_EXCL, O_NOFOLLOW, *at calls). Symlinks may point anywhere: they are resolved inside the
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
from berth.host import fsentries
from berth.image import archivestream

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
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(open_parents(top, rel, refused=refused))
    finally:
        os.close(top)


def open_parents(root_fd: int, rel: str, *, refused: str = "layer refused") -> int:
    """A descriptor of the directory holding *rel* below *root_fd*, missing parents made, no symlink followed.

    Raises:
        InvalidArgument: a parent is a symlink or not a directory.
    """
    try:
        return fsentries.open_beneath(root_fd, rel.split("/")[:-1], create=True)
    except fsentries.NotADirectoryBelow as exc:
        raise InvalidArgument(f"{refused}: {rel!r} would be written below {exc.part!r}, which is {exc.what}") from None


def apply_layer(stream: BinaryIO, root: str) -> int:
    """Extract the tar read from *stream* into *root*; return the bytes of file content.

    Every member is made relative to a descriptor of its parent directory, reached
    from *root*'s descriptor without following any symlink (berth.host.fsentries).

    Raises:
        InvalidArgument: a member would escape *root*, or the archive is not a tar.
    """
    os.makedirs(root, exist_ok=True)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    total = 0
    try:
        tar = archivestream.open_tar(stream)  # type: ignore[arg-type]
    except tarfile.TarError as exc:
        raise InvalidArgument(f"not a tar archive (plain, gzip, bzip2 or xz): {exc}") from exc
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with tar:
            try:
                for member in tar:
                    total += _apply_member(tar, member, root_fd, dirs)
            except tarfile.TarError as exc:
                raise InvalidArgument(f"layer is not a valid tar archive: {exc}") from exc
        for rel, member in reversed(dirs):
            try:
                fd = fsentries.open_beneath(root_fd, rel.split("/") if rel else [])
            except (FileNotFoundError, fsentries.NotADirectoryBelow):
                continue  # it, or a parent, was replaced later in the layer (by a symlink, say)
            try:
                fsentries.set_attrs_fd(fd, fsentries.Attrs(member.uid, member.gid, member.mode & 0o7777, member.mtime))
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    return total


def _apply_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root_fd: int,
                  dirs: list[tuple[str, tarfile.TarInfo]]) -> int:
    rel = _clean(member.name, "entry")
    if not rel:
        if member.isdir():
            dirs.append(("", member))
        return 0
    parent = open_parents(root_fd, rel)
    try:
        return _make(tar, member, root_fd, parent, rel, dirs)
    finally:
        os.close(parent)


def _make(tar: tarfile.TarFile, member: tarfile.TarInfo, root_fd: int, parent: int, rel: str,
          dirs: list[tuple[str, tarfile.TarInfo]]) -> int:
    """Make *member* (named *rel*) in its *parent* directory's descriptor; the bytes of content written."""
    base = posixpath.basename(rel)
    xattrs = fsentries.pax_xattrs(member.pax_headers)

    if base == OPAQUE:
        os.setxattr(parent, "trusted.overlay.opaque", b"y")
        return 0
    if base.startswith(WHITEOUT_PREFIX):
        hidden = base[len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", "..") or "/" in hidden:
            raise InvalidArgument(f"layer refused: whiteout {rel!r} names no file")
        fsentries.remove_at(parent, hidden)
        fsentries.mknod_at(parent, hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return 0

    if member.isdir():
        st = fsentries.lstat_at(parent, base)
        if st is None or not stat.S_ISDIR(st.st_mode):
            fsentries.remove_at(parent, base)
            fsentries.mkdir_at(parent, base, 0o755)
        dirs.append((rel, member))
        fd = fsentries.open_dir_at(parent, base)
        try:
            for key, value in xattrs:
                try:
                    os.setxattr(fd, key, value)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return 0

    fsentries.remove_at(parent, base)
    size = 0
    attrs = fsentries.Attrs(member.uid, member.gid, None if member.issym() else member.mode & 0o7777, member.mtime,
                         xattrs)
    if member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        fd = fsentries.create_file_at(parent, base)
        try:
            size = fsentries.copy_stream(fd, src)
            fsentries.set_attrs_fd(fd, attrs)
        finally:
            os.close(fd)
        return size
    if member.issym():
        fsentries.symlink_at(parent, base, member.linkname)
    elif member.islnk():
        target_rel = _clean(member.linkname, "hard link target")
        target_parent = open_parents(root_fd, target_rel)
        try:
            target_base = posixpath.basename(target_rel)
            if fsentries.lstat_at(target_parent, target_base) is None:
                raise InvalidArgument(f"layer refused: hard link {rel!r} names {member.linkname!r}, "
                                      "not in the layer")
            fsentries.link_at(target_parent, target_base, parent, base)
        finally:
            os.close(target_parent)
        return 0
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        fsentries.mknod_at(parent, base, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        fsentries.mknod_at(parent, base, stat.S_IFIFO | (member.mode & 0o7777))
    else:
        raise InvalidArgument(f"layer refused: {rel!r} has an unsupported tar type {member.type!r}")
    fsentries.set_attrs_at(parent, base, attrs)
    return size
