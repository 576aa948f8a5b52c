"""Dockerfile parser: text in, build stages of typed instructions out.

Strategy: pure string work in three layers, each following Docker's reference
rules (the BuildKit/classic-builder frontend), with no I/O at all.

1. *Lines.* Parser directives (`# escape=`, `# syntax=`, `# check=`) are read
   only at the very top; the first other line (comment, blank or instruction)
   ends them. An escape character at the end of a line continues it; comment
   lines and blank lines inside a continuation are dropped; the first line of
   an instruction is left-trimmed, continuation lines are kept as written and
   joined without separators. After a RUN/COPY/ADD (or ONBUILD of one) whose
   line holds `<<WORD`, the following lines up to WORD are that heredoc's body.
2. *Instructions.* The first word names the instruction (any case). Leading
   `--name[=value]` words are flags. The rest is kept raw in `args` as one
   string (shell form), or as a list when the instruction accepts the exec form
   and the rest is a JSON array of strings. Arity and flag checks happen here,
   so every error carries the line: "Dockerfile parse error line N: ...".
3. *Words.* `expand`, `split_words` and `parse_kv` implement Docker's shell-
   word processing (quotes, the escape character, `$VAR` and `${VAR...}`
   forms). The builder calls them while it runs, with the environment of the
   moment; nothing is expanded at parse time.

Representation notes for the builder:

- Shell form: `args == [rest of the line]` (`[]` when nothing follows);
  `Instruction.words()` splits it on whitespace as Docker does for COPY, ADD,
  VOLUME, EXPOSE and FROM.
- HEALTHCHECK follows the same rule: `["NONE"]` or `["CMD curl -f ..."]`
  (the rest as written), or the exec-form list after CMD (json=True);
  `healthcheck(ins)` turns it into the image-config object.
- ONBUILD: `cmd == "ONBUILD"`; args/json/flags/heredocs are the wrapped
  instruction's, `sub` its name; `inner()` rebuilds it.
- Bare boolean flags (`--link`) are recorded as "true". Flags that may repeat
  (`--mount`, `--exclude`) keep the last value in `flags` and every value in
  `flag_list`.
- Heredoc bodies keep their line endings; `<<-` bodies already have leading
  tabs removed; `expand` is False when the delimiter was quoted.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from berth.errors import InvalidArgument

INSTRUCTIONS = (
    "FROM", "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER",
    "LABEL", "EXPOSE", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD", "SHELL", "MAINTAINER",
)

# Instructions whose arguments may be a JSON array (exec form).
_JSON_FORMS = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"})
_HEREDOC_FORMS = frozenset({"RUN", "COPY", "ADD"})

# Flags each instruction accepts: "str" once with a value, "bool" bare or =true/false,
# "multi" repeatable with a value.
_FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": "str"},
    "RUN": {"mount": "multi", "network": "str", "security": "str"},
    "COPY": {"from": "str", "chown": "str", "chmod": "str", "link": "bool",
             "parents": "bool", "exclude": "multi"},
    "ADD": {"chown": "str", "chmod": "str", "link": "bool", "keep-git-dir": "bool",
            "checksum": "str", "exclude": "multi", "unpack": "bool"},
    "HEALTHCHECK": {"interval": "str", "timeout": "str", "start-period": "str",
                    "start-interval": "str", "retries": "str"},
}

_DIRECTIVES = frozenset({"escape", "syntax", "check"})
_DIRECTIVE_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[ \t\n\f\r]*=[ \t\n\f\r]*(.+?)[ \t\n\f\r]*")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")
_HEREDOC_WORD = re.compile(r"(\d*)<<(-?)([^<]*)")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be parsed; `line` is 1-based, None when no line applies."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        where = f" line {line}" if line is not None else ""
        super().__init__(f"Dockerfile parse error{where}: {reason}")


@dataclass(frozen=True)
class Heredoc:
    """The body of a `<<NAME` (or `<<-NAME`) heredoc."""

    name: str
    content: str
    chomp: bool = False  # `<<-`: leading tabs were stripped from every body line
    expand: bool = True  # False when the delimiter was quoted: the body is taken literally
    fd: int = 0  # `3<<EOF` names a file descriptor; 0 (stdin) otherwise


@dataclass(frozen=True)
class Instruction:
    cmd: str  # upper case
    args: list[str]  # exec form: the list; shell form: [rest of the line] or []
    json: bool  # exec form?
    flags: dict[str, str]  # name without "--" -> value (last one for repeatable flags)
    line: int  # 1-based line of the instruction's first line
    original: str  # the instruction as written, continuations joined ("RUN echo hi")
    heredocs: tuple[Heredoc, ...] = ()
    flag_list: tuple[tuple[str, str], ...] = ()  # every flag in order, repeats included
    sub: str = ""  # ONBUILD only: the wrapped instruction's name

    def words(self) -> list[str]:
        """Arguments as a list: the exec-form list, or the shell form split on whitespace."""
        if self.json:
            return list(self.args)
        if not self.args:
            return []
        return [w for w in _WHITESPACE.split(self.args[0]) if w]

    def flag_values(self, name: str) -> list[str]:
        """Every value given for flag *name* (for repeatable flags such as `--mount`)."""
        return [v for k, v in self.flag_list if k == name]

    def inner(self) -> Instruction:
        """The instruction an ONBUILD wraps (its `original` lacks the ONBUILD prefix).

        Raises:
            InvalidArgument: this is not an ONBUILD instruction.
        """
        if self.cmd != "ONBUILD":
            raise InvalidArgument(f"{self.cmd} at line {self.line} is not ONBUILD; only ONBUILD wraps another instruction")
        return Instruction(
            cmd=self.sub, args=list(self.args), json=self.json, flags=dict(self.flags),
            line=self.line, original=_ONBUILD_PREFIX.sub("", self.original, count=1),
            heredocs=self.heredocs, flag_list=self.flag_list,
        )

    def onbuild_trigger(self) -> str:
        """The text Docker stores in the image config's OnBuild list for this ONBUILD."""
        text = self.inner().original
        for doc in self.heredocs:
            text += "\n" + doc.content + doc.name
        return text


