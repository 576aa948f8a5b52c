"""TLS for the API's TCP listeners, with half-close.

Why not asyncio's own TLS (start_server(ssl=...)): it ends the whole
connection when the client sends close_notify, and the Docker CLI sends
exactly that when stdin ends in `docker run -i` or `docker exec -i` over TLS;
dockerd keeps answering, so the container's output must still come back.

Strategy: berth terminates TLS itself. An ssl.SSLObject over two memory BIOs
sits between the TCP connection and one end of a socketpair; the API server
serves the other end like any connection, so timeouts, limits and hijacks
work unchanged. A close_notify from the client becomes a half-close (the
handler reads EOF, its writes still go out); when the handler closes, the
client gets close_notify and then the end of the TCP connection.

The handshake is bounded by a timeout. A refused client (no certificate, a
certificate from another CA, not TLS at all) gets the TLS alert that says why
and is a debug log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)

Handle = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
_READ = 65536
_LIMIT = 1 << 20
_LINGER = 2.0  # s to wait for the client's end after ours


def tls_handler(ctx: ssl.SSLContext, handshake_timeout: float, handle: Handle) -> Handle:
    """A start_server callback that speaks TLS with the client and plain HTTP to *handle*."""

    # asyncio keeps only weak hold of a connection's task: one whose client reset the connection can be
    # collected while it waits, in the middle of its clean-up. Hold each until it is done.
    running: set[asyncio.Task[Any]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            running.add(task)
        try:
            await _Terminator(ctx, reader, writer).run(handshake_timeout, handle)
        finally:
            running.discard(task)  # type: ignore[arg-type]

    return accept


class _Terminator:
    """One TLS connection: handshake, then two pumps between the client and the server's socketpair."""

    def __init__(self, ctx: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.raw_reader = reader
        self.raw_writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "client"

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.raw_writer.write(data)

    async def run(self, handshake_timeout: float, handle: Handle) -> None:
        try:
            if not await self._handshake(handshake_timeout):
                return
            await self._relay(handle)
        except asyncio.CancelledError:
            raise
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.debug("%s: TLS connection ended: %s", self.peer, exc)
        except Exception:
            log.exception("TLS connection failed")
        finally:
            self.raw_writer.close()

    async def _handshake(self, timeout: float) -> bool:
        """True once the client is in; False (logged at debug) when it is refused or too slow."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        self.tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        self._flush()
                        await self.raw_writer.drain()
                        data = await self.raw_reader.read(_READ)
                        if not data:
                            raise ConnectionResetError("the client closed the connection during the handshake") from None
                        self.incoming.write(data)
                self._flush()  # the last handshake flight and session tickets
                await self.raw_writer.drain()
            return True
        except TimeoutError:
            log.debug("%s: no TLS handshake within %g s; closing", self.peer, timeout)
        except ssl.SSLError as exc:
            log.debug("%s: TLS handshake refused: %s", self.peer, exc.reason or exc)
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                self._flush()  # the alert that tells the client why
                async with asyncio.timeout(1):
                    await self.raw_writer.drain()
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.debug("%s: TLS handshake interrupted: %s", self.peer, exc)
        return False

    async def _relay(self, handle: Handle) -> None:
        inner, outer = socket.socketpair()
        try:
            in_reader, in_writer = await asyncio.open_connection(sock=inner, limit=_LIMIT)
            srv_reader, srv_writer = await asyncio.open_connection(sock=outer, limit=_LIMIT)
        except BaseException:
            inner.close()
            outer.close()
            raise
        served = asyncio.ensure_future(handle(srv_reader, srv_writer))
        up = asyncio.ensure_future(self._up(in_writer))
        try:
            await self._down(in_reader)  # ends when the server closes its end
            up.cancel()
            await asyncio.gather(up, return_exceptions=True)
            await self._discard()
        finally:
            up.cancel()
            await asyncio.gather(up, return_exceptions=True)
            in_writer.close()
            if not served.done():
                served.cancel()
            await asyncio.gather(served, return_exceptions=True)

    async def _discard(self) -> None:
        """Before closing: drop what the client still sends, for a moment, until its end.

        Closing a TCP socket with unread bytes sends a reset, which can destroy
        the last answer before the client reads it (a 413 while the client is
        still sending its body, for one).
        """
        with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
            async with asyncio.timeout(_LINGER):
                while await self.raw_reader.read(_READ):
                    pass

    async def _up(self, to_server: asyncio.StreamWriter) -> None:
        """Client -> server: decrypt; close_notify or the client's EOF becomes EOF for the server."""
        try:
            while True:
                while True:
                    try:
                        chunk = self.tls.read(_READ)
                    except ssl.SSLWantReadError:
                        break
                    except ssl.SSLZeroReturnError:  # close_notify: the client is done sending
                        return
                    if not chunk:
                        return
                    to_server.write(chunk)
                self._flush()
                await to_server.drain()
                data = await self.raw_reader.read(_READ)
                if not data:
                    return
                self.incoming.write(data)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.debug("%s: TLS read ended: %s", self.peer, exc)
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if not to_server.is_closing():
                    to_server.write_eof()

    async def _down(self, from_server: asyncio.StreamReader) -> None:
        """Server -> client: encrypt until the server closes, then close_notify."""
        try:
            while data := await from_server.read(_READ):
                self.tls.write(data)
                self._flush()
                await self.raw_writer.drain()
        except (OSError, ssl.SSLError) as exc:
            log.debug("%s: TLS write ended: %s", self.peer, exc)
            return
        with contextlib.suppress(ssl.SSLError, OSError, RuntimeError, TimeoutError):
            try:
                self.tls.unwrap()
            except ssl.SSLWantReadError:
                pass  # close_notify sent; the client's own is not awaited
            self._flush()
            async with asyncio.timeout(1):
                await self.raw_writer.drain()
            if self.raw_writer.can_write_eof():
                self.raw_writer.write_eof()


__all__ = ["tls_handler"]
