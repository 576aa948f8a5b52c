"""Bridge networks as records: their address pools, a new network's record, filters, interface names.

Strategy: pure functions of Docker's network document (the record berth
stores and `docker network inspect` shows): the IPv4 pool is the first
IPAM.Config entry, the IPv6 pool the first IPv6 entry after it (used only with
EnableIPv6); services.networks applies them to the host (bridges, nftables,
the DNS resolver) and keeps the records.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from berth import timefmt
from berth.errors import InvalidArgument
from berth.network import ipam, ipam6

PREDEFINED = ("bridge", "host", "none")
DEFAULT_BRIDGE = "berth0"
DEFAULT_SUBNET = "172.17.0.0/16"  # the default bridge's, unless berthd --bip says otherwise
MTU = 1500


def bridge_name(doc: dict[str, Any]) -> str:
    """The Linux bridge of a network: its bridge.name option, else br-<short id> (as Docker names them)."""
    return str(doc["Options"].get("com.docker.network.bridge.name") or f"br-{doc['Id'][:12]}")


def pool_of(doc: dict[str, Any]) -> ipam.Pool:
    cfg = doc["IPAM"]["Config"][0]
    return ipam.Pool.parse(cfg["Subnet"], cfg["Gateway"], cfg.get("IPRange") or None)


def pool6_of(doc: dict[str, Any]) -> ipam6.Pool6 | None:
    """The network's IPv6 pool; None unless it was made with --ipv6 (EnableIPv6)."""
    if not doc.get("EnableIPv6") or doc["Driver"] != "bridge":
        return None
    cfg = next((c for c in doc["IPAM"]["Config"][1:] if ipam6.is_v6_config(c)), None)
    return ipam6.Pool6.parse(cfg["Subnet"], cfg["Gateway"], cfg.get("IPRange") or None) if cfg else None


def is_internal(doc: dict[str, Any]) -> bool:
    """Is *doc* an internal network (no route out, no NAT, DNS for its own names only)?"""
    return bool(doc.get("Internal")) and doc["Name"] != "bridge"


def ipam_config(subnet: str, gateway: str | None, ip_range: str | None) -> dict[str, str]:
    """One IPAM.Config entry; the gateway defaults to the subnet's first address."""
    net = ipaddress.ip_network(subnet, strict=False)
    gw = gateway or str(next(net.hosts()))
    out = {"Subnet": str(net), "Gateway": gw}
    if ip_range:
        out["IPRange"] = ip_range
    return out


def default_bridge_config(bip: str) -> dict[str, str]:
    """The default bridge's IPAM.Config: berthd --bip (gateway/prefix) or 172.17.0.0/16."""
    if not bip:
        return ipam_config(DEFAULT_SUBNET, None, None)
    iface = ipaddress.ip_interface(bip)
    return ipam_config(str(iface.network), str(iface.ip), None)


def new_network_doc(name: str, driver: str, config: list[dict[str, Any]], *, internal: bool = False,
                    labels: dict[str, str] | None = None, options: dict[str, str] | None = None,
                    attachable: bool = False, ipv6: bool = False,
                    ipam_options: dict[str, str] | None = None) -> dict[str, Any]:
    """A new network's record, with a fresh id (IPAM.Options as sent, null when none were, as Docker shows them)."""
    return {"Name": name, "Id": secrets.token_hex(32), "Created": timefmt.now(), "Scope": "local",
            "Driver": driver, "EnableIPv6": ipv6,
            "IPAM": {"Driver": "default", "Options": ipam_options or None, "Config": config},
            "Internal": internal, "Attachable": attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Options": options or {}, "Labels": labels or {}}


def plan6(cfg6: dict[str, Any] | None, enable6: bool, existing6: list[str]) -> list[dict[str, str]]:
    """The IPv6 IPAM.Config entry of a new network ([] for none), checked against *existing6* subnets.

    --ipv6 without an IPv6 subnet gets a random unique local /64 (Docker 27+'s
    behaviour). An IPv6 subnet without --ipv6 is recorded and left unused, as Docker does.
    """
    if cfg6 is not None and not cfg6.get("Subnet"):
        raise InvalidArgument("an IPv6 --gateway or --ip-range needs its IPv6 --subnet")
    if cfg6 is not None:
        pool6 = ipam6.Pool6.parse(str(cfg6["Subnet"]), cfg6.get("Gateway"), cfg6.get("IPRange"))
        ipam6.check_overlap6(pool6.subnet, existing6)
    elif enable6:
        pool6 = ipam6.Pool6.parse(str(ipam6.ula_subnet(secrets.token_bytes(5), existing6)))
    else:
        return []
    return [pool6.config()]


def free_ifname(endpoints: dict[str, dict[str, Any]]) -> str:
    """The first ethN no endpoint in the namespace has (records from before ctr_if count in order)."""
    used = {ep.get("ctr_if") or f"eth{i}" for i, ep in enumerate(endpoints.values())}
    n = 0
    while f"eth{n}" in used:
        n += 1
    return f"eth{n}"


def matches(doc: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Whether a network passes `docker network ls` *filters* (name, id, driver, type, label, dangling)."""
    for key, values in filters.items():
        if key == "name":
            if not any(v in doc["Name"] for v in values):
                return False
        elif key == "id":
            if not any(doc["Id"].startswith(v) for v in values):
                return False
        elif key == "driver":
            if doc["Driver"] not in values:
                return False
        elif key == "type":
            builtin = doc["Name"] in PREDEFINED
            if not any((v == "builtin") == builtin for v in values):
                return False
        elif key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in doc["Labels"] or (eq and doc["Labels"][k] != val):
                    return False
        elif key == "dangling":
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True
