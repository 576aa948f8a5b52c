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
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from berth.errors import BerthError


class UsageError(BerthError):
    """The command line is wrong; the CLI exits 125 (or `code`)."""

    def __init__(self, message: str, command: str = "", code: int = 125) -> None:
        super().__init__(message)
        self.command = command
        self.code = code


class HelpRequested(BerthError):
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


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting."""

    def __init__(self, command: str, usage: str, description: str = "",
                 min_args: int = 0, max_args: int | None = None) -> None:
        super().__init__(prog=f"berth {command}", usage=f"berth {command} {usage}",
                         description=description, add_help=False, allow_abbrev=False)
        self.command = command
        self.min_args = min_args
        self.max_args = max_args
        self.add_argument("--help", action=_HelpAction)

    def error(self, message: str) -> NoReturn:
        message = strip_type_error(message)
        if message.startswith("unrecognized arguments: "):
            extra = message.split(": ", 1)[1].split()
            flag = next((e for e in extra if e.startswith("-")), extra[0])
            if flag.startswith("-"):
                message = (f"unknown flag: {flag}" if flag.startswith("--")
                           else f"unknown shorthand flag: {flag[1:2]!r} in {flag}")
            else:
                message = f"\"berth {self.command}\" accepts no arguments"
        elif message.startswith("the following arguments are required"):
            raise UsageError(self._arity_message(), self.command, code=1)
        elif "expected one argument" in message:
            flag = message.split(":", 1)[0].replace("argument ", "").split("/")[-1]
            message = f"flag needs an argument: {flag}"
        raise UsageError(message, self.command)

    def _arity_message(self) -> str:
        if self.min_args == 1 and self.max_args == 1:
            return f"\"berth {self.command}\" requires exactly 1 argument."
        return f"\"berth {self.command}\" requires at least {self.min_args} argument."

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        ns = self.parse_args(list(argv))
        args = getattr(ns, "args", None)
        if isinstance(args, list):
            if len(args) < self.min_args or (self.max_args is not None
                                              and len(args) > self.max_args):
                if self.max_args is not None and len(args) > self.max_args:
                    if self.max_args == self.min_args:
                        msg = (f"\"berth {self.command}\" requires exactly "
                               f"{self.max_args} argument{'s' if self.max_args != 1 else ''}.")
                    else:
                        msg = (f"\"berth {self.command}\" requires at most "
                               f"{self.max_args} argument{'s' if self.max_args != 1 else ''}.")
                    raise UsageError(msg, self.command, code=1)
                raise UsageError(self._arity_message(), self.command, code=1)
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
