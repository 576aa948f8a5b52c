"""Unit tests for berth.oci.passwd (Docker's User field)."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.oci.passwd import parse_group, parse_passwd, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
# a comment
broken line
bob:x:1000:1000:bob:/home/bob:/bin/sh
alice:x:1001:100::/home/alice:/bin/sh
"""

GROUP = """root:x:0:
daemon:x:1:
users:x:100:
wheel:x:10:bob,alice
audio:x:29:bob
bob:x:1000:
staff:x:50: alice , bob
"""


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (0, 0, (0,))),
        ("root", (0, 0, (0,))),
        ("0", (0, 0, (0,))),
        ("bob", (1000, 1000, (1000, 10, 29, 50))),
        ("1000", (1000, 1000, (1000, 10, 29, 50))),
        ("alice", (1001, 100, (100, 10, 50))),
        ("bob:audio", (1000, 29, (29,))),
        ("bob:7", (1000, 7, (7,))),
        ("1000:1000", (1000, 1000, (1000,))),
        ("1000:wheel", (1000, 10, (10,))),
        ("4242", (4242, 0, (0,))),
        ("4242:4343", (4242, 4343, (4343,))),
        ("4242:users", (4242, 100, (100,))),
    ],
)
def test_forms(user: str, expected: tuple[int, int, tuple[int, ...]]) -> None:
    assert resolve_user(user, PASSWD, GROUP) == expected


def test_unknown_user() -> None:
    with pytest.raises(InvalidArgument, match="unable to find user carol: no matching entries in passwd file"):
        resolve_user("carol", PASSWD, GROUP)


def test_unknown_group() -> None:
    with pytest.raises(InvalidArgument, match="unable to find group gamers"):
        resolve_user("bob:gamers", PASSWD, GROUP)


def test_missing_files() -> None:
    assert resolve_user("", None, None) == (0, 0, (0,))
    assert resolve_user("123:456", None, None) == (123, 456, (456,))
    with pytest.raises(InvalidArgument, match="unable to find user bob"):
        resolve_user("bob", None, None)
    with pytest.raises(InvalidArgument, match="unable to find group wheel"):
        resolve_user("bob:wheel", PASSWD, None)
    assert resolve_user("bob", PASSWD, None) == (1000, 1000, (1000,))


def test_out_of_range_and_malformed() -> None:
    with pytest.raises(InvalidArgument):
        resolve_user("4294967296", PASSWD, GROUP)
    with pytest.raises(InvalidArgument):
        resolve_user("4242:4294967296", PASSWD, GROUP)
    with pytest.raises(InvalidArgument):
        resolve_user("bob:", PASSWD, GROUP)
    with pytest.raises(InvalidArgument, match="unable to find user -1"):
        resolve_user("-1", PASSWD, GROUP)


def test_parsers_skip_junk() -> None:
    assert [e.name for e in parse_passwd(PASSWD)] == ["root", "daemon", "bob", "alice"]
    staff = next(g for g in parse_group(GROUP) if g.name == "staff")
    assert staff.members == ("alice", "bob")
    assert parse_group("bad:x:notanumber:\nok:x:5")[0].gid == 5
