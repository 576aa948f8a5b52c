"""One-line descriptions of the CLI's flags, for `berth COMMAND --help`.

Strategy: one table of flag -> description shared by every command, and a table of
(command, flag) -> description for the flags whose meaning depends on the command
(`-f` is `--force` for rm and `--filter` for ps). `describe` looks up the command's
own entry first, then the shared one.
"""

from __future__ import annotations

SHARED: dict[str, str] = {}
BY_COMMAND: dict[tuple[str, str], str] = {}


def describe(command: str, flag: str) -> str:
    """The description of *flag* (its long spelling, or short if it has none) for *command*, or ""."""
    return BY_COMMAND.get((command, flag)) or SHARED.get(flag, "")
