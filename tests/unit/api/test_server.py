"""Tests for berth.api.server: a real Server on a unix socket, spoken to with raw sockets.

The server runs in its own thread under asyncio.run; the test talks HTTP/1.1 by
hand over blocking sockets so that every byte on the wire is visible.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from berth.api.limits import Limits
from berth.api.replies import Hijack, Reply, Stream
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.server import Server
from berth.errors import Conflict, NotModified

COMMON = {"api-version": "1.47", "ostype": "linux"}


# --------------------------------------------------------------------------- #
# The server under test


@dataclass
class Probe:
    """What the handlers observed, shared with the test thread."""

    stream_started: threading.Event = field(default_factory=threading.Event)
    stream_finally: threading.Event = field(default_factory=threading.Event)
    stream_cancelled: threading.Event = field(default_factory=threading.Event)
    bodies: list[bytes] = field(default_factory=list)
    idle_finally: threading.Event = field(default_factory=threading.Event)
    wait_finally: threading.Event = field(default_factory=threading.Event)


def build_router(probe: Probe) -> Router:
    r = Router()

    async def x(req: Request) -> Reply:
        return Reply(200, {"path": req.path, "version": req.api_version, "q": req.q("a")})

    async def echo(req: Request) -> Reply:
        data = await req.body()
        probe.bodies.append(data)
        return Reply(200, data, content_type="application/octet-stream")

    async def named(req: Request) -> Reply:
        return Reply(201, {"name": req.params["name"]})

    async def conflict(req: Request) -> Reply:
        raise Conflict("the name /web is already in use")

    async def crash(req: Request) -> Reply:
        raise RuntimeError("kaboom")

    async def notmod(req: Request) -> Reply:
        raise NotModified("already started")

    async def hijack(req: Request) -> Hijack:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: bytes) -> None:
            if pending:
                writer.write(b"<" + pending + b">")
                await writer.drain()
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        return Hijack(run)

    async def stream(req: Request) -> Stream:
        async def gen():
            try:
                yield b'{"n": 1}\n'
                yield b'{"n": 2}\n'
                probe.stream_started.set()
                await asyncio.Event().wait()  # forever, like `events` with nothing new
                yield b"never"
            except asyncio.CancelledError:
                probe.stream_cancelled.set()
                raise
            finally:
                probe.stream_finally.set()
        return Stream(gen())

    async def finite(req: Request) -> Stream:
        async def gen():
            for i in range(3):
                yield f"chunk{i};".encode()
            yield b""  # empty chunks are skipped, not sent as the terminator
            yield b"last"
        return Stream(gen(), content_type="text/plain")

    async def idle(req: Request) -> Stream:
        async def gen():
            try:
                await asyncio.Event().wait()  # nothing to send, ever
                yield b"never"
            finally:
                probe.idle_finally.set()
        return Stream(gen())

    async def wait(req: Request) -> Reply:
        try:
            await asyncio.Event().wait()
            return Reply(200, {})
        finally:
            probe.wait_finally.set()

    async def parse(req: Request) -> Reply:
        return Reply(200, {"got": await req.json(), "q": req.qjson("filters")})

    async def count(req: Request) -> Reply:  # a streamed body, as load and build contexts are
        n = 0
        async for chunk in req.stream():
            n += len(chunk)
        return Reply(200, {"bytes": n})

    r.add("POST", "/parse", parse)
    r.add("POST", "/count", count)
    r.add("GET", "/idle", idle)
    r.add("POST", "/wait", wait, waits=True)
    r.add("GET", "/x", x)
    r.add("POST", "/echo", echo)
    r.add("POST", "/containers/{name}/start", named)
    r.add("GET", "/conflict", conflict)
    r.add("GET", "/crash", crash)
    r.add("GET", "/notmod", notmod)
    r.add("POST", "/hijack", hijack)
    r.add("GET", "/stream", stream)
    r.add("GET", "/finite", finite)
    return r


class Running:
    """A Server on a unix socket in a background thread."""

    def __init__(self, path: str, limits: Limits | None = None) -> None:
        self.path = path
        self.probe = Probe()
        self.server = Server(build_router(self.probe), limits)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "server did not start"
        if self.error:
            raise self.error

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            srv = await asyncio.start_unix_server(self.server.handle, self.path, limit=1 << 20)
            self._ready.set()
            async with srv:
                await self._stop.wait()
            for task in list(self.server.connections):
                task.cancel()

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the test
            self.error = exc
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def srv(tmp_path: Path):
    r = Running(str(tmp_path / "t.sock"))
    try:
        yield r
    finally:
        r.stop()
    assert r.error is None


# --------------------------------------------------------------------------- #
# A minimal HTTP/1.1 client over a raw socket


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]       # lower-cased names
    body: bytes
    raw_head: bytes
    chunks: list[bytes] | None = None

    def json(self):
        return json.loads(self.body)


class Conn:
    def __init__(self, path: str, timeout: float = 10) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: docker"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {self.buf!r}, wanted {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {self.buf!r}")
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_head(self) -> Response:
        head = self.read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return Response(int(status), reason, headers, b"", head)

    def read_chunk(self) -> bytes | None:
        """One chunk of a chunked body; None at the terminating chunk (trailers consumed)."""
        size = int(self.read_until(b"\r\n")[:-2].split(b";")[0], 16)
        if size == 0:
            self.read_until(b"\r\n")
            return None
        data = self.read_exact(size)
        assert self.read_exact(2) == b"\r\n"
        return data

    def response(self, head_request: bool = False) -> Response:
        resp = self.read_head()
        if head_request or resp.status in (101, 204, 304):
            return resp
        if resp.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while (c := self.read_chunk()) is not None:
                chunks.append(c)
            resp.chunks = chunks
            resp.body = b"".join(chunks)
        else:
            resp.body = self.read_exact(int(resp.headers["content-length"]))
        return resp

    def closed_by_peer(self, timeout: float = 5) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.buf == b"" and self.sock.recv(1) == b""
        except socket.timeout:
            return False


def roundtrip(srv: Running, method: str, target: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> Response:
    c = Conn(srv.path)
    try:
        c.request(method, target, body, headers)
        return c.response(head_request=(method == "HEAD"))
    finally:
        c.close()


def assert_common_headers(resp: Response) -> None:
    for k, v in COMMON.items():
        assert resp.headers.get(k) == v, (k, resp.raw_head)
    assert "docker-experimental" in resp.headers, resp.raw_head


# --------------------------------------------------------------------------- #
# Plain requests


def test_get_json(srv: Running) -> None:
    r = roundtrip(srv, "GET", "/x?a=1&a=2")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"path": "/x", "version": "1.47", "q": "1"}  # a repeated key: the first, as Go's FormValue
    assert_common_headers(r)


def test_keep_alive_two_requests_on_one_connection(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.request("GET", "/x?a=first")
        assert c.response().json()["q"] == "first"
        c.request("POST", "/echo", b"second")
        assert c.response().body == b"second"
        c.request("GET", "/nope")
        assert c.response().status == 404
        c.request("GET", "/x?a=fourth")
        assert c.response().json()["q"] == "fourth"
    finally:
        c.close()


def test_pipelined_requests_in_one_packet(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.send(b"GET /x?a=1 HTTP/1.1\r\nHost: d\r\n\r\nGET /x?a=2 HTTP/1.1\r\nHost: d\r\n\r\n")
        assert c.response().json()["q"] == "1"
        assert c.response().json()["q"] == "2"
    finally:
        c.close()


def test_connection_close_is_honoured(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.request("GET", "/x", headers={"Connection": "close"})
        assert c.response().status == 200
        assert c.closed_by_peer()
    finally:
        c.close()


def test_chunked_request_body(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.send(b"POST /echo HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n")
        c.send(b"5\r\nhello\r\n")
        time.sleep(0.05)
        c.send(b"1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert r.body == b"hello world!"
        # and the connection is still usable afterwards
        c.request("GET", "/x?a=after")
        assert c.response().json()["q"] == "after"
    finally:
        c.close()


def test_large_body(srv: Running) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    r = roundtrip(srv, "POST", "/echo", data)
    assert r.body == data


def test_unread_body_is_drained_before_the_next_request(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.request("POST", "/containers/web/start", b'{"ignored": true}')
        r = c.response()
        assert (r.status, r.json()) == (201, {"name": "web"})
        c.request("GET", "/x?a=next")
        assert c.response().json()["q"] == "next"
    finally:
        c.close()


@pytest.mark.parametrize("path", ["/x", "/v1.24/x", "/v1.47/x", "/v1.40/x"])
def test_versioned_paths_ok(srv: Running, path: str) -> None:
    r = roundtrip(srv, "GET", path)
    assert r.status == 200
    assert r.json()["path"] == "/x"
    assert r.json()["version"] == (path.split("/")[1][1:] if path.startswith("/v") else "1.47")


def test_trailing_slash_matches(srv: Running) -> None:
    assert roundtrip(srv, "GET", "/v1.44/x/").status == 200


def test_path_parameters_are_unquoted(srv: Running) -> None:
    r = roundtrip(srv, "POST", "/v1.41/containers/my%2Dweb/start", b"")
    assert r.json() == {"name": "my-web"}


@pytest.mark.parametrize("path,word", [("/v1.99/x", "too new"), ("/v1.48/x", "too new"),
                                       ("/v2.0/x", "too new"), ("/v1.12/x", "too old"),
                                       ("/v1.23/x", "too old"), ("/v0.99/nope", "too old")])
def test_bad_versions_are_400(srv: Running, path: str, word: str) -> None:
    r = roundtrip(srv, "GET", path)
    assert r.status == 400
    assert word in r.json()["message"]
    assert_common_headers(r)


def test_unknown_path_is_404_json(srv: Running) -> None:
    r = roundtrip(srv, "GET", "/no/such/thing")
    assert r.status == 404
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"message"}
    assert "/no/such/thing" in r.json()["message"]


def test_wrong_method_is_405(srv: Running) -> None:
    r = roundtrip(srv, "DELETE", "/x")
    assert r.status == 405
    assert "message" in r.json()
    r = roundtrip(srv, "GET", "/echo")
    assert r.status == 405


def test_head_has_no_body(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.request("GET", "/x")
        get = c.response()
        c.request("HEAD", "/x")
        head = c.response(head_request=True)
        assert head.status == 200
        assert head.headers["content-length"] == get.headers["content-length"]
        # No body bytes may follow: the next response on this connection starts clean.
        c.request("GET", "/x?a=after-head")
        assert c.response().json()["q"] == "after-head"
    finally:
        c.close()


def test_conflict_is_409_with_message(srv: Running) -> None:
    r = roundtrip(srv, "GET", "/conflict")
    assert r.status == 409
    assert r.json() == {"message": "the name /web is already in use"}
    assert_common_headers(r)


def test_plain_exception_is_500_internal_error(srv: Running) -> None:
    r = roundtrip(srv, "GET", "/crash")
    assert r.status == 500
    msg = r.json()["message"]
    assert "internal error" in msg
    assert "kaboom" in msg
    # The server keeps serving.
    assert roundtrip(srv, "GET", "/x").status == 200


def test_not_modified_is_304_without_body(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.request("GET", "/notmod")
        r = c.response()
        assert r.status == 304
        assert_common_headers(r)
        c.request("GET", "/x?a=after")
        assert c.response().json()["q"] == "after"
    finally:
        c.close()


# --------------------------------------------------------------------------- #
# Hijack


def test_hijack_with_upgrade_is_101_and_raw(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.send(b"POST /v1.47/hijack HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
               b"Content-Length: 0\r\n\r\nearly bytes")  # one packet
        head = c.read_head()
        assert head.raw_head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
        assert head.headers["connection"].lower() == "upgrade"
        assert head.headers["upgrade"] == "tcp"
        assert head.headers["content-type"] == "application/vnd.docker.raw-stream"
        assert_common_headers(head)
        assert c.read_exact(len(b"<early bytes>")) == b"<early bytes>"
        raw = b"\x00\x01raw\r\n\r\nGET / HTTP/1.1\r\n"  # not HTTP any more: echoed verbatim
        c.send(raw)
        assert c.read_exact(len(raw)) == raw
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_peer()
    finally:
        c.close()


def test_hijack_without_upgrade_is_200_then_raw(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.send(b"POST /hijack HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n")
        head = c.read_head()
        assert head.raw_head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert "upgrade" not in head.headers
        assert_common_headers(head)
        c.send(b"ping")
        assert c.read_exact(4) == b"ping"
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_peer()
    finally:
        c.close()


def test_hijack_with_early_bytes_in_the_same_packet_without_upgrade(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.send(b"POST /hijack HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\nstdin-data")
        head = c.read_head()
        assert head.status == 200
        assert c.read_exact(len(b"<stdin-data>")) == b"<stdin-data>"
    finally:
        c.close()


def test_hijack_with_a_body_then_raw_bytes(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.send(b"POST /hijack HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
               b"Content-Length: 4\r\n\r\nbodyAFTER")
        assert c.read_head().status == 101
        assert c.read_exact(len(b"<AFTER>")) == b"<AFTER>"
    finally:
        c.close()


# --------------------------------------------------------------------------- #
# Stream


def test_stream_is_chunked(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.request("GET", "/finite")
        r = c.response()
        assert r.status == 200
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.headers["content-type"] == "text/plain"
        assert "content-length" not in r.headers
        assert r.chunks == [b"chunk0;", b"chunk1;", b"chunk2;", b"last"]
        assert_common_headers(r)
        c.request("GET", "/x?a=after-stream")  # keep-alive after a stream
        assert c.response().json()["q"] == "after-stream"
    finally:
        c.close()


def test_stream_chunks_arrive_as_produced(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.request("GET", "/stream")
        head = c.read_head()
        assert head.status == 200 and head.headers["transfer-encoding"] == "chunked"
        assert c.read_chunk() == b'{"n": 1}\n'
        assert c.read_chunk() == b'{"n": 2}\n'
    finally:
        c.close()


def test_disconnect_mid_stream_cancels_the_generator(srv: Running) -> None:
    c = Conn(srv.path)
    c.request("GET", "/stream")
    c.read_head()
    assert c.read_chunk() == b'{"n": 1}\n'
    assert srv.probe.stream_started.wait(5)
    assert not srv.probe.stream_finally.is_set()
    c.close()
    assert srv.probe.stream_finally.wait(5), "the generator's finally did not run"
    # The server still answers new connections.
    r = roundtrip(srv, "GET", "/x?a=alive")
    assert r.json()["q"] == "alive"
    deadline = time.monotonic() + 5
    while srv.server.connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not srv.server.connections


def test_disconnect_before_the_first_chunk_cancels_the_generator(srv: Running) -> None:
    c = Conn(srv.path)
    c.request("GET", "/idle")
    assert c.read_head().status == 200
    c.close()
    assert srv.probe.idle_finally.wait(5), "the idle generator's finally did not run"
    assert roundtrip(srv, "GET", "/x").status == 200


def test_disconnect_cancels_a_waiting_route(srv: Running) -> None:
    c = Conn(srv.path)
    c.request("POST", "/wait", b"")
    time.sleep(0.1)
    assert not srv.probe.wait_finally.is_set()
    c.close()
    assert srv.probe.wait_finally.wait(5), "the waiting handler was not cancelled"
    assert roundtrip(srv, "GET", "/x").status == 200


def test_many_disconnects_mid_stream(srv: Running) -> None:
    for _ in range(5):
        srv.probe.stream_finally.clear()
        c = Conn(srv.path)
        c.request("GET", "/stream")
        c.read_head()
        c.read_chunk()
        c.close()
        assert srv.probe.stream_finally.wait(5)
    assert roundtrip(srv, "GET", "/x").status == 200


# --------------------------------------------------------------------------- #
# Headers on every kind of response


@pytest.mark.parametrize("method,target", [
    ("GET", "/x"), ("HEAD", "/x"), ("GET", "/nope"), ("PUT", "/x"), ("GET", "/v1.99/x"),
    ("GET", "/conflict"), ("GET", "/crash"), ("GET", "/finite"), ("POST", "/echo"),
])
def test_every_response_has_the_docker_headers(srv: Running, method: str, target: str) -> None:
    r = roundtrip(srv, method, target, b"" if method == "POST" else None)
    assert_common_headers(r)


def test_client_closing_early_does_not_break_the_server(srv: Running) -> None:
    c = Conn(srv.path)
    c.send(b"GET /x HTTP/1.1\r\nHo")
    c.close()
    c = Conn(srv.path)
    c.send(b"POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 100\r\n\r\nonly-part")
    c.close()
    assert roundtrip(srv, "GET", "/x").status == 200


def test_malformed_request_gets_a_400(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        c.send(b"THIS IS NOT HTTP\r\n\r\n")
        r = c.read_head()
        assert r.status == 400
    finally:
        c.close()


# --------------------------------------------------------------------------- #
# Limits: body size, JSON depth, timeouts, resets

TIGHT = Limits(max_json_body=4096, idle_timeout=0.6, head_timeout=0.6, body_timeout=0.6, linger=0.3,
               drain_limit=2048)


@pytest.fixture
def tight(tmp_path: Path):
    r = Running(str(tmp_path / "tight.sock"), TIGHT)
    try:
        yield r
    finally:
        r.stop()
    assert r.error is None


def nested(n: int) -> bytes:
    return b"[" * n + b"]" * n


def test_oversized_json_body_is_413_before_it_is_read(tight: Running) -> None:
    c = Conn(tight.path)
    try:
        # 50 MB announced, 8 KiB sent: the answer comes from Content-Length alone
        c.send(b"POST /parse HTTP/1.1\r\nHost: d\r\nContent-Length: 50000000\r\n\r\n" + b" " * 8192)
        r = c.response()
        assert r.status == 413, r.body
        assert "larger than this daemon accepts" in r.json()["message"]
        assert "--max-json-body" in r.json()["message"]
        assert r.headers.get("connection") == "close"
        assert c.closed_by_peer(5), "the connection must close rather than read 50 MB"
    finally:
        c.close()
    assert roundtrip(tight, "GET", "/x").status == 200


def test_oversized_chunked_json_body_is_413_once_the_cap_is_passed(tight: Running) -> None:
    c = Conn(tight.path)
    try:
        c.send(b"POST /parse HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):  # 3 x 2000 bytes > 4096, and no terminating chunk ever
            c.send(b"7d0\r\n" + b" " * 2000 + b"\r\n")
        r = c.response()
        assert r.status == 413, r.body
        assert c.closed_by_peer(5)
    finally:
        c.close()


def test_json_body_at_the_cap_is_accepted(tight: Running) -> None:
    body = b'{"a": "' + b"x" * (4096 - 10) + b'"}'
    assert len(body) <= 4096
    r = roundtrip(tight, "POST", "/parse", body)
    assert r.status == 200 and len(r.json()["got"]["a"]) == 4086


def test_streamed_bodies_are_not_capped(tight: Running) -> None:
    data = b"t" * (1 << 20)  # 256 times the JSON cap
    r = roundtrip(tight, "POST", "/count", data)
    assert (r.status, r.json()) == (200, {"bytes": len(data)})


def test_deep_json_body_is_400_not_a_crash(srv: Running) -> None:
    r = roundtrip(srv, "POST", "/parse", nested(5000))
    assert r.status == 400, r.body
    assert "nested too deeply" in r.json()["message"]
    r = roundtrip(srv, "POST", "/parse", nested(401))
    assert r.status == 400 and "nested too deeply" in r.json()["message"]


def test_json_400_deep_is_accepted(srv: Running) -> None:
    r = roundtrip(srv, "POST", "/parse", nested(400))
    assert r.status == 200


def test_brackets_inside_strings_do_not_count(srv: Running) -> None:
    body = json.dumps({"s": "[" * 5000, "t": "\\\"{" * 3000}).encode()
    r = roundtrip(srv, "POST", "/parse", body)
    assert r.status == 200 and r.json()["got"]["s"] == "[" * 5000


def test_deep_json_in_the_query_is_400(srv: Running) -> None:
    deep = urllib.parse.quote(nested(3000).decode())
    r = roundtrip(srv, "POST", f"/parse?filters={deep}", b"{}")
    assert r.status == 400 and "filters parameter is nested too deeply" in r.json()["message"]


def test_a_body_that_stops_coming_is_dropped(tight: Running) -> None:
    c = Conn(tight.path)
    try:
        c.send(b"POST /parse HTTP/1.1\r\nHost: d\r\nContent-Length: 100\r\n\r\n{\"a\":")
        r = c.response()  # the body timeout (0.6 s) answers, well before the socket's 10 s
        assert r.status == 408, r.body
        assert "no byte of the request body" in r.json()["message"]
        assert c.closed_by_peer(5)
    finally:
        c.close()
    assert roundtrip(tight, "GET", "/x").status == 200


def test_a_streamed_body_that_stops_coming_is_dropped(tight: Running) -> None:
    c = Conn(tight.path)
    try:
        c.send(b"POST /count HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        r = c.response()
        assert r.status == 408
        assert c.closed_by_peer(5)
    finally:
        c.close()


def test_a_connection_that_sends_nothing_is_closed(tight: Running) -> None:
    c = Conn(tight.path)
    try:
        assert c.closed_by_peer(5), "an idle connection must be closed after the idle timeout"
    finally:
        c.close()


def test_a_kept_alive_connection_serves_requests_then_closes_when_idle(tight: Running) -> None:
    c = Conn(tight.path)
    try:
        for i in range(3):
            c.request("GET", f"/x?a={i}")
            assert c.response().json()["q"] == str(i)
        assert c.closed_by_peer(5)
    finally:
        c.close()


def test_a_head_that_never_ends_is_408(tight: Running) -> None:
    c = Conn(tight.path)
    try:
        c.send(b"GET /x HTTP/1.1\r\nHost: d\r\nX-Slow: ")
        r = c.read_head()
        assert r.status == 408
        assert "request head did not arrive" in json.loads(c.read_exact(int(r.headers["content-length"])))["message"]
        assert c.closed_by_peer(5)
    finally:
        c.close()
    assert roundtrip(tight, "GET", "/x").status == 200


def test_a_head_trickled_byte_by_byte_is_cut_at_the_head_timeout(tight: Running) -> None:
    c = Conn(tight.path)
    try:
        start = time.monotonic()
        got = b""
        for ch in b"GET /x HTTP/1.1\r\nHost: d\r\nX-Slow: " + b"a" * 100:
            try:
                c.send(bytes([ch]))
            except OSError:
                break
            time.sleep(0.05)
            c.sock.setblocking(False)
            try:
                got += c.sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                c.sock.setblocking(True)
            if got:
                break
        assert got.startswith(b"HTTP/1.1 408"), got
        assert time.monotonic() - start < 8
    finally:
        c.close()


def test_unread_body_over_the_drain_limit_closes_the_connection(tight: Running) -> None:
    c = Conn(tight.path)
    try:
        c.request("POST", "/containers/web/start", b"z" * 3000)  # the handler reads none of it
        r = c.response()
        assert (r.status, r.json()) == (201, {"name": "web"})
        assert r.headers.get("connection") == "close"
        assert c.closed_by_peer(5)
    finally:
        c.close()


def test_waiting_responses_and_hijacks_outlive_the_timeouts(tight: Running) -> None:
    # a stream with nothing to say (events, logs -f) is not cut by the idle or head timeouts
    c = Conn(tight.path)
    try:
        c.request("GET", "/stream")
        assert c.read_head().status == 200
        assert c.read_chunk() == b'{"n": 1}\n'
        assert c.read_chunk() == b'{"n": 2}\n'
        assert not c.closed_by_peer(2.5)
    finally:
        c.close()
    # a waiting route (wait) likewise
    c = Conn(tight.path)
    try:
        c.request("POST", "/wait", b"")
        assert not c.closed_by_peer(2.5)
    finally:
        c.close()
    # and a hijacked connection (attach, exec) stays open while both ends are quiet
    c = Conn(tight.path)
    try:
        c.request("POST", "/hijack", headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        assert c.read_head().status == 101
        time.sleep(2.5)
        c.send(b"still here")
        assert c.read_exact(10) == b"still here"
    finally:
        c.close()


def _reset(c: Conn) -> None:
    """Close with a TCP-style abort: unread data and SO_LINGER 0 (a reset on TCP)."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sock.close()


