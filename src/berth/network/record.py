"""A network's record: what berth keeps of each network, as a typed value, and its stored JSON.

Strategy: the record holds the fields of Docker's network document (what
`docker network inspect` shows, less the containers on it) as a frozen value.
`to_doc`/`from_doc` are its stored form only, the JSON older daemons wrote,
key for key; stored keys this version does not know are kept (`extra`). The
rules over records (pools, bridge names, filters, a new record) are
bridgeplan's; the API's JSON is made at the API's edge (api.views.networks).
An `IpamEntry` is one IPAM.Config entry, in a record or in a create request
(where berth chooses what is left empty).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_KNOWN = frozenset({"Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal", "Attachable",
                    "Ingress", "ConfigFrom", "ConfigOnly", "Options", "Labels"})


@dataclass(frozen=True, slots=True)
class IpamEntry:
    """One IPAM.Config entry: a subnet, its gateway, an optional range, reserved (auxiliary) addresses."""

    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    aux: Mapping[str, str] = field(default_factory=dict)  # AuxiliaryAddresses: name -> address

    @property
    def is_v6(self) -> bool:
        """Does the entry describe IPv6 (by its subnet, else its gateway, else its range)?"""
        for value in (self.subnet, self.gateway, self.ip_range):
            if value:
                return ":" in value
        return False

    def to_doc(self) -> dict[str, Any]:
        """The stored entry: Subnet and Gateway, then IPRange and AuxiliaryAddresses when set."""
        out: dict[str, Any] = {"Subnet": self.subnet, "Gateway": self.gateway}
        if self.ip_range:
            out["IPRange"] = self.ip_range
        if self.aux:
            out["AuxiliaryAddresses"] = dict(self.aux)
        return out

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> IpamEntry:
        aux = doc.get("AuxiliaryAddresses") or {}
        return cls(str(doc.get("Subnet") or ""), str(doc.get("Gateway") or ""), str(doc.get("IPRange") or ""),
                   {str(k): str(v) for k, v in aux.items()})


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    """One network as berth keeps it (Docker's field names in the comments where they differ)."""

    id: str
    name: str
    created: str
    driver: str  # bridge, host or null
    ipam: tuple[IpamEntry, ...] = ()  # IPAM.Config: the IPv4 entry first, then an IPv6 one
    ipam_driver: str = "default"
    ipam_options: Mapping[str, str] | None = None  # null when none were given, as Docker shows it
    enable_ipv6: bool = False
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    config_only: bool = False
    config_from: str = ""  # ConfigFrom.Network
    scope: str = "local"
    options: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # stored keys this version does not know, kept

    def to_doc(self) -> dict[str, Any]:
        """The stored JSON form, in the order berth has always written it."""
        return {
            "Name": self.name, "Id": self.id, "Created": self.created, "Scope": self.scope, "Driver": self.driver,
            "EnableIPv6": self.enable_ipv6,
            "IPAM": {"Driver": self.ipam_driver,
                     "Options": dict(self.ipam_options) if self.ipam_options is not None else None,
                     "Config": [entry.to_doc() for entry in self.ipam]},
            "Internal": self.internal, "Attachable": self.attachable, "Ingress": self.ingress,
            "ConfigFrom": {"Network": self.config_from}, "ConfigOnly": self.config_only,
            "Options": dict(self.options), "Labels": dict(self.labels), **self.extra,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> NetworkRecord:
        ipam = doc.get("IPAM") or {}
        options = ipam.get("Options")
        return cls(
            id=str(doc["Id"]), name=str(doc["Name"]), created=str(doc.get("Created") or ""),
            driver=str(doc.get("Driver") or ""),
            ipam=tuple(IpamEntry.from_doc(entry) for entry in ipam.get("Config") or []),
            ipam_driver=str(ipam.get("Driver") or "default"),
            ipam_options={str(k): str(v) for k, v in options.items()} if options is not None else None,
            enable_ipv6=bool(doc.get("EnableIPv6")), internal=bool(doc.get("Internal")),
            attachable=bool(doc.get("Attachable")), ingress=bool(doc.get("Ingress")),
            config_only=bool(doc.get("ConfigOnly")), config_from=str((doc.get("ConfigFrom") or {}).get("Network") or ""),
            scope=str(doc.get("Scope") or "local"),
            options={str(k): str(v) for k, v in (doc.get("Options") or {}).items()},
            labels={str(k): str(v) for k, v in (doc.get("Labels") or {}).items()},
            extra={k: v for k, v in doc.items() if k not in _KNOWN})
