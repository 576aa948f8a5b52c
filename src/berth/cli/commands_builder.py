"""`berth builder prune|build`: docker's builder group, over POST /build/prune and `berth build`.

Strategy: the group table of berth.cli.groups; `builder prune` asks docker's question unless
--force, then prints what the daemon cleared and the space it reclaimed.
"""

from __future__ import annotations

from berth.cli import groups
from berth.cli.common import Ctx
from berth.cli.parser import Parser, filter_flag
from berth.cli.prune import confirmed, prune_filters
from berth.cli.units import human_size4


def cmd_builder_prune(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("builder prune", "[OPTIONS]", "Remove build cache", max_args=0)
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_flag("--filter"))
    p.add_argument("--keep-storage", default=None)
    ns = p.parse(argv)
    filters = prune_filters(ns.filter)
    what = "all build cache" if ns.all else "all dangling build cache"
    if not ns.force and not confirmed(ctx, f"WARNING! This will remove {what}.", sep=" "):
        return 0
    doc = ctx.client.post("/build/prune", {"all": ns.all, "filters": filters, "keep-storage": ns.keep_storage}) or {}
    deleted = doc.get("CachesDeleted") or []
    if deleted:
        ctx.print("Deleted build cache objects:\n" + "".join(f"{d}\n" for d in deleted))
    ctx.print(f"Total reclaimed space: {human_size4(int(doc.get('SpaceReclaimed') or 0))}")
    return 0


def cmd_builder(ctx: Ctx, argv: list[str]) -> int:
    from berth.cli import commands_build

    table: groups.Table = {
        "build": (commands_build.cmd_build, "Build an image from a Dockerfile"),
        "prune": (cmd_builder_prune, "Remove build cache"),
    }
    return groups.dispatch(ctx, "builder", "Manage builds", table, argv)


COMMANDS = {"builder": cmd_builder}
