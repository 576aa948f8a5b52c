"""HTTP/1.1 server for the Engine API, with Docker's connection hijack.

Strategy: h11 does the protocol (sans-IO); this module owns the sockets.
A handler returns one of three replies:
  Reply        a complete body (JSON or empty), with status and headers
  Stream       an async iterator of body chunks, sent chunked as they come
  Hijack       the raw connection: after a 101 UPGRADED (client asked for
               `Upgrade: tcp`) or a bare 200 (it did not), the handler gets
               the socket's reader/writer plus any bytes h11 already buffered.
Routes that wait (events, logs -f, wait) are raced against the client going
away, so a disconnect cancels them instead of leaving work behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import h11

from berth import API_VERSION, MIN_API_VERSION, __version__
from berth.api.errors import error_body
from berth.errors import InvalidArgument, NotFound, NotImplemented_

log = logging.getLogger(__name__)

MAX_HEADERS = 64 * 1024
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


@dataclass
class Request:
    method: str
    path: str
    api_version: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    _body: Callable[[], AsyncIterator[bytes]] | None = None

    def q(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[-1] if values else default

    def qbool(self, name: str, default: bool = False) -> bool:
        value = self.q(name)
        if value == "":
            return default
        return value.lower() not in ("0", "false", "no")

    def qint(self, name: str, default: int | None = None) -> int | None:
        value = self.q(name)
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name}: {value!r} is not an integer") from None

    def qjson(self, name: str) -> Any:
        value = self.q(name)
        if not value:
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise InvalidArgument(f"invalid {name} parameter: not JSON") from None

    def filters(self) -> dict[str, list[str]]:
        """Docker's `filters` query: {"key": ["v"]} or the older {"key": {"v": true}}."""
        raw = self.qjson("filters") or {}
        if not isinstance(raw, dict):
            raise InvalidArgument("invalid filters: expected a JSON object")
        out: dict[str, list[str]] = {}
        for key, value in raw.items():
            if isinstance(value, dict):
                out[key] = [k for k, on in value.items() if on]
            elif isinstance(value, list):
                out[key] = [str(v) for v in value]
            else:
                raise InvalidArgument(f"invalid filter {key!r}")
        return out

    def stream(self) -> AsyncIterator[bytes]:
        assert self._body is not None
        return self._body()

    async def body(self) -> bytes:
        return b"".join([chunk async for chunk in self.stream()])

    async def json(self, required: bool = True) -> Any:
        raw = await self.body()
        if not raw.strip():
            if required:
                raise InvalidArgument("the request body is empty: a JSON object is required")
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise InvalidArgument(f"malformed JSON in the request body: {exc}") from None


@dataclass
class Reply:
    status: int = 200
    body: Any = None                 # JSON-able, or bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


@dataclass
class Stream:
    chunks: AsyncIterator[bytes]
    content_type: str = "application/json"
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Hijack:
    run: Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]
    content_type: str = "application/vnd.docker.raw-stream"


Handler = Callable[[Request], Awaitable["Reply | Stream | Hijack"]]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    waits: bool = False


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.planned: list[tuple[re.Pattern[str], str]] = []

    def plan(self, template: str, what: str) -> None:
        """A Docker API path berth does not serve yet: answer 501 naming *what*, not a bare 404."""
        regex = re.sub(r"\{(\w+)\}", "[^/]+", template).replace("*", ".*")
        self.planned.append((re.compile(f"^{regex}/?$"), what))

    def add(self, method: str, template: str, handler: Handler, waits: bool = False) -> None:
        regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", template)
        regex = regex.replace("(?P<image>[^/]+)", "(?P<image>.+?)")
        self.routes.append(Route(method, re.compile(f"^{regex}/?$"), handler, waits))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m:
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return route, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
                allowed = True
        for pattern, what in self.planned:
            if pattern.match(path):
                raise NotImplemented_(f"this version of berth does not support {what}")
        if allowed:
            raise _MethodNotAllowed()
        raise NotFound(f"page not found: {path}")


class _MethodNotAllowed(Exception):
    pass


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


class Server:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.connections: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._serve(reader, writer)
        except h11.RemoteProtocolError as exc:  # not HTTP we can read: say so, then hang up
            try:
                body = json.dumps({"message": f"malformed HTTP request: {exc}"}).encode()
                writer.write(f"HTTP/1.1 {exc.error_status_hint} Bad Request\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                await writer.drain()
            except (ConnectionError, RuntimeError):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
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
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)

        async def next_event() -> Any:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    continue
                return event

        async def send(*events: Any) -> None:
            for event in events:
                data = conn.send(event)
                if data:
                    writer.write(data)
            await writer.drain()

        while True:
            event = await next_event()
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            body_done = False

            async def body() -> AsyncIterator[bytes]:
                nonlocal body_done
                if body_done:
                    return
                while True:
                    ev = await next_event()
                    if isinstance(ev, h11.Data):
                        yield bytes(ev.data)
                    elif isinstance(ev, h11.EndOfMessage):
                        body_done = True
                        return
                    else:
                        raise InvalidArgument("the request ended before its body")

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
                              headers, params, body)
                if route.waits:
                    reply = await self._race_disconnect(route.handler(req), reader, conn, body)
                    if reply is None:
                        return
                else:
                    reply = await route.handler(req)
            except _MethodNotAllowed:
                reply = Reply(405, {"message": f"method {method} not allowed for {path}"})
            except Exception as exc:  # every failure becomes a status and a message
                reply = Reply(*error_body(exc))
            async for _ in body():  # drain what the handler did not read
                pass
            if isinstance(reply, Hijack):
                await self._hijack(reply, headers, conn, reader, writer)
                return
            if isinstance(reply, Stream):
                ok = await self._stream(reply, conn, send, reader)
                if not ok:
                    return
            else:
                await self._reply(reply, method, send)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

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

    async def _reply(self, reply: Reply, method: str, send: Callable[..., Awaitable[None]]) -> None:
        if reply.status == 304 or reply.status == 204:
            data = b""
        elif isinstance(reply.body, (bytes, bytearray)):
            data = bytes(reply.body)
        elif reply.body is None:
            data = b""
        else:
            data = json.dumps(reply.body).encode() + b"\n"
        headers = common_headers() + reply.headers
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
            if not isinstance(exc, ConnectionError):
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
        except (ConnectionError, BrokenPipeError):
            pass


async def _eof(reader: asyncio.StreamReader) -> None:
    """Complete when the client closes its side of the connection."""
    while await reader.read(65536):
        pass
