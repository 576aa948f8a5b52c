"""`docker cp`'s stat header (berth.api.views.pathstat)."""

from __future__ import annotations

import base64
import json

from berth.api.views import pathstat
from berth.services.containerview import GO_DIR, GO_SYMLINK, PathStat


def test_path_stat_json() -> None:
    s = PathStat("etc", 4096, GO_DIR | 0o755, 1_700_000_000_123_456_789)
    assert pathstat.path_stat(s) == {"name": "etc", "size": 4096, "mode": GO_DIR | 0o755,
                                     "mtime": "2023-11-14T22:13:20.123456789Z", "linkTarget": ""}


def test_header_is_base64_json() -> None:
    s = PathStat("sh", 7, GO_SYMLINK | 0o777, 0, "/bin/busybox")
    name, value = pathstat.header(s)
    assert name == "X-Docker-Container-Path-Stat"
    assert json.loads(base64.b64decode(value)) == pathstat.path_stat(s)
    assert pathstat.path_stat(s)["linkTarget"] == "/bin/busybox"