@dataclass
class Stage:
    index: int
    name: str | None  # lower case, as Docker compares stage names
    base: str  # the image or stage name after FROM, unexpanded
    platform: str | None  # --platform value, unexpanded
    line: int
    instructions: list[Instruction] = field(default_factory=list)  # after FROM up to the next FROM
    from_instruction: Instruction | None = None  # the FROM itself (for "Step i/n : FROM ...")


@dataclass
class Dockerfile:
    meta_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]
    escape: str
    directives: dict[str, str] = field(default_factory=dict)

    def stage(self, name_or_index: str | int) -> Stage | None:
        """The stage called *name_or_index* (case-insensitive) or at that index."""
        key = str(name_or_index).strip()
        if key.isdecimal():
            i = int(key)
            return self.stages[i] if i < len(self.stages) else None
        key = key.lower()
        for st in self.stages:
            if st.name == key:
                return st
        return None


# --------------------------------------------------------------------------------------
# Shell words: Docker's ProcessWord / ProcessWords.
#
# Outside quotes the escape character takes the next character literally. Single
# quotes keep everything literally (no escapes, no `$`). In double quotes `$` expands
# and the escape character only escapes `"`, `$` and itself (otherwise it stays).
# Text that came from a variable is split into words on whitespace; quoted or
# escaped text is not. With `env=None` unset variables are left as written.


class _LexError(Exception):
    pass


class _Words:
    def __init__(self) -> None:
        self.done: list[str] = []
        self.word = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.done.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.word:
            self.done.append(self.word)
            self.word = ""
        return self.done


