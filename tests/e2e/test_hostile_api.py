"""The API's front door under attack: TLS, who may listen where, body limits, timeouts.

One berthd for the module listens on its unix socket and on tcp://0.0.0.0:PORT
with --tlsverify (certificates made here with the openssl CLI), with short
API timeouts so that slow clients are dropped within the test's time. Other
daemons are started where a test needs other flags. Every test ends with
assert_responsive, and checks the host is untouched where it could not be.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from berth_e2e_conftest import (
    BERTHD,
    active_cli,
    TARGET,
    Daemon,
    _new_daemon,
    assert_responsive,
    docker,
)

from berth.testing.pki import Pki, make_pki

pytestmark = pytest.mark.skipif(TARGET != "berthd", reason="berthd's own flags and limits")

BODY_TIMEOUT = 2.0
HEAD_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
MiB = 1024 * 1024


# --------------------------------------------------------------------------- #
# Certificates


Certs = Pki


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_pki(tmp_path_factory.mktemp("tls"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_args(c: Certs) -> tuple[str, ...]:
    return ("--tlscacert", str(c.ca), "--tlscert", str(c.server_cert), "--tlskey", str(c.server_key))


@dataclass
class TlsDaemon:
    d: Daemon
    port: int
    certs: Certs

    def docker_tls(self, *args: str, cert: Path | None = None, key: Path | None = None,
                   check: bool = True) -> subprocess.CompletedProcess:
        flags = ["--tlsverify", "--tlscacert", str(self.certs.ca)]
        if cert is not None and key is not None:
            flags += ["--tlscert", str(cert), "--tlskey", str(key)]
        return docker(self.d, *flags, "-H", f"tcp://127.0.0.1:{self.port}", *args, check=check)


@pytest.fixture(scope="module")
def tlsd(_log_dir: Path, certs: Certs) -> Iterator[TlsDaemon]:
    port = free_port()
    d = _new_daemon(TARGET, _log_dir)
    d.extra_args = ("-H", f"tcp://0.0.0.0:{port}", "--tlsverify", *tls_args(certs),
                    "--api-body-timeout", str(BODY_TIMEOUT), "--api-head-timeout", str(HEAD_TIMEOUT),
                    "--api-idle-timeout", str(IDLE_TIMEOUT))
    try:
        d.start()
        yield TlsDaemon(d, port, certs)
    finally:
        d.stop()


# --------------------------------------------------------------------------- #
# Raw HTTP


def unix_conn(d: Daemon, timeout: float = 15) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(d.sock)
            return s
        except BlockingIOError:  # the listen queue is full for a moment: the daemon is accepting
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length body (berthd's error answers)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            raise EOFError(f"closed after {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        data = s.recv(65536)
        if not data:
            break
        rest += data
    return int(lines[0].split()[1]), headers, rest[:n]


def request(d: Daemon, method: str, target: str, body: bytes = b"") -> tuple[int, dict]:
    with unix_conn(d) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        status, _, data = read_response(s)
    return status, (json.loads(data) if data.strip() else {})


def closed_by_peer(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def tls_exchange(port: int, ca: Path, cert: Path | None = None, key: Path | None = None) -> bytes:
    """GET /_ping over TLS; the bytes answered, or raises the TLS error."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
            out = b""
            while data := s.recv(65536):
                out += data
            return out


def log_text(d: Daemon) -> str:
    return d.log_path.read_text(errors="replace")


def assert_no_tracebacks(d: Daemon) -> None:
    text = log_text(d)
    assert "Traceback" not in text, text[-4000:]
    assert " ERROR " not in text, text[-4000:]


# --------------------------------------------------------------------------- #
# TLS


def test_docker_cli_over_tls_with_a_client_certificate(tlsd: TlsDaemon) -> None:
    c = tlsd.certs
    out = tlsd.docker_tls("version", "--format", "{{.Server.Version}}", cert=c.client_cert, key=c.client_key)
    assert out.stdout.strip(), out
    answer = tls_exchange(tlsd.port, c.ca, c.client_cert, c.client_key)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"OK"), answer
    assert_responsive(tlsd.d)


def test_a_client_without_a_certificate_is_refused(tlsd: TlsDaemon) -> None:
    c = tlsd.certs
    cp = docker(tlsd.d, "--tls", "--tlscacert", str(c.ca), "-H", f"tcp://127.0.0.1:{tlsd.port}", "version",
                check=False)
    assert cp.returncode != 0
    assert "Server:" not in cp.stdout, cp.stdout
    assert "certificate" in cp.stderr.lower(), cp.stderr
    with pytest.raises((ssl.SSLError, ConnectionError)):
        answer = tls_exchange(tlsd.port, c.ca)
        if not answer:  # TLS 1.3: the refusal can come as the end of the connection
            raise ConnectionResetError("closed")
        pytest.fail(f"answered without a client certificate: {answer!r}")
    assert_responsive(tlsd.d)


