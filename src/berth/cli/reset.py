"""`berth system reset`: the uninstall path, run on the daemon's host, not through the API.

Strategy: parse the flags, check the root and that no berthd serves it (berth.tools.reset.guard,
whose lock is held until the end), ask on a terminal unless --force (like `docker system prune`;
with no terminal and no --force, refuse), then let berth.tools.reset remove everything, printing
one line per thing removed. Exit 0 when all is gone, 1 with what is left otherwise.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from berth.cli.common import Ctx, StatusError
from berth.cli.parser import Parser
from berth.errors import BerthError
from berth.tools import reset, resetplan

WARNING = """WARNING! This will remove everything berth keeps for the data root {root}:
  - every container of that root still running (its processes are killed)
  - all its images, containers, volumes and networks, and the data root itself
  - the bridges of its networks and its nftables tables
  - the cgroups of its containers{templates}
Are you sure you want to continue? [y/N] """


def confirm(question: str, stdin: TextIO, out: TextIO) -> bool:
    """Ask *question* on a terminal; True only for y or yes."""
    out.write(question)
    out.flush()
    answer = stdin.readline(64)
    return answer.strip().lower() in ("y", "yes")


def cmd_reset(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("system reset", "[OPTIONS]",
               "Remove berth's containers, mounts, bridges, nftables tables, cgroups and data root "
               "from this host (run as root, with berthd stopped)", max_args=0)
    p.add_argument("--root", default=resetplan.DEFAULT_ROOT, help="the data root (default /var/lib/berth)")
    p.add_argument("--vm-dir", default=None,
                   help="also remove the VM templates in this directory (shared by every root: "
                        "only when given)")
    p.add_argument("--bridge", default=None,
                   help="the default bridge's name, when the root's records cannot be read (berthd's --bridge)")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    if os.geteuid() != 0:
        raise StatusError(1, "berth system reset must run as root (it kills processes, unmounts and "
                             "deletes network interfaces)")
    try:
        root = reset.check_root(ns.root)
        lock = reset.guard(root)
    except BerthError as exc:
        raise StatusError(1, f"berth system reset: {exc}") from None
    try:
        if not ns.force:
            if not sys.stdin.isatty():
                raise StatusError(1, "berth system reset: not asking on a non-interactive input; "
                                     "pass --force to remove everything without confirmation")
            templates = (f"\n  - the VM templates in {ns.vm_dir}/templates" if ns.vm_dir else "")
            if not confirm(WARNING.format(root=root, templates=templates), sys.stdin, ctx.out):
                raise StatusError(1, "berth system reset: aborted, nothing removed")

        def say(line: str) -> None:
            ctx.print(line)
            ctx.flush()

        outcome = reset.reset(reset.Options(root, ns.vm_dir, ns.bridge), say)
    finally:
        reset.release(lock)
    if outcome.failed:
        raise StatusError(1, outcome.summary())
    ctx.print(f"berth system reset: everything of {root} is gone")
    return 0
