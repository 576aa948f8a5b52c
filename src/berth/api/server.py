"""HTTP/1.1 server for the Engine API, with Docker's connection hijack.

Strategy: h11 does the protocol (sans-IO); this module owns the sockets. Each
request is routed (berth.api.routing), its handler gets a `Request` whose body
is read only when asked (berth.api.request), and what the handler returns --
Reply, Stream or Hijack (berth.api.replies) -- is written here; any exception
becomes a status and a message (berth.api.errors). The API version in the path
is checked against the range this daemon serves. Routes that wait (events,
logs -f, wait) are raced against the client going away, so a disconnect
cancels them instead of leaving work behind.

Every wait and buffer is bounded by the server's `Limits` (berth.api.limits),
except for responses that wait (hijacked streams, logs -f, events, wait),
which have no timeout. Once a handler is done, at most drain_limit unread body
bytes are skipped to keep the connection; a refused body is not read: the
answer is sent with `Connection: close` and the connection lingers briefly so
that it arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse
from typing import Any, AsyncIterator, Awaitable, Callable

import h11

from berth import API_VERSION, MIN_API_VERSION, __version__
from berth.api.errors import RequestTimeout, error_body
from berth.api.limits import Limits
from berth.api.replies import Hijack, Reply, Stream
from berth.api.request import BodyState, Request
from berth.api.routing import MethodNotAllowed, Router
from berth.errors import InvalidArgument

log = logging.getLogger(__name__)

MAX_HEADERS = 64 * 1024
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def common_headers() -> list[tuple[str, str]]:
    return [("Api-Version", API_VERSION), ("Docker-Experimental", "false"), ("Ostype", "linux"),
            ("Server", f"berth/{__version__} (linux)")]


def _version_ok(major: int, minor: int) -> str:
    requested = (major, minor)
    top = tuple(int(x) for x in API_VERSION.split("."))
    low = tuple(int(x) for x in MIN_API_VERSION.split("."))
    text = f"{major}.{minor}"
    if requested > top:
        raise InvalidArgument(f"client version {text} is too new. Maximum supported API version is {API_VERSION}")
    if requested < low:
        raise InvalidArgument(f"client version {text} is too old. Minimum supported API version is "
                              f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    return text


class _Idle(Exception):
    """No request started on the connection within the idle timeout."""


class Server:
    def __init__(self, router: Router, limits: Limits | None = None) -> None:
        self.router = router
        self.limits = limits or Limits()
        self.connections: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        peer = _peer(writer)
        try:
            await self._serve(reader, writer)
        except h11.RemoteProtocolError as exc:  # not HTTP we can read: say so, then hang up
            await _raw_answer(writer, exc.error_status_hint, f"malformed HTTP request: {exc}")
        except RequestTimeout as exc:
            log.debug("%s: %s", peer, exc)
            await _raw_answer(writer, 408, str(exc))
        except _Idle:
            log.debug("%s: no request for %g s; closing the connection", peer, self.limits.idle_timeout)
        except (OSError, asyncio.IncompleteReadError) as exc:  # resets, broken pipes, TLS errors
            log.debug("%s: connection ended: %s", peer, exc or type(exc).__name__)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("connection failed")
        finally:
            self.connections.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limits = self.limits
        loop = asyncio.get_running_loop()
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)

        async def next_head() -> Any:
            """The next request's head (or the end): idle_timeout to start it, head_timeout to finish it."""
            started = bool(conn.trailing_data[0])
            deadline = loop.time() + (limits.head_timeout if started else limits.idle_timeout)
            while True:
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                try:
                    async with asyncio.timeout(max(0.0, deadline - loop.time())):
                        data = await reader.read(65536)
                except TimeoutError:
                    if started:
                        raise RequestTimeout(f"the request head did not arrive within {limits.head_timeout:g} s; "
                                             "the connection is closed") from None
                    raise _Idle() from None
                conn.receive_data(data)
                if not started and data:
                    started = True
                    deadline = loop.time() + limits.head_timeout

        async def send(*events: Any) -> None:
            for event in events:
                data = conn.send(event)
                if data:
                    writer.write(data)
            await writer.drain()

        while True:
            event = await next_head()
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            state = BodyState(conn, reader, limits.body_timeout)
            body = state.chunks

            headers = {k.decode().lower(): v.decode(errors="replace") for k, v in event.headers}
            method = event.method.decode()
            target = event.target.decode(errors="replace")
            path, _, qs = target.partition("?")
            reply: Reply | Stream | Hijack
            try:
                version = API_VERSION
                m = _VERSIONED.match(path)
                if m:
                    version = _version_ok(int(m.group(1)), int(m.group(2)))
                    path = m.group(3)
                route, params = self.router.match(method, path)
                req = Request(method, path, version, urllib.parse.parse_qs(qs, keep_blank_values=True),
                              headers, params, body, limits, state)
                if route.waits:
                    waited = await self._race_disconnect(route.handler(req), reader, conn, body)
                    if waited is None:
                        return
                    reply = waited
                else:
                    reply = await route.handler(req)
            except MethodNotAllowed:
                reply = Reply(405, {"message": f"method {method} not allowed for {path}"})
            except Exception as exc:  # every failure becomes a status and a message
                if state.failed == "gone":
                    log.debug("%s %s: %s", method, path, state.error)
                    return
                reply = Reply(*error_body(exc))
            if not state.failed and not state.done:
                await self._skip_unread(body)  # what the handler did not read, within a bound
            if state.failed == "gone":
                log.debug("%s %s: %s", method, path, state.error)
                return
            close = bool(state.failed) or not state.done
            if isinstance(reply, Hijack):
                if close:
                    return
                await self._hijack(reply, headers, conn, reader, writer)
                return
            if isinstance(reply, Stream):
                if close:
                    reply.headers = reply.headers + [("Connection", "close")]
                ok = await self._stream(reply, conn, send, reader)
                if not ok:
                    return
            else:
                await self._reply(reply, method, send, close)
            if close:
                await self._linger(reader, writer)
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _skip_unread(self, body: Callable[[], AsyncIterator[bytes]]) -> None:
        """Read and drop what is left of a body, up to limits.drain_limit bytes (then give up on it)."""
        left = self.limits.drain_limit
        try:
            async for chunk in body():
                left -= len(chunk)
                if left < 0:
                    return
        except Exception:
            return

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Close after an answer sent before the request's end, so that the answer arrives.

        Closing a socket with unread bytes makes the kernel send a reset, which
        can destroy an answer the client has not read yet; so send our end of
        stream, then drop what the client still sends for limits.linger seconds.
        """
        try:
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(self.limits.linger):
                while await reader.read(65536):
                    pass
        except (TimeoutError, OSError, asyncio.IncompleteReadError, RuntimeError):
            pass

    async def _race_disconnect(self, work: Awaitable[Any], reader: asyncio.StreamReader,
                               conn: h11.Connection, body: Callable[[], AsyncIterator[bytes]]) -> Any:
        job = asyncio.ensure_future(work)
        async def gone() -> None:
            async for _ in body():
                pass
            while await reader.read(65536):
                pass
        watcher = asyncio.ensure_future(gone())
        done, _ = await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        if job in done:
            return job.result()
        job.cancel()
        return None

    async def _reply(self, reply: Reply, method: str, send: Callable[..., Awaitable[None]],
                     close: bool = False) -> None:
        if reply.status == 304 or reply.status == 204:
            data = b""
        elif isinstance(reply.body, (bytes, bytearray)):
            data = bytes(reply.body)
        elif reply.body is None:
            data = b""
        else:
            data = json.dumps(reply.body).encode() + b"\n"
        headers = common_headers() + reply.headers + ([("Connection", "close")] if close else [])
        if data or reply.status not in (204, 304):
            headers += [("Content-Type", reply.content_type), ("Content-Length", str(len(data)))]
        events: list[Any] = [h11.Response(status_code=reply.status, headers=headers)]
        if data and method != "HEAD":
            events.append(h11.Data(data=data))
        events.append(h11.EndOfMessage())
        await send(*events)

    async def _stream(self, reply: Stream, conn: h11.Connection, send: Callable[..., Awaitable[None]],
                      reader: asyncio.StreamReader) -> bool:
        headers = common_headers() + reply.headers + [("Content-Type", reply.content_type),
                                                      ("Transfer-Encoding", "chunked")]
        await send(h11.Response(status_code=reply.status, headers=headers))
        chunks = reply.chunks.__aiter__()
        closed = asyncio.ensure_future(_eof(reader))
        try:
            while True:
                nxt = asyncio.ensure_future(chunks.__anext__())
                done, _ = await asyncio.wait({nxt, closed}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    return False
                try:
                    chunk = nxt.result()
                except StopAsyncIteration:
                    break
                if chunk:
                    await send(h11.Data(data=chunk))
            await send(h11.EndOfMessage())
            return True
        except Exception as exc:
            if isinstance(exc, (OSError, h11.LocalProtocolError)):
                log.debug("stream ended: %s", exc)
            else:
                log.exception("stream failed")
            return False
        finally:
            closed.cancel()
            await asyncio.gather(closed, return_exceptions=True)
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    pass

    async def _hijack(self, reply: Hijack, headers: dict[str, str], conn: h11.Connection,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upgrade = "upgrade" in headers.get("connection", "").lower() and headers.get("upgrade", "").lower() == "tcp"
        pending, _closed = conn.trailing_data
        extra = "".join(f"{k}: {v}\r\n" for k, v in common_headers())
        if upgrade:
            head = (f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {reply.content_type}\r\n"
                    f"Connection: Upgrade\r\nUpgrade: tcp\r\n{extra}\r\n")
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {reply.content_type}\r\n{extra}\r\n"
        writer.write(head.encode())
        await writer.drain()
        try:
            await reply.run(reader, writer, bytes(pending))
            await writer.drain()
        except OSError as exc:  # resets, broken pipes, TLS errors
            log.debug("hijacked stream ended: %s", exc)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "client"


async def _raw_answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    """An error answer written without h11 (its state is unusable), then the end of the connection."""
    reasons = {400: "Bad Request", 408: "Request Timeout", 413: "Payload Too Large",
               431: "Request Header Fields Too Large"}
    try:
        body = json.dumps({"message": message}).encode()
        writer.write(f"HTTP/1.1 {status} {reasons.get(status, 'Bad Request')}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
    except (OSError, RuntimeError):
        pass


async def _eof(reader: asyncio.StreamReader) -> None:
    """Complete when the client closes its side of the connection."""
    while await reader.read(65536):
        pass
