"""`berth COMMAND --help` describes every flag in one line, for every verb and group sub-verb.

The commands are discovered, not listed: every verb of main.COMMANDS is asked for --help, and a
verb that turns out to be a group (it shows its usage through groups.usage, which is watched here)
has each sub-verb of its table asked too, aliases included. So a flag added anywhere without a
line in berth.cli.flaghelp fails `test_every_flag_has_a_description`.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from berth.cli import flaghelp, flaghelp_run, groups, main, parser

# One row under "Options:": "  -a, --all   text" or "      --name string   text" (text after 3+ spaces).
_ROW = re.compile(r"^  (?:-\S, |    )(?P<flag>--?[\w.-]+)(?: string| list)?(?: {3,}(?P<text>\S.*))?$")
REFUSED = {"checkpoint"}  # refused whole, even its --help, as docker's CLI does without an experimental daemon
MAX_LINE = 72  # docker's lines are mostly under 60; none of ours should wrap an 80-column terminal


@dataclass(repr=False)
class HelpPages:
    texts: dict[str, str] = field(default_factory=dict)            # "image prune" -> its --help text
    flags: set[tuple[str, str]] = field(default_factory=set)        # (Parser.command, flag) seen


def _run_help(argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main.run([*argv, "--help"])
    assert code == 0, f"berth {' '.join(argv)} --help exited {code}: {err.getvalue()}"
    return out.getvalue()


@pytest.fixture(scope="module")
def pages() -> Iterator[HelpPages]:
    found = HelpPages()
    shown: list[groups.Table] = []
    usage, format_help = groups.usage, parser.Parser.format_help

    def watch_usage(group: str, description: str, table: groups.Table, *args: Any, **kwargs: Any) -> str:
        shown.append(table)
        return usage(group, description, table, *args, **kwargs)

    def watch_format(self: parser.Parser) -> str:
        for action in self._actions:
            if action.option_strings and action.dest != "help":
                long = [o for o in action.option_strings if o.startswith("--")]
                found.flags.add((self.command, long[0] if long else action.option_strings[0]))
        return format_help(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(groups, "usage", watch_usage)
        mp.setattr(parser.Parser, "format_help", watch_format)
        for verb in sorted(set(main.COMMANDS) - REFUSED):
            shown.clear()
            text = _run_help([verb])
            if not shown:
                found.texts[verb] = text
                continue
            for sub in sorted(shown[-1]):
                found.texts[f"{verb} {sub}"] = _run_help([verb, sub])
    yield found


def _rows(text: str) -> list[str]:
    """The lines of the "Options:" section (up to a blank line or the end)."""
    lines = text.splitlines()
    if "Options:" not in lines:
        return []
    rest = lines[lines.index("Options:") + 1:]
    return rest[:rest.index("")] if "" in rest else rest


def test_discovery_reaches_verbs_and_group_sub_verbs(pages: HelpPages) -> None:
    for command in ("run", "ps", "build", "image prune", "image ls", "network create", "volume rm",
                    "container ls", "system df", "builder prune"):
        assert command in pages.texts, command
    assert len(pages.texts) > 60
    assert ("run", "--memory") in pages.flags and ("image prune", "--all") in pages.flags


def test_every_flag_has_a_description(pages: HelpPages) -> None:
    missing, unreadable = [], []
    for command, text in sorted(pages.texts.items()):
        for row in _rows(text):
            m = _ROW.match(row)
            if m is None:
                unreadable.append(f"berth {command}: {row!r}")
            elif not m.group("text"):
                missing.append(f"berth {command} {m.group('flag')}")
    assert not unreadable, "help rows in an unknown layout:\n" + "\n".join(unreadable)
    assert not missing, ("flags without a description (add them to berth.cli.flaghelp):\n"
                         + "\n".join(missing))


def test_command_entry_wins_over_shared_one(pages: HelpPages) -> None:
    own = flaghelp.BY_COMMAND[("rm", "--force")]
    assert own != flaghelp.SHARED["--force"]
    assert flaghelp.describe("rm", "--force") == own
    assert flaghelp.describe("container prune", "--force") == flaghelp.SHARED["--force"]
    assert flaghelp.describe("build", "--rm") == flaghelp.BY_COMMAND[("build", "--rm")] != flaghelp.SHARED["--rm"]
    # and in what the user reads (`container rm` parses as rm)
    rm_force = next(r for r in _rows(pages.texts["container rm"]) if "--force" in r)
    assert rm_force.endswith(own)
    prune_force = next(r for r in _rows(pages.texts["container prune"]) if "--force" in r)
    assert prune_force.endswith(flaghelp.SHARED["--force"])


def test_an_unknown_flag_has_no_description() -> None:
    assert flaghelp.describe("ps", "--no-such-flag") == ""
    assert flaghelp.describe("no such command", "--force") == flaghelp.SHARED["--force"]


def test_descriptions_are_short_single_lines() -> None:
    texts = list(flaghelp.SHARED.values()) + list(flaghelp.BY_COMMAND.values())
    for text in texts:
        assert text and "\n" not in text and text == text.strip(), repr(text)
        assert len(text) <= MAX_LINE, f"{len(text)} characters: {text!r}"
        assert text[0].isupper() and not text.endswith("."), repr(text)


def test_every_entry_names_a_real_flag(pages: HelpPages) -> None:
    """No stale lines: each (command, flag) entry, and each shared flag, exists in some --help."""
    stale = sorted(key for key in flaghelp.BY_COMMAND if key not in pages.flags)
    assert not stale, f"entries for flags no command has: {stale}"
    flags = {flag for _, flag in pages.flags}
    assert not sorted(set(flaghelp.SHARED) - flags)
    container_flags = {flag for command, flag in pages.flags if command == "run"}
    assert set(flaghelp_run.CONTAINER) <= container_flags
