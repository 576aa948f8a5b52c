"""Tests for berth.oci.reference.parse: table-driven."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.oci.reference import Reference, parse

HEX = "0123456789abcdef" * 4
DIGEST = "sha256:" + HEX

# text -> (name, tag, digest, str())
GOOD = [
    ("busybox", "busybox", "latest", None, "busybox:latest"),
    ("busybox:latest", "busybox", "latest", None, "busybox:latest"),
    ("busybox:1", "busybox", "1", None, "busybox:1"),
    ("docker.io/library/busybox:1", "busybox", "1", None, "busybox:1"),
    ("docker.io/library/busybox", "busybox", "latest", None, "busybox:latest"),
    ("index.docker.io/library/busybox:1.36", "busybox", "1.36", None, "busybox:1.36"),
    ("docker.io/user/app:1", "user/app", "1", None, "user/app:1"),
    ("index.docker.io/user/app", "user/app", "latest", None, "user/app:latest"),
    ("user/app:1", "user/app", "1", None, "user/app:1"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b", "t", None, "localhost:5000/a/b:t"),
    ("localhost:5000/a/b", "localhost:5000/a/b", "latest", None, "localhost:5000/a/b:latest"),
    ("localhost:5000/name", "localhost:5000/name", "latest", None, "localhost:5000/name:latest"),
    ("registry.example.com:443/team/app:v1.2-rc_3", "registry.example.com:443/team/app", "v1.2-rc_3",
     None, "registry.example.com:443/team/app:v1.2-rc_3"),
    ("Registry.Example.COM/app", "Registry.Example.COM/app", "latest", None,
     "Registry.Example.COM/app:latest"),
    ("[::1]:5000/app:x", "[::1]:5000/app", "x", None, "[::1]:5000/app:x"),
    ("localhost/app", "localhost/app", "latest", None, "localhost/app:latest"),
    ("a@" + DIGEST, "a", None, DIGEST, "a@" + DIGEST),
    ("a:t@" + DIGEST, "a", "t", DIGEST, "a:t@" + DIGEST),
    ("localhost:5000/a@" + DIGEST, "localhost:5000/a", None, DIGEST, "localhost:5000/a@" + DIGEST),
    ("docker.io/library/busybox@" + DIGEST, "busybox", None, DIGEST, "busybox@" + DIGEST),
    ("my-app.v2__x/sub-dir:TAG", "my-app.v2__x/sub-dir", "TAG", None, "my-app.v2__x/sub-dir:TAG"),
    ("a:" + "t" * 128, "a", "t" * 128, None, "a:" + "t" * 128),
]


@pytest.mark.parametrize("text,name,tag,digest,shown", GOOD, ids=[g[0][:40] for g in GOOD])
def test_parse_good(text: str, name: str, tag: str | None, digest: str | None, shown: str) -> None:
    ref = parse(text)
    assert ref == Reference(name, tag, digest)
    assert str(ref) == shown
    # Parsing what we show gives the same reference again.
    assert parse(str(ref)) == ref


BAD = [
    "",
    "Busybox",
    "busyBox:latest",
    "user/App",
    "busybox:-bad",
    "busybox:.bad",
    "busybox:",
    "busybox:a/b",
    "busybox:has space",
    "busybox:" + "t" * 129,
    "busybox@sha256:abc",
    "busybox@sha256:" + HEX.upper(),
    "busybox@md5:" + HEX,
    "busybox@",
    "-busybox",
    "busybox-",
    "a//b",
    "/busybox",
    "busybox/",
    "a..b",
    "a_-b",
    "bad host/app",
    "busy box",
]


@pytest.mark.parametrize("text", BAD)
def test_parse_bad(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse(text)


def test_uppercase_message_says_lowercase() -> None:
    with pytest.raises(InvalidArgument, match="lowercase"):
        parse("Busybox:1")


def test_port_is_not_a_tag() -> None:
    ref = parse("host:5000/name")
    assert ref.name == "host:5000/name"
    assert ref.tag == "latest"


def test_default_tag() -> None:
    assert parse("busybox", default_tag=None) == Reference("busybox", None, None)
    assert parse("busybox", default_tag="edge").tag == "edge"
    assert parse("busybox:1", default_tag=None).tag == "1"
    # A digest alone gets no default tag.
    assert parse("busybox@" + DIGEST).tag is None


@pytest.mark.parametrize("text", ["busybox\n", "busybox:latest\n", "busybox@" + DIGEST + "\n"])
def test_trailing_newline_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse(text)


def test_non_ascii_tag_refused() -> None:
    with pytest.raises(InvalidArgument):
        parse("busybox:t\u00e4g")


def test_library_prefix_is_shortened() -> None:
    assert parse("library/busybox:1") == parse("busybox:1")
