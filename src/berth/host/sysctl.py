"""Kernel settings under /proc/sys, and the ones berth's bridges and containers need.

Strategy: a setting is a file under /proc/sys: reading strips the newline,
writing is one write, and a setting that is missing or cannot be written is
FailedPrecondition naming it. The helpers built on them each say why berth
changes a setting: IP forwarding so bridges route at all, route_localnet so
published 127.0.0.1 ports reach containers, IPv6 off on IPv4-only bridges, and
on --ipv6 bridges IPv6 with a fixed address and nothing learnt from containers
(no router advertisements, no autoconfiguration, no redirects). /proc/sys/net
belongs to the network namespace of the thread that reads it: host.netlink
writes a container's settings from a thread inside its namespace.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from berth.errors import FailedPrecondition, InvalidArgument, NotFound
from berth.host.ifnames import check_ifname
from berth.host.rtnetlink import IFA_F_NODAD, link_index, rtnl

SYSCTL_ROOT = Path("/proc/sys")


def set_sysctl(path: str, value: str) -> None:
    """Write *value* to /proc/sys/*path* ("net/ipv4/ip_forward" or "net.ipv4.ip_forward").

    Raises:
        FailedPrecondition: the setting does not exist here or cannot be written.
    """
    rel = path.replace(".", "/") if "/" not in path else path
    target = SYSCTL_ROOT / rel.lstrip("/")
    try:
        target.write_text(f"{value}\n")
    except OSError as exc:
        raise FailedPrecondition(f"set sysctl {rel}={value}: {exc.strerror or exc}") from exc


def get_sysctl(path: str) -> str:
    """Read /proc/sys/*path*, without the trailing newline."""
    rel = path.replace(".", "/") if "/" not in path else path
    try:
        return (SYSCTL_ROOT / rel.lstrip("/")).read_text().strip()
    except OSError as exc:
        raise FailedPrecondition(f"read sysctl {rel}: {exc.strerror or exc}") from exc


def enable_ip_forward() -> None:
    """Let the host route between bridges and its uplink (net.ipv4.ip_forward=1)."""
    if get_sysctl("net/ipv4/ip_forward") != "1":
        set_sysctl("net/ipv4/ip_forward", "1")


def enable_route_localnet(bridge: str, on: bool = True) -> None:
    """Allow 127.0.0.0/8-sourced packets out of *bridge*, so 127.0.0.1 DNAT reaches containers.

    This also makes the kernel accept packets arriving on *bridge* addressed to
    127.0.0.0/8: berth's nftables guards (host.nftables, guard_pre) must be in
    place before it is turned on. *on* False turns it off (internal networks).
    """
    check_ifname(bridge)
    set_sysctl(f"net/ipv4/conf/{bridge}/route_localnet", "1" if on else "0")


def disable_ipv6(ifname: str) -> None:
    """Take IPv6 off *ifname* (net.ipv6.conf.<if>.disable_ipv6=1): no link-local address, no IPv6 input.

    For networks made without --ipv6 (the default bridge among them): with IPv6
    on, a bridge's link-local address would let containers (internal networks'
    too) reach host services listening on [::]. --ipv6 networks use enable_ipv6.
    Fine when IPv6 is not available on this host at all.
    """
    check_ifname(ifname)
    if not (SYSCTL_ROOT / "net/ipv6/conf" / ifname).exists():
        return
    if get_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6") != "1":
        set_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "1")



def enable_ipv6(ifname: str, gateway6_cidr: str) -> None:
    """Give bridge *ifname* IPv6 (a network made with --ipv6): exactly the global address *gateway6_cidr*.

    The bridge never takes configuration from its containers: router
    advertisements (accept_ra), SLAAC (autoconf) and redirects are off before
    IPv6 comes on, so a container cannot add routes or addresses to the host.
    berth's ip6 guards (host.nftrules.network_rules6) must already be in place.

    Raises:
        InvalidArgument: a bad name or address.
        FailedPrecondition: this host has no IPv6, or the kernel refused.
    """
    check_ifname(ifname)
    try:
        want = ipaddress.IPv6Interface(gateway6_cidr)
    except ValueError:
        raise InvalidArgument(f"invalid IPv6 gateway {gateway6_cidr!r}: expected e.g. fd00:1::1/64") from None
    if not (SYSCTL_ROOT / "net/ipv6/conf" / ifname).exists():
        raise FailedPrecondition(f"{ifname} has no IPv6 settings: is IPv6 turned off on this host "
                                 "(ipv6.disable=1)? Create the network without --ipv6")
    for key in ("accept_ra", "autoconf", "accept_redirects"):
        if get_sysctl(f"net/ipv6/conf/{ifname}/{key}") != "0":
            set_sysctl(f"net/ipv6/conf/{ifname}/{key}", "0")
    if get_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6") != "0":
        set_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "0")
    with rtnl(f"set the IPv6 address of {ifname}") as ipr:
        index = link_index(ipr, ifname)
        if index is None:
            raise NotFound(f"no interface {ifname}: create the bridge first")
        have = False
        for addr in ipr.get_addr(index=index, family=socket.AF_INET6):
            current = ipaddress.IPv6Interface(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
            if current.ip.is_link_local:
                continue
            if current == want:
                have = True
            else:
                ipr.addr("del", index=index, address=str(current.ip), prefixlen=current.network.prefixlen)
        if not have:
            ipr.addr("add", index=index, address=str(want.ip), prefixlen=want.network.prefixlen,
                     flags=IFA_F_NODAD)
