"""Network routes: create, list, inspect, remove, connect, disconnect, prune."""

from __future__ import annotations

from typing import Any

from berth.api.replies import Reply
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.wiring import Daemon
from berth.errors import InvalidArgument
from berth.services import endpoints


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument(f"the {what} request body must be a JSON object with Container (and EndpointConfig)")
    return body


def _container(body: dict[str, Any]) -> str:
    ref = body.get("Container")
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("Container: expected the name or id of a container")
    return ref


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
        body = _object(await req.json(), "connect")
        cfg = endpoints.parse_endpoint(body.get("EndpointConfig"), "EndpointConfig")
        await d.containers.connect(req.params["id"], _container(body), cfg)
        return Reply(200)

    async def disconnect(req: Request) -> Reply:
        body = _object(await req.json(), "disconnect")
        force = body.get("Force")
        if force is not None and not isinstance(force, bool):
            raise InvalidArgument("Force: expected a boolean")
        await d.containers.disconnect(req.params["id"], _container(body), bool(force))
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