class _Lexer:
    def __init__(self, text: str, escape: str, env: Mapping[str, str] | None, *,
                 raw_quotes: bool = False, raw_escapes: bool = False) -> None:
        self.text = text
        self.pos = 0
        self.escape = escape
        self.env: Mapping[str, str] = env if env is not None else {}
        self.keep_unset = env is None
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def run(self) -> tuple[str, list[str]]:
        return self._until("", self.raw_escapes)

    def _lookup(self, name: str) -> str | None:
        return self.env.get(name)

    def _until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            out: list[str] = []
            words = _Words()
            while (ch := self.peek()) != "":
                if stop and ch == stop:
                    self.next()
                    return "".join(out), words.finish()
                if ch == "$":
                    value = self._dollar()
                    out.append(value)
                    words.add_string(value)
                elif ch == "'":
                    value = self._single_quoted()
                    out.append(value)
                    words.add_raw(value)
                elif ch == '"':
                    value = self._double_quoted()
                    out.append(value)
                    words.add_raw(value)
                else:
                    ch = self.next()
                    if ch == self.escape:
                        if self.raw_escapes:
                            words.add_raw(ch)
                            out.append(ch)
                        ch = self.next()
                        if ch == "":
                            break
                        words.add_raw(ch)
                    else:
                        words.add_char(ch)
                    out.append(ch)
            if stop:
                raise _LexError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(out), words.finish()
        finally:
            self.raw_escapes = saved

    def _single_quoted(self) -> str:
        opening = self.next()
        out = [opening] if self.raw_quotes else []
        while True:
            ch = self.next()
            if ch == "":
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double_quoted(self) -> str:
        opening = self.next()
        out = [opening] if self.raw_quotes else []
        while True:
            ch = self.peek()
            if ch == "":
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.peek() in ('"', "$", self.escape) and self.peek() != "":
                    if self.raw_escapes:
                        out.append(ch)
                    ch = self.next()
                elif self.peek() == "":
                    continue
            out.append(ch)

    def _name(self) -> str:
        ch = self.peek()
        if ch.isdecimal():
            digits = ""
            while self.peek().isdecimal():
                digits += self.next()
            return digits
        if ch and ch in "@*#?-$!":
            return self.next()
        name = ""
        while (ch := self.peek()) != "" and (ch.isalnum() or ch == "_"):
            name += self.next()
        return name

    def _dollar(self) -> str:
        self.next()  # "$"
        if self.peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value = self._lookup(name)
            if value is None:
                return "$" + name if self.keep_unset else ""
            return value
        self.next()  # "{"
        first = self.peek()
        if first == "":
            raise _LexError("syntax error: missing '}'")
        if first in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self._name()
        ch = self.next()
        if ch == "":
            raise _LexError("syntax error: missing '}'")
        if ch == "}":
            value = self._lookup(name)
            if value is None:
                return "${" + name + "}" if self.keep_unset else ""
            return value
        if ch == "/":
            return self._replace(name)
        modifier = ch
        null_is_unset = ch == ":"
        if null_is_unset:
            ch = self.next()
            modifier += ch
        if ch == "" or ch not in "+-?#%":
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word, _ = self._until("}", raw_escapes=ch in "#%")
        except _LexError:
            if self.peek() == "":
                raise _LexError("syntax error: missing '}'") from None
            raise
        value = self._lookup(name)
        if value is None and self.keep_unset:
            return "${" + name + modifier + word + "}"
        missing = value is None or (null_is_unset and value == "")
        if ch == "-":
            return word if missing else (value or "")
        if ch == "+":
            return "" if missing else word
        if ch == "?":
            if value is None:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        return _trim(value or "", word, suffix=ch == "%", longest=greedy)

    def _replace(self, name: str) -> str:
        every = self.peek() == "/"
        if every:
            self.next()
        try:
            pattern, _ = self._until("/", raw_escapes=True)
            replacement, _ = self._until("}", raw_escapes=True)
        except _LexError:
            if self.peek() == "":
                raise _LexError("syntax error: missing '}' or '/' in ${}") from None
            raise
        value = self._lookup(name)
        if value is None:
            return "${" + name + ("//" if every else "/") + pattern + "/" + replacement + "}" if self.keep_unset else ""
        rx = re.compile(_shell_pattern(pattern, greedy=True))
        return rx.sub(lambda _m: replacement, value, count=0 if every else 1)


def _shell_pattern(pattern: str, greedy: bool) -> str:
    """Regex text for a `${VAR%pattern}`-style pattern: `*`, `?`, backslash escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\" and i < len(pattern):
            nxt = pattern[i]
            i += 1
            if nxt not in "*?\\}/":
                raise _LexError(f"invalid escape '\\{nxt}' in pattern {pattern!r}")
            out.append(re.escape(nxt))
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _trim(value: str, pattern: str, suffix: bool, longest: bool) -> str:
    """Remove the shortest (or longest) prefix/suffix of *value* matching *pattern*."""
    rx = re.compile(_shell_pattern(pattern, greedy=True), re.DOTALL)
    n = len(value)
    cuts = range(n + 1) if (longest == suffix) else range(n, -1, -1)
    for cut in cuts:
        piece = value[cut:] if suffix else value[:cut]
        if rx.fullmatch(piece):
            return value[:cut] if suffix else value[cut:]
    return value


def _process(text: str, escape: str, env: Mapping[str, str] | None) -> tuple[str, list[str]]:
    try:
        return _Lexer(text, escape, env).run()
    except _LexError as exc:
        raise InvalidArgument(f"failed to process {text!r}: {exc}") from None


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Docker's ProcessWord: substitute variables from *env*, remove quotes and escapes.

    Supports `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
    `${VAR+alt}`, `${VAR:?msg}`, `${VAR#pat}`, `${VAR%pat}` (and `##`, `%%`) and
    `${VAR/pat/repl}`. Unset variables expand to "". Whitespace is kept.

    Raises:
        InvalidArgument: unbalanced quotes, bad substitution syntax, or `${VAR?}` unset.
    """
    return _process(word, escape, env)[0]


