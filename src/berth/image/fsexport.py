"""Stream a directory tree as a tar: what `docker export` sends for a container's root.

Strategy: the tree is walked with lstat only and by directory descriptor
(berth.host.fswalk.walk), so no symlink is ever followed, even one swapped in
for a directory while the walk runs,
and entries come out in a fixed order (names sorted, each directory before
what it holds). Headers are made by tarfile.TarInfo.tobuf in PAX format, which
carries what ustar cannot: long or non-UTF-8 names, big ids and sizes, and
xattrs (as SCHILY.xattr.* records, which berth.image.archive reads back).
File content is read in 1 MiB pieces and small pieces are gathered into
chunks of about 1 MiB, so memory stays bounded whatever the tree holds.

The tree may be live (a running container's root): a file that vanishes
between listing and reading is left out, and a file that grows or shrinks
while it is read is cut or zero-padded to the size its header announced, so
the stream is always a well-formed tar.

What each entry becomes:
  directory        DIRTYPE (the root itself is not an entry, as in `docker export`)
  regular file     REGTYPE, or LNKTYPE naming the first path seen for the same inode
  symlink          SYMTYPE with the link's text, never resolved
  char/block dev   CHRTYPE/BLKTYPE with major and minor
  fifo             FIFOTYPE
  socket           left out (a socket cannot be recreated from a tar)
Modes keep the permission and set-id bits; uid/gid are numeric (no names);
mtimes are whole seconds. Xattrs are kept except those that describe the host
rather than the file: overlayfs' own (trusted.overlay.*, user.overlay.*) and
the host's SELinux label.

The tar primitives here (TarWriter, member(), coalesce()) are shared with
berth.image.layerdiff and berth.image.archivesave.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from berth.errors import NotFound
from berth.host import fsentries, fswalk

BLOCK = 512
CHUNK = 1 << 20
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)

# Xattrs that are about the host or the overlay mount, not about the file.
_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")


@dataclass(frozen=True, slots=True)
class Entry:
    """One file found by walk()."""

    name: str              # path in the archive: relative, "/"-separated, no leading "./"
    path: str              # where it is on disk
    st: os.stat_result     # its lstat


def walk(root: Path | str) -> Iterator[Entry]:
    """Every file under *root* (not *root* itself), sorted by name, directories before their content.

    Never follows symlinks; skips sockets and anything that vanishes while walking. The tree
    may be live and hostile: it is walked by directory descriptor (berth.host.fswalk.walk),
    so a directory swapped for a symlink between listing and descending is not descended,
    and each Entry.path names the file through its directory's descriptor
    (/proc/self/fd/N/name, valid until the walk moves on), never by a path that a
    symlink could redirect.
    """
    try:
        top = os.open(os.fspath(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        for e in fswalk.walk(top):
            if stat.S_ISSOCK(e.st.st_mode):
                continue
            yield Entry(e.name, e.proc_path, e.st)
    finally:
        os.close(top)


def read_xattrs(path: str) -> dict[str, str]:
    """The file's xattrs as PAX records (SCHILY.xattr.NAME -> value, bytes kept via surrogateescape)."""
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for xname in sorted(names):
        if xname.startswith(_SKIP_XATTR_PREFIXES):
            continue
        try:
            value = os.getxattr(path, xname, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + xname] = value.decode("utf-8", "surrogateescape")
    return out


def tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    """A header for *name* from its lstat (type, mode, ids, mtime; size 0 for all but regular files)."""
    info = tarfile.TarInfo(name)
    mode = st.st_mode
    info.mode = stat.S_IMODE(mode)
    info.uid = st.st_uid
    info.gid = st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(mode):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor = os.major(st.st_rdev)
        info.devminor = os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        raise ValueError(f"{name}: no tar type for mode {mode:o}")
    return info


def header(info: tarfile.TarInfo) -> bytes:
    """The PAX-format header block(s) for *info*."""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    """Zeros that fill the last block of a member of *size* bytes."""
    return b"\0" * (-size % BLOCK)


