"""The answer to `GET /v2/<repo>/tags/list` (pull --all-tags): pure parsing, no I/O.

A registry may be hostile: the page's size is capped by the caller, every tag
must be a valid tag (others are refused, not skipped, since a pull of "every
tag" that silently skipped some would lie), and the `Link` header's next page
must stay on the same repository's tags/list path of the same registry.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, quote, urlsplit

from berth.registry.base import RegistryDataError

MAX_TAGS = 1000  # pull --all-tags of more is refused: say so rather than fetch without end
PAGE = 100
MAX_PAGES = 2 * MAX_TAGS // PAGE
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def parse_page(data: bytes, what: str) -> list[str]:
    """The tags of one page; RegistryDataError when it is not the protocol's JSON."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise RegistryDataError(f"{what}: the registry's answer is not JSON") from None
    tags = doc.get("tags") if isinstance(doc, dict) else None
    if tags is None and isinstance(doc, dict):
        return []  # distribution answers "tags": null for a repository with none
    if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.fullmatch(t) for t in tags):
        raise RegistryDataError(f"{what}: the registry's tag list is not a list of valid tags")
    return list(tags)


def next_page(link: str, repo: str) -> str | None:
    """The path and query of the next page from a `Link` header, or None. Only a path on this
    repository's tags/list is followed (the registry's host stays the one asked)."""
    match = _NEXT.search(link or "")
    if not match:
        return None
    url = urlsplit(match.group(1))
    if url.path != f"/v2/{repo}/tags/list" or (url.scheme and url.scheme not in ("http", "https")):
        raise RegistryDataError(f"the registry's next page of tags for {repo} points elsewhere: {match.group(1)!r}")
    last = parse_qs(url.query).get("last", [""])[0]
    if not last:
        return None
    return f"/v2/{repo}/tags/list?n={PAGE}&last={quote(last, safe='')}"
