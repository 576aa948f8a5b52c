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
