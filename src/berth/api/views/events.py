"""Events as the Engine API streams them (GET /events): one JSON object per event.

Strategy: services.events keeps typed `Event`s; this renders Docker's message,
field for field in moby's order, with the fields older clients read (`status`,
`id`, and `from` for a container's image), which Docker still sends for
container and image events only.
"""

from __future__ import annotations

from typing import Any

from berth.services.events import Event


def message(event: Event) -> dict[str, Any]:
    """Docker's events message for *event*."""
    out: dict[str, Any] = {
        "Type": event.kind, "Action": event.action,
        "Actor": {"ID": event.actor, "Attributes": dict(event.attributes)},
        "scope": event.scope, "time": event.time, "timeNano": event.time_nano,
    }
    if event.kind in ("container", "image"):  # the pre-1.22 fields
        out["status"], out["id"] = event.action, event.actor
        if event.kind == "container" and event.attributes.get("image"):
            out["from"] = event.attributes["image"]
    return out
