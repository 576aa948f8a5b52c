"""A progress stream whose client stops reading holds a bounded amount of output."""

import asyncio

import pytest

from berth.api.handlers import images
from berth.api.handlers.images import ClientNotReading, _Pending


def test_progress_updates_are_dropped_under_pressure_and_other_lines_kept(monkeypatch):
    monkeypatch.setattr(images, "PROGRESS_SOFT_CAP", 100)
    p = _Pending()
    for _ in range(10):
        p.put({"stream": "x" * 20})
    before = p.size
    p.put({"status": "Downloading", "id": "abc", "progressDetail": {"current": 5, "total": 9}})
    assert p.size == before  # superseded by the next update anyway
    p.put({"status": "Pull complete", "id": "abc", "progressDetail": {}})
    assert p.size > before


def test_a_client_that_stops_reading_ends_the_work_at_the_hard_cap(monkeypatch):
    monkeypatch.setattr(images, "PROGRESS_HARD_CAP", 1000)
    p = _Pending()
    with pytest.raises(ClientNotReading, match="stopped reading"):
        for _ in range(1000):
            p.put({"stream": "y" * 50})
    assert p.size <= 1000


def test_reading_frees_the_budget():
    async def go():
        p = _Pending()
        p.put({"stream": "a\n"})
        p.end()
        assert await p.get() == b'{"stream": "a\\n"}\r\n'
        assert p.size == 0
        assert await p.get() is None
    asyncio.run(go())


def _work(done: list[str]):
    async def work(emit):
        emit({"status": "Pulling from x"})
        for _ in range(5):
            await asyncio.sleep(0.01)
            emit({"status": "Downloading", "progressDetail": {"current": 1, "total": 2}})
        done.append("tagged")
    return work


def test_a_detached_work_goes_on_when_its_client_goes_away():
    async def go():
        done: list[str] = []
        kept: list[asyncio.Task] = []
        stream = await images.progress_stream(_work(done), detach=kept.append)
        body = stream.chunks
        assert b"Pulling from" in await body.__anext__()
        await body.aclose()  # the client went away after the first line
        assert len(kept) == 1 and not kept[0].done()
        await kept[0]
        assert done == ["tagged"]
    asyncio.run(go())


def test_work_without_detach_is_cancelled_with_its_client():
    async def go():
        done: list[str] = []
        stream = await images.progress_stream(_work(done))
        body = stream.chunks
        await body.__anext__()
        await body.aclose()
        await asyncio.sleep(0.1)
        assert done == []
    asyncio.run(go())


def test_a_request_cancelled_before_the_first_line_detaches_its_work():
    async def go():
        done: list[str] = []
        kept: list[asyncio.Task] = []

        async def slow(emit):
            await asyncio.sleep(0.05)
            await _work(done)(emit)
        handler = asyncio.ensure_future(images.progress_stream(slow, detach=kept.append))
        await asyncio.sleep(0.01)
        handler.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handler
        assert len(kept) == 1
        await kept[0]
        assert done == ["tagged"]
    asyncio.run(go())
