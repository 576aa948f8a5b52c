"""Command groups (`berth container|image|system ...`): docker's usage text and unknown-verb handling.

Strategy: a group is a table of sub-verb -> (command, one-line description), the
aliases mapping onto the same command. No sub-verb or --help prints the group's
usage on stdout (exit 0); an unknown sub-verb says so on stderr and exits 1, the
way docker 28 does (`docker: unknown command: docker image bogus`), naming the sub-verbs
close to the mistyped one (`Did you mean this?`, as docker's cobra does for a root verb).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from berth.cli.common import Ctx, StatusError
from berth.cli.parser import spelled

Command = Callable[[Ctx, list[str]], int]
Table = Mapping[str, tuple[Command, str]]
_CANONICAL = {"list": "ls", "remove": "rm", "ps": "ls"}  # a sub-verb's aliases show its own name in usage


def usage(group: str, description: str, table: Table, shown: set[str] | None = None) -> str:
    """docker's `docker GROUP` usage text, listing the sub-verbs in *shown* (default all)."""
    names = sorted(n for n in table if shown is None or n in shown)
    width = max([11, *(len(n) for n in names)])  # cobra's name padding
    lines = [f"Usage:  berth {group} COMMAND", "", description, "", "Commands:"]
    lines += [f"  {n.ljust(width)} {table[n][1]}".rstrip() for n in names]
    lines += ["", f"Run 'berth {group} COMMAND --help' for more information on a command."]
    return "\n".join(lines) + "\n"


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (case-insensitive), for suggestions."""
    a, b = a.lower(), b.lower()
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[len(b)]


def suggestions(word: str, names: Iterable[str]) -> list[str]:
    """Verbs close to a mistyped *word*: at most 2 edits away, or starting with it (cobra's rule)."""
    if not word or len(word) > 64:
        return []
    return sorted(n for n in set(names) if _distance(word, n) <= 2 or n.lower().startswith(word.lower()))


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """The "Did you mean this?" lines (with a blank line after) or ""."""
    close = suggestions(word, names)
    return "Did you mean this?\n" + "".join(f"\t{n}\n" for n in close) + "\n" if close else ""


def dispatch(ctx: Ctx, group: str, description: str, table: Table, argv: list[str],
             shown: set[str] | None = None, use: str = "") -> int:
    """Run the sub-verb argv[0] of *group*; *use* is the usage line docker shows for a wrong one (default
    the group's name; docker's volume group says "volume COMMAND")."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        ctx.out.write(usage(group, description, table, shown))
        return 0
    entry = table.get(argv[0])
    if entry is None:
        raise StatusError(1, f"berth: unknown command: berth {group} {argv[0]}\n\n"
                             f"{did_you_mean(argv[0], shown if shown is not None else table)}"
                             f"Usage:  berth {use or group}\n\n"
                             f"Run 'berth {group} --help' for more information")
    with spelled(f"{group} {_CANONICAL.get(argv[0], argv[0])}"):
        return entry[0](ctx, argv[1:])
