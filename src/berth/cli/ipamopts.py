"""`network create`'s --subnet, --ip-range, --gateway and --aux-address as IPAM.Config entries.

Strategy: pure, docker's CLI rules. Each subnet starts an entry (overlapping
subnets are refused); every range, gateway and auxiliary address joins the
subnet that contains it (one range and one gateway a subnet; an address no
subnet contains is refused). Errors are docker's words; the CLI exits 1.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from berth.errors import InvalidArgument

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _net(text: str) -> Net:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet: invalid CIDR address: {text}") from None


def _contains(subnet: str, data: str) -> bool:
    """Whether *subnet* holds *data* (an address, or the first address of a CIDR)."""
    net = _net(subnet)
    try:
        ip = ipaddress.ip_interface(data).ip if "/" in data else ipaddress.ip_address(data)
    except ValueError:
        if "/" in data:
            raise InvalidArgument(f"invalid CIDR address: {data}") from None
        return False
    return ip.version == net.version and ip in net


def ipam_configs(subnets: list[str], ranges: list[str], gateways: list[str],
                 aux: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The IPAM.Config list for the flags as given.

    Raises:
        InvalidArgument: docker's refusals (no subnet for a range, gateway or address; two ranges or
            gateways for one subnet; overlapping subnets; a subnet that is not a CIDR).
    """
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
    entries: dict[str, dict[str, Any]] = {}
    for subnet in subnets:
        for other in entries:  # a lone subnet is the daemon's to check
            mine, theirs = _net(subnet), _net(other)
            if mine.version == theirs.version and mine.overlaps(theirs):
                raise InvalidArgument("multiple overlapping subnet configuration is not supported")
        entries[subnet] = {"Subnet": subnet, "AuxiliaryAddresses": {}}
    for key, what, words in (("IPRange", ranges, "range"), ("Gateway", gateways, "gateway")):
        for value in what:
            holders = [s for s in subnets if _contains(s, value)]
            if not holders:
                raise InvalidArgument(f"no matching subnet for {words} {value}")
            for subnet in holders:
                if entries[subnet].get(key):
                    kind = "ranges" if key == "IPRange" else "gateways"
                    where = "on" if key == "IPRange" else "for"
                    raise InvalidArgument(f"cannot configure multiple {kind} ({value}, {entries[subnet][key]}) "
                                          f"{where} the same subnet ({subnet})")
                entries[subnet][key] = value
    for name, address in aux:
        holders = [s for s in subnets if _contains(s, address)]
        if not holders:
            raise InvalidArgument(f"no matching subnet for aux-address {address}")
        for subnet in holders:
            entries[subnet]["AuxiliaryAddresses"][name] = address
    return [{k: v for k, v in e.items() if v or k == "Subnet"} for e in entries.values()]
