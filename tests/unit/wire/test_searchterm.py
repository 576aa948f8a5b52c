"""Which index a search term names, as Docker splits it."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.wire.searchterm import split_term


@pytest.mark.parametrize("term, expected", [
    ("busybox", ("docker.io", "busybox")),
    ("user/app", ("docker.io", "user/app")),
    ("library/busybox", ("docker.io", "busybox")),
    ("docker.io/library/busybox", ("docker.io", "busybox")),
    ("index.docker.io/user/app", ("docker.io", "user/app")),
    ("127.0.0.1:5000/busy", ("127.0.0.1:5000", "busy")),
    ("127.0.0.1:5000/library/busy", ("127.0.0.1:5000", "library/busy")),
    ("localhost/a/b", ("localhost", "a/b")),
    ("registry.example.com/", ("registry.example.com", "")),
    ("127.0.0.1:5000", ("docker.io", "127.0.0.1:5000")),  # no slash: a query on Docker Hub, as Docker
    ("", ("docker.io", "")),
])
def test_split(term: str, expected: tuple[str, str]) -> None:
    assert split_term(term) == expected


@pytest.mark.parametrize("term, words", [
    ("http://127.0.0.1:5000/busy", "should not have a scheme"),
    ("-bad.example/x", "Cannot begin or end with a hyphen"),
    ("bad.example-/x", "Cannot begin or end with a hyphen"),
])
def test_refused(term: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        split_term(term)
