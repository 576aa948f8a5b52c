"""The client's TLS settings: the docker CLI's flags and environment, read the same way."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from berth.cli.main import parse_globals
from berth.client.engine import Client
from berth.client.tls import TlsConfig, tls_config
from berth.errors import InvalidArgument
from berth.testing.pki import Pki, make_pki


def test_plain_unless_asked() -> None:
    assert tls_config({}) is None
    assert tls_config({"DOCKER_CERT_PATH": "/x"}) is None
    assert tls_config({"DOCKER_TLS_VERIFY": ""}) is None


def test_env_verify_uses_the_cert_path(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    cfg = tls_config({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    assert cfg == TlsConfig(True, str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))


def test_default_client_files_only_when_both_exist(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    cfg = tls_config({"DOCKER_CERT_PATH": str(tmp_path)}, verify=True)
    assert cfg is not None and (cfg.cert, cfg.key) == ("", "")


def test_flags_win_and_tls_alone_does_not_verify(tmp_path: Path) -> None:
    cfg = tls_config({"DOCKER_CERT_PATH": str(tmp_path)}, tls=True, ca="/c/ca", cert="/c/c", key="/c/k")
    assert cfg == TlsConfig(False, "/c/ca", "/c/c", "/c/k")


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="CA certificate"):
        TlsConfig(True, str(tmp_path / "nope.pem")).context()
    with pytest.raises(InvalidArgument, match="client certificate"):
        TlsConfig(False, "", str(tmp_path / "c.pem"), str(tmp_path / "k.pem")).context()


def test_global_tls_flags() -> None:
    opts, rest = parse_globals(["--tlsverify", "--tlscacert", "/a", "--tlscert=/b", "--tlskey", "/c",
                                "-H", "tcp://h:2376", "ps"])
    assert rest == ["ps"] and opts.tlsverify and not opts.tls and opts.host == "tcp://h:2376"
    assert opts.tls_files == {"--tlscacert": "/a", "--tlscert": "/b", "--tlskey": "/c"}
    opts, _ = parse_globals(["--tls", "ps"])
    assert opts.tls and not opts.tlsverify
    opts, _ = parse_globals(["--tlsverify=false", "ps"])
    assert not opts.tlsverify


# --- the TLS half-close against a real TLS server ----------------------------------------------


def _serve_once(pki: Pki, sock: socket.socket, got: list[bytes]) -> None:
    """Answer one client: "early" at once, then, after the client's close_notify, "late"."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    conn, _ = sock.accept()
    with ctx.wrap_socket(conn, server_side=True) as tls:
        tls.sendall(b"early")
        while data := tls.recv(1024):
            got.append(data)
        tls.sendall(b"late")
        tls.unwrap()


def test_half_close_after_the_answer_arrived_loses_nothing(tmp_path: Path) -> None:
    # The daemon's output is already waiting in the socket when stdin ends: sending close_notify
    # must not read (and fail on) it; everything after it must still arrive.
    pki = make_pki(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        got: list[bytes] = []
        server = threading.Thread(target=_serve_once, args=(pki, srv, got), daemon=True)
        server.start()
        c = Client(f"tcp://127.0.0.1:{srv.getsockname()[1]}",
                   tls=TlsConfig(verify=True, ca=str(pki.ca), cert=str(pki.client_cert),
                                 key=str(pki.client_key)))
        conn = c._connect()
        try:
            conn.sendall(b"stdin")
            time.sleep(0.3)  # "early" is in the socket now, undecrypted
            conn.shutdown(socket.SHUT_WR)
            answer = b""
            while data := conn.recv(65536):
                answer += data
        finally:
            conn.close()
        server.join(10)
    assert b"".join(got) == b"stdin"
    assert answer == b"earlylate"


def test_tls_alerts_in_dockers_words() -> None:
    import ssl

    from berth.client.tls import describe_tls

    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    alert.reason = "TLSV1_ALERT_UNKNOWN_CA"
    assert describe_tls(alert) == "remote error: tls: unknown certificate authority"
    assert describe_tls(OSError("broken pipe")) == "broken pipe"
