"""berth.wire.registrynames: which registry serves a name, and how it is reached."""

from __future__ import annotations

import pytest

from berth.wire import registrynames as names

SPLITS = [
    ("busybox", ("docker.io", "library/busybox")),
    ("user/app", ("docker.io", "user/app")),
    ("user/app/sub", ("docker.io", "user/app/sub")),
    ("127.0.0.1:5000/a/b", ("127.0.0.1:5000", "a/b")),
    ("localhost/x", ("localhost", "x")),
    ("localhost:5000/x", ("localhost:5000", "x")),
    ("ghcr.io/owner/image", ("ghcr.io", "owner/image")),
    ("quay.io/x", ("quay.io", "x")),
    ("docker.io/busybox", ("docker.io", "library/busybox")),
    ("index.docker.io/user/app", ("docker.io", "user/app")),
    ("[::1]:5000/a", ("[::1]:5000", "a")),
    ("registry/app", ("docker.io", "registry/app")),  # no dot, colon or localhost: a Hub user
]


@pytest.mark.parametrize("name, expected", SPLITS)
def test_registry_and_repo(name: str, expected: tuple[str, str]) -> None:
    assert names.registry_and_repo(name) == expected


@pytest.mark.parametrize("registry, host", [
    ("docker.io", "registry-1.docker.io"),
    ("index.docker.io", "registry-1.docker.io"),
    ("127.0.0.1:5000", "127.0.0.1:5000"),
    ("ghcr.io", "ghcr.io"),
])
def test_endpoint_host(registry: str, host: str) -> None:
    assert names.endpoint_host(registry) == host


@pytest.mark.parametrize("registry, repo, shown", [
    ("docker.io", "library/busybox", "busybox"),
    ("docker.io", "user/app", "user/app"),
    ("127.0.0.1:5000", "a/b", "127.0.0.1:5000/a/b"),
])
def test_display_name(registry: str, repo: str, shown: str) -> None:
    assert names.display_name(registry, repo) == shown


@pytest.mark.parametrize("registry, local", [
    ("localhost", True), ("localhost:5000", True), ("LOCALHOST:1", True),
    ("127.0.0.1", True), ("127.0.0.1:5000", True), ("127.8.9.10:443", True),
    ("[::1]:5000", True), ("::1", True),
    ("docker.io", False), ("10.0.0.1:5000", False), ("128.0.0.1", False),
    ("localhost.example.com", False), ("[::2]:5000", False),
])
def test_is_local(registry: str, local: bool) -> None:
    assert names.is_local(registry) is local


@pytest.mark.parametrize("registry, listed, insecure", [
    ("myreg:5000", ("myreg:5000",), True),
    ("myreg:5000", ("myreg",), True),  # a host entry covers every port
    ("myreg:5000", ("other:5000",), False),
    ("10.1.2.3:5000", ("10.0.0.0/8",), True),
    ("11.1.2.3:5000", ("10.0.0.0/8",), False),
    ("myreg:5000", ("http://myreg:5000/",), True),
    ("ghcr.io", (), False),
    ("127.0.0.1:5000", (), True),  # loopback is insecure by default
    ("myreg", ("not a cidr/x",), False),
])
def test_is_insecure(registry: str, listed: tuple[str, ...], insecure: bool) -> None:
    assert names.is_insecure(registry, listed) is insecure


def test_loopback_can_be_made_secure() -> None:
    assert names.is_insecure("127.0.0.1:5000", (), local_is_insecure=False) is False
    assert names.is_insecure("127.0.0.1:5000", ("127.0.0.0/8",), local_is_insecure=False) is True


def test_host_part() -> None:
    assert names.host_part("h:5000") == "h"
    assert names.host_part("[::1]:5000") == "::1"
    assert names.host_part("fe80::1") == "fe80::1"
