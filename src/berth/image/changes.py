"""Dockerfile instructions applied to an image config (`docker import --change`, `docker commit --change`).

Strategy: the builder's own code path (berth.builder.configedit), so a change
means exactly what the same line means in a Dockerfile.
"""

from __future__ import annotations

from typing import Any

from berth.builder.configedit import apply_changes


def parse_changes(changes: list[str], config: dict[str, Any]) -> str:
    """Apply the `--change` instructions to *config*; return an author set by MAINTAINER, if any."""
    return apply_changes(changes, config)
