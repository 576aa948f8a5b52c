"""Bridge networks as records: their address pools, a new network's record, filters, interface names.

Strategy: pure functions of a network's record (network.record.NetworkRecord,
what berth stores and `docker network inspect` shows): the IPv4 pool is the
first IPAM.Config entry, the IPv6 pool the first IPv6 entry after it (used only
with EnableIPv6); services.networks applies them to the host (bridges, nftables,
the DNS resolver) and keeps the records.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping, Sequence

from berth import timefmt
from berth.errors import InvalidArgument
from berth.network import ipam, ipam6
from berth.network.record import IpamEntry, NetworkRecord

PREDEFINED = ("bridge", "host", "none")
DEFAULT_BRIDGE = "berth0"
DEFAULT_SUBNET = "172.17.0.0/16"  # the default bridge's, unless berthd --bip says otherwise
MTU = 1500


def bridge_name(net: NetworkRecord) -> str:
    """The Linux bridge of a network: its bridge.name option, else br-<short id> (as Docker names them)."""
    return str(net.options.get("com.docker.network.bridge.name") or f"br-{net.id[:12]}")


def pool_of(net: NetworkRecord) -> ipam.Pool:
    cfg = net.ipam[0]
    return ipam.Pool.parse(cfg.subnet, cfg.gateway, cfg.ip_range or None)


def pool6_of(net: NetworkRecord) -> ipam6.Pool6 | None:
    """The network's IPv6 pool; None unless it was made with --ipv6 (EnableIPv6)."""
    if not net.enable_ipv6 or net.driver != "bridge":
        return None
    cfg = next((c for c in net.ipam[1:] if c.is_v6), None)
    return ipam6.Pool6.parse(cfg.subnet, cfg.gateway, cfg.ip_range or None) if cfg else None


def is_internal(net: NetworkRecord) -> bool:
    """Is *net* an internal network (no route out, no NAT, DNS for its own names only)?"""
    return net.internal and net.name != "bridge"


def ipam_config(subnet: str, gateway: str | None, ip_range: str | None,
                aux: Mapping[str, str] | None = None) -> IpamEntry:
    """One IPAM.Config entry; the gateway defaults to the subnet's first address."""
    net = ipaddress.ip_network(subnet, strict=False)
    gw = gateway or str(next(net.hosts()))
    return IpamEntry(str(net), gw, ip_range or "", dict(aux or {}))


def default_bridge_config(bip: str) -> IpamEntry:
    """The default bridge's IPAM.Config: berthd --bip (gateway/prefix) or 172.17.0.0/16."""
    if not bip:
        return ipam_config(DEFAULT_SUBNET, None, None)
    iface = ipaddress.ip_interface(bip)
    return ipam_config(str(iface.network), str(iface.ip), None)


def new_network(name: str, driver: str, config: Sequence[IpamEntry], *, internal: bool = False,
                labels: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
                attachable: bool = False, ipv6: bool = False,
                ipam_options: Mapping[str, str] | None = None) -> NetworkRecord:
    """A new network's record, with a fresh id (IPAM.Options as sent, null when none were, as Docker shows them)."""
    return NetworkRecord(id=secrets.token_hex(32), name=name, created=timefmt.now(), driver=driver,
                         ipam=tuple(config), ipam_options=dict(ipam_options) if ipam_options else None,
                         enable_ipv6=ipv6, internal=internal, attachable=attachable,
                         options=dict(options or {}), labels=dict(labels or {}))


def plan6(cfg6: IpamEntry | None, enable6: bool, existing6: list[str]) -> list[IpamEntry]:
    """The IPv6 IPAM.Config entry of a new network ([] for none), checked against *existing6* subnets.

    --ipv6 without an IPv6 subnet gets a random unique local /64 (Docker 27+'s
    behaviour). An IPv6 subnet without --ipv6 is recorded and left unused, as Docker does.
    """
    if cfg6 is not None and not cfg6.subnet:
        raise InvalidArgument("an IPv6 --gateway or --ip-range needs its IPv6 --subnet")
    if cfg6 is not None:
        pool6 = ipam6.Pool6.parse(cfg6.subnet, cfg6.gateway or None, cfg6.ip_range or None)
        ipam6.check_overlap6(pool6.subnet, existing6)
    elif enable6:
        pool6 = ipam6.Pool6.parse(str(ipam6.ula_subnet(secrets.token_bytes(5), existing6)))
    else:
        return []
    return [pool6.config()]


def free_ifname(names: Sequence[str]) -> str:
    """The first ethN that none of the namespace's endpoints has (*names*: their ctr_if, in order;
    "" for an endpoint of an older record, which counts as eth<its place>)."""
    used = {name or f"eth{i}" for i, name in enumerate(names)}
    n = 0
    while f"eth{n}" in used:
        n += 1
    return f"eth{n}"


def matches(net: NetworkRecord, filters: Mapping[str, list[str]]) -> bool:
    """Whether a network passes `docker network ls` *filters* (name, id, driver, type, label, dangling)."""
    for key, values in filters.items():
        if key == "name":
            if not any(v in net.name for v in values):
                return False
        elif key == "id":
            if not any(net.id.startswith(v) for v in values):
                return False
        elif key == "driver":
            if net.driver not in values:
                return False
        elif key == "type":
            builtin = net.name in PREDEFINED
            if not any((v == "builtin") == builtin for v in values):
                return False
        elif key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in net.labels or (eq and net.labels[k] != val):
                    return False
        elif key == "dangling":
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True
