"""`berth search`: docker's `search` verb (GET /images/search), its flags, table and formats.

Strategy: the same request as the docker CLI (the term, `limit` only when
positive, the filters as given with their names lower-cased, and the stored
login of the term's index in X-Registry-Auth), then docker's output: the
table NAME DESCRIPTION STARS OFFICIAL, the description on one line and cut
to 45 columns with "…" unless --no-trunc, `[OK]` for an official image; with
`--format json` one object a result whose IsOfficial is "true"/"false".
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from berth.cli.common import Ctx
from berth.cli.gotemplate import render_rows
from berth.cli.parser import Parser, filter_flag, integer, typed
from berth.cli.tables import json_rows
from berth.errors import InvalidArgument
from berth.wire.searchterm import split_term

SEARCH_DEFAULT = "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}"
SEARCH_HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS", "IsOfficial": "OFFICIAL"}
DESCRIPTION_WIDTH = 45  # columns of a description in docker's table, "…" included
AUTOMATED_WARNING = ('WARNING: the "is-automated" filter is deprecated, and searching for "is-automated=true" '
                     "will not yield any results in future.")


def _char_width(ch: str) -> int:
    """A character's width as docker's Ellipsis counts it: 2 for East Asian wide and full-width, else 1."""
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def ellipsis(text: str, width: int) -> str:
    """*text* cut to *width* display columns, the last being "…", as docker's formatter.Ellipsis cuts it."""
    if width <= 0:
        return ""
    if text.isascii():
        return text if len(text) <= width else text[:width - 1] + "…"
    total = 0
    ends: list[int] = []
    for ch in text:
        total += _char_width(ch)
        ends.append(total)
    if total <= width:
        return text
    keep = 0
    while keep < len(ends) and ends[keep] <= width - 1:
        keep += 1
    return text[:keep] + "…"


def _one_line(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")


def search_rows(results: list[Mapping[str, Any]], trunc: bool) -> list[dict[str, Any]]:
    """The fields docker's `search --format` knows (.Name .Description .StarCount .IsOfficial), per result."""
    rows = []
    for r in results:
        description = _one_line(str(r.get("description") or ""))
        rows.append({"Name": str(r.get("name") or ""),
                     "Description": ellipsis(description, DESCRIPTION_WIDTH) if trunc else description,
                     "StarCount": str(r.get("star_count") or 0),
                     "IsOfficial": "[OK]" if r.get("is_official") else ""})
    return rows


def render(results: list[Mapping[str, Any]], fmt: str | None, trunc: bool) -> str:
    """The whole output of `search` for the daemon's *results*."""
    rows = search_rows(results, trunc)
    fmt = (fmt or "").strip() or SEARCH_DEFAULT
    if fmt == "table":
        fmt = SEARCH_DEFAULT
    if fmt == "json":
        return json_rows({**row, "IsOfficial": "true" if row["IsOfficial"] else "false"} for row in rows)
    return render_rows(fmt, rows, SEARCH_HEADERS)


def filters_of(given: list[str]) -> dict[str, list[str]]:
    """`-f k=v` flags as docker's CLI sends them: names lower-cased, names and values trimmed."""
    out: dict[str, list[str]] = {}
    for item in given:
        key, _, value = item.partition("=")
        out.setdefault(key.strip().lower(), []).append(value.strip())
    return out


def cmd_search(ctx: Ctx, argv: list[str]) -> int:
    from berth.cli.commands_registry import registry_auth_header  # the stored login of the term's index

    p = Parser("search", "[OPTIONS] TERM", "Search Docker Hub for images", min_args=1, max_args=1)
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_flag("-f, --filter"),
                   help="Filter output based on conditions provided")
    p.add_argument("--format", default=None, help="Pretty-print search using a Go template")
    p.add_argument("--limit", default=0, type=typed("--limit", integer), help="Max number of search results")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    term = ns.args[0]
    filters = filters_of(ns.filter)
    if "is-automated" in filters:
        ctx.error(AUTOMATED_WARNING)
    query: dict[str, Any] = {"term": term}
    if ns.limit > 0:
        query["limit"] = str(ns.limit)
    if filters:
        query["filters"] = json.dumps(filters)
    try:
        index, _ = split_term(term)
    except InvalidArgument:
        index = ""  # the daemon says what is wrong with the term
    headers = registry_auth_header(index) if index else {}
    results = ctx.client.request("GET", "/images/search", query, None, headers).json()
    if not isinstance(results, list):
        results = []
    ctx.out.write(render([r for r in results if isinstance(r, Mapping)], ns.format, not ns.no_trunc))
    return 0


COMMANDS = {"search": cmd_search}
