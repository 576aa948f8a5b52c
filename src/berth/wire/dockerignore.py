""".dockerignore: which paths of a build context are left out.

Strategy: pure. `parse` reads the file as Docker does: a line starting with
`#` (in column one) is a comment, other lines are trimmed, blank lines are
skipped, `!` marks an exception, each pattern is cleaned like Go's
filepath.Clean and a leading `/` is dropped. Each pattern becomes an exact
string, a prefix (`dir/**`), a suffix (`**/name`) or a regular expression:
`*` and `?` never cross `/`, `**` spans any number of directories, `[...]` is
a character class and `\\` escapes the next character.

`Patterns.excluded(path)` is Docker's rule: walk the patterns in order; a
pattern that matches the path *or one of its parent directories* sets the
verdict (excluded, or re-included for `!`), so the last matching pattern wins
and excluding a directory excludes everything below it.
`dir_excluded_entirely` lets a context walker skip a directory without
descending, which is only safe when no `!` pattern could re-include
something deeper down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from berth.errors import InvalidArgument


def clean(path: str) -> str:
    """Go's filepath.Clean for slash-separated paths ("" becomes ".")."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def _translate(pattern: str) -> tuple[str, str]:
    """(kind, data) for a cleaned pattern: kind is exact, prefix, suffix or regex.

    exact/prefix/suffix carry the string to compare; regex carries the expression.
    """
    kind = "exact"
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        start = i
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                if i == n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regex"
                else:
                    out.append("(.*/)?")
                    kind = "regex"
                if start == 0:
                    kind = "suffix"
            else:
                out.append("[^/]*")
                kind = "regex"
        elif ch == "?":
            out.append("[^/]")
            kind = "regex"
        elif ch == "\\":
            if i == n:
                raise InvalidArgument(f"bad .dockerignore pattern {pattern!r}: it ends with a lone backslash")
            out.append(re.escape(pattern[i]))
            i += 1
            kind = "regex"
        elif ch == "[":
            cls, i = _char_class(pattern, i)
            out.append(cls)
            kind = "regex"
        else:
            out.append(re.escape(ch))
    if kind == "prefix":
        return kind, pattern[:-2]
    if kind == "suffix":
        return kind, pattern[2:]
    if kind == "exact":
        return kind, pattern
    return kind, "".join(out) + r"\Z"


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """Translate the class after `[` at *i*; return the regex and the index after `]`.

    Go's rules: non-empty, `^` negates, items are characters or `lo-hi` ranges,
    `\\` escapes; an unescaped `-` or `]` where a character is expected is an error.
    """
    bad = InvalidArgument(
        f"bad .dockerignore pattern {pattern!r}: a character class must look like [abc], [a-z] or [^abc]")

    def char(k: int) -> tuple[str, int]:
        if k >= len(pattern) or pattern[k] in "-]":
            raise bad
        if pattern[k] == "\\":
            if k + 1 >= len(pattern):
                raise bad
            return pattern[k + 1], k + 2
        return pattern[k], k + 1

    out = ["["]
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    while True:
        lo, i = char(i)
        if i < len(pattern) and pattern[i] == "-":
            hi, i = char(i + 1)
            if hi < lo:
                raise bad
            out.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            out.append(re.escape(lo))
        if i >= len(pattern):
            raise bad
        if pattern[i] == "]":
            return "".join(out) + "]", i + 1


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the leading "!"
    exclusion: bool  # a `!` exception: matching paths are re-included
    kind: str = field(init=False)
    data: str = field(init=False)

    def __post_init__(self) -> None:
        kind, data = _translate(self.text)
        if kind == "regex":
            try:
                re.compile(data)
            except re.error as exc:
                raise InvalidArgument(f"bad .dockerignore pattern {self.text!r}: {exc}") from None
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "data", data)

    def match(self, path: str) -> bool:
        """Whether the pattern itself matches *path* (parents not considered)."""
        if self.kind == "exact":
            return path == self.data
        if self.kind == "prefix":
            return path.startswith(self.data)
        if self.kind == "suffix":
            # `**/name` also matches "name" at the top.
            return path.endswith(self.data) or (self.data.startswith("/") and path == self.data[1:])
        return re.match(self.data, path) is not None

    def could_match_below(self, parts: list[str]) -> bool:
        """Whether some path strictly under the directory *parts* might match."""
        mine = self.text.split("/")
        for pat, part in zip(mine, parts, strict=False):
            if "**" in pat:
                return True  # spans any depth from here on: assume it may
            kind, data = _translate(pat)
            if kind == "exact" and pat != part:
                return False
            if kind == "regex" and re.match(data, part) is None:
                return False
        # Without `**`, `*`, `?` and classes never cross "/", so a pattern
        # reaches below *parts* only if it has more components than it.
        return len(mine) > len(parts)


@dataclass(frozen=True)
class Patterns:
    patterns: tuple[Pattern, ...] = ()

    @property
    def exclusions(self) -> bool:
        """Whether any `!` exception is present."""
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether *path* (slash-separated, relative to the context root) is left out."""
        path = _relative(path)
        parent = path.rpartition("/")[0] or "."
        parents = parent.split("/") if parent != "." else []
        prefixes = ["/".join(parents[: k + 1]) for k in range(len(parents))]
        verdict = False
        for pat in self.patterns:
            if pat.exclusion != verdict:
                continue  # it could not change the verdict
            if pat.match(path) or any(pat.match(p) for p in prefixes):
                verdict = not pat.exclusion
        return verdict

    def dir_excluded_entirely(self, path: str) -> bool:
        """Whether directory *path* and everything below it is excluded.

        True only when *path* is excluded and no `!` exception could match
        anything under it, so a walker may skip it without looking inside.
        """
        if not self.excluded(path):
            return False
        parts = _relative(path).split("/")
        return not any(p.exclusion and p.could_match_below(parts) for p in self.patterns)


def _relative(path: str) -> str:
    out = clean(path)
    while out.startswith("/"):
        out = out[1:]
    return out or "."


def compile_patterns(lines: list[str]) -> Patterns:
    """Patterns from already-read pattern strings (each may start with "!").

    Raises:
        InvalidArgument: a lone "!" or a malformed pattern.
    """
    out: list[Pattern] = []
    for raw in lines:
        text = raw.strip()
        if not text:
            continue
        exclusion = text.startswith("!")
        if exclusion:
            text = text[1:]
            if not text:
                raise InvalidArgument('illegal exclusion pattern: "!" (write !<pattern> to re-include paths)')
        out.append(Pattern(text=clean(text), exclusion=exclusion))
    return Patterns(tuple(out))


def parse(text: str) -> Patterns:
    """Parse the text of a .dockerignore file.

    Raises:
        InvalidArgument: a lone "!" or a malformed pattern (e.g. an unclosed `[`).
    """
    lines: list[str] = []
    for n, line in enumerate(text.split("\n")):
        if n == 0 and line.startswith("\ufeff"):
            line = line[1:]
        line = line.rstrip("\r")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        lines.append("!" + pattern if invert else pattern)
    return compile_patterns(lines)
