"""`GET /images/search`: a term searched on the index it names, the answer filtered as Docker filters it.

Strategy: the request's parts are parsed first, purely and in Docker's words
(`parse_limit`, `SearchFilters.parse`), so a bad limit or filter is a 400
before any registry is asked. The registry client (berth.registry) sends the
v1 search and checks the answer; this module only picks the credentials
(the request's X-Registry-Auth, else the daemon's config file, read in a
worker thread), bounds the whole search in time (SEARCH_DEADLINE: each read
has the client's timeout, but an index could trickle its answer), filters,
clears `is_automated` (deprecated: Docker reports it false whatever the
index says, and a search for `is-automated=true` finds nothing) and keeps at
most the limit.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace

from berth.errors import InvalidArgument, Unavailable
from berth.registry import Credentials
from berth.registry import search as registry_search
from berth.registry.search import DEFAULT_LIMIT, MAX_LIMIT, SearchNotServed, SearchResult
from berth.services.distribution import Distribution

_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64_MAX = (1 << 63) - 1
FILTERS = ("is-automated", "is-official", "stars")
SEARCH_DEADLINE = 120.0  # seconds a whole search may take: an index that trickles its answer is cut off


def _atoi(text: str) -> int:
    """Go's strconv.Atoi, with its error text."""
    if not _GO_INT.fullmatch(text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValueError(f'strconv.Atoi: parsing "{text}": value out of range')
    return value


def parse_limit(text: str) -> int:
    """The `limit` parameter: none or 0 means DEFAULT_LIMIT; 1 to MAX_LIMIT as given.

    Raises:
        InvalidArgument: not an integer, negative, or over MAX_LIMIT.
    """
    if not text:
        return DEFAULT_LIMIT
    try:
        limit = _atoi(text)
    except ValueError as exc:
        raise InvalidArgument(f"invalid limit specified: {exc}") from None
    if limit < 0 or limit > MAX_LIMIT:
        raise InvalidArgument(f"limit {limit} is outside the range of [1, {MAX_LIMIT}]")
    return limit or DEFAULT_LIMIT


def _invalid(key: str, values: list[str] | None = None) -> InvalidArgument:
    shown = key if values is None else f"{key}={','.join(values)}"
    return InvalidArgument(f"invalid filter '{shown}'")


def _boolean(filters: dict[str, list[str]], key: str) -> bool | None:
    """A boolean filter as Docker's GetBoolOrDefault reads it: None when absent."""
    if key not in filters:
        return None
    values = set(filters[key])
    if not values:
        raise _invalid(key)
    false, true = bool(values & {"0", "false"}), bool(values & {"1", "true"})
    if (false and true) or len(values) != int(false) + int(true):
        raise _invalid(key, sorted(values))
    return true


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """The `filters` of a search: is-official=BOOL, is-automated=BOOL (deprecated), stars=N (at least N)."""

    is_official: bool | None = None
    is_automated: bool = False
    stars: int | None = None

    @classmethod
    def parse(cls, filters: dict[str, list[str]]) -> SearchFilters:
        """Docker's filters, checked in its words.

        Raises:
            InvalidArgument: an unknown filter ("invalid filter 'foo'"), a value that is not a boolean or a number.
        """
        for key in filters:
            if key not in FILTERS:
                raise InvalidArgument(f"invalid filter '{key}': a search filters by {', '.join(FILTERS)}")
        official = _boolean(filters, "is-official")
        automated = bool(_boolean(filters, "is-automated"))
        stars: int | None = None
        if "stars" in filters:
            stars = 0
            for text in filters["stars"]:
                try:
                    stars = max(stars, _atoi(text))
                except ValueError as exc:
                    raise InvalidArgument(f"invalid filter 'stars={text}': {exc}") from None
        return cls(official, automated, stars)

    def keep(self, result: SearchResult) -> bool:
        if self.is_official is not None and result.is_official != self.is_official:
            return False
        return self.stars is None or result.star_count >= self.stars


async def search(distribution: Distribution, term: str, limit: int, filters: SearchFilters,
                 creds: Credentials | None) -> list[SearchResult]:
    """What the index *term* names finds for it, filtered, at most *limit* results.

    Raises:
        InvalidArgument: no term, or one Docker refuses (a scheme, a bad index name).
        SearchNotServed (500): the index does not serve search (a v2 registry); Unauthenticated,
        Unavailable, RegistryDataError: as the registry client's search.
    """
    if not term:
        raise InvalidArgument("a search term is required: GET /images/search?term=TERM "
                              "(TERM or HOST[:PORT]/TERM)")
    index, query = registry_search.split_term(term)
    if filters.is_automated:
        return []
    creds = await asyncio.to_thread(distribution.credentials, index, creds)
    try:
        async with asyncio.timeout(SEARCH_DEADLINE):
            found = await distribution.client().search(index, query, limit, creds)
    except TimeoutError:
        raise Unavailable(f"registry {index} did not finish answering the search in {SEARCH_DEADLINE:.0f} s; "
                          "try again later") from None
    kept = [replace(r, is_automated=False) for r in found if filters.keep(r)]
    return kept[:limit]


__all__ = ["FILTERS", "SearchFilters", "SearchNotServed", "SearchResult", "parse_limit", "search"]
