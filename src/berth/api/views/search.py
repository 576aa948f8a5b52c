"""`GET /images/search`'s answer: Docker's ImageSearchResponseItem list.

Strategy: a pure function of berth.registry.search's typed results, the fields named and ordered as
the Engine API's spec has them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from berth.services.search import SearchResult


def results(found: Iterable[SearchResult]) -> list[dict[str, Any]]:
    """The list of repositories a search found."""
    return [{"description": r.description, "is_official": r.is_official, "is_automated": r.is_automated,
             "name": r.name, "star_count": r.star_count} for r in found]