def split_words(text: str, escape: str = "\\", env: Mapping[str, str] | None = None) -> list[str]:
    """Docker's ProcessWords: shell-like words with quotes and escapes removed.

    With *env*, variables are substituted first (and their values split on
    whitespace, as a shell would); with None they are left as written.

    Raises:
        InvalidArgument: unbalanced quotes or bad substitution syntax.
    """
    return _process(text, escape, env)[1]


def _raw_words(rest: str, escape: str) -> list[str]:
    """Split on unquoted whitespace keeping quotes and escapes (Docker's parseWords)."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    break
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
        elif ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok = [], False
        else:
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == escape:
                if i + 1 == n:
                    break
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
        i += 1
    if blank_ok or word:
        words.append("".join(word))
    return words


def _kv_raw(rest: str, escape: str, legacy_allowed: bool, what: str) -> list[tuple[str, str | None]]:
    """Unexpanded (key, value) pairs of ENV/LABEL/ARG; value None for a bare ARG name."""
    words = _raw_words(rest, escape)
    if not words:
        raise InvalidArgument(f"{what} requires at least one argument, for example {what} name=value")
    if legacy_allowed and "=" not in words[0]:
        parts = _WHITESPACE.split(rest.strip(), maxsplit=1)
        if len(parts) < 2:
            raise InvalidArgument(f"{what} must have two arguments: write {what} {parts[0]}=<value>")
        return [(parts[0], parts[1])]
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        if "=" not in word:
            if legacy_allowed:
                raise InvalidArgument(
                    f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
            pairs.append((word, None))
            continue
        key, value = word.split("=", 1)
        if not key:
            raise InvalidArgument(f"{what} names can not be blank: {word!r} starts with '='")
        pairs.append((key, value))
    return pairs


def _word(text: str, escape: str, env: Mapping[str, str] | None) -> str:
    return _process(text, escape, env)[0]


def parse_kv(args_raw: str, escape: str = "\\", env: Mapping[str, str] | None = None,
             legacy_allowed: bool = True, what: str = "ENV") -> list[tuple[str, str]]:
    """Pairs of ENV/LABEL (`a=b c="d e"`, or legacy `key value with spaces`) or ARG.

    Keys and values are processed as words: quotes and escapes removed and, when
    *env* is given, variables substituted (all values see the same *env*, as in
    Docker: `ENV a=1 b=$a` reads the old `a`). With `legacy_allowed=False`
    (ARG), a bare name gives `(name, "")`; use `parse_arg` to tell it from `name=`.

    Raises:
        InvalidArgument: no pair, a word without "=", a blank name, bad quoting.
    """
    return [(_word(k, escape, env), _word(v, escape, env) if v is not None else "")
            for k, v in _kv_raw(args_raw, escape, legacy_allowed, what)]


def parse_arg(args_raw: str, escape: str = "\\",
              env: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """ARG declarations: `(name, default)` with default None when none is given."""
    return [(_word(k, escape, env), _word(v, escape, env) if v is not None else None)
            for k, v in _kv_raw(args_raw, escape, False, "ARG")]


# --------------------------------------------------------------------------------------
# Durations and HEALTHCHECK

_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def duration_ns(text: str) -> int:
    """Nanoseconds of a Go duration string ("30s", "1m30s", "1.5h", "0").

    Raises:
        InvalidArgument: not a duration.
    """
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    body = s[1:] if s[:1] in "+-" and s else s
    if body == "0":
        return 0
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if not m:
            break
        total += Fraction(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise InvalidArgument(f"time: invalid duration {text!r}: use a number with a unit, e.g. 30s, 1m30s, 500ms")
    return sign * int(total)


def healthcheck(ins: Instruction) -> dict[str, object]:
    """The image-config `Healthcheck` object of a HEALTHCHECK instruction.

    Durations are nanoseconds; fields left at zero (inherit the default) are omitted.
    """
    if ins.cmd != "HEALTHCHECK":
        raise InvalidArgument(f"{ins.cmd} at line {ins.line} is not HEALTHCHECK")
    if not ins.json and ins.args[0].strip().upper() == "NONE":
        return {"Test": ["NONE"]}
    if ins.json:
        test = ["CMD", *ins.args]
    else:
        test = ["CMD-SHELL", _WHITESPACE.split(ins.args[0].strip(), maxsplit=1)[1]]
    out: dict[str, object] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        value = _interval(ins.flags, flag)
        if value:
            out[key] = value
    retries = _retries(ins.flags)
    if retries:
        out["Retries"] = retries
    return out


def _interval(flags: Mapping[str, str], name: str) -> int:
    text = flags.get(name, "")
    if not text:
        return 0
    ns = duration_ns(text)
    if ns != 0 and ns < 1_000_000:
        raise InvalidArgument(f"Interval {name!r} cannot be less than 1ms (got {text})")
    return ns


def _retries(flags: Mapping[str, str]) -> int:
    text = flags.get("retries", "")
    if not text:
        return 0
    try:
        n = int(text, 10)
    except ValueError:
        raise InvalidArgument(f"--retries must be a whole number, not {text!r}") from None
    if n < 0:
        raise InvalidArgument(f"--retries cannot be negative ({n})")
    return n


# --------------------------------------------------------------------------------------
# Flags


def _split_flags(rest: str) -> tuple[str, list[str]]:
    """Leading `--flag[=value]` words (quotes and backslashes processed) and the remainder."""
    words: list[str] = []
    i, n = 0, len(rest)
    while True:
        while i < n and rest[i].isspace():
            i += 1
        if i >= n:
            return "", words
        if not rest.startswith("--", i):
            return rest[i:], words
        word: list[str] = []
        blank_ok = False
        quote = ""
        while i < n:
            ch = rest[i]
            if quote:
                if ch == quote:
                    quote = ""
                    i += 1
                    continue
                if ch == "\\":
                    if i + 1 == n:
                        i += 1
                        quote = ""
                        continue
                    i += 1
                    ch = rest[i]
                word.append(ch)
                i += 1
                continue
            if ch.isspace():
                break
            if ch in "'\"":
                quote, blank_ok = ch, True
                i += 1
                continue
            if ch == "\\":
                if i + 1 == n:
                    i += 1
                    continue
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
        text = "".join(word)
        if text == "--":
            return rest[i:], words
        if blank_ok or text:
            words.append(text)


def _parse_flags(cmd: str, words: list[str], line: int) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    known = _FLAGS.get(cmd, {})
    flags: dict[str, str] = {}
    listed: list[tuple[str, str]] = []
    for word in words:
        body = word[2:]
        name, eq, value = body.partition("=")
        if not name:
            raise DockerfileError(f"invalid flag format {word!r}: write --name=value", line)
        kind = known.get(name)
        if kind is None:
            accepted = ", ".join("--" + k for k in known) or "no flags"
            raise DockerfileError(f"unknown flag: --{name} ({cmd} accepts {accepted})", line)
        if kind == "bool":
            if not eq:
                value = "true"
            elif value.lower() in ("true", "false"):
                value = value.lower()
            else:
                raise DockerfileError(f"expecting boolean value for flag --{name}, not: {value!r}", line)
        elif not eq:
            raise DockerfileError(f"missing a value on flag --{name}: write --{name}=<value>", line)
        elif kind == "str" and name in flags:
            raise DockerfileError(f"duplicate flag specified: --{name}", line)
        flags[name] = value
        listed.append((name, value))
    return flags, tuple(listed)


# --------------------------------------------------------------------------------------
# Instructions


def _maybe_json(rest: str, cmd: str, line: int) -> tuple[list[str], bool]:
    if rest == "":
        return [], False
    if rest.lstrip().startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            return [rest], False
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise DockerfileError(
                    f"{cmd}: when using JSON array syntax, arrays must be comprised of strings only", line)
            return list(value), True
    return [rest], False


def _heredoc_from_word(word: str, name_word: str | None = None) -> tuple[str, bool, bool, int] | None:
    """(name, chomp, expand, fd) when *word* is `[n]<<[-]NAME`, else None.

    *name_word* supplies NAME when it was written apart (`<< EOF`).
    """
    m = _HEREDOC_WORD.fullmatch(word)
    if not m:
        return None
    rest = m.group(3) if name_word is None else name_word
    if not rest or (name_word is not None and m.group(3)):
        return None
    try:
        plain = _Lexer(rest, "\\", None).run()[1]
        raw = _Lexer(rest, "\\", None, raw_quotes=True).run()[1]
    except _LexError:
        return None
    if len(plain) != 1 or len(raw) != 1:
        return None
    quotes = sum(plain[0].count(q) for q in "'\"")
    raw_quotes = sum(raw[0].count(q) for q in "'\"")
    return plain[0], m.group(2) == "-", quotes == raw_quotes, int(m.group(1) or 0)


def _heredoc_words(line: str) -> list[tuple[str, bool, bool, int]]:
    try:
        words = _Lexer(line, "\\", None, raw_quotes=True, raw_escapes=True).run()[1]
    except _LexError:
        return []
    found = []
    k = 0
    while k < len(words):
        word = words[k]
        k += 1
        doc = _heredoc_from_word(word)
        if doc is None and k < len(words) and re.fullmatch(r"\d*<<-?", word):
            doc = _heredoc_from_word(word, words[k])  # `<< EOF`: the name is the next word
            k += 1 if doc is not None else 0
        if doc is not None:
            found.append(doc)
    return found


def _unknown(word: str, line: int) -> DockerfileError:
    upper = word.upper()
    near = difflib.get_close_matches(upper, INSTRUCTIONS, n=1)
    hint = f" (did you mean {near[0]}?)" if near else f"; instructions are {', '.join(INSTRUCTIONS)}"
    return DockerfileError(f"unknown instruction: {upper}{hint}", line)


def _instruction(text: str, line: int, escape: str) -> Instruction:
    """Build one instruction from its joined line (heredoc bodies are attached later)."""
    parts = _WHITESPACE.split(text.strip(), maxsplit=1)
    word = parts[0]
    cmd = word.upper()
    if cmd not in INSTRUCTIONS:
        raise _unknown(word, line)
    rest, flag_words = _split_flags(parts[1]) if len(parts) > 1 else ("", [])
    rest = rest.strip()
    flags, flag_list = _parse_flags(cmd, flag_words, line)
    original = text.strip()

    def made(args: list[str], is_json: bool = False) -> Instruction:
        return Instruction(cmd=cmd, args=args, json=is_json, flags=flags, line=line,
                           original=original, flag_list=flag_list)

    def need(ok: bool, reason: str) -> None:
        if not ok:
            raise DockerfileError(reason, line)

    shell = [rest] if rest else []
    try:
        if cmd == "ONBUILD":
            need(rest != "", "ONBUILD requires at least one argument: write ONBUILD <instruction>")
            inner = _instruction(rest, line, escape)
            if inner.cmd == "ONBUILD":
                raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", line)
            if inner.cmd in ("FROM", "MAINTAINER"):
                raise DockerfileError(f"{inner.cmd} isn't allowed as an ONBUILD trigger", line)
            return Instruction(cmd=cmd, args=inner.args, json=inner.json, flags=inner.flags, line=line,
                               original=original, flag_list=inner.flag_list, sub=inner.cmd)
        if cmd in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
            args, is_json = _maybe_json(rest, cmd, line)
            if cmd == "SHELL":
                need(is_json, 'SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", "-c"]')
                need(bool(args), "SHELL requires at least one argument")
            return made(args, is_json)
        if cmd in ("COPY", "ADD", "VOLUME"):
            args, is_json = _maybe_json(rest, cmd, line)
            ins = made(args, is_json)
            words = ins.words()
            if cmd == "VOLUME":
                need(bool(words), "VOLUME requires at least one argument: the path of the volume")
                need(all(w.strip() for w in words), "VOLUME specified can not be an empty string")
            else:
                need(len(words) >= 2, f"{cmd} requires at least two arguments, but only one was "
                     f"provided. Destination could not be determined: write {cmd} <src>... <dest>")
                if not is_json:
                    need(_heredoc_from_word(words[-1]) is None,
                         f"{cmd} cannot accept a heredoc as a destination")
            return ins
        if cmd == "HEALTHCHECK":
            return made(*_healthcheck_args(rest, flags, line))
        if cmd in ("ENV", "LABEL"):
            _kv_raw(rest, escape, True, cmd)
            return made(shell)
        if cmd == "ARG":
            _kv_raw(rest, escape, False, cmd)
            return made(shell)
        if cmd == "FROM":
            words = _WHITESPACE.split(rest) if rest else []
            if len(words) == 3 and words[1].lower() == "as":
                need(_STAGE_NAME.fullmatch(words[2].lower()) is not None,
                     f"invalid name for build stage: {words[2]!r}, name can't start with a number "
                     "or contain symbols")
            else:
                need(len(words) == 1, "FROM requires either one or three arguments: "
                     "write FROM <image> or FROM <image> AS <name>")
            return made(shell)
        if cmd == "EXPOSE":
            need(bool(rest), "EXPOSE requires at least one argument: a port like 80 or 53/udp")
            return made(shell)
        # WORKDIR USER STOPSIGNAL MAINTAINER: the rest of the line is the one argument
        need(bool(rest), f"{cmd} requires exactly one argument")
        return made(shell)
    except InvalidArgument as exc:
        if isinstance(exc, DockerfileError):
            raise
        raise DockerfileError(str(exc), line) from None


def _healthcheck_args(rest: str, flags: Mapping[str, str], line: int) -> tuple[list[str], bool]:
    if not rest:
        raise DockerfileError("HEALTHCHECK requires at least one argument: CMD <command> or NONE", line)
    parts = re.split(r"\s+", rest, maxsplit=1)
    kind = parts[0].upper()
    cmd_args, is_json = _maybe_json(parts[1] if len(parts) > 1 else "", "HEALTHCHECK", line)
    if kind == "NONE":
        if cmd_args:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments", line)
        return [rest], False
    if kind != "CMD":
        raise DockerfileError(f'Unknown type "{parts[0]}" in HEALTHCHECK (try CMD)', line)
    if not cmd_args:
        raise DockerfileError("Missing command after HEALTHCHECK CMD", line)
    for name in ("interval", "timeout", "start-period", "start-interval"):
        _interval(flags, name)
    _retries(flags)
    if is_json:
        return cmd_args, True
    return [rest], False


# --------------------------------------------------------------------------------------
# Lines


def _lines(text: str) -> list[str]:
    """Lines with their endings (only "\\n" ends a line, as in Docker)."""
    out = text.split("\n")
    lines = [s + "\n" for s in out[:-1]]
    if out[-1]:
        lines.append(out[-1])
    return lines


def _continuation(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"(?:([^{e}]){e}[ \t]*|^{e}[ \t]*)\Z")


def _directive(body: str) -> tuple[str, str] | None:
    if not body.startswith("#"):
        return None
    m = _DIRECTIVE_RE.fullmatch(body[1:].lstrip())
    if not m:
        return None
    return m.group(1).lower(), m.group(2)


def parse_instructions(text: str, escape: str | None = None) -> tuple[list[Instruction], str, dict[str, str]]:
    """Parse *text* into a flat instruction list, plus the escape character and directives.

    With *escape* given, parser directives are not looked for (use it for
    ONBUILD triggers read from an image). Stage structure is not checked.

    Raises:
        DockerfileError: a malformed instruction, directive or heredoc.
    """
    lines = _lines(text)
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    directives: dict[str, str] = {}
    looking = escape is None
    esc = escape or "\\"
    cont = _continuation(esc)
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        body = lines[i].rstrip("\r\n").lstrip()
        start = i + 1
        i += 1
        if looking:
            found = _directive(body)
            if found is None or found[0] not in _DIRECTIVES:
                looking = False
            else:
                name, value = found
                if name in directives:
                    raise DockerfileError(f"only one {name} parser directive can be used", start)
                directives[name] = value
                if name == "escape":
                    if value not in ("\\", "`"):
                        raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\", start)
                    esc = value
                    cont = _continuation(esc)
        if body.startswith("#"):
            continue
        joined, more = _trim_continuation(body, cont)
        if not more and joined == "":
            continue
        while more and i < len(lines):
            raw = lines[i].rstrip("\r\n")
            i += 1
            if raw.lstrip().startswith("#") or raw.strip() == "":
                continue
            part, more = _trim_continuation(raw, cont)
            joined += part
        ins = _instruction(joined, start, esc)
        target = ins.sub if ins.cmd == "ONBUILD" else ins.cmd
        if target in _HEREDOC_FORMS and not ins.json and "<<" in joined:
            docs: list[Heredoc] = []
            for name, chomp, expand_body, fd in _heredoc_words(joined):
                content: list[str] = []
                while True:
                    if i >= len(lines):
                        raise DockerfileError(
                            f"unterminated heredoc: no line {name!r} ends the heredoc started here", start)
                    raw = lines[i]
                    i += 1
                    candidate = raw.rstrip("\r\n")
                    if chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == name:
                        break
                    content.append(raw.lstrip("\t") if chomp else raw)
                docs.append(Heredoc(name=name, content="".join(content), chomp=chomp,
                                    expand=expand_body, fd=fd))
            ins = Instruction(cmd=ins.cmd, args=ins.args, json=ins.json, flags=ins.flags, line=ins.line,
                              original=ins.original, heredocs=tuple(docs), flag_list=ins.flag_list,
                              sub=ins.sub)
        out.append(ins)
    return out, esc, directives


def _trim_continuation(line: str, cont: re.Pattern[str]) -> tuple[str, bool]:
    m = cont.search(line)
    if not m:
        return line, False
    return line[:m.start()] + (m.group(1) or ""), True


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile into meta ARGs and stages.

    Raises:
        DockerfileError: empty file, no FROM, an instruction other than ARG before
            the first FROM, a malformed instruction, an unknown instruction, a
            duplicate stage name.
    """
    instructions, escape, directives = parse_instructions(text)
    if not instructions:
        raise DockerfileError("the Dockerfile is empty (file with no instructions): "
                              "start it with FROM <image>")
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for ins in instructions:
        if ins.cmd == "FROM":
            words = ins.words()
            name = words[2].lower() if len(words) == 3 else None
            if name is not None and any(st.name == name for st in stages):
                raise DockerfileError(f"duplicate stage name {name!r}: give each stage its own name", ins.line)
            stages.append(Stage(index=len(stages), name=name, base=words[0],
                                platform=ins.flags.get("platform"), line=ins.line,
                                from_instruction=ins))
        elif stages:
            stages[-1].instructions.append(ins)
        elif ins.cmd == "ARG":
            meta.append(ins)
        else:
            raise DockerfileError(f"{ins.cmd} comes before the first FROM: only ARG may precede FROM; "
                                  "start the Dockerfile with FROM <image>", ins.line)
    if not stages:
        raise DockerfileError("the Dockerfile has no FROM instruction: add FROM <image> after the ARGs",
                              meta[-1].line if meta else None)
    return Dockerfile(meta_args=meta, stages=stages, escape=escape, directives=directives)


