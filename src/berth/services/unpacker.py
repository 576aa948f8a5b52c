"""A layer unpacked while it downloads: the bytes a pull receives, fed to a worker thread's unpacking.

Strategy: one pass over the layer, never a re-read: the download (on the
event loop) puts each chunk into a small bounded queue that a thread reads
as a file and unpacks (services.layers.Layers.unpack_stream), so a full
queue slows the download instead of growing memory; an aborted download
tells the thread to stop and drops what it prepared.
"""

from __future__ import annotations

import asyncio
import io
import queue
from typing import IO, Any, cast

from berth.registry import RegistryDataError
from berth.services.layers import Layers


class _Pipe(io.RawIOBase):
    """Bytes handed over from the event loop to an unpacking thread (bounded, so memory stays small)."""

    def __init__(self) -> None:
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
        self._buf = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._eof:
            item = self._q.get()
            if item is None:
                self._eof = True
            elif isinstance(item, BaseException):
                raise item
            else:
                self._buf = item
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def full(self) -> bool:
        return self._q.full()

    def put(self, item: bytes | BaseException | None) -> None:
        self._q.put_nowait(item)


class _Unpacked(Exception):
    """Tells an unpacking thread to stop: its input is being thrown away."""


class Unpacker:
    """Unpacks one layer in a worker thread from the bytes its download receives: one pass, no re-read."""

    def __init__(self, layers: Layers, diff_id: str) -> None:
        self._layers = layers
        self._pipe = _Pipe()
        self._job = asyncio.ensure_future(asyncio.to_thread(layers.unpack_stream, cast(IO[bytes], self._pipe),
                                                            diff_id))

    async def feed(self, data: bytes) -> None:
        while self._pipe.full():
            if self._job.done():
                self._job.result()  # the unpacking failed: its error, now
                raise RegistryDataError("the layer's unpacking stopped early")  # it returned before the end
            await asyncio.sleep(0.005)
        self._pipe.put(data)

    async def finish(self) -> str:
        """Wait for the unpacking; return the prepared directory (see Layers.unpack_stream)."""
        while self._pipe.full() and not self._job.done():
            await asyncio.sleep(0.005)
        if not self._job.done():
            self._pipe.put(None)
        tmp, _ = await self._job
        return tmp

    async def abort(self) -> None:
        if not self._job.done():
            while self._pipe.full() and not self._job.done():
                await asyncio.sleep(0.005)
            if not self._job.done():
                self._pipe.put(_Unpacked())
        try:
            tmp, _ = await self._job
        except BaseException:
            return
        self._layers.discard(tmp)
