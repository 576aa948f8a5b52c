"""What the prune verbs share: docker's confirmation question and its --filter parsing."""

from __future__ import annotations

import json
import sys

from berth.cli.common import Ctx, StatusError


def prune_filters(items: list[str]) -> str | None:
    """`--filter k=v` flags as the API's JSON filters (None when there are none)."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise StatusError(125, f"berth: bad format of filter (expected name=value): {item}")
        out.setdefault(key.strip().lower(), []).append(value)
    return json.dumps(out) if out else None


def confirmed(ctx: Ctx, warning: str, sep: str = "\n") -> bool:
    """docker's prune question; any answer but y/yes declines."""
    ctx.out.write(f"{warning}{sep}Are you sure you want to continue? [y/N] ")
    ctx.flush()
    return sys.stdin.readline(64).strip().lower() in ("y", "yes")
