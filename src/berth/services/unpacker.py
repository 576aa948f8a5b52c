"""Bytes a stream receives on the event loop, read as a file by a worker thread: a layer unpacked while it
downloads, an image archive extracted while it uploads.

Strategy: one pass, never a re-read: the event loop gathers the chunks it
receives into batches (BATCH bytes) and puts them into a small bounded queue
that a thread reads as a file (`ThreadFeed`), so a full queue slows the
download instead of growing memory (at most DEPTH batches wait, plus one
gathering). When the queue is full the loop waits for the thread to take a
batch (woken by it, not by polling); an aborted stream tells the thread to
stop. `BlobWriter` is a pull's case: the thread writes the blob to its
ingest and unpacks the layer (services.layers.Layers.unpack_stream) from the
same bytes, dropping what it prepared when aborted.
"""

from __future__ import annotations

import asyncio
import io
import queue
from collections.abc import Callable
from typing import IO, Any, Generic, TypeVar, cast

from berth.content.local import Ingest
from berth.registry import RegistryDataError
from berth.services.layers import Layers

BATCH = 256 << 10  # bytes gathered before one hand-over to the thread
DEPTH = 8  # batches the queue holds

_T = TypeVar("_T")


class _Pipe(io.RawIOBase):
    """Bytes handed over from the event loop to a thread (bounded, so memory stays small)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=DEPTH)
        self._loop = loop
        self._buf = memoryview(b"")
        self._eof = False
        self.waiter: asyncio.Event | None = None  # set by the loop when it waits for room

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.read_some(len(b))
        b[: len(data)] = data
        return len(data)

    def read_some(self, size: int) -> bytes:
        """Up to *size* bytes, as few copies as can be (b"" at the end)."""
        while not self._buf and not self._eof:
            item = self._q.get()
            waiter, self.waiter = self.waiter, None
            if waiter is not None:
                self._loop.call_soon_threadsafe(waiter.set)
            if item is None:
                self._eof = True
            elif isinstance(item, BaseException):
                raise item
            else:
                self._buf = memoryview(item)
        data = self._buf[:size]
        self._buf = self._buf[len(data):]
        whole = data.obj
        if isinstance(whole, bytes) and len(data) == len(whole):
            return whole  # the item as it was put: no copy
        return bytes(data)

    def full(self) -> bool:
        return self._q.full()

    def put(self, item: bytes | BaseException | None) -> None:
        self._q.put_nowait(item)


class _Stopped(Exception):
    """Tells a reading thread to stop: its input is being thrown away."""


class ThreadFeed(Generic[_T]):
    """`fn(file)` run in a worker thread, the file's bytes fed from the event loop with `feed`."""

    def __init__(self, fn: Callable[[IO[bytes]], _T]) -> None:
        self._pipe = _Pipe(asyncio.get_running_loop())
        self._pending = bytearray()
        self._job = asyncio.ensure_future(asyncio.to_thread(fn, cast(IO[bytes], self._pipe)))

    async def _room(self) -> None:
        """Wait until the queue can take one more item (or the thread ended)."""
        while self._pipe.full() and not self._job.done():
            event = asyncio.Event()
            self._pipe.waiter = event
            if not self._pipe.full():  # the thread took one meanwhile
                self._pipe.waiter = None
                return
            try:
                await asyncio.wait_for(event.wait(), 0.1)  # the timeout only notices a thread that died
            except TimeoutError:
                pass

    async def feed(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) < BATCH:
            return
        await self._hand_over()

    async def _hand_over(self) -> None:
        await self._room()
        if self._job.done():
            self._job.result()  # the thread failed: its error, now
            raise RegistryDataError("the reading thread stopped before the end of its input")
        self._pipe.put(bytes(self._pending))
        self._pending = bytearray()

    async def finish(self) -> _T:
        """Hand over the rest, signal the end, and return what the thread returned."""
        if self._pending and not self._job.done():
            await self._hand_over()
        await self._room()
        if not self._job.done():
            self._pipe.put(None)
        return await self._job

    async def abort(self) -> _T | None:
        """Stop the thread (its input is thrown away); what it returned, or None if it failed."""
        self._pending = bytearray()
        if not self._job.done():
            await self._room()
            if not self._job.done():
                self._pipe.put(_Stopped())
        try:
            return await self._job
        except BaseException:
            return None


class _Download(io.RawIOBase):
    """What a download's thread reads: first the *skip* bytes an earlier attempt stored (read back from
    its file, not written again), then the bytes fed now, each written to the ingest as it passes."""

    def __init__(self, pipe: _Pipe, ingest: Ingest, skip: int) -> None:
        self._pipe, self._ingest, self._left = pipe, ingest, skip
        self._replay: IO[bytes] | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._left:
            if self._replay is None:
                self._replay = open(self._ingest.path, "rb")
            data = self._replay.read(min(len(b), self._left, 1 << 20))
            if not data:
                raise OSError(f"{self._ingest.path} is shorter than it was")
            self._left -= len(data)
        else:
            data = self._pipe.read_some(len(b))
            if data:
                self._ingest.write(data)
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._replay is not None:
            self._replay.close()
        super().close()


class BlobWriter:
    """A blob's download written to its ingest and, given the layer's diff id, unpacked as it arrives,
    in one worker thread (one pass, the event loop only hands bytes over).

    The thread owns the ingest until `finish` or `abort` returns. When the
    unpacking fails, the thread still writes the rest of what is fed, so the
    blob's own digest can be checked (a wrong blob explains a bad layer).
    """

    def __init__(self, layers: Layers, ingest: Ingest, diff_id: str | None) -> None:
        self._layers, self._ingest, self._diff_id = layers, ingest, diff_id
        skip = ingest.size if diff_id else 0  # an earlier attempt's bytes: unpacked again, not written again
        self._feed = ThreadFeed(lambda f: self._run(f, skip))

    def _run(self, f: IO[bytes], skip: int) -> str | None:
        source = _Download(cast(_Pipe, f), self._ingest, skip)
        try:
            if self._diff_id is None:
                _drain(source)
                return None
            tmp, _ = self._layers.unpack_stream(cast(IO[bytes], source), self._diff_id)
            return tmp
        except _Stopped:
            raise
        except Exception:
            _drain(source)  # the rest is still the blob's
            raise
        finally:
            source.close()

    async def feed(self, data: bytes) -> None:
        await self._feed.feed(data)

    async def finish(self) -> str | None:
        """Wait for the thread; the prepared layer directory (see Layers.unpack_stream), or None."""
        return await self._feed.finish()

    async def abort(self) -> None:
        tmp = await self._feed.abort()
        if tmp is not None:
            await asyncio.to_thread(self._layers.discard, tmp)


def _drain(source: io.RawIOBase) -> None:
    buf = bytearray(1 << 20)
    while source.readinto(buf):
        pass
