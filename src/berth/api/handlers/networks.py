"""Network routes: create, list, inspect, remove, connect, disconnect, prune."""

from __future__ import annotations

from berth.api.server import Reply, Request, Router
from berth.api.wiring import Daemon


def register(router: Router, d: Daemon) -> None:
    nets = d.networks

    async def create(req: Request) -> Reply:
        return Reply(201, await nets.create(await req.json()))

    async def list_(req: Request) -> Reply:
        return Reply(200, nets.listing(req.filters()))

    async def inspect(req: Request) -> Reply:
        return Reply(200, nets.inspect(req.params["id"]))

    async def remove(req: Request) -> Reply:
        await nets.remove(req.params["id"])
        return Reply(204)

    async def connect(req: Request) -> Reply:
        body = await req.json()
        await d.containers.connect(req.params["id"], str(body.get("Container") or ""),
                                   dict(body.get("EndpointConfig") or {}))
        return Reply(200)

    async def disconnect(req: Request) -> Reply:
        body = await req.json()
        await d.containers.disconnect(req.params["id"], str(body.get("Container") or ""),
                                      bool(body.get("Force")))
        return Reply(200)

    async def prune(req: Request) -> Reply:
        return Reply(200, await nets.prune(req.filters()))

    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks", list_)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
