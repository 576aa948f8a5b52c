"""Which index a `docker search` term names, and the query sent to it (shared by berthd and the CLI).

Strategy: pure, as Docker splits a term. A first path component that looks
like a host ("." or ":" in it, or "localhost") is the index and the rest the
query; any other term is a query on Docker Hub's index, where "library/" is
dropped as Docker drops it ("library/busybox" finds what "busybox" finds).
"""

from __future__ import annotations

from berth.errors import InvalidArgument
from berth.wire.registrynames import DOCKER_HUB

_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def split_term(term: str) -> tuple[str, str]:
    """The index a search term names and the query to send it.

    "127.0.0.1:5000/busy" -> ("127.0.0.1:5000", "busy"); "busybox" -> ("docker.io", "busybox");
    "docker.io/library/busybox" -> ("docker.io", "busybox").

    Raises:
        InvalidArgument: the term has a scheme (http://...), or the index name begins or ends with "-".
    """
    if "://" in term:
        raise InvalidArgument(f"invalid repository name: repository name ({term}) should not have a scheme; "
                              "name the registry as HOST[:PORT]/TERM")
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        index, query = first, rest
    else:
        index, query = DOCKER_HUB, term
    if index.lower() in _HUB_NAMES:
        index = DOCKER_HUB
    if index.startswith("-") or index.endswith("-"):
        raise InvalidArgument(f"invalid index name ({index}). Cannot begin or end with a hyphen.")
    if index == DOCKER_HUB:
        query = query.removeprefix("library/")
    return index, query
