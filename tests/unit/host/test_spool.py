"""Tests for berth.host.spool on real files: streamed bodies written off the event loop, cleaned up on failure."""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import signal
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from berth.host import spool


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


def test_to_file_writes_every_byte_in_order(tmp_path: Path) -> None:
    parts = [bytes([i]) * (1000 + i) for i in range(200)]
    target = tmp_path / "body"
    size = asyncio.run(spool.to_file(_chunks(parts), target, batch=4096))
    assert size == sum(map(len, parts))
    assert target.read_bytes() == b"".join(parts)
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o600


def test_to_file_of_an_empty_body_is_an_empty_file(tmp_path: Path) -> None:
    target = tmp_path / "body"
    assert asyncio.run(spool.to_file(_chunks([]), target)) == 0
    assert target.read_bytes() == b""


def test_to_file_never_follows_or_replaces_what_is_at_the_path(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "link"
    link.symlink_to(victim)
    for existing in (victim, link):
        with pytest.raises(FileExistsError):
            asyncio.run(spool.to_file(_chunks([b"evil"]), existing))
    assert victim.read_bytes() == b"keep" and link.is_symlink()


def test_a_body_cut_short_leaves_no_file(tmp_path: Path) -> None:
    async def cut() -> AsyncIterator[bytes]:
        yield b"x" * (3 << 20)
        raise ConnectionResetError("the client went away")

    target = tmp_path / "body"
    with pytest.raises(ConnectionResetError):
        asyncio.run(spool.to_file(cut(), target, batch=1 << 20))
    assert os.listdir(tmp_path) == []


def test_cancellation_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "body"

    async def main() -> None:
        received = asyncio.Event()

        async def hanging() -> AsyncIterator[bytes]:
            yield b"y" * (2 << 20)  # more than a batch: one write has run
            received.set()
            await asyncio.Event().wait()  # a client that stops sending
            yield b""

        task = asyncio.ensure_future(spool.to_file(hanging(), target, batch=1 << 20))
        await received.wait()
        assert target.exists()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert os.listdir(tmp_path) == []


def test_a_failing_write_raises_and_stops_the_stream() -> None:
    pulled = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(100):
            pulled.append(i)
            yield b"z" * 65536

    async def main() -> None:
        with open("/dev/full", "wb", buffering=0) as full:  # every write: ENOSPC
            await spool.drain(body(), full.write, batch=65536)

    with pytest.raises(OSError) as info:
        asyncio.run(main())
    assert info.value.errno == errno.ENOSPC
    assert len(pulled) < 100


def test_a_failing_write_leaves_no_file(tmp_path: Path) -> None:
    """The kernel refuses a write past RLIMIT_FSIZE (EFBIG, SIGXFSZ ignored): the partial file goes."""
    target = tmp_path / "body"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        with pytest.raises(OSError) as info:
            asyncio.run(spool.to_file(_chunks([b"f" * (256 << 10)] * 12), target, batch=512 << 10))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert info.value.errno == errno.EFBIG
    assert os.listdir(tmp_path) == []


def test_cancellation_waits_for_the_write_in_flight() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow_write(data: bytes) -> None:
        started.set()
        release.wait(10)
        finished.set()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0)
            yield b"w" * 4096

    async def main() -> None:
        task = asyncio.ensure_future(spool.drain(endless(), slow_write, batch=4096))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        for _ in range(5):
            await asyncio.sleep(0.01)
            assert not task.done(), "the cancellation went on while a write was still running"
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set()

    asyncio.run(main())


def test_writes_are_batched_one_at_a_time_and_memory_is_bounded() -> None:
    batch, chunk = 256 << 10, 64 << 10
    state = {"received": 0, "written": 0, "running": 0, "most_held": 0, "overlap": False}
    sizes: list[int] = []
    lock = threading.Lock()

    def write(data: bytes) -> None:
        with lock:
            state["running"] += 1
            state["overlap"] = state["overlap"] or state["running"] > 1
        threading.Event().wait(0.001)  # a slow disk
        sizes.append(len(data))
        with lock:
            state["written"] += len(data)
            state["running"] -= 1

    async def body() -> AsyncIterator[bytes]:
        for _ in range(200):
            with lock:
                state["most_held"] = max(state["most_held"], state["received"] - state["written"])
            state["received"] += chunk
            yield b"m" * chunk

    total = asyncio.run(spool.drain(body(), write, batch=batch))
    assert total == 200 * chunk == state["written"]
    assert not state["overlap"]
    assert all(s <= batch + chunk for s in sizes)
    assert state["most_held"] <= 2 * batch + chunk


def test_drain_refuses_a_batch_of_zero() -> None:
    with pytest.raises(ValueError):
        asyncio.run(spool.drain(_chunks([b"x"]), lambda data: None, batch=0))


def test_settled_returns_the_result_and_raises_the_error() -> None:
    assert asyncio.run(spool.settled(sum, [1, 2, 3])) == 6
    with pytest.raises(FileNotFoundError):
        asyncio.run(spool.settled(os.stat, "/nonexistent/berth-spool-test"))
