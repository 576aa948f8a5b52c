"""Docker's registry search (`docker search`): which index a term names, and what the index answered.

Strategy: pure. A search term names its index the way Docker splits it
(`split_term`, from berth.wire.searchterm, which the CLI shares). The index
is asked with the v1 search API (Docker Hub's at index.docker.io),
`GET /v1/search?q=<query>&n=<limit>` (`search_path`), whose answer is
`{"num_results", "query", "results": [{"name", "description", "star_count",
"is_official", "is_automated"}]}`.

The answer comes from a server berth does not trust: `parse_results` takes at
most `MAX_BODY` bytes (the client stops reading there), refuses what is not a
JSON object with a list of results (RegistryDataError), keeps at most
`MAX_ROWS` rows, and skips a row whose fields have the wrong types or whose
name is not a printable repository name, rather than fail the whole search.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

from berth.errors import BerthError
from berth.registry.base import RegistryDataError
from berth.wire import registrynames as names
from berth.wire.searchterm import split_term

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 25  # results asked for when the request names no limit (or 0), as Docker
MAX_LIMIT = 100  # the most results one search may ask for, as Docker
MAX_BODY = 1 << 20  # bytes of a search answer read at most
MAX_ROWS = 1000  # rows of one answer looked at, whatever the index sent
MAX_NAME = 255  # characters of a repository name (Docker's limit on a name)
MAX_DESCRIPTION = 4096  # characters of a description kept (longer ones are cut)
SCOPE = "registry:catalog:search"  # the token scope Docker asks for a search
HUB_INDEX = "https://index.docker.io"  # Docker Hub's search is served here, not by registry-1.docker.io


class SearchNotServed(BerthError):
    """The index answered the search with a status other than 200 (HTTP 500, as Docker's "Unexpected status
    code"): a distribution (v2) registry, for one, does not serve the v1 search API at all."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One repository an index found."""

    name: str
    description: str = ""
    star_count: int = 0
    is_official: bool = False
    is_automated: bool = False


def search_path(index: str, query: str, limit: int) -> str:
    """The v1 search request for *index*: a path on its endpoint, or Docker Hub's index URL."""
    path = "/v1/search?" + urllib.parse.urlencode({"q": query, "n": str(limit)})
    return HUB_INDEX + path if index == names.DOCKER_HUB else path


def not_served(index: str, status: int, detail: str) -> SearchNotServed:
    """The error for an index that answered *status* (not 200, 401 or 403) to a search."""
    said = f" ({detail})" if detail else ""
    if status in (404, 405):
        return SearchNotServed(
            f"Unexpected status code {status}: registry {index} does not serve the v1 search API "
            f"(GET /v1/search){said}; distribution (v2) registries such as docker-registry offer no search: "
            f"search an index that has one, or list tags with the registry's own tools")
    return SearchNotServed(f"Unexpected status code {status}: registry {index} refused the search{said}")


def parse_results(body: bytes, index: str) -> list[SearchResult]:
    """The results in a v1 search answer; rows that do not fit are skipped (and logged).

    Raises:
        RegistryDataError: the body is over MAX_BODY, not JSON, or not an object with a "results" list.
    """
    what = f"registry {index} answered the search with"
    if len(body) > MAX_BODY:
        raise RegistryDataError(f"{what} more than {MAX_BODY} bytes, more than berth reads for a search")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RegistryDataError(f"{what} something that is not JSON ({_short(exc)}): "
                                "error decoding registry search results") from None
    if not isinstance(doc, dict):
        raise RegistryDataError(f"{what} JSON that is not an object: error decoding registry search results")
    rows = doc.get("results")
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise RegistryDataError(f'{what} a "results" that is not a list: error decoding registry search results')
    out: list[SearchResult] = []
    skipped = 0
    for row in rows[:MAX_ROWS]:
        result = _result(row)
        if result is None:
            skipped += 1
        else:
            out.append(result)
    if skipped or len(rows) > MAX_ROWS:
        log.warning("search on registry %s: %d result(s) with wrong fields skipped, %d past the first %d ignored",
                    index, skipped, max(0, len(rows) - MAX_ROWS), MAX_ROWS)
    return out


def _result(row: Any) -> SearchResult | None:
    """One row of the answer, or None when a field has the wrong type or the name is not a name."""
    if not isinstance(row, dict):
        return None
    name, description = row.get("name"), row.get("description")
    stars = row.get("star_count", 0)
    official, automated = row.get("is_official", False), row.get("is_automated", False)
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not name.isprintable() or " " in name:
        return None
    if description is None:
        description = ""
    if not isinstance(description, str):
        return None
    if stars is None:
        stars = 0
    if isinstance(stars, bool) or not isinstance(stars, int) or not 0 <= stars < 1 << 63:
        return None
    if official is None:
        official = False
    if automated is None:
        automated = False
    if not isinstance(official, bool) or not isinstance(automated, bool):
        return None
    return SearchResult(name, description[:MAX_DESCRIPTION], stars, official, automated)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:119] + "…"


__all__ = ["DEFAULT_LIMIT", "MAX_BODY", "MAX_LIMIT", "SCOPE", "SearchNotServed", "SearchResult",
           "not_served", "parse_results", "search_path", "split_term"]
