"""Parsing a registry's tag list (pull --all-tags), including hostile answers."""

from __future__ import annotations

import pytest

from berth.registry.base import RegistryDataError
from berth.registry.tagslist import next_page, parse_page


def test_tags_of_a_page() -> None:
    assert parse_page(b'{"name":"r","tags":["1","latest","v1.2_x"]}', "w") == ["1", "latest", "v1.2_x"]
    assert parse_page(b'{"name":"r","tags":null}', "w") == []


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'{"tags":"latest"}', b'{"tags":[1]}',
                                  b'{"tags":["../../etc"]}', b'{"tags":["-x"]}', b'{"tags":["' + b"a" * 200 + b'"]}',
                                  b"[" * 100000])
def test_hostile_pages_are_refused(body: bytes) -> None:
    with pytest.raises(RegistryDataError):
        parse_page(body, "the tags of r")


def test_next_page_stays_on_the_repository() -> None:
    assert next_page('</v2/lib/r/tags/list?last=b&n=100>; rel="next"', "lib/r") == "/v2/lib/r/tags/list?n=100&last=b"
    assert next_page("", "lib/r") is None
    assert next_page('</v2/lib/r/tags/list?n=100>; rel="next"', "lib/r") is None
    with pytest.raises(RegistryDataError):
        next_page('</v2/other/tags/list?last=b>; rel="next"', "lib/r")
    with pytest.raises(RegistryDataError):
        next_page('<file:///v2/lib/r/tags/list?last=b>; rel="next"', "lib/r")
