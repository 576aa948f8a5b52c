"""Tests for berth.builder.scope: paths resolved inside a root that acts as "/"."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Sequence

import pytest

from berth.builder import scope
from berth.errors import InvalidArgument


def test_real_path_and_relative_parts(src: Path) -> None:
    assert scope.real_path(src, src / "abslink" / "x.txt") == src / "dir/x.txt"
    assert scope.real_path(src, "toplink") == src / "dir/x.txt"
    assert scope.real_path(src, src / "outlink") == src / "etc"
    assert scope.relative_parts(src, f"{src}/a/../b") == ["b"]
    assert scope.relative_parts(src, f"{src}/../x") is None
    assert scope.relative_parts(src, f"{src}x/y") is None
    with pytest.raises(InvalidArgument, match="outside"):
        scope.real_path(src, src.parent)


def _tree(entries: dict[str, str | None]) -> tuple[scope.LstatFn, scope.ReadlinkFn]:
    """lstat and readlink over an imagined tree: path -> symlink target, or None for a directory."""
    def lstat(parts: Sequence[str]) -> os.stat_result | None:
        key = "/".join(parts)
        if key not in entries:
            return None
        kind = stat.S_IFDIR if entries[key] is None else stat.S_IFLNK
        return os.stat_result((kind | 0o755, 0, 0, 1, 0, 0, 0, 0, 0, 0))

    def readlink(parts: Sequence[str]) -> str:
        target = entries["/".join(parts)]
        assert target is not None, "readlink of a directory"
        return target

    return lstat, readlink


TREE = {"usr": None, "usr/bin": None, "bin": "usr/bin", "up": "../../../usr", "abs": "/usr/bin",
        "loop1": "loop2", "loop2": "/loop1"}


@pytest.mark.parametrize(("path", "follow_last", "expected"), [
    ("bin/sh", True, ["usr", "bin", "sh"]),
    ("up/bin", True, ["usr", "bin"]),       # ".." stops at the root
    ("abs/../x", True, ["usr", "x"]),        # an absolute target starts again at the root
    ("../../bin", True, ["usr", "bin"]),
    ("bin", False, ["bin"]),
    ("missing/../bin/x", True, ["usr", "bin", "x"]),
])
def test_resolve_scoped_follows_symlinks_in_scope(path: str, follow_last: bool, expected: list[str]) -> None:
    assert scope.resolve_scoped(path.split("/"), *_tree(TREE), follow_last=follow_last) == expected


def test_resolve_scoped_visits_what_it_keeps_never_a_followed_symlink() -> None:
    seen: list[tuple[str, bool, bool]] = []

    def visit(here: list[str], st: os.stat_result | None, last: bool) -> None:
        seen.append(("/".join(here), st is not None, last))

    assert scope.resolve_scoped(["bin", "new"], *_tree(TREE), visit=visit) == ["usr", "bin", "new"]
    assert seen == [("usr", True, False), ("usr/bin", True, False), ("usr/bin/new", False, True)]


def test_resolve_scoped_visit_may_refuse() -> None:
    def refuse(here: list[str], st: os.stat_result | None, last: bool) -> None:
        if st is None:
            raise InvalidArgument(f"/{'/'.join(here)} is missing")

    with pytest.raises(InvalidArgument, match="^/usr/bin/new is missing$"):
        scope.resolve_scoped(["bin", "new", "deeper"], *_tree(TREE), visit=refuse)


def test_resolve_scoped_stops_a_symlink_loop() -> None:
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links resolving /loop1/x"):
        scope.resolve_scoped(["loop1", "x"], *_tree(TREE))
    assert scope.resolve_scoped(["loop1"], *_tree(TREE), follow_last=False) == ["loop1"]