def test_a_client_certificate_from_another_ca_is_refused(tlsd: TlsDaemon) -> None:
    c = tlsd.certs
    cp = tlsd.docker_tls("version", cert=c.rogue_cert, key=c.rogue_key, check=False)
    assert cp.returncode != 0
    assert "Server:" not in cp.stdout, cp.stdout
    # refused at the handshake, with the TLS alert that says why
    assert "certificate" in cp.stderr.lower(), cp.stderr
    with pytest.raises((ssl.SSLError, ConnectionError)):
        answer = tls_exchange(tlsd.port, c.ca, c.rogue_cert, c.rogue_key)
        if not answer:
            raise ConnectionResetError("closed")
        pytest.fail(f"answered a client signed by another CA: {answer!r}")
    assert_responsive(tlsd.d)


def test_plain_http_on_the_tls_port_gets_nothing(tlsd: TlsDaemon) -> None:
    with socket.create_connection(("127.0.0.1", tlsd.port), timeout=10) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        got = b""
        try:
            while data := s.recv(65536):
                got += data
        except ConnectionError:
            pass
    assert b"HTTP/1.1 200" not in got and b"OK" not in got, got
    assert_responsive(tlsd.d)


def test_tls_resets_and_failed_handshakes_are_not_tracebacks(tlsd: TlsDaemon) -> None:
    c = tlsd.certs
    for _ in range(3):
        # a TCP reset in the middle of a handshake
        s = socket.create_connection(("127.0.0.1", tlsd.port), timeout=5)
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        # a reset in the middle of a request body, after a good handshake
        ctx = ssl.create_default_context(cafile=str(c.ca))
        ctx.load_cert_chain(str(c.client_cert), str(c.client_key))
        raw = socket.create_connection(("127.0.0.1", tlsd.port), timeout=5)
        t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        t.sendall(b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 500\r\n\r\n{\"Image\": ")
        time.sleep(0.1)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.close()
        # and a client the server refuses
        with pytest.raises((ssl.SSLError, ConnectionError)):
            if not tls_exchange(tlsd.port, c.ca, c.rogue_cert, c.rogue_key):
                raise ConnectionResetError("closed")
    time.sleep(0.5)
    assert_responsive(tlsd.d)
    assert_no_tracebacks(tlsd.d)


# --------------------------------------------------------------------------- #
# Who may listen where


def _berthd_once(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BERTHD, "--root", str(tmp / "root"), "--bridge", "btrefuse0", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("address", ["0.0.0.0", "[::]", "192.0.2.1", "example.invalid"])
def test_a_non_loopback_listener_without_tlsverify_is_refused(tmp_path: Path, certs: Certs, address: str,
                                                              tlsd: TlsDaemon) -> None:
    port = free_port()
    for extra in ((), ("--tls", *tls_args(certs))):
        cp = _berthd_once(tmp_path, "-H", f"tcp://{address}:{port}", *extra)
        assert cp.returncode != 0
        assert "refusing to listen" in cp.stderr and "--tlsverify" in cp.stderr, cp.stderr
        assert "--tlscacert" in cp.stderr, cp.stderr
    # nothing was made: no data root, no bridge, nothing listening
    assert not (tmp_path / "root").exists()
    assert subprocess.run(["ip", "link", "show", "btrefuse0"], capture_output=True).returncode != 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert_responsive(tlsd.d)


def test_a_non_loopback_listener_with_tlsverify_serves(tlsd: TlsDaemon) -> None:
    # the module's daemon listens on 0.0.0.0 with --tlsverify
    assert f"listening on tcp://0.0.0.0:{tlsd.port} (TLS, client certificates verified)" in log_text(tlsd.d)
    c = tlsd.certs
    out = tlsd.docker_tls("info", "--format", "{{.Name}}", cert=c.client_cert, key=c.client_key)
    assert out.returncode == 0
    assert_responsive(tlsd.d)


def test_plain_tcp_on_loopback_works_with_a_warning(berthd_factory, tlsd: TlsDaemon) -> None:
    port = free_port()
    d = berthd_factory(extra_args=("-H", f"tcp://127.0.0.1:{port}"))
    assert "without TLS: any local user and any process" in log_text(d)
    cp = docker(d, "-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.Version}}")
    assert cp.stdout.strip()
    assert_responsive(d)
    assert_responsive(tlsd.d)


# --------------------------------------------------------------------------- #
# Limits


def test_a_50mb_json_body_is_413_and_not_kept(tlsd: TlsDaemon) -> None:
    d = tlsd.d
    assert d.proc is not None
    big = b'{"Image": "busybox", "Labels": {"big": "' + b"x" * (50 * 1000 * 1000) + b'"}}'

    def attempt(body: bytes, chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
        s = unix_conn(d)
        if chunked:
            head = b"Transfer-Encoding: chunked\r\n"
        else:
            head = f"Content-Length: {len(body)}\r\n".encode()

        def push() -> None:
            try:
                s.sendall(b"POST /v1.47/containers/create HTTP/1.1\r\nHost: d\r\n"
                          b"Content-Type: application/json\r\n" + head + b"\r\n")
                if chunked:
                    view = memoryview(body)
                    for i in range(0, len(body), MiB):
                        part = view[i:i + MiB]
                        s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    s.sendall(b"0\r\n\r\n")
                else:
                    s.sendall(body)
            except OSError:
                pass  # refused before the end: expected
        sender = threading.Thread(target=push, daemon=True)
        sender.start()
        try:
            answer = read_response(s)
            assert closed_by_peer(s, 15), "the connection must end after a refused body"
            return answer
        finally:
            sender.join(30)
            s.close()

    attempt(b"{}" * (9 * MiB))  # warm the path once, then measure
    before = rss_kib(d.proc.pid)
    status, headers, data = attempt(big)
    assert status == 413, data[:300]
    message = json.loads(data)["message"]
    assert "larger than this daemon accepts" in message and "--max-json-body" in message
    after = rss_kib(d.proc.pid)
    assert after - before < 5 * 1024, f"berthd's RSS grew by {(after - before) / 1024:.1f} MiB"
    # without a Content-Length, the count stops at the cap
    status, _, data = attempt(big, chunked=True)
    assert status == 413, data[:300]
    assert rss_kib(d.proc.pid) - before < 40 * 1024
    # and no container was made
    assert request(d, "GET", "/containers/json?all=1")[1] == []
    assert_responsive(d)


def test_a_never_ending_body_is_dropped(tlsd: TlsDaemon) -> None:
    d = tlsd.d
    with unix_conn(d) as s:
        s.sendall(b"POST /v1.47/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"Image\": ")
        status, _, data = read_response(s)  # within the body timeout, well before the socket's 15 s
        assert status == 408, data
        assert "no byte of the request body" in json.loads(data)["message"]
        assert closed_by_peer(s, 10)
    # a chunked one likewise
    with unix_conn(d) as s:
        s.sendall(b"POST /v1.47/containers/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"2\r\n{}\r\n")
        status, _, _ = read_response(s)
        assert status == 408
    assert request(d, "GET", "/containers/json?all=1")[1] == []
    assert_responsive(d)


def test_a_head_that_never_ends_is_dropped(tlsd: TlsDaemon) -> None:
    d = tlsd.d
    with unix_conn(d) as s:
        s.sendall(b"GET /v1.47/info HTTP/1.1\r\nHost: d\r\nX-Slow: ")
        status, _, data = read_response(s)
        assert status == 408, data
        assert closed_by_peer(s, 10)
    assert_responsive(d)


def test_deeply_nested_json_is_400(tlsd: TlsDaemon) -> None:
    d = tlsd.d
    deep = "[" * 5000 + "]" * 5000
    status, body = request(d, "POST", "/v1.47/containers/create", deep.encode())
    assert status == 400 and "nested too deeply" in body["message"], body
    inside = ('{"Image": "busybox", "Labels": {"a": ' + "[" * 450 + "]" * 450 + "}}").encode()
    status, body = request(d, "POST", "/v1.47/containers/create", inside)
    assert status == 400 and "nested too deeply" in body["message"], body
    q = urllib.parse.quote(deep)
    status, body = request(d, "GET", f"/v1.47/containers/json?filters={q}")
    assert status == 400 and "filters parameter is nested too deeply" in body["message"], body
    status, body = request(d, "POST", f"/v1.47/build?buildargs={q}")
    assert status == 400 and "nested too deeply" in body["message"], body
    status, body = request(d, "POST", "/v1.47/networks/create", deep.encode())
    assert status == 400 and "nested too deeply" in body["message"], body
    assert request(d, "GET", "/containers/json?all=1")[1] == []
    assert_responsive(d)
    assert_no_tracebacks(d)


def test_many_idle_connections_do_not_stop_others(tlsd: TlsDaemon) -> None:
    d = tlsd.d
    idle = [unix_conn(d) for _ in range(300)]
    slow = [unix_conn(d) for _ in range(50)]
    for s in slow:
        s.sendall(b"GET /v1.47/info HTTP/1.1\r\nHost: d\r\n")  # and never the end of the head
    tcp = [socket.create_connection(("127.0.0.1", tlsd.port), timeout=10) for _ in range(30)]  # no handshake
    try:
        assert_responsive(d)
        cp = docker(d, "version", "--format", "{{.Server.Version}}")
        assert cp.stdout.strip()
        c = tlsd.certs
        assert tls_exchange(tlsd.port, c.ca, c.client_cert, c.client_key).startswith(b"HTTP/1.1 200")
        # and the daemon lets them go: idle after the idle timeout, the rest after the head timeout
        for group in (idle[:20], slow[:20], tcp[:10]):
            for s in group:
                assert closed_by_peer(s, IDLE_TIMEOUT + HEAD_TIMEOUT + 10)
    finally:
        for s in idle + slow + tcp:
            s.close()
    assert_responsive(d)


def test_keep_alive_attach_and_logs_follow_are_not_cut(tlsd: TlsDaemon, rootfs_tar: Path) -> None:
    d = tlsd.d
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    name = f"hostile-api-{os.getpid()}"
    try:
        docker(d, "run", "-d", "--name", name, "busybox", "sh", "-c",
               f"sleep {IDLE_TIMEOUT + BODY_TIMEOUT + 2}; echo done")
        logs = subprocess.Popen([active_cli(), "logs", "-f", name], env=d.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        waited = docker(d, "wait", name, timeout=60)
        assert waited.stdout.strip() == "0"
        out, _ = logs.communicate(timeout=30)
        assert logs.returncode == 0 and "done" in out, out
    finally:
        docker(d, "rm", "-f", name, check=False)
    assert_responsive(d)


def test_stdin_end_over_tls_does_not_cut_the_output(tlsd: TlsDaemon, rootfs_tar: Path) -> None:
    # the CLI half-closes its side when stdin ends (a TLS close_notify); output still comes back
    d = tlsd.d
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    c = tlsd.certs
    flags = ["--tlsverify", "--tlscacert", str(c.ca), "--tlscert", str(c.client_cert), "--tlskey",
             str(c.client_key), "-H", f"tcp://127.0.0.1:{tlsd.port}"]
    cp = docker(d, *flags, "run", "-i", "--rm", "busybox", "sh", "-c", "cat; sleep 1; echo end",
                input="hello\n", timeout=60)
    assert cp.stdout == "hello\nend\n", cp
    assert_responsive(d)


BERTH = os.path.join(os.path.dirname(sys.executable), "berth")


def test_the_berth_cli_speaks_tls(tlsd: TlsDaemon, rootfs_tar: Path) -> None:
    d = tlsd.d
    c = tlsd.certs
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    host = f"tcp://127.0.0.1:{tlsd.port}"
    flags = ["--tlsverify", "--tlscacert", str(c.ca), "--tlscert", str(c.client_cert), "--tlskey",
             str(c.client_key), "-H", host]
    env = dict(d.env)
    cp = subprocess.run([BERTH, *flags, "version"], env=env, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and "Server" in cp.stdout, cp
    # stdin's end is a TLS half-close: the output after it still arrives
    cp = subprocess.run([BERTH, *flags, "run", "-i", "--rm", "busybox", "sh", "-c", "cat; sleep 1; echo end"],
                        env=env, input="hello\n", capture_output=True, text=True, timeout=60)
    assert (cp.returncode, cp.stdout) == (0, "hello\nend\n"), cp
    # the docker CLI's environment works too: DOCKER_TLS_VERIFY + DOCKER_CERT_PATH
    certdir = c.dir / "as-docker"
    certdir.mkdir(exist_ok=True)
    for src, dst in ((c.ca, "ca.pem"), (c.client_cert, "cert.pem"), (c.client_key, "key.pem")):
        (certdir / dst).write_bytes(src.read_bytes())
    env.update(DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certdir), DOCKER_HOST=host)
    cp = subprocess.run([BERTH, "ps", "-a"], env=env, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and "CONTAINER ID" in cp.stdout, cp
    # and without a client certificate the daemon refuses, with a message rather than a traceback
    (certdir / "cert.pem").unlink()
    cp = subprocess.run([BERTH, "ps"], env=env, capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0 and "Traceback" not in cp.stderr, cp
    assert "certificate" in cp.stderr.lower() or "TLS" in cp.stderr, cp.stderr
    assert_responsive(d)


def test_a_too_large_body_over_tls_gets_its_413(tlsd: TlsDaemon) -> None:
    import requests

    c = tlsd.certs
    big = b'{"Image": "busybox", "Labels": {"big": "' + b"x" * (30 * 1000 * 1000) + b'"}}'
    r = requests.post(f"https://127.0.0.1:{tlsd.port}/v1.47/containers/create", data=big,
                      headers={"Content-Type": "application/json"}, verify=str(c.ca),
                      cert=(str(c.client_cert), str(c.client_key)), timeout=60)
    assert r.status_code == 413, r.text[:300]
    assert "--max-json-body" in r.json()["message"]
    assert_responsive(tlsd.d)
