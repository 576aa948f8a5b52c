"""The search request's limit and filters, checked in Docker's words before any registry is asked."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.registry.search import SearchResult
from berth.services.search import SearchFilters, parse_limit


@pytest.mark.parametrize("text, limit", [("", 25), ("0", 25), ("1", 1), ("100", 100), ("+7", 7)])
def test_limit(text: str, limit: int) -> None:
    assert parse_limit(text) == limit


@pytest.mark.parametrize("text, message", [
    ("101", "limit 101 is outside the range of [1, 100]"),
    ("-1", "limit -1 is outside the range of [1, 100]"),
    ("abc", 'invalid limit specified: strconv.Atoi: parsing "abc": invalid syntax'),
    ("1.5", 'invalid limit specified: strconv.Atoi: parsing "1.5": invalid syntax'),
    (" 5", 'invalid limit specified: strconv.Atoi: parsing " 5": invalid syntax'),
    ("9" * 30, "value out of range"),
])
def test_bad_limit(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]").replace("+", r"\+")):
        parse_limit(text)


def test_filters_parse() -> None:
    assert SearchFilters.parse({}) == SearchFilters()
    assert SearchFilters.parse({"is-official": ["true"]}) == SearchFilters(is_official=True)
    assert SearchFilters.parse({"is-official": ["0"]}) == SearchFilters(is_official=False)
    assert SearchFilters.parse({"is-automated": ["true"]}) == SearchFilters(is_automated=True)
    assert SearchFilters.parse({"stars": ["2", "4"]}) == SearchFilters(stars=4)
    assert SearchFilters.parse({"stars": []}) == SearchFilters(stars=0)


@pytest.mark.parametrize("filters, message", [
    ({"foo": ["bar"]}, "invalid filter 'foo'"),
    ({"is-official": ["maybe"]}, "invalid filter 'is-official=maybe'"),
    ({"is-official": ["true", "false"]}, "invalid filter 'is-official=false,true'"),
    ({"is-official": []}, "invalid filter 'is-official'"),
    ({"is-automated": ["yes"]}, "invalid filter 'is-automated=yes'"),
    ({"is-automated": ["1", "true"]}, "invalid filter 'is-automated=1,true'"),  # as Docker's GetBoolOrDefault
    ({"stars": ["abc"]}, "invalid filter 'stars=abc': strconv.Atoi: parsing \"abc\": invalid syntax"),
])
def test_bad_filters_in_dockers_words(filters: dict[str, list[str]], message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        SearchFilters.parse(filters)
    assert str(info.value).startswith(message)


def test_keep() -> None:
    official, plain = SearchResult("o", star_count=5, is_official=True), SearchResult("p", star_count=2)
    assert [r.name for r in (official, plain) if SearchFilters(is_official=True).keep(r)] == ["o"]
    assert [r.name for r in (official, plain) if SearchFilters(is_official=False).keep(r)] == ["p"]
    assert [r.name for r in (official, plain) if SearchFilters(stars=3).keep(r)] == ["o"]
    assert [r.name for r in (official, plain) if SearchFilters(stars=-3).keep(r)] == ["o", "p"]
