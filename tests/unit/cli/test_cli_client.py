from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable

import pytest

from berth.cli.main import parse_globals, run
from berth.client.engine import Client, encode_query
from berth.client.errors import DaemonUnreachable, NotFoundError, api_error
from berth.client.hosts import DEFAULT_HOST, Host, parse_host, resolve_host
from berth.errors import Conflict, NotFound


def test_resolve_host_order() -> None:
    env = {"BERTH_HOST": "unix:///b", "DOCKER_HOST": "unix:///d"}
    assert resolve_host("tcp://x:1", env) == "tcp://x:1"
    assert resolve_host(None, env) == "unix:///b"
    assert resolve_host(None, {"DOCKER_HOST": "unix:///d"}) == "unix:///d"
    assert resolve_host(None, {}) == DEFAULT_HOST


@pytest.mark.parametrize("spec,host", [
    ("unix:///run/berth/berth.sock", Host("unix", "/run/berth/berth.sock")),
    ("/tmp/s.sock", Host("unix", "/tmp/s.sock")),
    ("tcp://127.0.0.1:2375", Host("tcp", "127.0.0.1", 2375)),
    ("tcp://localhost", Host("tcp", "localhost", 2375)),
    ("http://[::1]:99", Host("tcp", "::1", 99)),
])
def test_parse_host(spec: str, host: Host) -> None:
    assert parse_host(spec) == host


def test_encode_query() -> None:
    q = encode_query({"all": True, "force": False, "limit": 3, "x": None,
                      "filters": {"status": ["exited"]}, "changes": ["A", "B"]})
    assert q == ("all=1&limit=3&filters=%7B%22status%22%3A%5B%22exited%22%5D%7D"
                 "&changes=A&changes=B")


def test_api_error_categories() -> None:
    err = api_error(404, b'{"message": "No such container: x"}')
    assert isinstance(err, NotFound) and err.status == 404 and err.message == "No such container: x"
    assert isinstance(api_error(409, b'{"message": "busy"}'), Conflict)
    assert api_error(500, b"plain text").message == "plain text"


def serve_once(reply: bytes, check: Callable[[bytes], None] | None = None) -> tuple[str, threading.Thread]:
    """A one-shot fake daemon on a socketpair-like unix socket in a temp path."""
    path = os.path.join(tempfile.mkdtemp(prefix="berth-cli-"), "s.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)

    def loop() -> None:
        for _ in range(2):  # _ping, then the request
            conn, _ = srv.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            if data.startswith(b"GET /_ping"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nApi-Version: 1.44\r\nContent-Length: 2\r\n\r\nOK")
                conn.close()
                continue
            if check:
                check(data)
            conn.sendall(reply)
            conn.close()
        srv.close()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return f"unix://{path}", t


def test_request_negotiates_version_and_decodes_chunked() -> None:
    seen: list[bytes] = []
    host, t = serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n", seen.append)
    c = Client(host, api_version=None)
    c._version = None
    assert c.get("/containers/json", {"all": True}) == [1, 2]
    t.join(5)
    assert seen[0].startswith(b"GET /v1.44/containers/json?all=1 HTTP/1.1\r\n")


def test_error_response_raises() -> None:
    host, t = serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 35\r\n\r\n{\"message\":\"No such container: zz\"}")
    c = Client(host)
    c._version = None
    with pytest.raises(NotFoundError, match="No such container: zz"):
        c.request("POST", "/containers/zz/start")
    t.join(5)


def test_stream_json_lines_close_delimited() -> None:
    host, t = serve_once(b"HTTP/1.1 200 OK\r\n\r\n{\"a\":1}\n{\"a\":2}{\"a\":3}\n")
    c = Client(host)
    c._version = None
    with c.stream("GET", "/events") as sr:
        assert list(sr.json_lines()) == [{"a": 1}, {"a": 2}, {"a": 3}]
    t.join(5)


def test_hijack_returns_buffered_bytes() -> None:
    host, t = serve_once(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker."
                         b"multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                         b"\x01\x00\x00\x00\x00\x00\x00\x02hi",
                         lambda req: (b"Upgrade: tcp" in req and b"Connection: Upgrade" in req)
                         or pytest.fail("no upgrade headers"))
    c = Client(host)
    c._version = None
    h = c.hijack("POST", "/containers/x/attach", {"stream": True})
    rest = h.buffered
    while chunk := h.sock.recv(100):
        rest += chunk
    assert rest == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert h.multiplexed is True
    h.close()
    t.join(5)


def test_unreachable_daemon() -> None:
    c = Client("unix:///nonexistent/berth.sock")
    with pytest.raises(DaemonUnreachable, match="Cannot connect"):
        c.get("/info")


def test_parse_globals() -> None:
    opts, rest = parse_globals(["-H", "unix:///x", "-D", "ps", "-a"])
    assert opts.host == "unix:///x" and opts.debug and rest == ["ps", "-a"]
    opts, rest = parse_globals(["--host=tcp://h:1", "run", "-H", "x"])
    assert opts.host == "tcp://h:1" and rest == ["run", "-H", "x"]


def test_bad_flag_exits_125(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-H", "unix:///nonexistent.sock", "run", "--bogus", "busybox"]) == 125
    assert "unknown flag: --bogus" in capsys.readouterr().err
    assert run(["-H", "unix:///nonexistent.sock", "run", "-m", "1x", "busybox"]) == 125
    assert "invalid suffix: 'x'" in capsys.readouterr().err


def test_missing_argument_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-H", "unix:///nonexistent.sock", "rm"]) == 1
    assert "requires at least 1 argument" in capsys.readouterr().err


def test_unreachable_daemon_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-H", "unix:///nonexistent.sock", "ps"]) == 1
    assert run(["-H", "unix:///nonexistent.sock", "run", "busybox"]) == 125
    assert "Cannot connect to the berth daemon" in capsys.readouterr().err
