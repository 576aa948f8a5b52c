"""Client-supplied patterns, matched the way Docker (Go) matches them, in time linear in the input.

A filter such as `ps --filter name=(a+)+$` comes from any API client. Python's `re` backtracks and
such a pattern could hold the event loop for minutes; RE2 (Go's regexp syntax, which is what
Docker's filters take) cannot. A pattern RE2 refuses (look-behind, back-references) matches nothing.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import re2  # type: ignore[import-untyped]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a client's bad pattern is not the daemon's error


@functools.lru_cache(maxsize=256)
def go_regex(pattern: str) -> Any | None:
    """The compiled pattern, or None when it is not a valid expression."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error:
        return None


def reference_matches(patterns: list[str], name: str) -> bool:
    """Docker's `reference` filter: a pattern (Go's path.Match: `*` and `?` stop at `/`) matching the
    name (`busybox:latest`, `busybox@sha256:...`) or the name without its tag or digest (`busybox`)."""
    bare = name.split("@", 1)[0]
    if ":" in bare.rsplit("/", 1)[-1]:
        bare = bare.rsplit(":", 1)[0]
    return any((g := _glob(p)) is not None and (g.fullmatch(name) or g.fullmatch(bare)) for p in patterns)


def _glob(pattern: str) -> Any | None:
    """Go's path.Match pattern as a regular expression (a malformed class matches itself literally),
    compiled by RE2: however many stars a client sends, matching stays linear."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + "".join(
                "-" if c == "-" else re.escape(c) for c in body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return go_regex("".join(out))
