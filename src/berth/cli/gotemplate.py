"""A pure subset of Go's text/template, as the docker CLI uses it for `--format`.

Strategy: three small stages. `_lex_text` splits the source into literal text and
`{{ ... }}` actions (honouring the `{{-`/`-}}` trim markers); `_Parser` turns
action tokens into a tree (text, output actions, if/else, range/else, with/else,
variables); `_Exec` walks the tree against plain Python data -- dicts, lists and
scalars as JSON decodes them -- printing values the way Go's fmt prints them
(true/false, map[k:v], [a b], <no value> for a missing key, <nil> for null).
Values in the data may be callables, standing for Go methods (`.Label "k"`).

`render_rows` adds docker's conventions on top: the `table` prefix (a header row
rendered from the field names), the `\\t`/`\\n` escapes, and column alignment like
Go's text/tabwriter (`tabwrite`).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from berth.errors import InvalidArgument


class TemplateError(InvalidArgument):
    """The template does not parse, or cannot be executed against the data."""


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()


# --------------------------------------------------------------------------- values


def go_quote(s: str) -> str:
    """Quote like Go's strconv.Quote (double quotes, Go escapes)."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                        "\r": "\\r", "\t": "\\t", "\v": "\\v"}[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _go_float(f: float) -> str:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    e10 = len(ds) + exp - 1  # exponent of the leading digit
    neg = "-" if sign else ""
    if e10 < -4 or e10 >= 6:  # fmt %v: shortest digits, exponent decided at precision 6
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    if exp >= 0:
        return neg + ds + "0" * exp
    point = len(ds) + exp
    if point <= 0:
        return neg + "0." + "0" * (-point) + ds
    return neg + ds[:point] + "." + ds[point:]


def go_str(v: Any) -> str:
    """Format a value like Go's fmt %v does for the corresponding Go type."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, Mapping):
        items = sorted(v.items(), key=lambda kv: str(kv[0]))
        return "map[" + " ".join(f"{go_str(k)}:{go_str(x)}" for k, x in items) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if isinstance(v, (bytes, bytearray)):
        return "[" + " ".join(str(b) for b in v) + "]"
    return str(v)


def truth(v: Any) -> bool:
    """Go template truthiness: false, 0, nil, and empty strings/lists/maps are false."""
    if v is MISSING or v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, bytes, list, tuple, Mapping)):
        return len(v) > 0
    return True


def to_json(v: Any) -> str:
    """docker's `json` function: compact JSON, no HTML escaping."""
    if v is MISSING:
        v = None
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)


# --------------------------------------------------------------------------- functions


def _fn_index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = item.get(key, "") if key in item else ""
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"cannot index slice/array with type {type(key).__name__}")
            if not 0 <= key < len(item):
                raise TemplateError(f"error calling index: index out of range: {key}")
            item = item[key]
        elif item is None or item is MISSING:
            raise TemplateError("error calling index: index of untyped nil")
        else:
            raise TemplateError(f"can't index item of type {type(item).__name__}")
    return item


def _fn_len(v: Any) -> int:
    if isinstance(v, (str, bytes, list, tuple, Mapping)):
        return len(v)
    raise TemplateError(f"error calling len: len of type {type(v).__name__}")


def _fn_join(v: Any, sep: str) -> str:
    if v is MISSING or v is None:
        return ""
    if isinstance(v, str):
        return v
    return sep.join(go_str(x) for x in v)


def _fn_split(s: str, sep: str) -> list[str]:
    return s.split(sep) if sep else list(s)


def _fn_title(s: str) -> str:
    return re.sub(r"(^|[\s\-_./])(\w)", lambda m: m.group(1) + m.group(2).upper(), s)


def _fn_print(*args: Any) -> str:
    out: list[str] = []
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(a))
    return "".join(out)


