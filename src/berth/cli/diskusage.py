"""`berth system df -v`: the space each image, container, volume and cache record takes.

Strategy: pure. GET /system/df's lists become docker's four verbose tables (each
with its header, even empty) under docker's section titles; `--format json`
prints one object with the four lists, each row's fields as docker's CLI names
them; any other template runs once over that object. Rows reuse the `images`,
`ps` and `volume ls` row builders, so the columns read the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from berth.cli.commands_volumes import volume_rows
from berth.cli.gotemplate import execute, render_rows
from berth.cli.tables import go_json, image_rows, ps_row
from berth.cli.units import ago, human_size, human_size4, parse_api_time

IMAGES = ("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}"
          "\t{{.UniqueSize}}\t{{.Containers}}")
CONTAINERS = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}"
              "\t{{.Status}}\t{{.Names}}")
VOLUMES = "table {{.Name}}\t{{.Links}}\t{{.Size}}"
CACHE = ("table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}"
         "\t{{.Shared}}")
HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "CreatedSince": "CREATED", "Size": "SIZE",
           "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS",
           "Image": "IMAGE", "Command": "COMMAND", "LocalVolumes": "LOCAL VOLUMES", "RunningFor": "CREATED",
           "Status": "STATUS", "Names": "NAMES", "Name": "VOLUME NAME", "Links": "LINKS",
           "CacheType": "CACHE TYPE", "LastUsedSince": "LAST USED", "UsageCount": "USAGE", "Shared": "SHARED"}
_IMAGE_KEYS = ("Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository", "SharedSize", "Size",
               "Tag", "UniqueSize", "VirtualSize")
_CONTAINER_KEYS = ("Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names", "Networks",
                   "Platform", "Ports", "RunningFor", "Size", "State", "Status")
_VOLUME_KEYS = ("Availability", "Driver", "Group", "Labels", "Links", "Mountpoint", "Name", "Scope", "Size",
                "Status")


def _pick(row: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: row.get(k) for k in keys}


def image_row(img: Mapping[str, Any], now: float, trunc: bool) -> dict[str, Any]:
    """One row an image, named by its first tag (docker shows no other); <none> when it has none."""
    tagged = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
    row = image_rows([{**img, "RepoTags": tagged[:1], "RepoDigests": []}], now, trunc)[0]
    return {**_pick(row, _IMAGE_KEYS), "Digest": ""}


def container_row(c: Mapping[str, Any], now: float, trunc: bool) -> dict[str, Any]:
    """A `ps` row whose size is the writable layer's alone (docker's df shows no virtual size)."""
    return _pick(ps_row({**c, "SizeRootFs": None}, now, trunc), _CONTAINER_KEYS)


def volume_row(v: Mapping[str, Any]) -> dict[str, Any]:
    row = volume_rows([dict(v)])[0]
    return {**_pick(row, _VOLUME_KEYS), "Availability": "N/A", "Group": "N/A", "Status": "N/A"}


def cache_row(b: Mapping[str, Any], now: float, trunc: bool) -> dict[str, Any]:
    ident = str(b.get("ID", ""))
    ident = ident[:12] if trunc else ident
    created = parse_api_time(str(b.get("CreatedAt") or "")) or now
    used = parse_api_time(str(b.get("LastUsedAt") or ""))
    return {"ID": ident + ("*" if b.get("InUse") else ""), "CacheType": str(b.get("Type", "")),
            "Size": human_size(float(b.get("Size") or 0)), "CreatedSince": ago(created, now),
            "LastUsedSince": ago(used, now) if used else "", "UsageCount": str(int(b.get("UsageCount") or 0)),
            "Shared": "true" if b.get("Shared") else "false", "Description": str(b.get("Description", "")),
            "InUse": "true" if b.get("InUse") else "false"}


def verbose(doc: Mapping[str, Any], fmt: str, now: float) -> str:
    """`system df -v` for *fmt* ("" or "table": docker's tables; "json"; or a template over the whole)."""
    table = fmt in ("", "table")
    sections = {
        "Images": [image_row(i, now, table) for i in doc.get("Images") or []],
        "Containers": [container_row(c, now, table) for c in doc.get("Containers") or []],
        "Volumes": [volume_row(v) for v in doc.get("Volumes") or []],
        "BuildCache": [cache_row(b, now, table) for b in doc.get("BuildCache") or []],
    }
    if fmt.strip() == "json":
        return "{" + ",".join(f'"{name}":[' + ",".join(go_json(r, sort_keys=True) for r in rows) + "]"
                              for name, rows in sections.items()) + "}"  # docker ends it without a newline
    if not table:
        return execute(fmt, sections)
    cache_size = sum(float(b.get("Size") or 0) for b in doc.get("BuildCache") or [] if not b.get("Shared"))
    return ("Images space usage:\n\n" + render_rows(IMAGES, sections["Images"], {**HEADERS, "ID": "IMAGE ID"})
            + "\nContainers space usage:\n\n"
            + render_rows(CONTAINERS, sections["Containers"], {**HEADERS, "ID": "CONTAINER ID"})
            + "\nLocal Volumes space usage:\n\n" + render_rows(VOLUMES, sections["Volumes"], HEADERS)
            + f"\nBuild cache usage: {human_size4(cache_size)}\n\n"
            + render_rows(CACHE, sections["BuildCache"], {**HEADERS, "ID": "CACHE ID"}))
