"""berth.services.events: the ring, live subscribers, Docker's filter rules, bounded queues."""

from __future__ import annotations

import asyncio
import time

import pytest

from berth.errors import InvalidArgument
from berth.services import events as ev
from berth.services.events import Event, Events, matches


def event(kind: str, action: str, actor: str, **attrs: str) -> Event:
    return Event(kind, action, actor, attrs, time.time_ns())


CTR = event("container", "start", "c0ffee" + "0" * 58, name="web", image="busybox:latest", tier="front")
EXEC = event("container", "exec_start: sh -c true", "c0ffee" + "0" * 58, name="web", image="busybox:latest")
IMG_TAG = event("image", "tag", "sha256:" + "a" * 64, name="busybox:1", maintainer="me")
IMG_PULL = event("image", "pull", "busybox:latest", name="busybox")
NET = event("network", "connect", "beef" + "0" * 60, name="front", type="bridge", container="c0ffee" + "0" * 58)
VOL = event("volume", "mount", "data", driver="local", container="c0ffee" + "0" * 58, destination="/d")

# (filters, events that pass, events that do not), as moby's daemon/events/filter.go decides
CASES = [
    ({"type": ["network"]}, [NET], [CTR, IMG_TAG, VOL]),
    ({"type": ["image", "volume"]}, [IMG_TAG, IMG_PULL, VOL], [CTR, NET]),
    ({"event": ["connect"]}, [NET], [CTR, VOL]),
    ({"event": ["exec_start"]}, [EXEC], [CTR]),                  # prefix for exec_*/health_status
    ({"event": ["star"]}, [], [CTR]),                            # otherwise exact
    ({"container": ["web"]}, [CTR, EXEC], [NET, VOL, IMG_TAG]),  # by name
    ({"container": ["c0ffee"]}, [CTR], [NET, VOL]),              # by id prefix; not the container attribute
    ({"network": ["front"]}, [NET], [CTR, VOL]),
    ({"network": ["beef"]}, [NET], [CTR]),
    ({"volume": ["data"]}, [VOL], [NET, CTR]),
    ({"image": ["busybox"]}, [CTR, IMG_PULL], [NET]),             # a container's image, without its tag
    ({"image": ["busybox:latest"]}, [CTR, IMG_PULL], [IMG_TAG]),
    ({"image": ["busybox:1"]}, [IMG_TAG], [CTR]),                # an image event's name
    ({"image": ["sha256:" + "a" * 64]}, [IMG_TAG], [CTR]),       # an image event's id, exactly
    ({"image": ["busy"]}, [], [CTR, IMG_PULL]),                  # never a prefix
    ({"label": ["tier=front"]}, [CTR], [NET]),
    ({"label": ["tier"]}, [CTR], [IMG_TAG]),
    ({"label": ["maintainer=me"]}, [IMG_TAG], [CTR]),
    ({"scope": ["local"]}, [CTR, NET], []),
    ({"scope": ["swarm"]}, [], [CTR, NET]),
    ({"type": ["container"], "event": ["start"], "container": ["web"]}, [CTR], [EXEC, NET]),
    ({"type": []}, [CTR, NET], []),                               # an empty list filters nothing
]


@pytest.mark.parametrize("filters, passing, failing", CASES)
def test_filters_as_docker(filters: dict, passing: list, failing: list) -> None:
    for e in passing:
        assert matches(e, filters), (filters, e)
    for e in failing:
        assert not matches(e, filters), (filters, e)


@pytest.mark.parametrize("key", ["type", "event", "container", "image", "label", "volume", "network", "daemon",
                                 "plugin", "node", "service", "secret", "config", "scope"])
def test_docker_filter_keys_are_accepted(key: str) -> None:
    ev.check_filters({key: ["x"]})


def test_an_unknown_filter_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        ev.check_filters({"colour": ["red"]})


def test_publish_records_a_typed_event() -> None:
    e = Events()
    attrs = {"image": "busybox", "name": "a"}
    before = time.time_ns()
    e.publish("container", "start", "c1", attrs)
    attrs["name"] = "changed later"
    (got,) = list(e._ring)
    assert (got.kind, got.action, got.actor, got.attributes, got.scope) == (
        "container", "start", "c1", {"image": "busybox", "name": "a"}, "local")
    assert got.time_nano >= before and got.time == got.time_nano // 1_000_000_000


def test_replay_since_then_live_until() -> None:
    async def main() -> list[str]:
        e = Events()
        start = time.time_ns()
        e.publish("volume", "create", "old", {"driver": "local"})
        e.publish("network", "create", "skip", {"name": "skip", "type": "bridge"})
        got: list[str] = []

        async def follow() -> None:
            async for item in e.subscribe(start, time.time_ns() + 300_000_000, {"type": ["volume"]}):
                got.append(item.actor)
        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.05)
        assert e.listeners == 1
        e.publish("volume", "destroy", "new", {"driver": "local"})
        await asyncio.wait_for(task, 5)  # ends at `until`
        assert e.listeners == 0
        return got
    assert asyncio.run(main()) == ["old", "new"]


def test_a_subscriber_that_falls_behind_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev, "QUEUE", 3)

    async def main() -> tuple[int, int]:
        e = Events()
        stream = e.subscribe(0, 0, {})
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.01)  # subscribed, waiting
        for n in range(10):  # nobody reads: the queue fills, then the subscriber is let go
            e.publish("volume", "create", f"v{n}", {})
        got = [await first]
        async for item in stream:
            got.append(item)
        return len(got), e.listeners
    count, listeners = asyncio.run(main())
    assert count <= 4 and listeners == 0


def test_publish_from_a_worker_thread_reaches_the_loop() -> None:
    async def main() -> list[str]:
        e = Events()
        got: list[str] = []

        async def follow() -> None:
            async for item in e.subscribe(0, 0, {}):
                got.append(item.actor)
                return
        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.01)
        await asyncio.to_thread(e.publish, "image", "load", "sha256:1", {"name": "sha256:1"})
        await asyncio.wait_for(task, 5)
        return got
    assert asyncio.run(main()) == ["sha256:1"]