def test_resets_are_not_tracebacks(srv: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="berth.api")
    # mid-body
    c = Conn(srv.path)
    c.send(b"POST /parse HTTP/1.1\r\nHost: d\r\nContent-Length: 1000\r\n\r\n{\"a\": ")
    time.sleep(0.2)
    _reset(c)
    # mid-stream
    c = Conn(srv.path)
    c.request("GET", "/stream")
    c.read_head()
    srv.probe.stream_started.wait(5)
    _reset(c)
    # mid-head
    c = Conn(srv.path)
    c.send(b"GET /x HTTP/1.1\r\n")
    _reset(c)
    # with an answer the client never reads
    c = Conn(srv.path)
    c.request("GET", "/finite")
    _reset(c)
    assert srv.probe.stream_finally.wait(5)
    time.sleep(0.3)
    assert roundtrip(srv, "GET", "/x").status == 200
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [(r.levelname, r.getMessage()) for r in loud]


def test_an_oversized_head_is_refused(srv: Running) -> None:
    c = Conn(srv.path)
    try:
        try:
            c.send(b"GET /x HTTP/1.1\r\nHost: d\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\n\r\n")
        except OSError:
            pass  # refused while still sending
        r = c.read_head()
        assert r.status == 431, r.raw_head
    finally:
        c.close()
    assert roundtrip(srv, "GET", "/x").status == 200
