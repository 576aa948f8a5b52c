"""Tests for berth.services.unpacker: bytes fed on the event loop, read by a worker thread."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
from pathlib import Path
from typing import IO

import pytest

from berth.content.local import LocalStore
from berth.errors import InvalidArgument
from berth.services import unpacker
from berth.services.layers import Layers
from berth.services.unpacker import BlobWriter, ThreadFeed
from berth.snapshot.overlay import Snapshots
from berth.testing.tars import files_tar as layer_tar


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()




async def feed_all(feed: ThreadFeed | BlobWriter, data: bytes, step: int = 65536) -> None:  # type: ignore[type-arg]
    for i in range(0, len(data), step):
        await feed.feed(data[i:i + step])


def test_thread_feed_hands_every_byte_over_in_order() -> None:
    data = os.urandom(3 << 20)

    def consume(f: IO[bytes]) -> bytes:
        out = bytearray()
        while chunk := f.read(100_000):
            out += chunk
        return bytes(out)

    async def go() -> bytes:
        feed = ThreadFeed(consume)
        await feed_all(feed, data, 7777)
        return await feed.finish()

    assert asyncio.run(go()) == data


def test_thread_feed_is_bounded_while_the_thread_is_slow() -> None:
    seen: list[int] = []

    def slow(f: IO[bytes]) -> int:
        pipe = f  # the bounded queue's depth is what waits, never more
        total = 0
        while chunk := f.read(unpacker.BATCH):
            seen.append(pipe._q.qsize())  # type: ignore[attr-defined]
            total += len(chunk)
        return total

    async def go() -> int:
        feed = ThreadFeed(slow)
        await feed_all(feed, b"x" * (8 << 20))
        return await feed.finish()

    assert asyncio.run(go()) == 8 << 20
    assert max(seen) <= unpacker.DEPTH


def test_thread_feed_reports_the_threads_error() -> None:
    def fails(f: IO[bytes]) -> None:
        f.read(10)
        raise InvalidArgument("refused")

    async def go() -> None:
        feed = ThreadFeed(fails)
        with pytest.raises(InvalidArgument, match="refused"):
            await feed_all(feed, b"y" * (4 << 20))
            await feed.finish()

    asyncio.run(go())


@pytest.fixture
def parts(tmp_path: Path) -> tuple[LocalStore, Layers]:
    store = LocalStore(str(tmp_path))
    return store, Layers(store, Snapshots(str(tmp_path)))


def test_blob_writer_stores_and_unpacks_in_one_pass(parts: tuple[LocalStore, Layers]) -> None:
    store, layers = parts
    tar = layer_tar({"a": b"hello", "big": os.urandom(2 << 20)})
    blob = gzip.compress(tar)

    async def go() -> str | None:
        ingest = store.resume(sha(blob))
        writer = BlobWriter(layers, ingest, sha(tar))
        await feed_all(writer, blob)
        tmp = await writer.finish()
        ingest.commit(sha(blob))
        return tmp

    tmp = asyncio.run(go())
    assert tmp is not None
    assert Path(tmp, "fs", "a").read_bytes() == b"hello"
    assert store.read(sha(blob)) == blob
    layers.discard(tmp)


def test_blob_writer_without_a_layer_only_stores(parts: tuple[LocalStore, Layers]) -> None:
    store, layers = parts
    blob = os.urandom(1 << 20)

    async def go() -> str | None:
        ingest = store.resume(sha(blob))
        writer = BlobWriter(layers, ingest, None)
        await feed_all(writer, blob)
        tmp = await writer.finish()
        ingest.commit(sha(blob))
        return tmp

    assert asyncio.run(go()) is None
    assert store.read(sha(blob)) == blob


def test_blob_writer_resumes_from_a_partial_file(parts: tuple[LocalStore, Layers]) -> None:
    store, layers = parts
    tar = layer_tar({"f": os.urandom(600_000)})
    blob = gzip.compress(tar)
    first = store.resume(sha(blob))
    first.write(blob[:250_000])
    first.close()

    async def go() -> str | None:
        ingest = store.resume(sha(blob))
        assert ingest.size == 250_000
        writer = BlobWriter(layers, ingest, sha(tar))  # unpacks the stored part again, writes only the rest
        await feed_all(writer, blob[250_000:])
        tmp = await writer.finish()
        ingest.commit(sha(blob))
        return tmp

    tmp = asyncio.run(go())
    assert tmp is not None
    assert store.read(sha(blob)) == blob
    layers.discard(tmp)


def test_blob_writer_refused_layer_still_stores_the_whole_blob(parts: tuple[LocalStore, Layers]) -> None:
    store, layers = parts
    tar = layer_tar({"../escape": b"no", "after": os.urandom(1 << 20)})
    blob = gzip.compress(tar)

    async def go() -> None:
        ingest = store.resume(sha(blob))
        writer = BlobWriter(layers, ingest, sha(tar))
        await feed_all(writer, blob)
        with pytest.raises(InvalidArgument):
            await writer.finish()
        assert ingest.size == len(blob)  # the rest was written: the blob's digest can be checked
        ingest.abort()

    asyncio.run(go())
    assert [n for n in os.listdir(layers._snaps.root) if n.startswith(".tmp-")] == []  # type: ignore[attr-defined]


def test_blob_writer_abort_drops_the_prepared_layer(parts: tuple[LocalStore, Layers]) -> None:
    store, layers = parts
    blob = gzip.compress(layer_tar({"f": os.urandom(1 << 20)}))

    async def go() -> None:
        ingest = store.resume(sha(blob))
        writer = BlobWriter(layers, ingest, "sha256:" + "0" * 64)
        await feed_all(writer, blob[: len(blob) // 2])
        await writer.abort()
        ingest.close()

    asyncio.run(go())
    assert [n for n in os.listdir(layers._snaps.root) if n.startswith(".tmp-")] == []  # type: ignore[attr-defined]
