"""`berth image ...` with docker's sub-verbs, plus `image inspect` and `history` (`image history`).

Strategy: the group table maps docker's sub-verbs onto the commands that exist
(imported when called: this module sits above the others); `image inspect`
prints GET /images/{name}/json like docker (a JSON array, or --format per
image, errors after); `history` renders GET /images/{name}/history with
`history_row` (pure), docker's columns and truncation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from berth.cli import groups
from berth.cli.common import Ctx, describe, finish_inspect
from berth.cli.gotemplate import Template, render_rows
from berth.cli.parser import Parser
from berth.cli.tables import ellipsis, json_rows, short_id
from berth.cli.units import ago, human_size
from berth.client.errors import APIError

HISTORY_DEFAULT = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}


def history_row(h: Mapping[str, Any], now: float, trunc: bool = True, human: bool = True) -> dict[str, Any]:
    ident = str(h.get("Id") or "<missing>")
    created = float(h.get("Created") or 0)
    by = str(h.get("CreatedBy") or "").replace("\t", " ")
    size = int(h.get("Size") or 0)
    local = time.localtime(created)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", local)  # Go's RFC3339, local time, "Z" in UTC
    stamp = stamp[:-5] + "Z" if local.tm_zone in ("UTC", "GMT") and local.tm_gmtoff == 0 else stamp[:-2] + ":" + stamp[-2:]
    return {
        "ID": ident if ident == "<missing>" else short_id(ident, trunc),
        "CreatedSince": ago(created, now) if human else stamp,
        "CreatedAt": stamp,
        "CreatedBy": ellipsis(by, 45) if trunc else by,
        "Size": human_size(size) if human else str(size),
        "Comment": str(h.get("Comment") or ""),
    }


def cmd_history(ctx: Ctx, argv: list[str], verb: str = "history") -> int:
    p = Parser(verb, "[OPTIONS] IMAGE", "Show the history of an image", min_args=1, max_args=1)
    p.add_argument("--format", default=None)
    p.add_argument("-H", "--human", default="true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--platform", default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    human = str(ns.human).lower() not in ("false", "0", "f")
    doc = ctx.client.get(f"/images/{ns.args[0]}/history", {"platform": ns.platform}) or []
    now = time.time()
    rows = [history_row(h, now, trunc=not ns.no_trunc, human=human) for h in doc]
    fmt = ns.format or HISTORY_DEFAULT
    if ns.quiet:
        fmt = "{{.ID}}"
    elif fmt == "table":
        fmt = HISTORY_DEFAULT
    ctx.out.write(json_rows(rows) if fmt == "json" else render_rows(fmt, rows, HISTORY_HEADERS))
    return 0


def cmd_image_inspect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("image inspect", "[OPTIONS] IMAGE [IMAGE...]", "Display detailed information on one or more images",
               min_args=1)
    p.add_argument("-f", "--format", default=None)
    p.add_argument("--platform", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    tmpl = Template(ns.format) if ns.format and ns.format != "json" else None
    found: list[Any] = []
    errors: list[str] = []
    for name in ns.args:
        try:
            obj = ctx.client.get(f"/images/{name}/json", {"platform": ns.platform} if ns.platform else None)
        except APIError as exc:
            errors.append(describe(exc))
            continue
        found.append(obj)
        if tmpl is not None:
            ctx.print(tmpl.execute(obj))
    return finish_inspect(ctx, ns.format, tmpl is not None, found, errors)


def _table() -> groups.Table:
    from berth.cli import commands_build, commands_images, commands_registry

    i, r = commands_images, commands_registry
    return {
        "bootstrap": (r.cmd_bootstrap, "Make base images from Debian's packages (no registry needed) and load them"),
        "build": (commands_build.cmd_build, "Build an image from a Dockerfile"),
        "history": (lambda ctx, argv: cmd_history(ctx, argv, "image history"), "Show the history of an image"),
        "import": (i.cmd_import, "Import the contents from a tarball to create a filesystem image"),
        "inspect": (cmd_image_inspect, "Display detailed information on one or more images"),
        "load": (r.cmd_load, "Load an image from a tar archive or STDIN"),
        "ls": (i.cmd_images, "List images"), "list": (i.cmd_images, "List images"),
        "prune": (r.cmd_image_prune, "Remove unused images"),
        "pull": (r.cmd_pull, "Download an image from a registry"),
        "push": (r.cmd_push, "Upload an image to a registry"),
        "rm": (i.cmd_rmi, "Remove one or more images"), "remove": (i.cmd_rmi, "Remove one or more images"),
        "save": (r.cmd_save, "Save one or more images to a tar archive (streamed to STDOUT by default)"),
        "tag": (i.cmd_tag, "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    }


def cmd_image(ctx: Ctx, argv: list[str]) -> int:
    table = _table()
    return groups.dispatch(ctx, "image", "Manage images", table, argv, set(table) - {"list", "remove"})


COMMANDS = {"image": cmd_image, "history": cmd_history}
