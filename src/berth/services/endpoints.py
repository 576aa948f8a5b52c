"""Endpoint settings: a container's configuration on each network, checked, and which networks it is on.

Strategy: pure functions over the container record. What a container asked for
(`NetworkingConfig.EndpointsConfig` at create, `EndpointConfig` at connect) is
checked here for shape and kept, typed (`EndpointSettings`), in the record's
``endpoints_config`` (network name -> settings); what the kernel has (addresses,
veths) is the record's ``endpoints`` (`Endpoint`, by network id), written by
services.attachments at start. `network_entries` pairs them: the settings of
every network the container is on, with the attachment of those it is attached
to now; api.views.networks shows them as ``NetworkSettings.Networks``.

Records made since ``EndpointsListed`` exists list every network, the
NetworkMode's one included, so a container disconnected from its only network
keeps its NetworkMode (as Docker's does) and can be connected again; older
records (no flag) still add the NetworkMode's network implicitly.

Docker's versioned differences: API < 1.44 refuses more than one network at
create (here); below 1.45 inspect shows the short id and the hostname among
Aliases, and ``DNSNames`` lists a container's names on user-defined networks
(both api.views.networks').

Settings berth keeps and shows but does not act on yet: ``Links`` (legacy
link aliases are not resolved on user networks), ``DriverOpts`` (the bridge
driver has none that berth applies), ``IPAMConfig.LinkLocalIPs``.
``MacAddress`` and ``IPAMConfig.IPv6Address`` are checked for type only here;
applying them is services.attachments' business.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument
from berth.network.endpoint import Endpoint, EndpointIpam, EndpointSettings
from berth.services.records import ContainerRecord

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


def _strings(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where}: expected an array of strings, got {_kind(value)}")
    if len(value) > _MAX_ITEMS or any(len(v) > _MAX_TEXT for v in value):
        raise InvalidArgument(f"{where}: at most {_MAX_ITEMS} entries of at most {_MAX_TEXT} characters")
    return tuple(value)


def _ipam(value: Any, where: str) -> EndpointIpam | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}.IPAMConfig: expected an object, got {_kind(value)}")
    given: dict[str, str] = {}
    for key in ("IPv4Address", "IPv6Address"):
        text = value.get(key)
        if text is None or text == "":
            continue
        if not isinstance(text, str):
            raise InvalidArgument(f"{where}.IPAMConfig.{key}: expected a string, got {_kind(text)}")
        given[key] = text
    ipv4 = given.get("IPv4Address", "")
    if ipv4:
        try:
            ipv4 = str(ipaddress.IPv4Address(ipv4))
        except ValueError:
            raise InvalidArgument(f"{where}.IPAMConfig.IPv4Address: invalid IPv4 address: {ipv4[:64]!r}") from None
    # IPv6Address: kept as given; checking and applying it belongs with IPv6 networks (services.attachments).
    local = _strings(value.get("LinkLocalIPs"), f"{where}.IPAMConfig.LinkLocalIPs")
    for text in local or ():
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise InvalidArgument(f"{where}.IPAMConfig.LinkLocalIPs: invalid link-local IP address: "
                                  f"{text[:64]!r}") from None
    return EndpointIpam(ipv4, given.get("IPv6Address", ""), local or ())


def parse_endpoint(value: Any, where: str = "EndpointConfig") -> EndpointSettings:
    """One EndpointSettings from a client, checked and reduced to what is configured.

    Returns:
        The settings (``given``: stored with all five configured keys); null or absent fields are unset.

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
    # MacAddress: kept as given; its format and use are services.attachments' (the --mac-address work).
    return EndpointSettings(ipam=_ipam(value.get("IPAMConfig"), where),
                            links=_strings(value.get("Links"), f"{where}.Links"),
                            aliases=_strings(value.get("Aliases"), f"{where}.Aliases"),
                            mac=mac or "", driver_opts=opts, given=True)


def parse_networking_config(value: Any) -> dict[str, EndpointSettings]:
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


def requested(record: ContainerRecord) -> dict[str, EndpointSettings]:
    """The networks a container record is on: name -> its settings (services.attachments attaches these)."""
    if record.endpoints_listed:
        return dict(record.endpoints_config)
    mode = record.network_mode
    wanted = {("bridge" if k == "default" else k): v for k, v in record.endpoints_config.items()}
    if mode in ("default", "bridge"):
        wanted.setdefault("bridge", EndpointSettings())
    elif bridged(mode):
        wanted.setdefault(mode, EndpointSettings())
    return wanted


@dataclass(frozen=True, slots=True)
class NetworkEntry:
    """One network a container is on: what it asked for there, and its attachment now (if started)."""

    name: str
    settings: EndpointSettings
    endpoint: Endpoint | None = None


def network_entries(record: ContainerRecord) -> list[NetworkEntry]:
    """The networks of NetworkSettings.Networks, in order: each requested network, then attachments
    without settings (old records); with none, the NetworkMode's pseudo-network (host, none,
    container:<id>), but a bridged container with none left shows none."""
    attached = {ep.name or ep.network[:12]: ep for ep in record.endpoints.values()}
    by_id = {ep.network: name for name, ep in attached.items()}
    out: dict[str, NetworkEntry] = {}
    for name, cfg in requested(record).items():
        key = by_id.get(name, name)  # an old record may key its settings by network id
        out[key] = NetworkEntry(key, cfg, attached.pop(key, None))
    for name, ep in attached.items():  # attached without settings: an old record
        out[name] = NetworkEntry(name, EndpointSettings(), ep)
    mode = record.network_mode
    if not out and not (record.endpoints_listed and bridged(mode)):
        name = "bridge" if mode == "default" else mode
        out[name] = NetworkEntry(name, EndpointSettings())
    return list(out.values())


__all__ = ["Endpoint", "EndpointIpam", "EndpointSettings", "NetworkEntry", "bridged",
           "check_create_version", "network_entries", "parse_endpoint", "parse_networking_config", "requested",
           "user_defined", "version"]