def _fn_println(*args: Any) -> str:
    return " ".join(go_str(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def _fn_printf(fmt: str, *args: Any) -> str:
    values = list(args)

    def one(m: re.Match[str]) -> str:
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            return "%"
        if not values:
            return f"%!{verb}(MISSING)"
        a = values.pop(0)
        spec = flags.replace("#", "") + (width or "") + (f".{prec}" if prec else "")
        if verb in "sv":
            return format(go_str(a), spec.replace("0", "") + "s" if spec else "s")
        if verb == "q":
            return format(go_quote(go_str(a)), (width or "") + "s")
        if verb == "t":
            return go_str(bool(a))
        if verb in "dxXobeEfgG" and isinstance(a, (int, float)) and not isinstance(a, bool):
            pyverb = {"d": "d"}.get(verb, verb)
            if verb in "dxXob":
                a = int(a)
            return format(a, spec + pyverb)
        return f"%!{verb}({type(a).__name__}={go_str(a)})"

    return _VERB.sub(one, fmt)


def _cmp_key(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    raise TemplateError(f"incompatible types for comparison: {go_str(a)} and {go_str(b)}")


def _fn_and(*args: Any) -> Any:
    for a in args:
        if not truth(a):
            return a
    return args[-1]


def _fn_or(*args: Any) -> Any:
    for a in args:
        if truth(a):
            return a
    return args[-1]


FUNCS: dict[str, Callable[..., Any]] = {
    "json": to_json,
    "index": _fn_index,
    "len": _fn_len,
    "join": _fn_join,
    "split": _fn_split,
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: _fn_title(go_str(s)),
    "pad": lambda s, before, after: " " * int(before) + go_str(s) + " " * int(after),
    "truncate": lambda s, n: go_str(s)[: int(n)],
    "print": _fn_print,
    "println": _fn_println,
    "printf": _fn_printf,
    "not": lambda v: not truth(v),
    "and": _fn_and,
    "or": _fn_or,
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: (lambda x, y: x < y)(*_cmp_key(a, b)),
    "le": lambda a, b: (lambda x, y: x <= y)(*_cmp_key(a, b)),
    "gt": lambda a, b: (lambda x, y: x > y)(*_cmp_key(a, b)),
    "ge": lambda a, b: (lambda x, y: x >= y)(*_cmp_key(a, b)),
}


# --------------------------------------------------------------------------- lexing


@dataclass
class _Tok:
    kind: str  # field var ident string number char lparen rparen pipe declare assign comma dot
    value: Any = None
    chain: tuple[str, ...] = ()
    spaced: bool = True  # preceded by whitespace (or start of action)


_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<pipe>\|)
  | (?P<comma>,)
  | (?P<var>\$\w*(?:\.\w+)*)
  | (?P<field>(?:\.\w+)+)
  | (?P<dot>\.)
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][-+]?\d+)?))
  | (?P<ident>[A-Za-z_]\w*)
    """,
    re.VERBOSE,
)


def _lex_action(src: str, where: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    spaced = True
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if not m:
            raise TemplateError(f"template: {where}: unexpected {src[pos]!r} in command")
        pos = m.end()
        kind = m.lastgroup or ""
        text = m.group()
        if kind == "space":
            spaced = True
            continue
        tok = _Tok(kind, spaced=spaced)
        spaced = False
        if kind == "string":
            tok.value = json.loads(_go_escapes_to_json(text))
        elif kind == "raw":
            tok.kind, tok.value = "string", text[1:-1]
        elif kind == "char":
            tok.kind, tok.value = "number", ord(json.loads('"' + text[1:-1] + '"'))
        elif kind == "number":
            tok.value = _parse_number(text, where)
        elif kind == "field":
            tok.chain = tuple(text[1:].split("."))
        elif kind == "var":
            name, *chain = text.split(".")
            tok.value, tok.chain = name, tuple(chain)
        elif kind == "ident":
            if text in ("true", "false"):
                tok.kind, tok.value = "bool", text == "true"
            elif text == "nil":
                tok.kind = "nil"
            else:
                tok.value = text
        toks.append(tok)
    return toks


def _go_escapes_to_json(text: str) -> str:
    # Go string escapes are a superset of JSON's in the common cases; map the rest.
    def fix(m: re.Match[str]) -> str:
        esc = m.group(0)
        c = esc[1]
        if c in '"\\/bfnrt':
            return esc
        if c == "a":
            return "\\u0007"
        if c == "v":
            return "\\u000b"
        if c == "x":
            return "\\u00" + esc[2:4]
        if c == "'":
            return "'"
        return esc

    return re.sub(r"\\(x[0-9a-fA-F]{2}|.)", fix, text)


def _parse_number(text: str, where: str) -> int | float:
    t = text.replace("_", "")
    try:
        if t.lower().lstrip("+-").startswith("0x"):
            return int(t, 16)
        if re.fullmatch(r"[-+]?\d+", t):
            return int(t)
        return float(t)
    except ValueError:
        raise TemplateError(f"template: {where}: bad number syntax: {text!r}") from None


@dataclass
class _Piece:
    text: str | None = None  # literal text, or None for an action
    action: str = ""
    line: int = 1


def _lex_text(src: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    pos = 0
    line = 1
    trim_next = False
    while True:
        start = src.find("{{", pos)
        text = src[pos:] if start < 0 else src[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        trim_prev = start >= 0 and src[start + 2 : start + 4] in ("- ", "-\t", "-\n", "-\r")
        if trim_prev:
            text = text.rstrip(" \t\r\n")
        if text:
            pieces.append(_Piece(text=text, line=line))
        if start < 0:
            break
        line += src.count("\n", pos, start)
        inner_start = start + (3 if trim_prev else 2)
        end = _find_close(src, inner_start)
        if end < 0:
            raise TemplateError(f"template: :{line}: unclosed action")
        inner = src[inner_start:end]
        trim_next = inner.endswith(" -") or inner[-2:] in ("\t-", "\n-", "\r-")
        if trim_next:
            inner = inner[:-2]
        pos = end + 2
        stripped = inner.strip()
        if stripped.startswith("/*"):
            if not stripped.endswith("*/"):
                raise TemplateError(f"template: :{line}: unclosed comment")
        else:
            pieces.append(_Piece(action=inner, line=line))
        line += src.count("\n", start, pos)
    return pieces


def _find_close(src: str, pos: int) -> int:
    """Find the `}}` closing an action, skipping over quoted strings."""
    i = pos
    while i < len(src):
        c = src[i]
        if c in "\"`'":
            j = i + 1
            while j < len(src) and src[j] != c:
                j += 2 if c != "`" and src[j] == "\\" else 1
            i = j + 1
            continue
        if src.startswith("}}", i):
            return i
        i += 1
    return -1


# --------------------------------------------------------------------------- tree


@dataclass
class _Cmd:
    args: list[_Tok | _Pipe]


@dataclass
class _Pipe:
    cmds: list[_Cmd]
    decl: list[str] = field(default_factory=list)
    assign: bool = False  # `$x = ...` rather than `$x := ...`
    chain: tuple[str, ...] = ()  # fields applied to a parenthesized pipeline's value


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipe: _Pipe


@dataclass
class _Branch:
    kind: str  # if, range, with
    pipe: _Pipe
    body: list[Any]
    orelse: list[Any]


@dataclass
class _Jump:
    kind: str  # break, continue


class _Parser:
    def __init__(self, src: str) -> None:
        self.pieces = _lex_text(src)
        self.pos = 0

    def parse(self) -> list[Any]:
        nodes, stop = self._list()
        if stop is not None:
            raise TemplateError(f"template: :{stop[1]}: unexpected {{{{{stop[0]}}}}}")
        return nodes

    def _list(self) -> tuple[list[Any], tuple[str, int, list[_Tok]] | None]:
        nodes: list[Any] = []
        while self.pos < len(self.pieces):
            piece = self.pieces[self.pos]
            self.pos += 1
            if piece.text is not None:
                nodes.append(_Text(piece.text))
                continue
            where = f":{piece.line}"
            toks = _lex_action(piece.action, where)
            if not toks:
                raise TemplateError(f"template: {where}: missing value for command")
            head = toks[0]
            word = head.value if head.kind == "ident" else None
            if word in ("end", "else"):
                return nodes, (word, piece.line, toks[1:])
            if word in ("if", "range", "with"):
                nodes.append(self._branch(word, toks[1:], where))
            elif word in ("break", "continue"):
                nodes.append(_Jump(word))
            elif word in ("define", "template", "block"):
                raise TemplateError(f"template: {where}: {{{{{word}}}}} is not supported")
            else:
                nodes.append(_Action(_parse_pipe(toks, where)))
        return nodes, None

    def _branch(self, kind: str, toks: list[_Tok], where: str) -> _Branch:
        pipe = _parse_pipe(toks, where)
        body, stop = self._list()
        if stop is None:
            raise TemplateError(f"template: {where}: unexpected EOF")
        orelse: list[Any] = []
        if stop[0] == "else":
            rest = stop[2]
            if rest and rest[0].kind == "ident" and rest[0].value in ("if", "with"):
                # `{{else if X}}` chains: the nested branch consumes the shared {{end}}
                orelse = [self._branch(rest[0].value, rest[1:], f":{stop[1]}")]
                return _Branch(kind, pipe, body, orelse)
            if rest:
                raise TemplateError(f"template: :{stop[1]}: unexpected tokens after else")
            orelse, stop2 = self._list()
            if stop2 is None or stop2[0] != "end":
                raise TemplateError(f"template: {where}: expected end; found EOF")
        return _Branch(kind, pipe, body, orelse)


def _parse_pipe(toks: list[_Tok], where: str) -> _Pipe:
    pipe, rest = _pipe_from(toks, 0, where, nested=False)
    if rest != len(toks):
        raise TemplateError(f"template: {where}: unexpected right paren")
    return pipe


def _pipe_from(toks: list[_Tok], i: int, where: str, nested: bool) -> tuple[_Pipe, int]:
    decl: list[str] = []
    assign = False
    # variable declaration: $x := / $k, $v := / $x =
    j = i
    names: list[str] = []
    while j < len(toks) and toks[j].kind == "var" and not toks[j].chain:
        names.append(toks[j].value)
        if j + 1 < len(toks) and toks[j + 1].kind == "comma":
            j += 2
            continue
        j += 1
        break
    if names and j < len(toks) and toks[j].kind in ("declare", "assign"):
        decl, assign, i = names, toks[j].kind == "assign", j + 1
    cmds: list[_Cmd] = []
    args: list[_Tok | _Pipe] = []
    while i < len(toks):
        t = toks[i]
        if t.kind == "rparen":
            if not nested:
                raise TemplateError(f"template: {where}: unexpected right paren")
            break
        i += 1
        if t.kind == "pipe":
            if not args:
                raise TemplateError(f"template: {where}: missing command before |")
            cmds.append(_Cmd(args))
            args = []
        elif t.kind == "lparen":
            sub, i = _pipe_from(toks, i, where, nested=True)
            if i >= len(toks) or toks[i].kind != "rparen":
                raise TemplateError(f"template: {where}: unclosed left paren")
            i += 1
            if i < len(toks) and toks[i].kind == "field" and not toks[i].spaced:
                sub.chain = toks[i].chain
                i += 1
            args.append(sub)
        elif t.kind in ("declare", "assign", "comma"):
            raise TemplateError(f"template: {where}: unexpected {t.kind} in command")
        else:
            args.append(t)
    if args:
        cmds.append(_Cmd(args))
    elif cmds:
        raise TemplateError(f"template: {where}: missing command after |")
    if not cmds:
        raise TemplateError(f"template: {where}: missing value for command")
    return _Pipe(cmds, decl, assign), i


# --------------------------------------------------------------------------- execution


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_NOARG: Any = object()


class _Exec:
    def __init__(
        self,
        root: Any,
        funcs: Mapping[str, Callable[..., Any]],
        field_of: Callable[[Any, str], Any],
    ) -> None:
        self.field_of = field_of
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.funcs = funcs
        self.out: list[str] = []

    def run(self, nodes: list[Any], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(go_str(value))
            elif isinstance(node, _Branch):
                mark = len(self.vars)
                try:
                    self.branch(node, dot)
                finally:
                    del self.vars[mark:]
            elif isinstance(node, _Jump):
                raise _Break() if node.kind == "break" else _Continue()

    def branch(self, node: _Branch, dot: Any) -> None:
        if node.kind == "range":
            self.range(node, dot)
            return
        value = self.pipe(node.pipe, dot, declare=node.kind != "range")
        if truth(value):
            self.run(node.body, value if node.kind == "with" else dot)
        else:
            self.run(node.orelse, dot)

    def range(self, node: _Branch, dot: Any) -> None:
        value = self.pipe(node.pipe, dot, declare=False)
        if isinstance(value, Mapping):
            items: Iterable[tuple[Any, Any]] = sorted(value.items(), key=lambda kv: str(kv[0]))
        elif isinstance(value, (list, tuple, str)):
            items = enumerate(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            items = ((i, i) for i in range(value))
        elif value is None or value is MISSING:
            items = ()
        else:
            raise TemplateError(f"range can't iterate over {go_str(value)}")
        ran = False
        mark = len(self.vars)
        for key, elem in items:
            ran = True
            del self.vars[mark:]
            decl = node.pipe.decl
            if len(decl) == 1:
                self.vars.append((decl[0], elem))
            elif len(decl) == 2:
                self.vars.append((decl[0], key))
                self.vars.append((decl[1], elem))
            try:
                self.run(node.body, elem)
            except _Continue:
                continue
            except _Break:
                break
        del self.vars[mark:]
        if not ran:
            self.run(node.orelse, dot)

    def lookup_var(self, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise TemplateError(f'template: undefined variable "{name}"')

    def pipe(self, pipe: _Pipe, dot: Any, declare: bool = True) -> Any:
        value: Any = _NOARG
        for cmd in pipe.cmds:
            value = self.cmd(cmd, dot, value)
        if pipe.chain:
            value = self.chain(value, pipe.chain, (), _NOARG)
        if pipe.decl and declare:
            if pipe.assign:
                for idx in range(len(self.vars) - 1, -1, -1):
                    if self.vars[idx][0] == pipe.decl[0]:
                        self.vars[idx] = (pipe.decl[0], value)
                        break
                else:
                    raise TemplateError(f'template: undefined variable "{pipe.decl[0]}"')
            else:
                self.vars.append((pipe.decl[0], value))
        return value

    def cmd(self, cmd: _Cmd, dot: Any, final: Any) -> Any:
        first, rest = cmd.args[0], cmd.args[1:]
        if isinstance(first, _Tok) and first.kind == "ident":
            fn = self.funcs.get(first.value)
            if fn is None:
                raise TemplateError(f'template: function "{first.value}" not defined')
            args = [self.arg(a, dot) for a in rest]
            if final is not _NOARG:
                args.append(final)
            try:
                return fn(*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                raise TemplateError(f"template: error calling {first.value}: {exc}") from exc
        args = [self.arg(a, dot) for a in rest]
        if isinstance(first, _Tok) and first.kind in ("field", "var"):
            base = dot if first.kind == "field" else self.lookup_var(first.value)
            return self.chain(base, first.chain, args, final)
        if args or final is not _NOARG:
            raise TemplateError("template: can't give argument to non-function")
        return self.arg(first, dot)

    def arg(self, a: _Tok | _Pipe, dot: Any) -> Any:
        if isinstance(a, _Pipe):
            return self.pipe(a, dot)
        if a.kind == "dot":
            return dot
        if a.kind == "field":
            return self.chain(dot, a.chain, (), _NOARG)
        if a.kind == "var":
            return self.chain(self.lookup_var(a.value), a.chain, (), _NOARG)
        if a.kind in ("string", "number", "bool"):
            return a.value
        if a.kind == "nil":
            return None
        if a.kind == "ident":
            fn = self.funcs.get(a.value)
            if fn is None:
                raise TemplateError(f'template: function "{a.value}" not defined')
            return fn()
        raise TemplateError(f"template: unexpected {a.kind} in operand")

    def chain(self, value: Any, names: Sequence[str], args: Sequence[Any], final: Any) -> Any:
        call_args = list(args) + ([] if final is _NOARG else [final])
        for n, name in enumerate(names):
            last = n == len(names) - 1
            value = self.field_of(value, name)
            if callable(value):
                value = value(*call_args) if last else value()
                if last:
                    return value
        if call_args:
            raise TemplateError(f"template: can't give argument to non-function {go_str(value)}")
        return value


def _field(value: Any, name: str) -> Any:
    if value is MISSING or value is None:
        return MISSING
    if isinstance(value, Mapping):
        return value[name] if name in value else MISSING
    if isinstance(value, (str, int, float, bool, list, tuple)):
        raise TemplateError(f"template: can't evaluate field {name} in type {type(value).__name__}")
    return getattr(value, name, MISSING)


class Template:
    """A parsed template; `execute(data)` returns the output text."""

    def __init__(self, src: str, funcs: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self.src = src
        self.funcs = dict(FUNCS)
        if funcs:
            self.funcs.update(funcs)
        self._nodes = _Parser(src).parse()

    def execute(self, data: Any, field_of: Callable[[Any, str], Any] | None = None) -> str:
        ex = _Exec(data, self.funcs, field_of or _field)
        try:
            ex.run(self._nodes, data)
        except (_Break, _Continue):
            raise TemplateError("template: break or continue outside range") from None
        return "".join(ex.out)


def parse(src: str) -> Template:
    return Template(src)


def execute(src: str, data: Any) -> str:
    return Template(src).execute(data)


# --------------------------------------------------------------------------- tables


def display_width(text: str) -> int:
    """Terminal columns of *text*, as the docker CLI's tabwriter counts them: East Asian wide and
    full-width characters (emoji among them) take 2, combining marks and format characters 0."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells like Go's text/tabwriter (padchar ' ', no flags).

    A cell is text terminated by a tab; the trailing text of a line is not part
    of any column. Columns are laid out per block of consecutive lines that have
    a cell in that column, each as wide as its widest cell plus padding (at
    least minwidth).
    """
    ends_nl = text.endswith("\n")
    raw_lines = (text[:-1] if ends_nl else text).split("\n")
    lines = [ln.split("\t") for ln in raw_lines]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, cell in enumerate(cells):
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(cell + " " * max(0, widths[j] - display_width(cell)))
                else:
                    parts.append(cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, display_width(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out) + ("\n" if ends_nl else "")


class _Header(str):
    """A header cell: any field of it, or any call on it, is itself."""

    def __call__(self, *args: Any) -> _Header:
        return self


class _LabelHeader(_Header):
    """`.Label "com.example.team-name"`'s header, as docker words it: the key's last dotted part,
    with - and _ as spaces ("team name")."""

    def __call__(self, *args: Any) -> _Header:
        if len(args) == 1 and isinstance(args[0], str):
            return _Header(args[0].split(".")[-1].replace("-", " ").replace("_", " "))
        return self


class _HeaderContext(Mapping[str, Any]):
    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = headers

    def __getitem__(self, key: str) -> Any:
        text = self.headers.get(key, key.upper())
        return _LabelHeader(text) if key == "Label" else _Header(text)

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Any:
        return iter(self.headers)

    def __len__(self) -> int:
        return len(self.headers)


def _header_field(value: Any, name: str) -> Any:
    return value if isinstance(value, _Header) else _field(value, name)


def prepare_format(fmt: str) -> tuple[bool, str]:
    """Split docker's `table` prefix off a format and expand `\\t`/`\\n` escapes."""
    is_table = fmt.startswith("table")
    body = fmt[len("table"):] if is_table else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return is_table, body


def render_rows(
    fmt: str,
    rows: Iterable[Any],
    headers: Mapping[str, str] | None = None,
    minwidth: int = 10,
    padding: int = 3,
) -> str:
    """Render docker-style `--format` output: one line per row, aligned with tabwrite."""
    is_table, body = prepare_format(fmt)
    tmpl = Template(body)
    parts: list[str] = []
    if is_table:
        parts.append(_render_header(tmpl, headers or {}) + "\n")
    for row in rows:
        parts.append(tmpl.execute(row) + "\n")
    if not is_table:  # docker aligns only tables: a plain template's tabs stay tabs
        return "".join(parts)
    return tabwrite("".join(parts), minwidth=minwidth, padding=padding)


def _render_header(tmpl: Template, headers: Mapping[str, str]) -> str:
    try:  # headers answer any field chain with their own text
        return tmpl.execute(_HeaderContext(headers), field_of=_header_field)
    except TemplateError:
        return ""
