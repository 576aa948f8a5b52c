"""`GET /images/search` (`docker search`): a term searched on the index it names.

Strategy: the query's limit and filters are parsed in Docker's words (services.search) before any
registry is asked; X-Registry-Auth that does not decode is ignored, as Docker ignores it for a search.
"""

from __future__ import annotations

from berth.api.replies import Reply
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.views import search as views
from berth.api.wiring import Daemon
from berth.errors import InvalidArgument
from berth.services import search
from berth.wire.registryauth import Credentials, decode_x_registry_auth


def _credentials(req: Request) -> Credentials | None:
    try:
        return decode_x_registry_auth(req.headers.get("x-registry-auth", ""))
    except InvalidArgument:
        return None


def register(router: Router, d: Daemon) -> None:
    async def search_images(req: Request) -> Reply:
        limit = search.parse_limit(req.q("limit"))
        filters = search.SearchFilters.parse(req.filters())
        found = await search.search(d.distribution, req.q("term"), limit, filters, _credentials(req))
        return Reply(200, views.results(found))

    router.add("GET", "/images/search", search_images)
