"""`docker cp`'s stat of a container path, as Docker sends it: the X-Docker-Container-Path-Stat header.

Strategy: services.containerview measures the path (PathStat: mode already in Go's FileMode
bits); this renders Docker's ContainerPathStat JSON and its base64 header value.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from berth import timefmt
from berth.services.containerview import PathStat

STAT_HEADER = "X-Docker-Container-Path-Stat"


def path_stat(s: PathStat) -> dict[str, Any]:
    """ContainerPathStat: name, size, mode, mtime (RFC 3339, nanoseconds) and linkTarget."""
    return {"name": s.name, "size": s.size, "mode": s.mode, "mtime": timefmt.format_ns(s.mtime_ns),
            "linkTarget": s.link_target}


def header(s: PathStat) -> tuple[str, str]:
    """The header carrying *s*: its value is base64 of the JSON."""
    return STAT_HEADER, base64.b64encode(json.dumps(path_stat(s)).encode()).decode()
