"""Walking a live tree by directory descriptors: tar export, diffs, commits and disk usage.

Strategy: each directory is listed through its own descriptor, and a
subdirectory is entered by opening it O_RDONLY|O_DIRECTORY|O_NOFOLLOW relative
to its parent and checking it is the very directory that was listed (device
and inode). So a directory a container swaps for a symlink (or a file, or
another directory) after it was listed is never descended, and entries that
vanish are skipped. The walk keeps its own stack of descriptors instead of
recursing: a tree nested thousands deep costs one descriptor per level, up to
MAX_WALK_DEPTH. A WalkEntry's file is read through host.fsentries.open_regular_at,
which never opens a device or blocks on a FIFO swapped in.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from berth.errors import InvalidArgument
from berth.host.fsentries import open_regular_at


@dataclass(frozen=True, slots=True)
class WalkEntry:
    """One entry found by walk(): valid (its dir_fd open) until the walk moves on."""

    name: str             # path relative to the walk's top, "/"-separated
    dir_fd: int           # readable descriptor of the directory holding it
    base: str             # its name in that directory
    st: os.stat_result    # its lstat

    @property
    def proc_path(self) -> str:
        """A host path naming exactly this entry through its directory's descriptor (last component unfollowed)."""
        return f"/proc/self/fd/{self.dir_fd}/{self.base}"

    def open(self) -> int | None:
        """The entry, a regular file, opened for reading relative to its directory (see open_regular_at);
        None if it vanished or is no longer a regular file."""
        return open_regular_at(self.dir_fd, self.base)


MAX_WALK_DEPTH = 16384  # directories deep; one open descriptor each while walked


class TreeTooDeep(InvalidArgument):
    """A walked tree nests deeper than MAX_WALK_DEPTH."""


def walk(dir_fd: int, prefix: str = "") -> Iterator[WalkEntry]:
    """Every entry below the directory *dir_fd* (not itself), names sorted, each directory before its content.

    Lists and descends by descriptor: a subdirectory is opened O_NOFOLLOW|O_DIRECTORY
    relative to its parent, so one swapped for a symlink (or a file) after it was listed
    is skipped, never followed. Entries that vanish are skipped. *dir_fd* stays the caller's.
    The walk keeps its own stack, not Python's: a tree nested thousands deep (a container can
    make one) is walked like any other, holding one descriptor per level, up to MAX_WALK_DEPTH.

    Raises:
        TreeTooDeep: the tree nests deeper than MAX_WALK_DEPTH.
    """
    stack: list[tuple[int, Iterator[str], str]] = []  # (directory fd, names still to visit, prefix)
    names = _sorted_names(dir_fd)
    if names is None:
        return
    stack.append((dir_fd, iter(names), prefix))
    try:
        while stack:
            fd, pending, where = stack[-1]
            name = next(pending, None)
            if name is None:
                stack.pop()
                if fd != dir_fd:
                    os.close(fd)
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            yield WalkEntry(where + name, fd, name, st)
            if not stat.S_ISDIR(st.st_mode):
                continue
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    continue  # vanished or swapped for a symlink/file since listed
                raise
            cst = os.fstat(child)
            children = _sorted_names(child) if (cst.st_dev, cst.st_ino) == (st.st_dev, st.st_ino) else None
            if children is None:  # another directory was moved in (walk what was listed, or nothing), or gone
                os.close(child)
                continue
            if len(stack) >= MAX_WALK_DEPTH:
                os.close(child)
                raise TreeTooDeep(f"{where + name}: the tree nests more than {MAX_WALK_DEPTH} directories deep")
            stack.append((child, iter(children), where + name + "/"))
    finally:
        for fd, _, _ in stack:
            if fd != dir_fd:
                os.close(fd)


def _sorted_names(dir_fd: int) -> list[str] | None:
    try:
        return sorted(os.listdir(dir_fd))
    except (FileNotFoundError, NotADirectoryError):
        return None


__all__ = ["MAX_WALK_DEPTH", "TreeTooDeep", "WalkEntry", "walk"]
