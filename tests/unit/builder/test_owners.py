"""Tests for berth.builder.owners: --chown values turned into numeric ids through the image's files."""

from __future__ import annotations

import pytest
from berth_builder_conftest import GROUP, PASSWD

from berth.builder.owners import Owner, resolve_owner
from berth.errors import InvalidArgument


@pytest.mark.parametrize("chown,expected", [
    ("bob", Owner(1000, 1001)), ("1000", Owner(1000, 1000)), ("bob:staff", Owner(1000, 50)),
    ("bob:7", Owner(1000, 7)), ("7:staff", Owner(7, 50)), ("0:0", Owner(0, 0)), ("", Owner(0, 0)),
    ("daemon", Owner(2, 2)),
])
def test_resolve_owner(chown: str, expected: Owner) -> None:
    assert resolve_owner(chown, PASSWD, GROUP) == expected


@pytest.mark.parametrize("chown,message", [
    ("alice", "can't find uid for user alice: no such user: alice"),
    ("bob:wheel", "can't find gid for group wheel: no such group: wheel"),
    ("bob:", "invalid chown string format"),
    (":1", "invalid chown string format"),
    ("1:2:3", "invalid chown string format"),
    ("4294967296", "out of range"),
])
def test_resolve_owner_errors(chown: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        resolve_owner(chown, PASSWD, GROUP)
    with pytest.raises(InvalidArgument):
        resolve_owner("bob", None, None)
