"""Streamed request bodies to disk, with the file work off the event loop.

Strategy: berthd is one asyncio process, so a blocking write(2) of a large
upload (`docker load`, `docker build`, `docker import`) on the event loop
stalls every other client for as long as the disk takes. Here the loop only
receives: chunks are gathered into a batch (bounded, BATCH bytes), and each
full batch is handed to a worker thread while the loop goes on receiving the
next one. At most one write runs at a time, so at most about two batches (one
being written, one gathering, plus one received chunk) are held in memory;
a slow disk slows the upload down (the loop waits for the write before it
reads more), it never grows a buffer.

A write running in a thread cannot be stopped. When the stream fails or the
caller is cancelled (a client that goes away), the write in flight is waited
for before the error goes on, so the caller never closes a file (or a
descriptor number that could be reused) under a thread still writing to it.
`to_file` owns its file from creation to removal: on any failure, including
cancellation, nothing is left at the path.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

BATCH = 1 << 20  # bytes gathered before one write in a thread

_T = TypeVar("_T")


async def settled(fn: Callable[..., _T], *args: Any) -> _T:
    """fn(*args) in a worker thread, always run to its end.

    A cancelled caller still waits for the thread to finish (it may own a file
    or a descriptor), then the cancellation goes on.
    """
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await _finish(job)
        raise


async def _finish(job: asyncio.Future[Any]) -> None:
    """Wait until *job* is done, through further cancellations (the caller re-raises its own error)."""
    while not job.done():
        try:
            await asyncio.shield(job)
        except BaseException:  # the job's own error is the caller's to ignore; a cancel: keep waiting
            continue
    if not job.cancelled():
        job.exception()  # retrieved: no "exception was never retrieved" warning


async def drain(chunks: AsyncIterator[bytes], write: Callable[[bytes], object], *, batch: int = BATCH) -> int:
    """Feed every chunk of *chunks* to *write*, in a worker thread, *batch* bytes at a time.

    Args:
        chunks: the stream (a request body); an error it raises goes to the caller.
        write: a blocking writer (a file's write, an ingest's write); called with
            one batch at a time, never two at once, in the order received.
        batch: bytes gathered before one call of *write* (the last call may be shorter).

    Returns:
        The number of bytes written.

    Raises:
        Whatever *chunks* or *write* raises, and CancelledError; in each case
        only after the write in flight, if any, has finished.
    """
    if batch <= 0:
        raise ValueError("batch must be positive")
    total = 0
    pending = bytearray()
    inflight: asyncio.Future[object] | None = None
    try:
        async for chunk in chunks:
            pending += chunk
            if len(pending) < batch:
                continue
            if inflight is not None:
                await asyncio.shield(inflight)  # back-pressure: one write at a time
            data, pending = bytes(pending), bytearray()
            inflight = asyncio.ensure_future(asyncio.to_thread(write, data))
            total += len(data)
        if inflight is not None:
            await asyncio.shield(inflight)
        if pending:
            inflight = asyncio.ensure_future(asyncio.to_thread(write, bytes(pending)))
            await asyncio.shield(inflight)
            total += len(pending)
        return total
    finally:
        if inflight is not None and not inflight.done():
            await _finish(inflight)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove(fd: int, path: str) -> None:
    try:
        os.close(fd)
    finally:
        _unlink(path)


async def to_file(chunks: AsyncIterator[bytes], path: str | os.PathLike[str], *, mode: int = 0o600,
                  batch: int = BATCH) -> int:
    """Write the stream *chunks* to a new file at *path*; return its size.

    The file is created exclusively and not through a symlink (O_EXCL |
    O_NOFOLLOW), with *mode*. On any failure, including cancellation, the file
    is removed before the error goes on.

    Raises:
        FileExistsError: *path* exists (as a file, a directory or a symlink).
        Whatever *chunks* raises, OSError from a write (ENOSPC), CancelledError.
    """
    where = os.fspath(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = await settled(os.open, where, flags, mode)
    try:
        size = await drain(chunks, lambda data: _write_all(fd, data), batch=batch)
    except BaseException:
        await settled(_remove, fd, where)
        raise
    try:
        await settled(os.close, fd)
    except BaseException:
        await settled(_unlink, where)
        raise
    return size


__all__ = ["BATCH", "drain", "settled", "to_file"]
