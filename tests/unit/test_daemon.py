"""Tests for berthd's option checks: who may listen where, TLS files, sizes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from berth.api.wiring import DaemonConfig
from berth.daemon import parse_args, parse_size, plan_listeners, tls_context


def test_unix_and_loopback_tcp_are_allowed_without_tls() -> None:
    plan = plan_listeners(("unix:///run/b.sock", "tcp://127.0.0.1:2375", "tcp://localhost:2375",
                           "tcp://[::1]:2375", "tcp://127.8.9.10:2375", "tcp://:2375"), False, False)
    assert [p.kind for p in plan] == ["unix", "tcp", "tcp", "tcp", "tcp", "tcp"]
    assert plan[0].address == "/run/b.sock" and not plan[0].warning
    assert plan[5].address == "127.0.0.1"
    for p in plan[1:]:
        assert not p.tls and "any local user and any process" in p.warning


@pytest.mark.parametrize("host", ["tcp://0.0.0.0:2375", "tcp://[::]:2375", "tcp://10.1.2.3:2375",
                                  "tcp://myhost:2375", "tcp://192.0.2.1:2376"])
@pytest.mark.parametrize("tls", [False, True])
def test_non_loopback_tcp_needs_tlsverify(host: str, tls: bool) -> None:
    with pytest.raises(SystemExit) as exc:
        plan_listeners((host,), tls, False)
    message = str(exc.value)
    assert "refusing to listen" in message and "--tlsverify" in message and "--tlscacert" in message


def test_non_loopback_tcp_with_tlsverify_is_tls() -> None:
    (plan,) = plan_listeners(("tcp://0.0.0.0:2376",), False, True)
    assert plan.tls and plan.port == 2376 and not plan.warning


def test_tls_without_verify_on_loopback_warns() -> None:
    (plan,) = plan_listeners(("tcp://127.0.0.1:2376",), True, False)
    assert plan.tls and "no client verification" in plan.warning


@pytest.mark.parametrize("host", ["tcp://127.0.0.1", "tcp://127.0.0.1:notaport", "http://127.0.0.1:80", "fd://"])
def test_bad_hosts_are_refused(host: str) -> None:
    with pytest.raises(SystemExit):
        plan_listeners((host,), False, False)


def test_sizes() -> None:
    assert parse_size("16MiB") == 16 * 1024 * 1024
    assert parse_size("16m") == parse_size("16MB") == 16 * 1024 * 1024
    assert parse_size("1048576") == 1 << 20
    assert parse_size("2k") == 2048 and parse_size("1GiB") == 1 << 30
    for bad in ("", "0", "-1", "12 parsecs", "1.5m"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


def test_flags() -> None:
    args = parse_args(["--tlsverify", "--tlscacert", "/c", "--max-json-body", "1MiB", "--api-body-timeout", "5"])
    assert args.tlsverify and args.tlscacert == "/c" and args.max_json_body == 1 << 20
    assert args.api_body_timeout == 5.0 and args.api_idle_timeout == 300.0 and args.api_head_timeout == 60.0


def test_missing_tls_files_are_a_clear_exit(tmp_path: Path) -> None:
    config = DaemonConfig(tls=True, tls_verify=True, tls_ca=str(tmp_path / "ca.pem"),
                          tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem"))
    with pytest.raises(SystemExit) as exc:
        tls_context(config)
    assert "cannot load the TLS certificate" in str(exc.value) and "--tlscert" in str(exc.value)
