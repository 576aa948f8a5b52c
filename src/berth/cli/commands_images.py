"""Image verbs: images, import, tag, rmi.

Strategy: thin mappings onto the Engine API; listing rows come from
berth.cli.tables and are rendered with berth.cli.gotemplate.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

from berth.cli.common import Ctx, StatusError, for_each, platform_json, require_api
from berth.cli.commands_imagetree import images_tree
from berth.cli.parser import Parser, filter_flag
from berth.cli.tables import (
    IMAGES_DEFAULT,
    IMAGES_HEADERS,
    image_rows,
    render_listing,
    split_repo_tag,
)
from berth.client.errors import APIError


def cmd_images(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("images", "[OPTIONS] [REPOSITORY[:TAG]]", "List images", max_args=1)
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("--format", default=None)
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_flag("-f, --filter"))
    p.add_argument("--tree", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    filters: dict[str, list[str]] = {}
    for item in ns.filter:
        key, sep, value = item.partition("=")
        if not sep:
            raise StatusError(125, f"berth: bad format of filter (expected name=value): {item}")
        filters.setdefault(key.strip().lower(), []).append(value)
    if ns.args:
        filters.setdefault("reference", []).append(ns.args[0])
    if ns.tree:
        return images_tree(ctx, ns.all, filters, quiet=ns.quiet, no_trunc=ns.no_trunc, digests=ns.digests,
                           format_=ns.format)
    images = ctx.client.get("/images/json", {"all": ns.all, "filters": filters or None})
    rows = image_rows(images, time.time(), trunc=not ns.no_trunc, show_digests=ns.digests)
    fmt = ns.format
    if ns.quiet:
        seen: set[str] = set()
        for row in rows:
            if row["ID"] not in seen:
                seen.add(row["ID"])
                ctx.print(row["ID"])
        return 0
    if fmt in (None, "", "table"):
        fmt = IMAGES_DEFAULT
        if ns.digests:
            fmt = fmt.replace("{{.Tag}}\t", "{{.Tag}}\t{{.Digest}}\t")
    ctx.out.write(render_listing(fmt, rows, IMAGES_HEADERS))
    return 0


def cmd_tag(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
               "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", min_args=2, max_args=2)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    repo, tag = split_repo_tag(ns.args[1])
    ctx.client.request("POST", f"/images/{ns.args[0]}/tag", {"repo": repo, "tag": tag or "latest"})
    return 0


def cmd_rmi(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("rmi", "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images", min_args=1)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("--platform", action="append", default=[])
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    client = ctx.client
    query: dict[str, Any] = {"force": ns.force, "noprune": ns.no_prune}
    if ns.platform:  # API 1.50: remove only these platforms of a multi-platform image
        require_api(ctx, "--platform", "1.50")
        query["platforms"] = [platform_json(p) for t in ns.platform for p in t.split(",") if p]

    def act(name: str) -> str | None:
        items = client.delete(f"/images/{name}", query)
        lines = []
        for item in items or []:
            if item.get("Untagged"):
                lines.append(f"Untagged: {item['Untagged']}")
            if item.get("Deleted"):
                lines.append(f"Deleted: {item['Deleted']}")
        return "\n".join(lines) if lines else None

    return for_each(ctx, ns.args, act, missing_ok=ns.force)


def cmd_import(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("import", "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
               "Import the contents from a tarball to create a filesystem image",
               min_args=1, max_args=2)
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default=None)
    p.add_argument("--platform", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    source = ns.args[0]
    repo, tag = split_repo_tag(ns.args[1]) if len(ns.args) > 1 else ("", "")
    query: dict[str, Any] = {"repo": repo or None, "tag": tag or None,
                             "message": ns.message, "changes": ns.change or None,
                             "platform": ns.platform}
    body: IO[bytes] | None = None
    headers: dict[str, str] = {"Content-Type": "application/x-tar"}
    opened: IO[bytes] | None = None
    if source == "-":
        query["fromSrc"] = "-"
        body = sys.stdin.buffer
    elif "://" in source:
        query["fromSrc"] = source
    else:
        try:
            opened = open(source, "rb")
        except OSError as exc:
            raise StatusError(1, f"open {source}: {(exc.strerror or str(exc)).lower()}") from None
        query["fromSrc"] = "-"
        body = opened
        headers["Content-Length"] = str(os.fstat(opened.fileno()).st_size)
    try:
        with ctx.client.stream("POST", "/images/create", query, body, headers) as sr:
            for msg in sr.json_lines():
                if not isinstance(msg, dict):
                    continue
                if msg.get("error") or msg.get("errorDetail"):
                    detail = msg.get("errorDetail") or {}
                    raise APIError(500, str(msg.get("error") or detail.get("message")))
                status = msg.get("status")
                if status:
                    ctx.print(f"{msg['id']}: {status}" if msg.get("id") else str(status))
    finally:
        if opened is not None:
            opened.close()
    return 0


COMMANDS = {"images": cmd_images, "tag": cmd_tag, "rmi": cmd_rmi, "import": cmd_import}
