"""`docker diff`: what a container's overlay upper directory changes in its image, as Docker lists it.

Strategy: the upper directory already is the diff (see berth.image.layerdiff,
which turns the same directory into a layer); this module only names each
entry the way Docker's overlay driver does (its `OverlayChanges`):

  upper entry                                   change
  whiteout (char device 0/0, or the             D  the path
    "xwhiteout" file of Linux 6.7+)
  opaque directory (overlay.opaque = "y")       D  the path, when the image had it (the directory was
    whose path the image has                       removed and made again); what is in it follows as A/C
  anything the image has at that path           C  -- except a directory whose size, mode and mtime
                                                   equal the image's: only copied up, not changed
  anything else                                 A
  the parent of an A or D not listed yet        C  (so a client sees every directory that changed)

Whether "the image has" a path is answered by the image's layers as
overlayfs stacks them (topmost first): the first layer that has the path
decides, a whiteout or a non-directory on the way hides what is below, and
so does an opaque directory for what lies under it.

Docker keeps /etc/hosts, /etc/hostname, /etc/resolv.conf and the mount points
of /dev, /proc and /sys in an "init" layer between the image and the
container, so they never show up as changes. berth has no init layer; the
same paths are left out here (`HIDDEN`), and the directories holding them
(`TOUCHED`) count as changed only when their mode differs from the image's,
or when something else in them was added or deleted: the runtime (a mount
point it creates) or the VM set-up (its copies of the /etc files) changes
their times, never the container's user.

The walk is by directory descriptor (berth.host.fswalk.walk) and each layer
is looked into by descriptor too, component by component, never following a
symlink: the upper directory is written by the container and the layers come
from images. All of this blocks: call it from a thread. The answer is
bounded: more than `MAX_CHANGES` changes is refused rather than held.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from berth.errors import FailedPrecondition
from berth.host import fsentries, fswalk

MAX_CHANGES = 500_000
HIDDEN = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab", "/.dockerenv",
                    "/dev/console"})
TOUCHED = frozenset({"/etc", "/dev", "/dev/pts", "/dev/shm", "/proc", "/sys"})
_XATTR_NS = ("trusted.overlay.", "user.overlay.")


class Kind(enum.IntEnum):
    """Docker's change kinds, by their numbers in the API."""

    MODIFIED = 0
    ADDED = 1
    DELETED = 2


@dataclass(frozen=True, slots=True)
class Change:
    path: str   # absolute, "/"-separated, as the container sees it
    kind: Kind

    def to_api(self) -> dict[str, Any]:
        """{"Path": ..., "Kind": n}, a name that is not UTF-8 with replacement characters (as Go writes it)."""
        return {"Path": os.fsencode(self.path).decode("utf-8", "replace"), "Kind": int(self.kind)}


def overlay_attr(dir_fd: int, name: str, attr: str) -> bytes | None:
    """The overlayfs xattr *attr* ("opaque", "whiteout") of *name* in *dir_fd*, trusted.* or user.*; None if unset."""
    where = f"/proc/self/fd/{dir_fd}/{name}"
    for ns in _XATTR_NS:
        try:
            return os.getxattr(where, ns + attr, follow_symlinks=False)
        except OSError:
            continue
    return None


def is_whiteout(dir_fd: int, name: str, st: os.stat_result) -> bool:
    """A whiteout: a character device 0/0, or an empty regular file marked overlay.whiteout."""
    if stat.S_ISCHR(st.st_mode):
        return st.st_rdev == os.makedev(0, 0)
    return stat.S_ISREG(st.st_mode) and st.st_size == 0 and overlay_attr(dir_fd, name, "whiteout") is not None


def is_opaque(dir_fd: int, name: str, st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode) and overlay_attr(dir_fd, name, "opaque") == b"y"


# --------------------------------------------------------------------------- #
# The image's view: its layers as overlayfs stacks them


class Layers:
    """The image's layer directories (topmost first), looked into by descriptor."""

    def __init__(self, fds: Sequence[int]) -> None:
        self._fds = list(fds)

    def lstat(self, parts: Sequence[str]) -> os.stat_result | None:
        """The image's entry at *parts* (not followed), or None when the image does not have it."""
        for fd in self._fds:
            st, decided = _probe(fd, parts)
            if decided:
                return st
        return None


