"""Volume routes: create, list, inspect, remove, prune."""

from __future__ import annotations

from typing import Any

from berth.api.replies import Reply
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.views import volumes as views
from berth.api.wiring import Daemon
from berth.errors import InvalidArgument
from berth.services.volumes import VolumeCreateRequest


def _str_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"{key}: expected an object of strings")
    return value


def create_request(body: object) -> VolumeCreateRequest:
    """A VolumeCreateOptions body, checked.

    Raises:
        InvalidArgument: not an object, a field of the wrong type, or a cluster volume.
    """
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object (VolumeCreateOptions)")
    name, driver = body.get("Name") or "", body.get("Driver") or ""
    if not isinstance(name, str) or not isinstance(driver, str):
        raise InvalidArgument("Name and Driver must be strings")
    if body.get("ClusterVolumeSpec"):
        raise InvalidArgument("cluster volumes need swarm mode, which berth does not have")
    return VolumeCreateRequest(name, driver, _str_map(body, "DriverOpts"), _str_map(body, "Labels"))


def register(router: Router, d: Daemon) -> None:
    volumes = d.containers.volumes

    async def list_(req: Request) -> Reply:
        return Reply(200, views.listing(volumes.listing(req.filters())))

    async def create(req: Request) -> Reply:
        request = create_request(await req.json(required=False))
        return Reply(201, views.volume(volumes.create(request)))

    async def inspect(req: Request) -> Reply:
        return Reply(200, views.volume(volumes.get(req.params["name"])))

    async def remove(req: Request) -> Reply:
        volumes.remove(req.params["name"], req.qbool("force"))
        return Reply(204)

    async def prune(req: Request) -> Reply:
        return Reply(200, views.prune_report(volumes.prune(req.filters())))

    router.add("GET", "/volumes", list_)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)