def member(name: str, data: bytes, *, mode: int = 0o644, mtime: int = 0, uid: int = 0, gid: int = 0) -> bytes:
    """A whole regular-file member (header, content, padding) for small in-memory *data*."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    return header(info) + data + padding(len(data))


def directory_member(name: str, *, mode: int = 0o755, mtime: int = 0) -> bytes:
    """A directory member with root ownership."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = mtime
    info.uname = info.gname = ""
    return header(info)


def file_member(info: tarfile.TarInfo, fd: int) -> Iterator[bytes]:
    """Header, then exactly info.size bytes read from *fd* (cut or zero-filled), then padding."""
    yield header(info)
    left = info.size
    while left > 0:
        piece = os.read(fd, min(CHUNK, left))
        if not piece:
            break
        left -= len(piece)
        yield piece
    while left > 0:  # the file shrank while we read it
        n = min(CHUNK, left)
        left -= n
        yield b"\0" * n
    yield padding(info.size)


def coalesce(chunks: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Regroup *chunks* into pieces of at least *size* bytes (the last may be shorter); drops empties."""
    buf: list[bytes] = []
    held = 0
    for chunk in chunks:
        if not chunk:
            continue
        if held == 0 and len(chunk) >= size:
            yield chunk
            continue
        buf.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(buf)
            buf.clear()
            held = 0
    if held:
        yield b"".join(buf)


@dataclass
class TarWriter:
    """Turns walk() entries into tar bytes; remembers inodes so hard links stay links."""

    _links: dict[tuple[int, int], str] = field(default_factory=dict)

    def entry(self, entry: Entry, name: str | None = None) -> Iterator[bytes]:
        """The tar bytes for *entry*, stored as *name* (default entry.name).

        Yields nothing when the file vanished or changed type since it was listed.
        """
        name = entry.name if name is None else name
        st = entry.st
        if stat.S_ISREG(st.st_mode):
            yield from self._regular(entry, name)
            return
        try:
            info = tarinfo(name, st)
        except ValueError:
            return
        if stat.S_ISLNK(st.st_mode):
            try:
                info.linkname = os.readlink(entry.path)
            except (FileNotFoundError, NotADirectoryError):
                return
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # no longer a symlink (a container swapped it back)
                    return
                raise
        elif st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            first = self._links.setdefault((st.st_dev, st.st_ino), name)
            if first != name:
                yield self._hardlink(info, first)
                return
        info.pax_headers = read_xattrs(entry.path)
        yield header(info)

    def _hardlink(self, info: tarfile.TarInfo, target: str) -> bytes:
        info.type = tarfile.LNKTYPE
        info.linkname = target
        info.size = 0
        return header(info)

    def _regular(self, entry: Entry, name: str) -> Iterator[bytes]:
        fd = fsentries.open_regular_at(None, entry.path)  # never opens a device or FIFO swapped in
        if fd is None:
            return  # vanished, or replaced by a symlink, a device, a fifo or a socket
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            info = tarinfo(name, st)
            if st.st_nlink > 1:
                first = self._links.setdefault((st.st_dev, st.st_ino), name)
                if first != name:
                    yield self._hardlink(info, first)
                    return
            info.pax_headers = read_xattrs(entry.path)
            yield from file_member(info, fd)
        finally:
            os.close(fd)


def iter_tree_tar(root: Path | str) -> Iterator[bytes]:
    """A tar of everything under *root*, streamed in pieces of about 1 MiB.

    Args:
        root: the directory (a container's mounted root file system, say).
    Returns:
        An iterator of bytes; joined, they are a complete tar archive.
    Raises:
        NotFound: *root* is not a directory (raised at the call, not on iteration).
        OSError: while iterating, a file could not be read (permissions, I/O errors).
    """
    if not os.path.isdir(root):
        raise NotFound(f"export: {os.fspath(root)} is not a directory (is the container's file system mounted?)")
    writer = TarWriter()

    def pieces() -> Iterator[bytes]:
        for entry in walk(root):
            yield from writer.entry(entry)
        yield END_OF_ARCHIVE

    return coalesce(pieces())


__all__ = [
    "BLOCK", "CHUNK", "END_OF_ARCHIVE", "Entry", "TarWriter", "coalesce", "directory_member", "file_member",
    "header", "iter_tree_tar", "member", "padding", "read_xattrs", "tarinfo", "walk",
]
