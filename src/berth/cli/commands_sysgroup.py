"""`berth system ...`: docker's sub-verbs (df, events, info, prune) and berth's own `system reset`.

Strategy: a group table (berth.cli.groups) onto the commands that exist,
imported when called; `system prune` asks docker's question, then calls each
prune endpoint in docker's order (containers, networks, volumes with --volumes,
images, build cache) and prints what each removed and the total reclaimed.
"""

from __future__ import annotations

import json
from typing import Any

from berth.cli import groups
from berth.cli.common import Ctx
from berth.cli.parser import Parser, filter_flag
from berth.cli.prune import confirmed, prune_filters
from berth.cli.units import human_size4


def _prune_report(title: str, items: list[str]) -> str | None:
    return f"{title}:\n" + "".join(f"{i}\n" for i in items) if items else None


def cmd_system_prune(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("system prune", "[OPTIONS]", "Remove unused data", max_args=0)
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--volumes", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_flag("--filter"))
    ns = p.parse(argv)
    filters = prune_filters(ns.filter)
    what = ["all stopped containers", "all networks not used by at least one container"]
    if ns.volumes:
        what.append("all anonymous volumes not used by at least one container")
    what.append("all images without at least one container associated to them" if ns.all
                else "all dangling images")
    what.append("all build cache" if ns.all else "unused build cache")
    if not ns.force and not confirmed(ctx, "WARNING! This will remove:\n"
                                      + "".join(f"  - {w}\n" for w in what)):
        return 0
    client = ctx.client
    reclaimed = 0
    reports: list[str | None] = []
    doc: dict[str, Any] = client.post("/containers/prune", {"filters": filters}) or {}
    reclaimed += int(doc.get("SpaceReclaimed") or 0)
    reports.append(_prune_report("Deleted Containers", doc.get("ContainersDeleted") or []))
    doc = client.post("/networks/prune", {"filters": filters}) or {}
    reports.append(_prune_report("Deleted Networks", doc.get("NetworksDeleted") or []))
    if ns.volumes:
        doc = client.post("/volumes/prune", {"filters": filters}) or {}
        reclaimed += int(doc.get("SpaceReclaimed") or 0)
        reports.append(_prune_report("Deleted Volumes", doc.get("VolumesDeleted") or []))
    image_filters = {**json.loads(filters or "{}"), "dangling": ["false" if ns.all else "true"]}
    doc = client.post("/images/prune", {"filters": json.dumps(image_filters)}) or {}
    reclaimed += int(doc.get("SpaceReclaimed") or 0)
    reports.append(_prune_report("Deleted Images", [f"{k.lower()}: {v}" for item in doc.get("ImagesDeleted") or []
                                                    for k, v in item.items()]))
    doc = client.post("/build/prune", {"all": ns.all, "filters": filters}) or {}
    reclaimed += int(doc.get("SpaceReclaimed") or 0)
    reports.append(_prune_report("Deleted build cache objects", doc.get("CachesDeleted") or []))
    for report in reports:
        if report is not None:
            ctx.print(report)
    ctx.print(f"Total reclaimed space: {human_size4(reclaimed)}")
    return 0


def _table() -> groups.Table:
    from berth.cli import commands_stats, commands_system, reset

    return {
        "df": (commands_stats.cmd_system_df, "Show berth disk usage"),
        "events": (commands_system.cmd_events, "Get real time events from the server"),
        "info": (commands_system.cmd_info, "Display system-wide information"),
        "prune": (cmd_system_prune, "Remove unused data"),
        "reset": (reset.cmd_reset, "Remove every container, image, volume, network, bridge and nftables table "
                                   "of a data root, and the data root itself (berthd stopped)"),
    }


def cmd_system(ctx: Ctx, argv: list[str]) -> int:
    return groups.dispatch(ctx, "system", "Manage berth", _table(), argv)


COMMANDS = {"system": cmd_system}
