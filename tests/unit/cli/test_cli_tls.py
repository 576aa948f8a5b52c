"""The client's TLS settings: the docker CLI's flags and environment, read the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth import client as cl
from berth.cli.main import parse_globals
from berth.errors import InvalidArgument


def test_plain_unless_asked() -> None:
    assert cl.tls_config({}) is None
    assert cl.tls_config({"DOCKER_CERT_PATH": "/x"}) is None
    assert cl.tls_config({"DOCKER_TLS_VERIFY": ""}) is None


def test_env_verify_uses_the_cert_path(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    cfg = cl.tls_config({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    assert cfg == cl.TlsConfig(True, str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))


def test_default_client_files_only_when_both_exist(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    cfg = cl.tls_config({"DOCKER_CERT_PATH": str(tmp_path)}, verify=True)
    assert cfg is not None and (cfg.cert, cfg.key) == ("", "")


def test_flags_win_and_tls_alone_does_not_verify(tmp_path: Path) -> None:
    cfg = cl.tls_config({"DOCKER_CERT_PATH": str(tmp_path)}, tls=True, ca="/c/ca", cert="/c/c", key="/c/k")
    assert cfg == cl.TlsConfig(False, "/c/ca", "/c/c", "/c/k")


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="CA certificate"):
        cl.TlsConfig(True, str(tmp_path / "nope.pem")).context()
    with pytest.raises(InvalidArgument, match="client certificate"):
        cl.TlsConfig(False, "", str(tmp_path / "c.pem"), str(tmp_path / "k.pem")).context()


def test_global_tls_flags() -> None:
    opts, rest = parse_globals(["--tlsverify", "--tlscacert", "/a", "--tlscert=/b", "--tlskey", "/c",
                                "-H", "tcp://h:2376", "ps"])
    assert rest == ["ps"] and opts.tlsverify and not opts.tls and opts.host == "tcp://h:2376"
    assert opts.tls_files == {"--tlscacert": "/a", "--tlscert": "/b", "--tlskey": "/c"}
    opts, _ = parse_globals(["--tls", "ps"])
    assert opts.tls and not opts.tlsverify
    opts, _ = parse_globals(["--tlsverify=false", "ps"])
    assert not opts.tlsverify
