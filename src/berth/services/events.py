"""Lifecycle events, kept in a ring and streamed to subscribers.

Strategy: publish() makes a typed `Event` and appends it to a bounded in-memory
ring (as Docker keeps the last events) and wakes subscribers; a subscriber first
replays the ring from `since`, then follows live events until `until` or until
it goes away. Docker's JSON for an event (with the pre-1.22 status/id/from
fields) is api.views.events'.

publish() may be called from a worker thread (a load or a commit runs in one):
the event is then handed to the subscribers' loop, whose queues are not
thread-safe. Every subscriber's queue is bounded: a client that stops reading while events
keep coming is dropped (its stream ends) rather than making the daemon hold
its backlog without limit.

Filters follow Docker's (moby daemon/events/filter.go): `type`, `event` and
`scope` are exact; each object filter (`container`, `image`, `volume`,
`network`, `daemon`, `plugin`, `node`, `service`, `secret`, `config`) matches
an event's actor id or its `name` attribute, exactly or as a prefix (of any
event type, as moby does); `image` matches an image event's id or name, or a
container event's `image` attribute, with or without its tag, exactly;
`label` matches the actor's attributes (`key` or `key=value`, all of them).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import AsyncIterator

from berth.errors import InvalidArgument
from berth.oci import reference

RING = 1024
QUEUE = 4096  # events waiting for one subscriber; beyond that it is dropped

# Filters naming an object of one event type: matched against actor id and name (fuzzy).
OBJECT_FILTERS = ("container", "daemon", "plugin", "volume", "network", "service", "node", "secret", "config")
FILTERS = ("type", "event", "scope", "image", "label", *OBJECT_FILTERS)
# Event filters that match by prefix: their actions carry a suffix (`exec_start: sh -c ...`).
_PREFIX_ACTIONS = ("health_status", "exec_create", "exec_start")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to an object of the engine (Docker's events message).

    *kind* is the object's type (container, image, volume, network, daemon...), *action*
    what happened (`start`, `exec_start: sh -c true`...), *actor* the object's id (an image's
    reference for a pull or push) and *attributes* its name, labels and the like.
    """

    kind: str
    action: str
    actor: str
    attributes: dict[str, str]
    time_nano: int
    scope: str = "local"

    @property
    def time(self) -> int:
        """Seconds since the epoch."""
        return self.time_nano // 1_000_000_000


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE)
        self.overflowed = asyncio.Event()


class Events:
    def __init__(self) -> None:
        self._ring: collections.deque[Event] = collections.deque(maxlen=RING)
        self._subscribers: set[_Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # the subscribers' loop, once there is one

    def publish(self, kind: str, action: str, actor: str, attributes: dict[str, str]) -> None:
        event = Event(kind, action, actor, dict(attributes), time.time_ns())
        loop = self._loop
        if loop is not None and not loop.is_closed() and not _on(loop):
            loop.call_soon_threadsafe(self._deliver, event)  # from a worker thread (a load, a commit)
        else:
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        self._ring.append(event)
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(sub)
                sub.overflowed.set()

    @property
    def listeners(self) -> int:
        """How many clients follow events now (`docker info`'s NEventsListener)."""
        return len(self._subscribers)

    async def subscribe(self, since_ns: int, until_ns: int, filters: dict[str, list[str]]) -> AsyncIterator[Event]:
        """The ring's events from *since_ns* (none when 0), then live ones until *until_ns* (0: for ever).

        Raises:
            InvalidArgument: a filter key Docker's events do not have (on the first iteration).
        """
        check_filters(filters)
        self._loop = asyncio.get_running_loop()
        sub = _Subscriber()
        self._subscribers.add(sub)
        try:
            if since_ns:
                for event in list(self._ring):
                    if event.time_nano >= since_ns and (not until_ns or event.time_nano <= until_ns):
                        if matches(event, filters):
                            yield event
            while True:
                timeout = None
                if until_ns:
                    timeout = (until_ns - time.time_ns()) / 1e9
                    if timeout <= 0:
                        return
                live = await _next(sub, timeout)
                if live is None:
                    return
                if since_ns and live.time_nano < since_ns:
                    continue
                if until_ns and live.time_nano > until_ns:
                    return
                if matches(live, filters):
                    yield live
        finally:
            self._subscribers.discard(sub)


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    """Is this thread running *loop*?"""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _next(sub: _Subscriber, timeout: float | None) -> Event | None:
    """The subscriber's next event; None at the timeout, or once it was dropped for falling behind."""
    if not sub.queue.empty():
        return sub.queue.get_nowait()
    if sub.overflowed.is_set():
        return None
    getter = asyncio.ensure_future(sub.queue.get())
    dropped = asyncio.ensure_future(sub.overflowed.wait())
    try:
        await asyncio.wait({getter, dropped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        dropped.cancel()
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    return None


def check_filters(filters: dict[str, list[str]]) -> None:
    """Raises InvalidArgument on a filter key Docker's events do not have."""
    for key in filters:
        if key not in FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")


def matches(event: Event, filters: dict[str, list[str]]) -> bool:
    """Does *event* pass every one of *filters* (Docker's rules, see the module's docstring)?"""
    attrs = event.attributes
    for key, values in filters.items():
        if not values:
            continue
        if key == "type":
            ok = event.kind in values
        elif key == "event":
            action = event.action
            ok = action in values or (any(v in _PREFIX_ACTIONS for v in values)
                                      and any(action.startswith(v) for v in values))
        elif key == "scope":
            ok = event.scope in values
        elif key in OBJECT_FILTERS:  # as moby: against any event's actor, whatever its type
            ok = _fuzzy(values, event.actor) or _fuzzy(values, attrs.get("name", ""))
        elif key == "image":
            name = attrs.get("name" if event.kind == "image" else "image", "")
            candidates = {event.actor, name, _strip_tag(event.actor), _strip_tag(name)} - {""}
            ok = any(v in candidates for v in values)
        elif key == "label":
            ok = all(_label(attrs, v) for v in values)
        else:
            ok = True
        if not ok:
            return False
    return True


def _fuzzy(values: list[str], source: str) -> bool:
    return bool(source) and any(source == v or source.startswith(v) for v in values)


def _label(attrs: dict[str, str], want: str) -> bool:
    key, eq, value = want.partition("=")
    return key in attrs and (not eq or attrs[key] == value)


def _strip_tag(name: str) -> str:
    """An image reference without its tag or digest (`busybox:1` -> `busybox`); other text as it is."""
    if not name or name.startswith("sha256:"):
        return name
    try:
        return reference.parse(name, default_tag=None).name
    except InvalidArgument:
        return name
