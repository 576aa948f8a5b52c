""".dockerignore applied to an extracted build context: every excluded entry removed from disk.

Strategy: the rules are applied once, on disk, right after extraction: what
they exclude is removed, so nothing later (globbing, copying, checksums) has
to know about them; that is what a client that filters its own upload
produces too. The rules come parsed by berth.wire.dockerignore, or as a bare
predicate (tests, callers with their own rules). The walk keeps an explicit
stack rather than recursing, because a hostile context may nest directories
thousands deep; a directory nothing below which can be re-included is
removed whole, any other excluded one only once it is empty.
"""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from berth.errors import FailedPrecondition
from berth.host import fs


@runtime_checkable
class IgnorePatterns(Protocol):
    """What berth.wire.dockerignore.parse() returns (only these two methods are used)."""

    def excluded(self, path: str) -> bool: ...

    def dir_excluded_entirely(self, path: str) -> bool: ...


# A matcher: the parsed patterns, or a bare predicate over slash-separated
# paths relative to the context root (then excluded directories are always
# descended into, in case something below is re-included).
Ignore = IgnorePatterns | Callable[[str], bool]


def parse_dockerignore(text: str) -> IgnorePatterns:
    """Parse .dockerignore text with berth.wire.dockerignore (imported only when needed).

    Raises:
        FailedPrecondition: the matcher module is not installed with this berth.
    """
    try:
        dockerignore = importlib.import_module("berth.wire.dockerignore")
    except ImportError as exc:  # pragma: no cover - only while the module is missing
        raise FailedPrecondition("the build context has a .dockerignore but berth.wire.dockerignore is "
                                 "missing from this installation; reinstall berth") from exc
    patterns: IgnorePatterns = dockerignore.parse(text)
    return patterns


def _matcher(ignore: Ignore) -> tuple[Callable[[str], bool], Callable[[str], bool] | None]:
    if isinstance(ignore, IgnorePatterns):
        return ignore.excluded, ignore.dir_excluded_entirely
    return ignore, None


def prune(root: Path | str, ignore: Ignore) -> int:
    """Remove from *root* every entry that *ignore* excludes; return how many were removed.

    A directory that is excluded is removed whole when nothing below it can be
    re-included; otherwise its entries are judged one by one and it is removed only
    if it ends up empty.
    """
    excluded, entirely = _matcher(ignore)
    removed = 0
    # An explicit stack, not recursion: a context may nest directories thousands deep.
    # ("visit", directory, prefix) lists a directory; ("leave", path, rel) removes an
    # excluded directory once what is below it was judged, if it is empty by then;
    # ("drop", path, rel) removes a directory nothing below which can be re-included.
    todo: list[tuple[str, str, str]] = [("visit", os.fspath(root), "")]
    while todo:
        action, directory, prefix = todo.pop()
        if action == "leave":
            if not os.listdir(directory):
                os.rmdir(directory)
                removed += 1
            continue
        drop = action == "drop"
        later: list[tuple[str, str, str]] = []
        for name in sorted(os.listdir(directory)):
            rel = prefix + name
            path = os.path.join(directory, name)
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                if drop or excluded(rel):
                    os.unlink(path)
                    removed += not drop
                continue
            gone = drop or excluded(rel)
            if gone and not drop and entirely is not None and entirely(rel):
                fs.rmtree(path)  # iterative: any depth
                removed += 1
                continue
            later.append(("drop" if drop else "visit", path, rel + "/"))
            if gone:
                later.append(("leave", path, rel))
        todo.extend(reversed(later))  # in name order, each directory's content before its "leave"
    return removed


__all__ = ["Ignore", "IgnorePatterns", "parse_dockerignore", "prune"]
