"""Tests for berth.api.tls: the TLS terminator in front of a real Server, over real TCP sockets.

Certificates are made with the openssl CLI in a temp dir.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from berth.api.limits import Limits
from berth.api.replies import Hijack, Reply
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.server import Server
from berth.api.tls import tls_handler
from berth.testing.pki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki")).dir


def _router() -> Router:
    r = Router()

    async def ping(req: Request) -> Reply:
        return Reply(200, b"OK", content_type="text/plain")

    async def upper(req: Request) -> Hijack:  # reads to EOF, then answers: needs a half-close
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: bytes) -> None:
            data = pending
            while chunk := await reader.read(65536):
                data += chunk
            await asyncio.sleep(0.2)
            writer.write(data.upper())
            await writer.drain()
        return Hijack(run)

    r.add("GET", "/_ping", ping)
    r.add("POST", "/upper", upper)
    return r


class TlsServer:
    def __init__(self, pki: Path, limits: Limits) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki / "server-cert.pem"), str(pki / "server-key.pem"))
        ctx.load_verify_locations(str(pki / "ca.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.server = Server(_router(), limits)
        self.handler = tls_handler(ctx, limits.head_timeout, self.server.handle)
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        srv = await asyncio.start_server(self.handler, "127.0.0.1", 0)
        self.port = srv.sockets[0].getsockname()[1]
        self._ready.set()
        async with srv:
            await self._stop.wait()

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def tls_srv(pki: Path):
    s = TlsServer(pki, Limits(head_timeout=1.0, idle_timeout=1.0, body_timeout=1.0))
    try:
        yield s
    finally:
        s.stop()


def client(pki: Path, port: int, cert: str | None = "client") -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}-cert.pem"), str(pki / f"{cert}-key.pem"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = s.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not data:
            break
        out += data
    return out


def test_a_verified_client_is_served(pki: Path, tls_srv: TlsServer) -> None:
    with client(pki, tls_srv.port) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"OK")


def test_keep_alive_over_tls(pki: Path, tls_srv: TlsServer) -> None:
    with client(pki, tls_srv.port) as s:
        for _ in range(3):
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
            got = b""
            while not got.endswith(b"OK"):
                got += s.recv(65536)
            assert got.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("cert", [None, "rogue"])
def test_other_clients_are_refused_with_an_alert(pki: Path, tls_srv: TlsServer, cert: str | None,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="berth.api")
    with pytest.raises(ssl.SSLError) as exc:
        with client(pki, tls_srv.port, cert) as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
            read_all(s)
    assert "ALERT" in str(exc.value).upper()  # the alert arrived: CERTIFICATE_REQUIRED, UNKNOWN_CA
    time.sleep(0.2)
    assert any("TLS handshake refused" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_half_close_keeps_the_answer_coming(pki: Path, tls_srv: TlsServer) -> None:
    s = client(pki, tls_srv.port)
    try:
        s.sendall(b"POST /upper HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                  b"Content-Length: 0\r\n\r\nhello")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        assert head.startswith(b"HTTP/1.1 101")
        # close_notify without closing the socket, as Go's CloseWrite does
        s.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError):
            s.unwrap()
        s.setblocking(True)
        s.settimeout(10)
        rest = head.partition(b"\r\n\r\n")[2] + read_all(s)
        assert rest == b"HELLO"
    finally:
        s.close()


def test_a_silent_tcp_client_is_dropped_at_the_handshake_timeout(tls_srv: TlsServer) -> None:
    with socket.create_connection(("127.0.0.1", tls_srv.port), timeout=10) as s:
        start = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - start < 8


def test_not_tls_at_all_is_refused(tls_srv: TlsServer) -> None:
    with socket.create_connection(("127.0.0.1", tls_srv.port), timeout=10) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        got = b""
        try:
            while data := s.recv(65536):
                got += data
        except ConnectionError:
            pass
    assert b"HTTP/1.1" not in got
