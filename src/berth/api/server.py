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

Limits (a Limits value per Server; a client must not be able to make the
daemon hold memory or a connection without bound):
  idle_timeout   a connection with no request under way (new, or kept alive
                 between requests) is closed after this long
  head_timeout   a request's head must be complete this long after its first byte
  body_timeout   while a handler reads the body, a gap this long with no byte
                 ends the request (408) and the connection
  max_json_body  bodies read whole (Request.body/json) are capped: 413, checked
                 on Content-Length before reading; streamed bodies (load, build
                 context, archive PUT, import) go through Request.stream, uncapped
  max_json_depth JSON is checked for nesting before it is parsed (400)
Once a handler is done, at most drain_limit unread body bytes are skipped to
keep the connection; a refused body is not read: the answer is sent with
`Connection: close` and the connection lingers briefly so that it arrives.
Responses that wait (hijacked streams, logs -f, events, wait) have no timeout.
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
from berth.api.errors import RequestTimeout, RequestTooLarge, error_body
from berth.errors import InvalidArgument, NotFound, NotImplemented_
from berth.wire.jsondepth import MAX_DEPTH, TooDeep, check_depth

log = logging.getLogger(__name__)

MAX_HEADERS = 64 * 1024
MiB = 1024 * 1024
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_PARSE_IN_THREAD = 1 * MiB  # JSON larger than this is checked and parsed off the event loop


@dataclass(frozen=True)
class Limits:
    """What one client may make the server hold or wait for (see the module's docstring)."""

    max_json_body: int = 16 * MiB
    max_json_depth: int = MAX_DEPTH
    idle_timeout: float = 300.0
    head_timeout: float = 60.0
    body_timeout: float = 120.0
    linger: float = 2.0
    drain_limit: int = 1 * MiB


def size_text(n: int) -> str:
    """1536 -> "1.5 KiB"; for messages."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{value:g} {unit}"
        value /= 1024
    return f"{value:g} GiB"


def parse_json(raw: bytes | str, what: str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads of untrusted text, depth checked first; InvalidArgument (400) naming *what* otherwise."""
    too_deep = f"{what} is nested too deeply: more than {max_depth} levels of arrays and objects"
    try:
        check_depth(raw, max_depth)
        return json.loads(raw)
    except (TooDeep, RecursionError):
        raise InvalidArgument(too_deep) from None
    except ValueError as exc:
        raise InvalidArgument(f"malformed JSON in {what}: {exc}") from None


class _BodyState:
    """One request's body, read through h11 when a handler asks, and how that went.

    done: the body was read to its end. failed: "gone" (the client left: no
    answer is possible) or "refused" (answer, then close the connection).
    """

    def __init__(self, conn: h11.Connection, reader: asyncio.StreamReader, timeout: float) -> None:
        self.conn, self.reader, self.timeout = conn, reader, timeout
        self.done = False
        self.failed = ""
        self.error: BaseException | None = None

    def _fail(self, how: str, error: BaseException) -> BaseException:
        self.failed, self.error = how, error
        return error

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.failed and self.error is not None:
            raise self.error
        if self.done or self.failed:
            return
        while True:
            try:
                ev = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._fail("refused", InvalidArgument(f"malformed request body: {exc}")) from None
            if ev is h11.NEED_DATA:
                try:
                    async with asyncio.timeout(self.timeout):
                        data = await self.reader.read(65536)
                except TimeoutError:
                    raise self._fail("refused", RequestTimeout(
                        f"no byte of the request body arrived for {self.timeout:g} s; "
                        "the request is abandoned")) from None
                except (OSError, asyncio.IncompleteReadError) as exc:
                    raise self._fail("gone", ConnectionResetError(f"the client went away: {exc}")) from None
                if not data:
                    raise self._fail("gone", ConnectionResetError(
                        "the client closed the connection before the end of the request body"))
                self.conn.receive_data(data)
            elif isinstance(ev, h11.Data):
                yield bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                self.done = True
                return
            else:
                raise self._fail("refused", InvalidArgument("the request ended before its body"))


@dataclass
class Request:
    method: str
    path: str
    api_version: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    _body: Callable[[], AsyncIterator[bytes]] | None = None
    limits: Limits = field(default_factory=Limits)
    _state: _BodyState | None = None

    def q(self, name: str, default: str = "") -> str:
        """The parameter's first value, as Docker (Go's FormValue) reads a key given more than once."""
        values = self.query.get(name)
        return values[0] if values else default

    def qall(self, name: str) -> list[str]:
        """Every value of a parameter that may be repeated (`t`, `extrahosts`, `changes`), in order."""
        return list(self.query.get(name, []))

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
        return parse_json(value, f"the {name} parameter", self.limits.max_json_depth)

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
        """The body as it arrives, uncapped: for bodies streamed to disk (archives, contexts)."""
        assert self._body is not None
        return self._body()

    async def body(self) -> bytes:
        """The whole body, at most limits.max_json_body bytes (RequestTooLarge, 413, beyond)."""
        cap = self.limits.max_json_body
        declared = self.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            self._refuse()
            raise RequestTooLarge(f"the request body ({size_text(int(declared))}) is larger than this "
                                  f"daemon accepts ({size_text(cap)}, berthd --max-json-body); send a smaller one")
        parts: list[bytes] = []
        size = 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > cap:
                self._refuse()
                raise RequestTooLarge(f"the request body is larger than this daemon accepts "
                                      f"({size_text(cap)}, berthd --max-json-body); send a smaller one")
            parts.append(chunk)
        return b"".join(parts)

    def _refuse(self) -> None:
        """Tell the server not to read the rest of this body."""
        if self._state is not None:
            self._state.failed = self._state.failed or "refused"

    async def json(self, required: bool = True) -> Any:
        raw = await self.body()
        if not raw.strip():
            if required:
                raise InvalidArgument("the request body is empty: a JSON object is required")
            return {}
        depth = self.limits.max_json_depth
        if len(raw) > _PARSE_IN_THREAD:
            return await asyncio.to_thread(parse_json, raw, "the request body", depth)
        return parse_json(raw, "the request body", depth)


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
            state = _BodyState(conn, reader, limits.body_timeout)
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
            except _MethodNotAllowed:
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
