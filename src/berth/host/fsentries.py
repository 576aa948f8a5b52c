"""Entries made, read and removed by name under a held directory descriptor: the extractors' primitives.

An extractor (a layer, `docker cp`, a build's COPY, `docker load`) holds a
descriptor of the directory a member goes into (reached with host.fstree.mkdirs,
open_beneath or open_dir_at, never by a joined host path) and makes the member
there by name.

Strategy: nothing here follows a symlink in the last component, so a name a
container or an earlier member turned into a symlink is replaced or refused,
never written through. Files are created O_CREAT|O_EXCL|O_NOFOLLOW, directories
opened O_DIRECTORY|O_NOFOLLOW, and an entry's owner, mode, xattrs and times are
set without following its name (set_attrs_at pins it O_PATH|O_NOFOLLOW first;
removal walks by descriptor). A file is opened for reading only once its
pinned descriptor was fstat'ed as a regular file, so a device is never opened,
and then with READ_FLAGS (O_NONBLOCK|O_NOCTTY), so nothing blocks. All of it
is blocking I/O: callers on the event loop use a thread.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from berth.errors import InvalidArgument

READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotADirectoryBelow(InvalidArgument):
    """open_beneath met a component that is a symlink or not a directory."""

    def __init__(self, part: str, what: str) -> None:
        super().__init__(f"{part!r} is {what}")
        self.part = part
        self.what = what    # "a symlink" or "not a directory"


def open_beneath(dir_fd: int, parts: list[str], *, create: bool = False, mode: int = 0o755) -> int:
    """A readable descriptor of the directory *parts* below *dir_fd*, following no symlink at all.

    Each component is opened O_DIRECTORY|O_NOFOLLOW relative to the previous one
    (missing ones are made with *mode* when *create*); ".." is refused.

    Raises:
        NotADirectoryBelow: a component is a symlink or not a directory.
        FileNotFoundError: a component is missing and *create* is False.
    """
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise InvalidArgument(f"{part!r} is not a name of a directory")
            try:
                nxt = open_dir_at(fd, part)
            except FileNotFoundError:
                if not create:
                    raise
                mkdir_at(fd, part, mode)
                nxt = open_dir_at(fd, part)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_dir_at(dir_fd: int, name: str) -> int:
    """A readable descriptor of the directory *name* in *dir_fd*, the name never followed.

    Raises:
        FileNotFoundError: nothing is there.
        NotADirectoryBelow: a symlink or another non-directory is there.
    """
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise exc from None  # swapped again: report what was seen first
        raise NotADirectoryBelow(name, "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory") from None


def mkdir_at(dir_fd: int, name: str, mode: int = 0o755) -> bool:
    """Make the directory *name* in *dir_fd* with exactly *mode* (whatever the umask); False if one is there.

    Raises:
        FileExistsError: something else (a symlink, a file) is there.
    """
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        st = lstat_at(dir_fd, name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return False
        raise  # something else, or it moved away since
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{fd}", mode)  # the very directory just made
    finally:
        os.close(fd)
    return True


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """The lstat of *name* in *dir_fd*; None when it is missing."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def remove_at(dir_fd: int, name: str) -> None:
    """Remove whatever is at *name* in *dir_fd* (a directory with its content, walked by descriptor)."""
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    try:
        child = open_dir_at(dir_fd, name)
    except (FileNotFoundError, NotADirectoryBelow):  # swapped since: remove what is there now
        remove_at(dir_fd, name)
        return
    try:
        for entry in os.listdir(child):
            remove_at(child, entry)
    finally:
        os.close(child)
    os.rmdir(name, dir_fd=dir_fd)


def create_file_at(dir_fd: int, name: str) -> int:
    """A write descriptor of a new regular file *name* in *dir_fd* (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600).

    Raises:
        FileExistsError: anything (a symlink included) is already there.
    """
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                   dir_fd=dir_fd)


def copy_stream(fd: int, src: IO[bytes], chunk: int = 1 << 20) -> int:
    """Write everything read from *src* to *fd*, a chunk at a time; the bytes written."""
    total = 0
    while data := src.read(chunk):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        total += len(data)
    return total