def _probe(layer_fd: int, parts: Sequence[str]) -> tuple[os.stat_result | None, bool]:
    """(the entry at *parts* in one layer, whether this layer decides) -- it does when it has the entry, a
    whiteout of it or of a directory on the way, a non-directory on the way, or an opaque directory above it."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=layer_fd)
    opaque = False
    try:
        for i, name in enumerate(parts):
            st = fsentries.lstat_at(fd, name)
            if st is None:
                return None, opaque
            if is_whiteout(fd, name, st):
                return None, True
            if i == len(parts) - 1:
                return st, True
            if not stat.S_ISDIR(st.st_mode):
                return None, True
            opaque = opaque or is_opaque(fd, name, st)
            try:
                nxt = fsentries.open_dir_at(fd, name)
            except (FileNotFoundError, fsentries.NotADirectoryBelow):
                return None, True
            os.close(fd)
            fd = nxt
        return None, False
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- #
# The walk


def _same_time(a: os.stat_result, b: os.stat_result) -> bool:
    """Docker's sameFsTime: equal, or equal seconds when one side has no sub-second part (a tar's)."""
    if a.st_mtime_ns == b.st_mtime_ns:
        return True
    return a.st_mtime_ns // 10**9 == b.st_mtime_ns // 10**9 and (a.st_mtime_ns % 10**9 == 0
                                                                  or b.st_mtime_ns % 10**9 == 0)


def _unchanged_dir(path: str, st: os.stat_result, below: os.stat_result) -> bool:
    if not (stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(below.st_mode)):
        return False
    if path in TOUCHED:
        return st.st_mode == below.st_mode
    return st.st_size == below.st_size and st.st_mode == below.st_mode and _same_time(st, below)


def _kinds(upper_fd: int, layers: Layers) -> Iterator[tuple[str, bool, Kind]]:
    """(path, is a directory, kind) of every upper entry that is a change, in walk order."""
    for entry in fswalk.walk(upper_fd):
        path = "/" + entry.name
        parts = entry.name.split("/")
        st = entry.st
        if path in HIDDEN:
            continue
        if is_whiteout(entry.dir_fd, entry.base, st):
            yield path, False, Kind.DELETED
            continue
        below = layers.lstat(parts)
        if path in TOUCHED and below is None:  # Docker's init layer has it
            continue
        if is_opaque(entry.dir_fd, entry.base, st) and below is not None:
            yield path, True, Kind.DELETED
        elif below is None:
            yield path, stat.S_ISDIR(st.st_mode), Kind.ADDED
        elif not _unchanged_dir(path, st, below):
            yield path, stat.S_ISDIR(st.st_mode), Kind.MODIFIED


def changes(upper_fd: int, layers: Layers, limit: int = MAX_CHANGES) -> list[Change]:
    """The changes of the upper directory *upper_fd* against *layers*, sorted by path (parents first).

    Raises:
        FailedPrecondition: more than *limit* changes.
    """
    out: list[Change] = []
    listed: set[str] = set()
    for path, is_dir, kind in _kinds(upper_fd, layers):
        if is_dir:
            listed.add(path)
        if kind is not Kind.MODIFIED:
            parent = path.rsplit("/", 1)[0]
            if parent and parent not in listed:
                out.append(Change(parent, Kind.MODIFIED))
                listed.add(parent)
        out.append(Change(path, kind))
        if len(out) > limit:
            raise FailedPrecondition(f"the container changed more than {limit} files; `docker diff` lists at most "
                                     f"{limit}: export the container (docker export) to see them all")
    out.sort(key=lambda c: c.path.split("/"))
    return out


def container_changes(upper: str, lowers: Sequence[str], limit: int = MAX_CHANGES) -> list[Change]:
    """The changes of the overlay upper directory *upper* against the layer directories *lowers* (topmost first).

    Both are host paths the daemon chose; what is inside them is walked by descriptor. A
    missing upper directory (a container never started) has no changes.

    Raises:
        FailedPrecondition: more than *limit* changes.
        TreeTooDeep: directories nested deeper than berth.host.fswalk.MAX_WALK_DEPTH.
    """
    with ExitStack() as stack:
        try:
            top = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        stack.callback(os.close, top)
        fds = []
        for lower in lowers:
            try:
                fd = os.open(lower, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            stack.callback(os.close, fd)
            fds.append(fd)
        return changes(top, Layers(fds), limit)


__all__ = ["Change", "HIDDEN", "Kind", "Layers", "MAX_CHANGES", "TOUCHED", "changes", "container_changes",
           "is_opaque", "is_whiteout", "overlay_attr"]
