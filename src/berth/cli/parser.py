"""Flag parsing with docker's conventions on top of argparse.

Strategy: argparse does the work; this module bends it toward pflag: no
abbreviated long flags, `-h` left free (run uses it for --hostname), `--help`
explicit, errors raised as `UsageError` (never sys.exit from inside argparse) so
that main decides the exit code (125 for a bad flag, like docker). Flag values
that need parsing (sizes, CPUs) go through `typed()`, which words the error the
way docker does: invalid argument "X" for "-m, --memory" flag: ...
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

from berth.cli import aliases, flaghelp
from berth.errors import BerthError


class UsageError(BerthError):
    """The command line is wrong; the CLI exits 125 (or `code`). With `complete`, the message
    already carries docker's usage lines and pointer to --help, and main prints it as is."""

    def __init__(self, message: str, command: str = "", code: int = 125, complete: bool = False,
                 bare: bool = False) -> None:
        super().__init__(message)
        self.command = command
        self.code = code
        self.complete = complete
        self.bare = bare  # printed without the "berth: " an exit-1 usage error otherwise starts with


class HelpRequested(Exception):
    """`--help` was given: main prints the text and exits 0 (not a BerthError, so that no
    command's error handling turns it into a failure)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _HelpAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="Print usage")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        raise HelpRequested(parser.format_help())


_spelled: ContextVar[str | None] = ContextVar("berth_cli_spelled", default=None)


@contextmanager
def spelled(words: str) -> Iterator[None]:
    """The next Parser made inside this block shows *words* ("container ls") as its name in usage
    lines and errors, as docker does for the spelling the user typed (Parser.command stays "ps")."""
    token = _spelled.set(words)
    try:
        yield
    finally:
        _spelled.reset(token)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting."""

    def __init__(self, command: str, usage: str, description: str = "",
                 min_args: int = 0, max_args: int | None = None) -> None:
        shown = _spelled.get() or command
        _spelled.set(None)  # only the command's own parser, not one it makes for another command
        super().__init__(prog=f"berth {shown}", usage=f"berth {shown} {usage}",
                         description=description, add_help=False, allow_abbrev=False)
        self.command = command
        self.min_args = min_args
        self.max_args = max_args
        self.add_argument("--help", action=_HelpAction)

    def format_help(self) -> str:
        """docker's layout: usage, description, then each flag (short and long spelling, value kind, help)."""
        lines = [f"Usage:  {self.usage}", ""]
        if self.description:
            lines += [self.description, ""]
        if also := aliases.aliases(self.command):
            lines += ["Aliases:", f"  {also}", ""]
        rows: list[tuple[str, str]] = []
        for action in self._actions:
            if not action.option_strings or action.dest == "help":
                continue
            short = [o for o in action.option_strings if not o.startswith("--")]
            long = [o for o in action.option_strings if o.startswith("--")]
            if action.nargs == 0:
                kind = ""
            elif isinstance(action, argparse._AppendAction):
                kind = " list"
            else:
                kind = " string"
            spelled = f"{short[0]}, " if short else "    "
            name = long[0] if long else short[0]
            rows.append((f"  {spelled}{name}{kind}", action.help or flaghelp.describe(self.command, name)))
        if rows:
            width = max(len(r[0]) for r in rows) + 3
            lines.append("Options:")
            lines += [(flag.ljust(width) + text).rstrip() for flag, text in rows]
        return "\n".join(lines) + "\n"

    def error(self, message: str) -> NoReturn:
        message = strip_type_error(message)
        if message.startswith("unrecognized arguments: "):
            extra = message.split(": ", 1)[1].split()
            flag = next((e for e in extra if e.startswith("-")), extra[0])
            if flag.startswith("-"):
                message = (f"unknown flag: {flag}" if flag.startswith("--")
                           else f"unknown shorthand flag: {flag[1:2]!r} in {flag}")
            else:
                raise self.usage_error(self._arity_message(), code=1)
        elif message.startswith("the following arguments are required"):
            raise self.usage_error(self._arity_message(), code=1)
        elif "expected one argument" in message:
            flag = message.split(":", 1)[0].replace("argument ", "").split("/")[-1]
            message = f"flag needs an argument: {flag}"
        raise self.usage_error(message)

    def usage_error(self, message: str, code: int = 125) -> UsageError:
        """docker's words for a bad command line: the problem, the usage line, where help is."""
        see = "See" if self.max_args is None and self.min_args > 0 else "Run"
        return UsageError(f"{message}\n\nUsage:  {self.usage}\n\n{see} '{self.prog} --help' for more information",
                          self.command, code=code, complete=True)

    def arity_error(self) -> UsageError:
        """The error for a wrong number of arguments (exit 1)."""
        return self.usage_error(self._arity_message(), code=1)

    def _arity_message(self) -> str:
        lo, hi = self.min_args, self.max_args

        def args(n: int) -> str:
            return f"{n} argument{'s' if n != 1 else ''}"
        name = f"'{self.prog}'"
        if hi == 0:
            return f"{name} accepts no arguments"
        if hi is None:
            return f"{name} requires at least {args(lo)}"
        if lo == hi:
            return f"{name} requires {args(lo)}"
        if lo == 0:
            return f"{name} requires at most {args(hi)}"
        return f"{name} requires at least {lo} and at most {args(hi)}"

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        # flags may follow arguments (`rm a -f b`), as pflag allows, except where the rest of the line is
        # the container's command (run, create, exec, top: argparse.REMAINDER stops at the first argument)
        remainder = any(a.nargs == argparse.REMAINDER for a in self._actions)
        ns = self.parse_args(list(argv)) if remainder else self.parse_intermixed_args(list(argv))
        args = getattr(ns, "args", None)
        if isinstance(args, list):
            if len(args) < self.min_args or (self.max_args is not None and len(args) > self.max_args):
                raise self.usage_error(self._arity_message(), code=1)
        return ns


def typed(flag_names: str, fn: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap a value parser so its errors read like docker's flag errors."""

    def parse(text: str) -> Any:
        try:
            return fn(text)
        except BerthError as exc:
            raise argparse.ArgumentTypeError(
                f'invalid argument "{text}" for "{flag_names}" flag: {exc}') from None
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f'invalid argument "{text}" for "{flag_names}" flag: {exc}') from None

    parse.__name__ = flag_names
    return parse


def _filter_pair(text: str) -> str:
    if "=" not in text:
        raise ValueError("bad format of filter (expected name=value)")
    return text


def filter_flag(flag_names: str) -> Callable[[str], Any]:
    """The type of a `--filter k=v` flag: a value without "=" is a flag error, worded as docker's."""
    return typed(flag_names, _filter_pair)


def integer(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise ValueError("strconv.ParseInt: parsing " + repr(text).replace("'", '"')
                         + ": invalid syntax") from None


def strip_type_error(message: str) -> str:
    """argparse prefixes type errors with 'argument -m/--memory: '; drop that."""
    if message.startswith("argument ") and ": invalid argument" in message:
        return message.split(": ", 1)[1]
    return message
