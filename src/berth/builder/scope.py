"""Paths inside a tree whose root acts as "/": a build context, a stage's root, an image.

Strategy: paths are resolved "in scope", as Docker's FollowSymlinkInScope
does: an absolute symlink target starts again at the root, and ".." never
climbs above it. Only the result, a path made of real directories below the
root, is ever opened on the host, so a symlink in the tree can point anywhere
without leading the host out of it. One walk, resolve_scoped(), does this
for every tree berth builds from: it reads the tree only through the lstat
and readlink it is handed (a host directory here, an image's layers in
imagetree, the layer being written in layerwriter), and a caller that must
check or make each directory on the way (COPY's destination) does it in the
walk's visit callback, so the symlink rules are written once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Sequence

from berth.errors import InvalidArgument

MAX_SYMLINKS = 255             # hops allowed while resolving one path (Docker's limit)


def split_clean(path: str) -> list[str] | None:
    """The components of *path* taken relative to a root, or None when ".." climbs above it.

    A leading "/" means the root; "." and empty components are dropped, ".." removes
    the previous component (Go's filepath.Join(root, path) followed by a prefix check).
    """
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    return parts


LstatFn = Callable[[Sequence[str]], "os.stat_result | None"]
ReadlinkFn = Callable[[Sequence[str]], str]
# Called with each component the walk keeps (its path, its lstat, and whether it is the last).
VisitFn = Callable[[list[str], "os.stat_result | None", bool], None]


def resolve_scoped(parts: Sequence[str], lstat: LstatFn, readlink: ReadlinkFn, *,
                   follow_last: bool = True, visit: VisitFn | None = None) -> list[str]:
    """Follow symlinks along *parts* inside a root that acts as "/".

    Args:
        parts: components below the root ("..", "." and "" are allowed).
        lstat: the lstat of a symlink-free path below the root, or None when absent.
        readlink: the target of the symlink at a symlink-free path.
        follow_last: also follow a symlink in the last component.
        visit: called with each component that is not a followed symlink (its components,
            its lstat, whether it is the last) before the walk goes below it: it may
            refuse it by raising, or make it (COPY's missing directories).
    Returns:
        Components of the resolved path; every one but the last is a directory or absent
        (the path may not exist).
    Raises:
        InvalidArgument: more than MAX_SYMLINKS symlinks on the way (a loop), or what
            *lstat*, *readlink* or *visit* raise.
    """
    done: list[str] = []
    todo = [p for p in parts if p not in ("", ".")]
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        candidate = [*done, name]
        st = lstat(candidate)
        if st is not None and stat.S_ISLNK(st.st_mode) and (todo or follow_last):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise InvalidArgument(f"too many levels of symbolic links resolving /{'/'.join(parts)}; "
                                      "break the symlink loop")
            target = readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        if visit is not None:
            visit(candidate, st, not todo)
        done = candidate
    return done


def host_lstat(root: str) -> LstatFn:
    """An LstatFn over the host directory *root* (find_sources checks a literal source with it)."""
    def lstat(parts: Sequence[str]) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(root, *parts))
        except (FileNotFoundError, NotADirectoryError):
            return None
    return lstat


def _host_readlink(root: str) -> ReadlinkFn:
    def readlink(parts: Sequence[str]) -> str:
        return os.readlink(os.path.join(root, *parts))
    return readlink


def resolve_in_dir(root: Path | str, parts: Sequence[str], *, follow_last: bool = True) -> list[str]:
    """resolve_scoped() over a directory on the host (a build context, a stage's root)."""
    top = os.fspath(root)
    return resolve_scoped(parts, host_lstat(top), _host_readlink(top), follow_last=follow_last)


def real_path(root: Path | str, path: Path | str) -> Path:
    """Where the source *path* (as find_sources returned it) really is: symlinks followed in scope.

    The paths find_sources returns are lexical; opening them directly would let the host
    follow a symlink out of *root*. This one is made of real directories below *root*
    (the file itself may be missing).

    Raises:
        InvalidArgument: *path* is outside *root*.
    """
    parts = relative_parts(root, path)
    if parts is None:
        raise InvalidArgument(f"forbidden path outside the build context: {os.fspath(path)}")
    return Path(os.fspath(root), *resolve_in_dir(root, parts))


def relative_parts(root: Path | str, path: Path | str) -> list[str] | None:
    """The components of *path* below *root* (absolute, or relative to root), or None when outside."""
    text = os.fspath(path)
    if text.startswith("/"):
        top = os.path.abspath(root)
        text = os.path.normpath(text)
        if text != top and not text.startswith(top.rstrip("/") + "/"):
            return None
        text = text[len(top):]
    return split_clean(text)


__all__ = [
    "MAX_SYMLINKS", "LstatFn", "ReadlinkFn", "VisitFn", "host_lstat", "real_path", "relative_parts",
    "resolve_in_dir", "resolve_scoped", "split_clean",
]
