"""A v1 search answer, parsed: good ones, and what a hostile index may send (huge, not JSON, wrong types)."""

from __future__ import annotations

import json

import pytest

from berth.registry.base import RegistryDataError
from berth.registry.search import (
    MAX_BODY,
    MAX_ROWS,
    SearchNotServed,
    SearchResult,
    not_served,
    parse_results,
    search_path,
)


def _answer(rows: object) -> bytes:
    return json.dumps({"num_results": 1, "query": "q", "results": rows}).encode()


def test_good_answer() -> None:
    body = _answer([{"name": "a/b", "description": "d", "star_count": 3, "is_official": True, "is_automated": True},
                    {"name": "c"}])
    assert parse_results(body, "r") == [SearchResult("a/b", "d", 3, True, True), SearchResult("c")]


def test_nulls_read_as_zero_values() -> None:
    body = _answer([{"name": "a", "description": None, "star_count": None, "is_official": None,
                     "is_automated": None}])
    assert parse_results(body, "r") == [SearchResult("a")]


def test_no_results_field_is_no_results() -> None:
    assert parse_results(b'{"num_results": 0}', "r") == []


@pytest.mark.parametrize("row", [
    "a string", 7, None, [], {},
    {"name": 5}, {"name": ""}, {"name": "a b"}, {"name": "a\x1b[2Jb"}, {"name": "x" * 300},
    {"name": "a", "description": 5}, {"name": "a", "description": ["x"]},
    {"name": "a", "star_count": "5"}, {"name": "a", "star_count": 1.5}, {"name": "a", "star_count": True},
    {"name": "a", "star_count": -1}, {"name": "a", "star_count": 1 << 70},
    {"name": "a", "is_official": "true"}, {"name": "a", "is_automated": 1},
])
def test_rows_with_wrong_fields_are_skipped(row: object) -> None:
    body = _answer([row, {"name": "good"}])
    assert parse_results(body, "r") == [SearchResult("good")]


@pytest.mark.parametrize("body", [
    b"", b"<html>not found</html>", b"\xff\xfe", b"[1, 2]", b'"text"', b"null",
    b'{"results": {"name": "a"}}', b'{"results": "a"}',
    b"[" * 100000 + b"]" * 100000,  # nesting deeper than any parser should follow
    b'{"results": [{"name": "a", "star_count": ' + b"9" * 5000 + b"}]}",  # a number Python will not convert
])
def test_answers_that_are_not_search_results_are_refused(body: bytes) -> None:
    try:
        assert parse_results(body, "r") == []  # a number too long to read, say, is one bad row at most
    except RegistryDataError as exc:
        assert "registry r answered the search with" in str(exc)


def test_huge_answer_is_refused() -> None:
    body = _answer([{"name": "a", "description": "x" * MAX_BODY}])
    with pytest.raises(RegistryDataError, match="more than"):
        parse_results(body, "r")


def test_rows_past_the_bound_are_ignored() -> None:
    found = parse_results(_answer([{"name": f"r{i}"} for i in range(MAX_ROWS + 10)]), "r")
    assert [r.name for r in found] == [f"r{i}" for i in range(MAX_ROWS)]


def test_long_descriptions_are_cut() -> None:
    assert parse_results(_answer([{"name": "a", "description": "d" * 5000}]), "r")[0].description == "d" * 4096


def test_search_path() -> None:
    assert search_path("127.0.0.1:5000", "a b/c", 25) == "/v1/search?q=a+b%2Fc&n=25"
    assert search_path("docker.io", "busybox", 3) == "https://index.docker.io/v1/search?q=busybox&n=3"


def test_not_served_says_what_happened_in_dockers_words() -> None:
    exc = not_served("127.0.0.1:5000", 404, "")
    assert isinstance(exc, SearchNotServed)
    assert str(exc).startswith("Unexpected status code 404: registry 127.0.0.1:5000 does not serve the v1 search")
    assert str(not_served("r", 418, "teapot")).startswith("Unexpected status code 418")