def symlink_at(dir_fd: int, name: str, target: str) -> None:
    """A symlink *name* in *dir_fd* pointing at *target* (stored as is: never resolved by us)."""
    os.symlink(target, name, dir_fd=dir_fd)


def mknod_at(dir_fd: int, name: str, mode: int, device: int = 0) -> None:
    """A device node or FIFO (S_IFCHR, S_IFBLK or S_IFIFO in *mode*) *name* in *dir_fd*."""
    os.mknod(name, mode, device, dir_fd=dir_fd)


def link_at(src_dir_fd: int, src_name: str, dir_fd: int, name: str) -> None:
    """A hard link *name* in *dir_fd* to the entry *src_name* of *src_dir_fd* (a symlink there is linked, not
    followed)."""
    os.link(src_name, name, src_dir_fd=src_dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)


@dataclass(frozen=True, slots=True)
class Attrs:
    """What a tar member says about an entry beyond its content."""

    uid: int
    gid: int
    mode: int | None                      # permission bits (07777); None leaves them
    mtime: float
    xattrs: tuple[tuple[str, bytes], ...] = ()


def set_attrs_fd(fd: int, attrs: Attrs) -> None:
    """Owner, mode, xattrs (failures ignored, as tar does) and times of an open file or directory."""
    os.fchown(fd, attrs.uid, attrs.gid)
    if attrs.mode is not None:
        os.fchmod(fd, attrs.mode)
    for key, value in attrs.xattrs:
        try:
            os.setxattr(fd, key, value)
        except OSError:
            pass
    os.utime(fd, (attrs.mtime, attrs.mtime))


def set_attrs_at(dir_fd: int, name: str, attrs: Attrs) -> None:
    """set_attrs_fd for *name* in *dir_fd* without opening it (symlinks, devices, FIFOs), the name never
    followed: the entry is pinned O_PATH|O_NOFOLLOW and changed through that descriptor; a symlink keeps
    its (meaningless) mode."""
    pinned = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.chown(name, attrs.uid, attrs.gid, dir_fd=dir_fd, follow_symlinks=False)
        is_link = stat.S_ISLNK(os.fstat(pinned).st_mode)
        if attrs.mode is not None and not is_link:
            os.chmod(f"/proc/self/fd/{pinned}", attrs.mode)  # the very inode pinned
        # The entry by name in its pinned directory, the last component unfollowed.
        where = f"/proc/self/fd/{dir_fd}/{name}"
        for key, value in attrs.xattrs:
            try:
                os.setxattr(where, key, value, follow_symlinks=False)
            except OSError:
                pass
        os.utime(name, (attrs.mtime, attrs.mtime), dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(pinned)


def pax_xattrs(pax_headers: Mapping[str, str]) -> tuple[tuple[str, bytes], ...]:
    """The SCHILY.xattr.* records of a tar member's PAX headers, as (name, value) pairs."""
    return tuple((key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"))
                 for key, value in pax_headers.items() if key.startswith("SCHILY.xattr."))


# --------------------------------------------------------------------------- #
# Reading an entry


def open_regular_at(dir_fd: int | None, name: str) -> int | None:
    """A read descriptor of the regular file *name* (in *dir_fd*, or a host path when None), the last
    component never followed; None when it is missing, a symlink, or anything but a regular file.

    The object is pinned with O_PATH and fstat'ed before it is opened for reading (through
    /proc/self/fd, the same inode), so a device node a container swapped in is never opened
    (no side effect of a device's open) and a FIFO never blocks.
    """
    try:
        pinned = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(pinned).st_mode):
            return None
        return os.open(f"/proc/self/fd/{pinned}", READ_FLAGS)
    finally:
        os.close(pinned)


__all__ = [
    "READ_FLAGS", "Attrs", "NotADirectoryBelow", "copy_stream", "create_file_at", "link_at", "lstat_at", "mkdir_at",
    "mknod_at", "open_beneath", "open_dir_at", "open_regular_at", "pax_xattrs", "remove_at", "set_attrs_at",
    "set_attrs_fd", "symlink_at",
]
