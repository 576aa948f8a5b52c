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

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import stat
import tempfile

from berth.errors import FailedPrecondition


def atomic_write(path: str, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace *path* with *data* at once. *durable*: on disk before returning (fsync of the file and
    of its directory); without it, a crash may lose the write but never leaves half of it, which is
    right for files made again from the records every time they are needed (a bundle's)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
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
    if durable:
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

    *path* (a live upper or volume directory) is walked by descriptor (berth.host.fswalk.walk):
    a directory the container swaps for a symlink while we count is never followed out of it.
    """
    from berth.host import (
        fswalk,  # beside this module, imported here to keep fs.py's imports lean
    )

    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    try:
        return sum(e.st.st_size for e in fswalk.walk(top) if not stat.S_ISDIR(e.st.st_mode))
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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def rmtree(path: str) -> None:
    """Remove *path* and everything below it, however deeply nested; what cannot be removed stays.

    shutil.rmtree (Python 3.11) descends by recursion: a tree nested a thousand levels deep (a
    container or an image layer makes one with a shell loop) raises RecursionError half-way and
    stays on disk, and every later clean-up of it fails the same way. This walk keeps its own stack
    (one directory descriptor per level), removes by descriptor, never follows a symlink and never
    enters another file system (a mount below *path* is left in place, as `rm --one-file-system`).
    """
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    try:
        top = os.open(path, _DIR_FLAGS)
    except OSError:
        return
    stack: list[tuple[int, list[str]]] = [(top, _names(top))]  # (directory fd, names not yet removed)
    try:
        while stack:
            fd, names = stack[-1]
            if not names:
                stack.pop()
                os.close(fd)
                if stack:  # the directory is empty now: remove it from its parent
                    parent_fd, parent_names = stack[-1]
                    with contextlib.suppress(OSError):
                        os.rmdir(parent_names.pop(), dir_fd=parent_fd)
                continue
            name = names[-1]
            try:
                est = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                names.pop()
                continue
            if stat.S_ISDIR(est.st_mode) and est.st_dev == st.st_dev:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    names.pop()
                    continue
                stack.append((child, _names(child)))  # its name stays last in names until it is empty
                continue
            names.pop()
            if not stat.S_ISDIR(est.st_mode):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _names(dir_fd: int) -> list[str]:
    try:
        return os.listdir(dir_fd)
    except OSError:
        return []


async def remove_tree(path: str) -> None:
    """rmtree off the event loop (an upper directory may hold much)."""
    await asyncio.to_thread(rmtree, path)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
