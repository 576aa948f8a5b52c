"""Lifecycle events, kept in a ring and streamed to subscribers.

Strategy: publish() appends to a bounded in-memory ring (as Docker keeps the
last events) and wakes subscribers; a subscriber first replays the ring from
`since`, then follows live events until `until` or until it goes away.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, AsyncIterator

from berth.errors import InvalidArgument

RING = 1024


class Events:
    def __init__(self) -> None:
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=RING)
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, kind: str, action: str, actor: str, attributes: dict[str, str]) -> None:
        ns = time.time_ns()
        event = {
            "Type": kind, "Action": action, "Actor": {"ID": actor, "Attributes": attributes},
            "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns,
            # pre-1.22 fields the docker CLI still reads for its default format
            "status": action, "id": actor, "from": attributes.get("image", ""),
        }
        self._ring.append(event)
        for q in self._queues:
            q.put_nowait(event)

    async def subscribe(self, since_ns: int, until_ns: int, filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        for key in filters:
            if key not in ("type", "event", "container", "image", "label"):
                raise InvalidArgument(f"invalid filter '{key}'")
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._queues.add(q)
        try:
            if since_ns:
                for event in list(self._ring):
                    if event["timeNano"] >= since_ns and (not until_ns or event["timeNano"] <= until_ns):
                        if _matches(event, filters):
                            yield event
            while True:
                if until_ns:
                    remaining = (until_ns - time.time_ns()) / 1e9
                    if remaining <= 0:
                        return
                    try:
                        event = await asyncio.wait_for(q.get(), remaining)
                    except asyncio.TimeoutError:
                        return
                else:
                    event = await q.get()
                if since_ns and event["timeNano"] < since_ns:
                    continue
                if until_ns and event["timeNano"] > until_ns:
                    return
                if _matches(event, filters):
                    yield event
        finally:
            self._queues.discard(q)


def _matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    attrs = event["Actor"]["Attributes"]
    for key, values in filters.items():
        if key == "type" and event["Type"] not in values:
            return False
        if key == "event" and event["Action"] not in values:
            return False
        if key == "container" and not any(
                event["Actor"]["ID"].startswith(v) or attrs.get("name", "").startswith(v) for v in values):
            return False
        if key == "image" and attrs.get("image") not in values:
            return False
        if key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in attrs or (eq and attrs[k] != val):
                    return False
    return True
