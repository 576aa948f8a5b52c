"""Networks as the API shows them: network inspect and list, and a container's NetworkSettings.Networks.

Strategy: pure functions from the typed values services give (a network's
`NetworkDetails`, a container record's `NetworkEntry`s) to Docker's JSON, so the
services never shape API output. A network's JSON is its record's fields under
Docker's names plus the running containers on it. A container's entry per
network is what it asked for there (IPAMConfig, Links, Aliases, MacAddress,
DriverOpts) merged with its attachment now (addresses, gateway, EndpointID);
`DNSNames` (name, aliases, short id, hostname) is shown on user-defined
networks only. Clients below API 1.45 also see the short id and the hostname
among a user-defined network's Aliases (Docker 26 adds them in its inspect
handler for old clients; docker-compose 1.29 reads them to skip a
disconnect/connect): `for_version`.
"""

from __future__ import annotations

from typing import Any

from berth.services import endpoints
from berth.services.endpoints import EndpointIpam, EndpointSettings, NetworkEntry
from berth.services.networks import (
    IpamEntry,
    NetworkDetails,
    NetworkMember,
    NetworkRecord,
)
from berth.services.records import ContainerRecord

# -- networks ------------------------------------------------------------------------------------

def _ipam_entry(entry: IpamEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"Subnet": entry.subnet, "Gateway": entry.gateway}
    if entry.ip_range:
        out["IPRange"] = entry.ip_range
    if entry.aux:
        out["AuxiliaryAddresses"] = dict(entry.aux)
    return out


def _member(m: NetworkMember) -> dict[str, str]:
    ep = m.endpoint
    return {"Name": m.name, "EndpointID": ep.host_if, "MacAddress": ep.mac, "IPv4Address": f"{ep.ip}/{ep.prefix}",
            "IPv6Address": f"{ep.ip6}/{ep.prefix6}" if ep.ip6 else ""}


def record(net: NetworkRecord) -> dict[str, Any]:
    """A network's fields as Docker names them (stored keys berth does not know shown as they are)."""
    return {
        "Name": net.name, "Id": net.id, "Created": net.created, "Scope": net.scope, "Driver": net.driver,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {"Driver": net.ipam_driver,
                 "Options": dict(net.ipam_options) if net.ipam_options is not None else None,
                 "Config": [_ipam_entry(e) for e in net.ipam]},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": net.ingress,
        "ConfigFrom": {"Network": net.config_from}, "ConfigOnly": net.config_only,
        "Options": dict(net.options), "Labels": dict(net.labels), **net.extra,
    }


def network(details: NetworkDetails) -> dict[str, Any]:
    """`GET /networks/{id}`, and each entry of `GET /networks`: the record and its running containers."""
    return record(details.record) | {"Containers": {m.container_id: _member(m) for m in details.members}}


def listing(networks: list[NetworkDetails]) -> list[dict[str, Any]]:
    return [network(d) for d in networks]


def created(net: NetworkRecord) -> dict[str, str]:
    """The answer to `POST /networks/create`."""
    return {"Id": net.id, "Warning": ""}


def pruned(names: list[str]) -> dict[str, Any]:
    """The answer to `POST /networks/prune`: the names removed (null for none, as Docker answers)."""
    return {"NetworksDeleted": names or None}


# -- a container's networks ----------------------------------------------------------------------

def dns_names(r: ContainerRecord | None, aliases: tuple[str, ...] | None) -> list[str]:
    """Docker's DNSNames: the name, the aliases, the short id, the hostname; each once, in that order."""
    if r is None:
        return list(dict.fromkeys(a for a in aliases or () if a))
    names = [r.name, *(aliases or ()), r.id[:12], r.config.hostname]
    return list(dict.fromkeys(n for n in names if n))


def _endpoint_ipam(ipam: EndpointIpam | None) -> dict[str, Any] | None:
    return None if ipam is None else ipam.to_doc()  # the same shape as the stored one


def endpoint(r: ContainerRecord | None, entry: NetworkEntry) -> dict[str, Any]:
    """One NetworkSettings.Networks value: the settings asked for plus the attachment now, if any."""
    cfg, ep = entry.settings, entry.endpoint
    return {
        "IPAMConfig": _endpoint_ipam(cfg.ipam),
        "Links": list(cfg.links) if cfg.links is not None else None,
        "Aliases": list(cfg.aliases) if cfg.aliases is not None else None,
        # The MAC the container has, else the one asked for (the --mac-address hook), as Docker shows it.
        "MacAddress": (ep.mac if ep else "") or cfg.mac,
        "DriverOpts": dict(cfg.driver_opts) if cfg.driver_opts is not None else None,
        "NetworkID": (ep.network if ep else "") or cfg.network_id,
        "EndpointID": ep.host_if if ep else "",
        "Gateway": ep.gateway if ep else "", "IPAddress": ep.ip if ep else "", "IPPrefixLen": ep.prefix if ep else 0,
        "IPv6Gateway": ep.gateway6 if ep else "", "GlobalIPv6Address": ep.ip6 if ep else "",
        "GlobalIPv6PrefixLen": ep.prefix6 if ep else 0,
        "DNSNames": dns_names(r, cfg.aliases) if endpoints.user_defined(entry.name) else None,
    }


def unset_endpoint() -> dict[str, Any]:
    """A network value with nothing set (NetworkSettings' top-level fields when a container is on none)."""
    return endpoint(None, NetworkEntry("none", EndpointSettings()))


def container_networks(r: ContainerRecord) -> dict[str, dict[str, Any]]:
    """NetworkSettings.Networks of a container record (current API version)."""
    return {e.name: endpoint(r, e) for e in endpoints.network_entries(r)}


def for_version(networks: dict[str, dict[str, Any]], r: ContainerRecord,
                api_version: str) -> dict[str, dict[str, Any]]:
    """Inspect's Networks as a client of *api_version* expects them (short id among the aliases below 1.45)."""
    if endpoints.version(api_version) >= (1, 45):
        return networks
    extra = [r.id[:12], r.config.hostname]
    out = {}
    for name, value in networks.items():
        if endpoints.user_defined(name):
            value = value | {"Aliases": list(dict.fromkeys(a for a in [*(value.get("Aliases") or []), *extra] if a))}
        out[name] = value
    return out
