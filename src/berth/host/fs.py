"""Atomic file writes, durable trees and private directories.

Strategy: write to a temporary file beside the target, fsync, rename, fsync the
directory; a reader sees the old content or the new, never half of it. A tree
(an unpacked layer) is made durable with one syncfs(2) of its file system
before it is renamed into place. A private directory (the data root, the VM
directory) is created with its mode, then checked through a descriptor opened
without following symlinks: a real directory, owned by us, with no more than
the mode asked for; one found wider is tightened, one owned by someone else or
not a directory is refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
import tempfile

from berth.errors import FailedPrecondition


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_usage(path: str) -> int:
    """Bytes of the files below *path* (all but directories; a symlink by its own size): what
    `docker ps -s` and `system df` report; 0 if gone.

    *path* (a live upper or volume directory) is walked by descriptor (berth.host.fstree.walk):
    a directory the container swaps for a symlink while we count is never followed out of it.
    """
    from berth.host import fstree  # beside this module, imported here to keep fs.py's imports lean

    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    try:
        return sum(e.st.st_size for e in fstree.walk(top) if not stat.S_ISDIR(e.st.st_mode))
    finally:
        os.close(top)


def private_dir(path: str, mode: int = 0o700) -> None:
    """Make *path* a directory owned by this process's user with at most *mode*.

    Creates it (and missing parents, with default modes) when absent; tightens
    the mode of an existing one that is wider.

    Raises:
        FailedPrecondition: *path* is a symlink, not a directory, or owned by another user.
    """
    try:
        os.mkdir(path, mode)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise FailedPrecondition(f"{path} must be a directory, not a symlink or another file ({exc.strerror}); "
                                 "move it away and restart") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise FailedPrecondition(f"{path} is owned by uid {st.st_uid}, not {os.geteuid()}: "
                                     "someone else made it; remove it and restart")
        if stat.S_IMODE(st.st_mode) & ~mode:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & mode)
    finally:
        os.close(fd)


def syncfs(path: str) -> None:
    """Flush every dirty page and inode of the file system holding *path* (syncfs(2))."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
