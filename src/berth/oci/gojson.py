"""JSON text laid out the way Go's encoding/json lays it out, byte for byte.

Strategy: docker's CLI prints and stores JSON through encoding/json, and a
manifest list's digest covers its exact bytes, so matching docker means
matching Go's layout, not just its values. Three pieces do it:

- `compact(raw, escape_html)`: Go's json.Compact (and what json.Marshal does
  to a Marshaler's output): insignificant whitespace dropped, every token
  kept as written; with escape_html, `<`, `>`, `&`, U+2028 and U+2029 inside
  strings become \\u escapes, as json.Marshal writes them.
- `indent(raw, indent)`: Go's json.Indent: tokens kept as written, one
  member a line, empty objects and arrays kept as `{}` and `[]`, leading
  whitespace dropped and trailing whitespace kept.
- `dumps(value, indent)`: json.Marshal / json.MarshalIndent of plain values
  (dicts keep their insertion order, which stands in for Go's field order).

Every input is checked to be one JSON value first (strict: no NaN, no
Infinity); anything else raises InvalidArgument.
"""

from __future__ import annotations

import json
from typing import Any

from berth.errors import InvalidArgument

_WHITESPACE = b" \t\r\n"
_HTML = {ord("<"): b"\\u003c", ord(">"): b"\\u003e", ord("&"): b"\\u0026"}
_LINE_SEPARATORS = {b"\xe2\x80\xa8": b"\\u2028", b"\xe2\x80\xa9": b"\\u2029"}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check(raw: bytes, what: str = "JSON") -> Any:
    """*raw* parsed, strictly (UTF-8, one value, no NaN or Infinity).

    Raises:
        InvalidArgument: *raw* is not one JSON value.
    """
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None


def _string_end(raw: bytes, start: int) -> int:
    """The index just past the string that opens at raw[start] (a quote)."""
    i = start + 1
    while True:
        c = raw[i]
        if c == 0x5C:  # backslash: the next byte is escaped
            i += 2
            continue
        i += 1
        if c == 0x22:
            return i


def _escape_html(token: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(token):
        c = token[i]
        if c in _HTML:
            out += _HTML[c]
        elif c == 0xE2 and token[i:i + 3] in _LINE_SEPARATORS:
            out += _LINE_SEPARATORS[token[i:i + 3]]
            i += 3
            continue
        else:
            out.append(c)
        i += 1
    return bytes(out)


def _tokens(raw: bytes) -> list[bytes]:
    """The tokens of valid JSON *raw*: strings, literals, numbers and single punctuation bytes."""
    out: list[bytes] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c in _WHITESPACE:
            i += 1
        elif c == 0x22:
            end = _string_end(raw, i)
            out.append(raw[i:end])
            i = end
        elif c in b"{}[],:":
            out.append(raw[i:i + 1])
            i += 1
        else:
            j = i
            while j < n and raw[j] not in _WHITESPACE and raw[j] not in b"{}[],:\"":
                j += 1
            out.append(raw[i:j])
            i = j
    return out


def compact(raw: bytes, escape_html: bool = False) -> bytes:
    """Go's json.Compact of *raw* (with json.Marshal's HTML escaping when *escape_html*).

    Raises:
        InvalidArgument: *raw* is not one JSON value.
    """
    check(raw)
    tokens = _tokens(raw)
    if escape_html:
        tokens = [_escape_html(t) if t[:1] == b'"' else t for t in tokens]
    return b"".join(tokens)


def indent(raw: bytes, unit: str = "\t", prefix: str = "") -> bytes:
    """Go's json.Indent(dst, raw, prefix, unit).

    Raises:
        InvalidArgument: *raw* is not one JSON value.
    """
    check(raw)
    stripped = raw.rstrip(_WHITESPACE)
    trailing = raw[len(stripped):]
    pad, lead = unit.encode(), prefix.encode()
    out = bytearray()
    depth = 0
    need_indent = False

    def newline() -> None:
        out.extend(b"\n" + lead + pad * depth)

    for token in _tokens(stripped):
        if token in (b"{", b"["):
            if need_indent:
                depth += 1
                newline()
            out += token
            need_indent = True
        elif token in (b"}", b"]"):
            if need_indent:  # empty: keep it compact
                need_indent = False
            else:
                depth -= 1
                newline()
            out += token
        elif token == b",":
            out += token
            newline()
        elif token == b":":
            out += b": "
        else:
            if need_indent:
                depth += 1
                newline()
                need_indent = False
            out += token
    return bytes(out) + trailing


def dumps(value: Any, unit: str | None = None) -> bytes:
    """json.Marshal (unit None) or json.MarshalIndent(value, "", unit) of a plain value."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    raw = _escape_html(text.encode("utf-8"))
    return raw if unit is None else indent(raw, unit)
