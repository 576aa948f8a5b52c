"""A container on a network: the settings it asked for there, and its attachment once started.

Strategy: two frozen values, both kept in the container's record (services.records):
`EndpointSettings` is what a client configured for one network (Docker's
EndpointSettings less the operational fields), `Endpoint` what the kernel has
for a started container (its address, veth, MAC, interface name). `to_doc`/
`from_doc` are their stored JSON only, the form older daemons wrote: a setting
made only to name a network (the NetworkMode's own, `given` False) is stored as
its NetworkID alone; keys this version does not know are kept. Parsing a
client's settings is services.endpoints'; Docker's JSON for them is
api.views.networks'.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The keys of an EndpointSettings that a client configures (the rest is operational).
CONFIG_KEYS = ("IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts")
_SETTINGS_KEYS = frozenset({*CONFIG_KEYS, "NetworkID"})


@dataclass(frozen=True, slots=True)
class EndpointIpam:
    """EndpointSettings.IPAMConfig: the addresses asked for (--ip, --ip6, --link-local-ip); "" = any."""

    ipv4: str = ""
    ipv6: str = ""
    link_local: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        """Only what is set: an empty IPAMConfig stays {} (as compose sends it and Docker shows it)."""
        out: dict[str, Any] = {}
        if self.ipv4:
            out["IPv4Address"] = self.ipv4
        if self.ipv6:
            out["IPv6Address"] = self.ipv6
        if self.link_local:
            out["LinkLocalIPs"] = list(self.link_local)
        return out

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> EndpointIpam:
        return cls(str(doc.get("IPv4Address") or ""), str(doc.get("IPv6Address") or ""),
                   tuple(str(a) for a in doc.get("LinkLocalIPs") or ()))


def _texts(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    """A container's settings on one network; None (or "") is unset, as Docker shows it."""

    ipam: EndpointIpam | None = None  # IPAMConfig
    links: tuple[str, ...] | None = None
    aliases: tuple[str, ...] | None = None
    mac: str = ""  # MacAddress asked for
    driver_opts: Mapping[str, str] | None = None
    network_id: str = ""  # NetworkID, once the network is known
    given: bool = False  # a client's settings (all five keys stored), not only the network's id
    extra: Mapping[str, Any] = field(default_factory=dict)  # stored keys this version does not know, kept

    @property
    def ipv4(self) -> str:
        """The IPv4 address asked for, or ""."""
        return self.ipam.ipv4 if self.ipam is not None else ""

    @property
    def ipv6(self) -> str:
        """The IPv6 address asked for (--ip6), or ""."""
        return self.ipam.ipv6 if self.ipam is not None else ""

    @property
    def configured(self) -> bool:
        """Is anything set: an address, a link, an alias, a MAC address, a driver option?"""
        ipam = self.ipam
        return bool((ipam is not None and (ipam.ipv4 or ipam.ipv6 or ipam.link_local)) or self.links
                    or self.aliases or self.mac or self.driver_opts)

    def to_doc(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.given:
            out |= {"IPAMConfig": self.ipam.to_doc() if self.ipam is not None else None,
                    "Links": list(self.links) if self.links is not None else None,
                    "Aliases": list(self.aliases) if self.aliases is not None else None,
                    "MacAddress": self.mac,
                    "DriverOpts": dict(self.driver_opts) if self.driver_opts is not None else None}
        if self.network_id:
            out["NetworkID"] = self.network_id
        return out

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> EndpointSettings:
        """A stored entry; null (records of older daemons) is no settings at all."""
        doc = doc or {}
        ipam, opts = doc.get("IPAMConfig"), doc.get("DriverOpts")
        return cls(ipam=EndpointIpam.from_doc(ipam) if isinstance(ipam, Mapping) else None,
                   links=_texts(doc.get("Links")), aliases=_texts(doc.get("Aliases")),
                   mac=str(doc.get("MacAddress") or ""),
                   driver_opts={str(k): str(v) for k, v in opts.items()} if isinstance(opts, Mapping) else None,
                   network_id=str(doc.get("NetworkID") or ""), given=any(k in doc for k in CONFIG_KEYS),
                   extra={k: v for k, v in doc.items() if k not in _SETTINGS_KEYS})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A started container's attachment to one network."""

    network: str = ""  # the network's id
    ip: str = ""
    prefix: int = 0
    gateway: str = ""
    mac: str = ""
    host_if: str = ""  # the host side: a veth, or a VM's tap (Docker's EndpointID)
    aliases: tuple[str, ...] = ()
    name: str = ""  # the network's name, for NetworkSettings.Networks
    ip6: str = ""  # on a network with IPv6 (--ipv6): the container's address, prefix and gateway
    prefix6: int = 0
    gateway6: str = ""
    ctr_if: str = ""  # its name in the container's namespace (eth0, eth1, ...); "" in older records

    def to_doc(self) -> dict[str, Any]:
        return {"network": self.network, "ip": self.ip, "prefix": self.prefix, "gateway": self.gateway,
                "mac": self.mac, "host_if": self.host_if, "aliases": list(self.aliases), "name": self.name,
                "ip6": self.ip6, "prefix6": self.prefix6, "gateway6": self.gateway6, "ctr_if": self.ctr_if}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Endpoint:
        """A stored attachment; older records lack the later fields (IPv6, ctr_if, name)."""
        return cls(network=str(doc.get("network") or ""), ip=str(doc.get("ip") or ""),
                   prefix=int(doc.get("prefix") or 0), gateway=str(doc.get("gateway") or ""),
                   mac=str(doc.get("mac") or ""), host_if=str(doc.get("host_if") or ""),
                   aliases=tuple(str(a) for a in doc.get("aliases") or ()), name=str(doc.get("name") or ""),
                   ip6=str(doc.get("ip6") or ""), prefix6=int(doc.get("prefix6") or 0),
                   gateway6=str(doc.get("gateway6") or ""), ctr_if=str(doc.get("ctr_if") or ""))