# --------------------------------------------------------------------------------------
# Stage graph


def resolve_meta_args(df: Dockerfile, build_args: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values of the ARGs before the first FROM: build args override declared defaults.

    Defaults may refer to earlier meta ARGs; undeclared build args are ignored;
    an ARG with neither a default nor a build arg stays unset.
    """
    given = build_args or {}
    env: dict[str, str] = {}
    for ins in df.meta_args:
        for name, default in parse_arg(ins.args[0] if ins.args else "", df.escape, env):
            if name in given:
                env[name] = given[name]
            elif default is not None:
                env[name] = default
    return env


def _stage_ref(df: Dockerfile, ref: str, env: Mapping[str, str], earlier_than: int | None) -> Stage | None:
    """The stage *ref* names; with *earlier_than*, only an earlier stage by name (FROM's rule)."""
    if "$" in ref:
        try:
            ref = expand(ref, env, df.escape)
        except InvalidArgument:
            return None
    if earlier_than is None:
        return df.stage(ref)
    key = ref.lower()
    return next((st for st in df.stages[:earlier_than] if st.name == key), None)


def _deps(df: Dockerfile, index: int, env: Mapping[str, str]) -> list[int]:
    st = df.stages[index]
    deps: list[int] = []
    base = _stage_ref(df, st.base, env, earlier_than=index)
    if base is not None:
        deps.append(base.index)
    for ins in st.instructions:
        if ins.cmd == "COPY" and "from" in ins.flags:
            ref = _stage_ref(df, ins.flags["from"], env, earlier_than=None)
            if ref is not None and ref.index not in deps:
                deps.append(ref.index)
    return deps


def stage_deps(df: Dockerfile, index: int, build_args: Mapping[str, str] | None = None) -> list[int]:
    """Indexes of the stages stage *index* uses directly: the stage its FROM names
    (an earlier stage, by name) and the stages its `COPY --from=` name or number."""
    return _deps(df, index, resolve_meta_args(df, build_args))


def needed_stages(df: Dockerfile, target: str | None, build_args: Mapping[str, str] | None = None) -> list[int]:
    """Indexes of the stages *target* (default: the last) needs, dependencies first.

    A stage depends on the stage its FROM names and on stages named (or
    numbered) by `COPY --from=`; other `--from` values are images. `$VAR` in
    those names is expanded with the meta ARGs (*build_args* override their
    defaults). The order is topological, lowest index first among stages
    that are ready, so the target comes last.

    Raises:
        InvalidArgument: no stage called *target*, or stages that depend on each other.
    """
    if target is None or target == "":
        goal = len(df.stages) - 1
    else:
        found = df.stage(target)
        if found is None:
            names = ", ".join(st.name for st in df.stages if st.name) or "none is named"
            raise InvalidArgument(f"failed to reach build target {target} in Dockerfile: "
                                  f"no such stage (stage names: {names})")
        goal = found.index
    env = resolve_meta_args(df, build_args)
    deps: dict[int, list[int]] = {}
    todo = [goal]
    while todo:
        i = todo.pop()
        if i not in deps:
            deps[i] = _deps(df, i, env)
            todo.extend(deps[i])
    order: list[int] = []
    waiting = set(deps)
    while waiting:
        ready = [i for i in sorted(waiting) if all(d in order for d in deps[i])]
        if not ready:
            stuck = min(waiting)
            label = df.stages[stuck].name or str(stuck)
            raise InvalidArgument(f"circular dependency detected on stage: {label}; a stage cannot "
                                  "COPY --from itself or from a stage that depends on it")
        order.append(ready[0])
        waiting.remove(ready[0])
    return order
