"""Network routes: create, list, inspect, remove, connect, disconnect, prune.

Request bodies are parsed here into the services' typed requests (`parse_create`:
the shapes, with the field named; what they mean is the service's to check);
answers are made by api.views.networks.
"""

from __future__ import annotations

from typing import Any

from berth.api.replies import Reply
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.views import networks as views
from berth.api.wiring import Daemon
from berth.errors import InvalidArgument
from berth.services import endpoints
from berth.services.networks import IpamEntry, NetworkCreateRequest

_IPAM_CONFIG = "IPAM.Config entries must be objects with Subnet, Gateway and IPRange"
_AUX = "IPAM.Config.AuxiliaryAddresses must be an object of names to addresses"


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument(f"the {what} request body must be a JSON object with Container (and EndpointConfig)")
    return body


def _container(body: dict[str, Any]) -> str:
    ref = body.get("Container")
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("Container: expected the name or id of a container")
    return ref


def _text(value: Any) -> str:
    return str(value) if value else ""


def _strings(value: Any, where: str) -> dict[str, str]:
    """Labels, Options, IPAM.Options: an object of strings (null or absent: none)."""
    if not value:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"{where}: expected an object of strings")
    return dict(value)


def _ipam_entry(value: Any) -> IpamEntry:
    if not isinstance(value, dict):
        raise InvalidArgument(_IPAM_CONFIG)
    aux = value.get("AuxiliaryAddresses") or {}
    if not isinstance(aux, dict):
        raise InvalidArgument(_AUX)
    return IpamEntry(_text(value.get("Subnet")), _text(value.get("Gateway")), _text(value.get("IPRange")),
                     {str(k): str(v) for k, v in aux.items()})


def parse_create(body: Any) -> NetworkCreateRequest:
    """`POST /networks/create`'s body (Docker's NetworkCreateRequest) as the service's request.

    Raises:
        InvalidArgument: not an object, or a field of the wrong shape.
    """
    if not isinstance(body, dict):
        raise InvalidArgument("the network create request body must be a JSON object")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("IPAM: expected an object with Driver, Config and Options")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list):
        raise InvalidArgument(_IPAM_CONFIG)
    return NetworkCreateRequest(
        name=_text(body.get("Name")), driver=_text(body.get("Driver")) or "bridge",
        ipam_driver=_text(ipam.get("Driver")) or "default", ipam_options=_strings(ipam.get("Options"), "IPAM.Options"),
        ipam_config=tuple(_ipam_entry(c) for c in configs),
        internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
        enable_ipv6=bool(body.get("EnableIPv6")),
        labels=_strings(body.get("Labels"), "Labels"), options=_strings(body.get("Options"), "Options"))


def register(router: Router, d: Daemon) -> None:
    nets = d.networks

    async def create(req: Request) -> Reply:
        return Reply(201, views.created(await nets.create(parse_create(await req.json()))))

    async def list_(req: Request) -> Reply:
        return Reply(200, views.listing(nets.listing(req.filters())))

    async def inspect(req: Request) -> Reply:
        return Reply(200, views.network(nets.inspect(req.params["id"])))

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
        return Reply(200, views.pruned(await nets.prune(req.filters())))

    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks", list_)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
