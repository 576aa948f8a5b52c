"""Unit tests for berth.oci.capabilities (Docker's cap-add/cap-drop rules)."""

from __future__ import annotations

import pytest

from berth.errors import FailedPrecondition, InvalidArgument
from berth.oci.capabilities import (
    ALL_CAPABILITIES,
    CAPABILITY_NUMBERS,
    DEFAULT_CAPABILITIES,
    bitmask,
    effective,
    from_bitmask,
    normalize,
)


def test_full_list_is_numbered_like_the_kernel() -> None:
    assert len(ALL_CAPABILITIES) == 41
    assert CAPABILITY_NUMBERS["CAP_CHOWN"] == 0
    assert CAPABILITY_NUMBERS["CAP_NET_RAW"] == 13
    assert CAPABILITY_NUMBERS["CAP_SYS_ADMIN"] == 21
    assert CAPABILITY_NUMBERS["CAP_SETFCAP"] == 31
    assert CAPABILITY_NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40
    assert len(set(ALL_CAPABILITIES)) == len(ALL_CAPABILITIES)


def test_default_set_bitmask_matches_docker() -> None:
    assert len(DEFAULT_CAPABILITIES) == 14
    assert bitmask(DEFAULT_CAPABILITIES) == 0xA80425FB


@pytest.mark.parametrize("name", ["net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin", " Net_Admin "])
def test_normalize_forms(name: str) -> None:
    assert normalize(name) == "CAP_NET_ADMIN"


def test_normalize_all() -> None:
    assert normalize("all") == "ALL"


def test_unknown_name_is_invalid_and_named() -> None:
    with pytest.raises(InvalidArgument, match="CAP_BOGUS"):
        normalize("CAP_BOGUS")
    with pytest.raises(InvalidArgument, match="fly"):
        effective(["fly"], [], False)
    with pytest.raises(InvalidArgument, match="nope"):
        effective([], ["nope"], False)


def test_unknown_name_rejected_even_when_privileged() -> None:
    with pytest.raises(InvalidArgument):
        effective(["bogus"], [], True)


def test_default() -> None:
    caps = effective([], [], False)
    assert set(caps) == set(DEFAULT_CAPABILITIES)
    assert caps == sorted(caps, key=CAPABILITY_NUMBERS.__getitem__)


def test_add_and_drop() -> None:
    caps = effective(["net_admin", "SYS_PTRACE"], ["chown", "CAP_KILL"], False)
    assert "CAP_NET_ADMIN" in caps and "CAP_SYS_PTRACE" in caps
    assert "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    assert len(caps) == 14


def test_add_wins_over_drop() -> None:
    assert "CAP_NET_ADMIN" in effective(["NET_ADMIN"], ["NET_ADMIN"], False)
    assert "CAP_CHOWN" in effective(["CHOWN"], ["CHOWN"], False)


def test_duplicates_collapse() -> None:
    caps = effective(["chown", "CAP_CHOWN", "Chown"], [], False)
    assert caps.count("CAP_CHOWN") == 1


def test_add_all_minus_drop() -> None:
    caps = effective(["ALL"], ["sys_admin"], False)
    assert len(caps) == len(ALL_CAPABILITIES) - 1
    assert "CAP_SYS_ADMIN" not in caps


def test_add_all_and_drop_all_gives_all() -> None:
    assert effective(["all"], ["all"], False) == list(ALL_CAPABILITIES)


def test_drop_all_keeps_only_adds() -> None:
    assert effective(["NET_BIND_SERVICE", "chown"], ["ALL"], False) == ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
    assert effective([], ["all"], False) == []


def test_privileged_gets_everything() -> None:
    assert effective([], ["ALL"], True) == list(ALL_CAPABILITIES)


def test_available_limits_all_and_privileged() -> None:
    host = [c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE"]
    assert effective([], [], True, available=host) == host
    assert "CAP_SYS_RESOURCE" not in effective(["ALL"], [], False, available=host)
    assert set(effective([], [], False, available=host)) == set(DEFAULT_CAPABILITIES)


def test_explicit_add_of_unavailable_is_precondition() -> None:
    host = [c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE"]
    with pytest.raises(FailedPrecondition, match="CAP_SYS_RESOURCE"):
        effective(["sys_resource"], [], False, available=host)


def test_bitmask_roundtrip() -> None:
    assert from_bitmask(bitmask(DEFAULT_CAPABILITIES)) == effective([], [], False)
    assert from_bitmask(0x1FFFEFFFFFF) == [c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE"]
    assert from_bitmask(1 << 63) == []
    with pytest.raises(InvalidArgument):
        bitmask(["ALL"])
