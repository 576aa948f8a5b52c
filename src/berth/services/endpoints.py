"""Endpoint settings: a container's configuration on each network, and how inspect shows it.

Strategy: pure functions over the container record. What a container asked for
(`NetworkingConfig.EndpointsConfig` at create, `EndpointConfig` at connect) is
checked here for shape and kept, normalised, in the record's
``EndpointsConfig`` (network name -> settings); what the kernel has (addresses,
veths) is the record's ``Endpoints``, written by services.networks at start.
``NetworkSettings.Networks`` is made from both: the configuration of every
network the container is on, plus the operational fields of those it is
attached to now.

Records made since ``EndpointsListed`` exists list every network, the
NetworkMode's one included, so a container disconnected from its only network
keeps its NetworkMode (as Docker's does) and can be connected again; older
records (no flag) still add the NetworkMode's network implicitly.

Docker's versioned differences kept here:

- API < 1.44 refuses more than one network at create;
- API < 1.45 shows the short id and the hostname among a container's Aliases on
  user-defined networks (Docker 26 adds them in the inspect handler for old
  clients; docker-compose 1.29 reads them to skip a disconnect/connect);
- ``DNSNames`` (name, aliases, short id, hostname) on user-defined networks.

Settings berth keeps and shows but does not act on yet: ``Links`` (legacy
link aliases are not resolved on user networks), ``DriverOpts`` (the bridge
driver has none that berth applies), ``IPAMConfig.LinkLocalIPs``.
``MacAddress`` and ``IPAMConfig.IPv6Address`` are checked for type only here;
applying them is services.networks' business.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument
from berth.services.records import ContainerRecord

# The keys of an EndpointSettings that a client configures (the rest is operational and ignored).
CONFIG_KEYS = ("IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts")
PREDEFINED_MODES = ("default", "bridge", "host", "none")

# Docker's wording (runconfig/errors.go), which clients may compare.
SHARED_NETWORK = ("container sharing network namespace with another container or host cannot be connected "
                  "to any other network")
HOST_NETWORK = "container cannot be disconnected from host network or connected to host network"
NO_NETWORK = "container cannot be connected to multiple networks with one of the networks in private (none) mode"
IP_ON_DEFAULT = "user specified IP address is supported on user defined networks only"
ALIAS_ON_DEFAULT = "network-scoped alias is supported only for containers in user defined networks"

_MAX_ITEMS = 256  # aliases, links, link-local addresses, driver options of one endpoint
_MAX_TEXT = 255  # one alias, link or option


def version(text: str) -> tuple[int, int]:
    """An API version such as "1.41" as (1, 41); an unparsable one counts as the newest."""
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return (1, 1_000)


def bridged(mode: str) -> bool:
    """Does NetworkMode *mode* put the container on bridge networks (its own namespace)?"""
    return mode not in ("host", "none") and not mode.startswith("container:")


def user_defined(name: str) -> bool:
    """Is *name* a user-defined network (Docker's NetworkMode.IsUserDefined)?"""
    return name not in PREDEFINED_MODES and not name.startswith("container:")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _strings(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where}: expected an array of strings, got {_kind(value)}")
    if len(value) > _MAX_ITEMS or any(len(v) > _MAX_TEXT for v in value):
        raise InvalidArgument(f"{where}: at most {_MAX_ITEMS} entries of at most {_MAX_TEXT} characters")
    return list(value)


def _ipam(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}.IPAMConfig: expected an object, got {_kind(value)}")
    out: dict[str, Any] = {}
    for key in ("IPv4Address", "IPv6Address"):
        text = value.get(key)
        if text is None or text == "":
            continue
        if not isinstance(text, str):
            raise InvalidArgument(f"{where}.IPAMConfig.{key}: expected a string, got {_kind(text)}")
        out[key] = text
    if "IPv4Address" in out:
        try:
            out["IPv4Address"] = str(ipaddress.IPv4Address(out["IPv4Address"]))
        except ValueError:
            raise InvalidArgument(f"{where}.IPAMConfig.IPv4Address: invalid IPv4 address: "
                                  f"{out['IPv4Address'][:64]!r}") from None
    # IPv6Address: kept as given; checking and applying it belongs with IPv6 networks (services.networks).
    local = _strings(value.get("LinkLocalIPs"), f"{where}.IPAMConfig.LinkLocalIPs")
    if local:
        for text in local:
            try:
                ipaddress.ip_address(text)
            except ValueError:
                raise InvalidArgument(f"{where}.IPAMConfig.LinkLocalIPs: invalid link-local IP address: "
                                      f"{text[:64]!r}") from None
        out["LinkLocalIPs"] = local
    return out


def parse_endpoint(value: Any, where: str = "EndpointConfig") -> dict[str, Any]:
    """One EndpointSettings from a client, checked and reduced to what is configured.

    Returns:
        {"IPAMConfig": dict | None, "Links": list | None, "Aliases": list | None,
        "MacAddress": str, "DriverOpts": dict | None}; null or absent means all unset.

    Raises:
        InvalidArgument: naming the field (*where* is its path) that has the wrong type or value.
    """
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: expected an object, got {_kind(value)}")
    opts = value.get("DriverOpts")
    if opts is not None:
        if not isinstance(opts, dict) or not all(isinstance(v, str) for v in opts.values()):
            raise InvalidArgument(f"{where}.DriverOpts: expected an object of strings, got {_kind(opts)}")
        if len(opts) > _MAX_ITEMS or any(len(k) > _MAX_TEXT or len(v) > _MAX_TEXT for k, v in opts.items()):
            raise InvalidArgument(f"{where}.DriverOpts: at most {_MAX_ITEMS} options of at most {_MAX_TEXT} "
                                  "characters")
        opts = dict(opts)
    mac = value.get("MacAddress")
    if mac is not None and not isinstance(mac, str):
        raise InvalidArgument(f"{where}.MacAddress: expected a string, got {_kind(mac)}")
    # MacAddress: kept as given; its format and use are services.networks' (the --mac-address work).
    return {"IPAMConfig": _ipam(value.get("IPAMConfig"), where),
            "Links": _strings(value.get("Links"), f"{where}.Links"),
            "Aliases": _strings(value.get("Aliases"), f"{where}.Aliases"),
            "MacAddress": mac or "", "DriverOpts": opts}


def parse_networking_config(value: Any) -> dict[str, dict[str, Any]]:
    """NetworkingConfig of a create request: network name or id -> parse_endpoint's settings.

    Raises:
        InvalidArgument: NetworkingConfig or EndpointsConfig not an object, or a bad entry.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"NetworkingConfig: expected an object, got {_kind(value)}")
    entries = value.get("EndpointsConfig")
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise InvalidArgument(f"NetworkingConfig.EndpointsConfig: expected an object, got {_kind(entries)}")
    if len(entries) > _MAX_ITEMS:
        raise InvalidArgument(f"NetworkingConfig.EndpointsConfig: at most {_MAX_ITEMS} networks")
    out = {}
    for name, entry in entries.items():
        if not name:
            raise InvalidArgument("NetworkingConfig.EndpointsConfig: a network name is empty")
        out[name] = parse_endpoint(entry, f"NetworkingConfig.EndpointsConfig[{name[:64]!r}]")
    return out


def check_create_version(body: Any, api_version: str) -> None:
    """Below API 1.44 Docker connects a new container to one network only, and refuses more."""
    if version(api_version) >= (1, 44) or not isinstance(body, dict):
        return
    networking = body.get("NetworkingConfig")
    entries = networking.get("EndpointsConfig") if isinstance(networking, dict) else None
    if isinstance(entries, dict) and len(entries) > 1:
        raise InvalidArgument("Container cannot be connected to network endpoints: "
                              + ", ".join(str(k)[:64] for k in entries)
                              + " (API versions below 1.44 take one network at create: connect the others "
                              "with `docker network connect`)")


def requested(record: ContainerRecord) -> dict[str, dict[str, Any]]:
    """The networks a container record is on: name -> its settings (services.networks attaches these)."""
    if record.endpoints_listed:
        return dict(record.endpoints_config)
    mode = record.network_mode
    wanted = {("bridge" if k == "default" else k): (v or {}) for k, v in record.endpoints_config.items()}
    if mode in ("default", "bridge"):
        wanted.setdefault("bridge", {})
    elif bridged(mode):
        wanted.setdefault(mode, {})
    return wanted


def dns_names(record: ContainerRecord | None, aliases: list[str] | None) -> list[str]:
    """Docker's DNSNames: the name, the aliases, the short id, the hostname; each once, in that order."""
    if record is None:
        return list(dict.fromkeys(a for a in aliases or [] if a))
    names = [record.name, *(aliases or []), record.id[:12], str(record.config.get("Hostname") or "")]
    return list(dict.fromkeys(n for n in names if n))


def entry(record: ContainerRecord | None, name: str, cfg: dict[str, Any], ep: dict[str, Any] | None) -> dict[str, Any]:
    """One NetworkSettings.Networks value: *cfg* (what was asked) plus *ep* (the attachment now, if any)."""
    ep = ep or {}
    return {
        "IPAMConfig": cfg.get("IPAMConfig"), "Links": cfg.get("Links"), "Aliases": cfg.get("Aliases"),
        # The MAC the container has, else the one asked for (the --mac-address hook), as Docker shows it.
        "MacAddress": ep.get("mac") or cfg.get("MacAddress") or "",
        "DriverOpts": cfg.get("DriverOpts"),
        "NetworkID": ep.get("network") or cfg.get("NetworkID") or "", "EndpointID": ep.get("host_if", ""),
        "Gateway": ep.get("gateway", ""), "IPAddress": ep.get("ip", ""), "IPPrefixLen": ep.get("prefix", 0),
        "IPv6Gateway": ep.get("gateway6", ""), "GlobalIPv6Address": ep.get("ip6", ""),
        "GlobalIPv6PrefixLen": ep.get("prefix6", 0),
        "DNSNames": dns_names(record, cfg.get("Aliases")) if user_defined(name) else None,
    }


def networks(record: ContainerRecord) -> dict[str, dict[str, Any]]:
    """NetworkSettings.Networks of a container record (current API version)."""
    attached = {ep.get("name") or ep["network"][:12]: ep for ep in record.endpoints.values()}
    by_id = {ep["network"]: name for name, ep in attached.items()}
    out = {}
    for name, cfg in requested(record).items():
        key = by_id.get(name, name)  # an old record may key its settings by network id
        out[key] = entry(record, key, cfg or {}, attached.pop(key, None))
    for name, ep in attached.items():  # attached without settings: an old record
        out[name] = entry(record, name, {}, ep)
    mode = record.network_mode
    if not out and not (record.endpoints_listed and bridged(mode)):
        # host, none, container:<id>: the pseudo-network (a bridged container with none left shows none)
        name = "bridge" if mode == "default" else mode
        out[name] = entry(record, name, {}, None) | {"DNSNames": None}
    return out


def for_version(networks_: dict[str, dict[str, Any]], record: ContainerRecord,
                api_version: str) -> dict[str, dict[str, Any]]:
    """Inspect's Networks as a client of *api_version* expects them (short id among the aliases below 1.45)."""
    if version(api_version) >= (1, 45):
        return networks_
    extra = [record.id[:12], str(record.config.get("Hostname") or "")]
    out = {}
    for name, value in networks_.items():
        if user_defined(name):
            value = value | {"Aliases": list(dict.fromkeys(a for a in [*(value.get("Aliases") or []), *extra] if a))}
        out[name] = value
    return out


@dataclass
class Endpoint:
    """A container's attachment to one network, as NetworkSettings.Networks shows it."""

    network: str  # network id
    ip: str
    prefix: int
    gateway: str
    mac: str
    host_if: str
    aliases: list[str] = field(default_factory=list)
    name: str = ""  # the network's name, for NetworkSettings.Networks
    ip6: str = ""  # on a network with IPv6 (--ipv6): the container's address, prefix and gateway
    prefix6: int = 0
    gateway6: str = ""
    ctr_if: str = ""  # its name in the container's namespace (eth0, eth1, ...)

    def settings(self, name: str) -> dict[str, Any]:
        return {"IPAMConfig": None, "Links": None, "Aliases": self.aliases or None, "MacAddress": self.mac,
                "NetworkID": self.network, "EndpointID": self.host_if, "Gateway": self.gateway,
                "IPAddress": self.ip, "IPPrefixLen": self.prefix, "IPv6Gateway": self.gateway6,
                "GlobalIPv6Address": self.ip6, "GlobalIPv6PrefixLen": self.prefix6, "DriverOpts": None,
                "DNSNames": [name, *self.aliases]}


def attached(record: ContainerRecord) -> dict[str, Endpoint]:
    """The container's current attachments, by network id (from its record)."""
    return {net_id: Endpoint(**fields) for net_id, fields in record.endpoints.items()}


__all__ = ["Endpoint", "attached", "parse_endpoint", "parse_networking_config", "check_create_version", "requested", "networks",
           "for_version", "entry", "dns_names", "bridged", "user_defined", "version"]
