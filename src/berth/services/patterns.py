"""Client-supplied patterns, matched the way Docker (Go) matches them, in time linear in the input.

A filter such as `ps --filter name=(a+)+$` comes from any API client. Python's `re` backtracks and
such a pattern could hold the event loop for minutes; RE2 (Go's regexp syntax, which is what
Docker's filters take) cannot. A pattern RE2 refuses (look-behind, back-references) matches nothing.
"""

from __future__ import annotations

import functools
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
