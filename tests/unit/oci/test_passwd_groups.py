"""oci.passwd.resolve_groups: `--group-add` names and numbers against an image's /etc/group."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.oci import passwd

GROUP = "root:x:0:\ndaemon:x:1:\nwheel:x:10:bob\naudio:x:29:\n"


@pytest.mark.parametrize("names, gids", [
    ([], ()),
    (["audio"], (29,)),
    (["29"], (29,)),                 # a listed number
    (["4242"], (4242,)),             # a number /etc/group does not list: as given
    (["wheel", "1234", "audio", "10"], (10, 1234, 29)),  # order kept, each once
    ([" daemon "], (1,)),
])
def test_resolve_groups(names, gids) -> None:
    assert passwd.resolve_groups(names, GROUP) == gids


def test_unknown_name_has_dockers_words() -> None:
    with pytest.raises(InvalidArgument, match="^Unable to find group nosuch: no matching entries in group file$"):
        passwd.resolve_groups(["audio", "nosuch"], GROUP)


def test_no_group_file() -> None:
    assert passwd.resolve_groups(["7"], None) == (7,)
    with pytest.raises(InvalidArgument, match="Unable to find group audio"):
        passwd.resolve_groups(["audio"], None)


def test_out_of_range() -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        passwd.resolve_groups([str(2**31)], GROUP)
