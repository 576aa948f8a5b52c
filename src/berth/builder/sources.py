"""The sources of COPY and ADD: which paths below a root their patterns name, in Docker's order.

Strategy: source patterns follow Go's filepath.Match (the classic builder's
rules): "*" and "?" never match "/", classes are "[...]" or "[^...]", "\\"
escapes, and a pattern is a glob only when it holds an unescaped "*", "?" or
"[". A glob is matched one path segment at a time, each segment turned into
a regex, descending only into real directories, so "dir/*.txt" matches inside
dir but not through a symlink. A literal source is looked up in scope
(berth.builder.scope) but returned as written: COPY names the copy after the
symlink it was given, and opens what it resolves to only when it copies.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Sequence

from berth.builder.scope import host_lstat, resolve_in_dir, split_clean
from berth.errors import InvalidArgument

NOT_FOUND_WHERE = "build context or excluded by .dockerignore"


def has_wildcards(pattern: str) -> bool:
    """True when *pattern* holds an unescaped "*", "?" or "[" (Docker's containsWildcards)."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "*?[":
            return True
        i += 1
    return False


class _BadPattern(ValueError):
    pass


def _class_char(seg: str, i: int) -> tuple[str, int]:
    """One character of a [...] class at seg[i] (escape allowed); returns it and the next index."""
    if i >= len(seg) or seg[i] in "-]":
        raise _BadPattern
    if seg[i] == "\\":
        i += 1
        if i >= len(seg):
            raise _BadPattern
    if i + 1 >= len(seg):  # the class must be closed after this character
        raise _BadPattern
    return seg[i], i + 1


def segment_regex(seg: str) -> re.Pattern[str]:
    """A regex matching one path segment as Go's filepath.Match matches it.

    Raises:
        ValueError: the pattern is malformed (an unclosed class, a trailing "\\").
    """
    out: list[str] = []
    i = 0
    while i < len(seg):
        ch = seg[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            i += 1
            if i >= len(seg):
                raise _BadPattern
            out.append(re.escape(seg[i]))
        elif ch == "[":
            i += 1
            negate = i < len(seg) and seg[i] == "^"
            if negate:
                i += 1
            ranges: list[str] = []
            first = True
            while True:
                if i < len(seg) and seg[i] == "]" and not first:
                    break
                lo, i = _class_char(seg, i)
                hi = lo
                if seg[i] == "-":
                    hi, i = _class_char(seg, i + 1)
                first = False
                if lo <= hi:
                    ranges.append(f"\\U{ord(lo):08x}-\\U{ord(hi):08x}")
            if ranges:
                out.append(("[^" if negate else "[") + "".join(ranges) + "]")
            else:
                out.append("." if negate else "(?!)")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _glob(root: str, regexes: Sequence[re.Pattern[str]]) -> list[list[str]]:
    found: list[list[str]] = []

    def walk(prefix: list[str], depth: int) -> None:
        try:
            names = sorted(os.listdir(os.path.join(root, *prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return
        last = depth == len(regexes) - 1
        for name in names:
            if not regexes[depth].fullmatch(name):
                continue
            parts = [*prefix, name]
            if last:
                found.append(parts)
                continue
            try:
                st = os.lstat(os.path.join(root, *parts))
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                walk(parts, depth + 1)

    walk([], 0)
    return found


def find_sources(root: Path | str, patterns: Sequence[str], *, instruction: str = "COPY",
                 where: str = NOT_FOUND_WHERE) -> list[Path]:
    """The paths that COPY/ADD source *patterns* name below *root*, in Docker's order.

    Args:
        root: the directory sources are read from (a build context, or a stage's root).
        patterns: the source arguments as written ("*.txt", "dir/", "/abs", "."); a
            leading "/" means *root*.
        instruction: "COPY" or "ADD", for error messages.
        where: how messages name *root* when something is missing.
    Returns:
        Absolute paths below *root*, not resolved (a symlink is returned as itself, so
        that COPY names the copy after it): never open them directly, use real_path();
        each pattern's matches in walk order, duplicates dropped.
    Raises:
        InvalidArgument: a pattern leaves *root* with "..", is a malformed glob, or names
            nothing.
    """
    top = os.fspath(root)
    out: list[Path] = []
    seen: set[str] = set()
    for pattern in patterns:
        parts = split_clean(pattern)
        if parts is None:
            raise InvalidArgument(f"{instruction} failed: forbidden path outside the build context: {pattern}")
        if has_wildcards(pattern):
            try:
                regexes = [segment_regex(seg) for seg in parts]
            except ValueError:
                raise InvalidArgument(f"{instruction} failed: {pattern!r} is not a valid pattern (Go filepath.Match "
                                      "syntax: *, ?, [a-z], [^a-z], \\ to escape)") from None
            matches = _glob(top, regexes) if regexes else [[]]
        else:
            real = resolve_in_dir(top, parts)
            matches = [parts] if host_lstat(top)(real) is not None else []
        if not matches:
            raise InvalidArgument(f"{instruction} failed: file not found in {where}: stat {pattern}: "
                                  "file does not exist")
        for match in matches:
            key = "/".join(match)
            if key not in seen:
                seen.add(key)
                out.append(Path(top, *match))
    return out


__all__ = ["NOT_FOUND_WHERE", "find_sources", "has_wildcards", "segment_regex"]
