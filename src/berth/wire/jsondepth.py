"""How deeply a JSON text nests, measured without recursion.

Python's json module recurses once per `[` or `{`; a text nested a few
thousand deep raises RecursionError (a crash, not a parse error). Callers
that parse untrusted JSON check the depth first with `check_depth`, which
removes the strings (so brackets inside them do not count) and walks the
remaining brackets with C-speed iterators.
"""

from __future__ import annotations

import itertools
import re

MAX_DEPTH = 400

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = frozenset(b"[{")
# One byte per bracket: 1 opens, 255 closes; everything else is deleted.
_TABLE = bytes(1 if i in _OPEN else 255 if i in b"]}" else 0 for i in range(256))
_OTHERS = bytes(i for i in range(256) if i not in b"[{]}")
_STEP = (0, 1) + (0,) * 253 + (-1,)


class TooDeep(ValueError):
    """The JSON text nests deeper than allowed."""


def depth(text: bytes | str) -> int:
    """The deepest nesting of arrays and objects in *text* (0 for a scalar)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    brackets = _STRING.sub(b"", data).translate(_TABLE, _OTHERS)
    if not brackets:
        return 0
    return max(0, max(itertools.accumulate(map(_STEP.__getitem__, brackets))))


def check_depth(text: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Raise TooDeep if *text* nests deeper than *limit*; cheap when it has few brackets."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return
    if depth(data) > limit:
        raise TooDeep(f"nested more than {limit} levels deep")


__all__ = ["MAX_DEPTH", "TooDeep", "check_depth", "depth"]
