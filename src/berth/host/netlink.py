"""Bridges, taps and containers' veths: the links berth makes on the host, through netlink (pyroute2).

Strategy: every function is synchronous and does its work through one
short-lived rtnetlink socket (host.rtnetlink), so the kernel's refusals arrive
as berth's error categories. What a daemon restart re-applies is idempotent (an
existing bridge is kept and only corrected), and a link made halfway is
deleted before the error goes up, so a failure leaves nothing behind. A
container's end of a veth is created directly inside its namespace and
configured there, on a thread that joined it (host.netns), with router
advertisements refused before it comes up.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from berth.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from berth.host.ifnames import check_ifname
from berth.host.netns import in_netns
from berth.host.rtnetlink import IFA_F_NODAD, link_index, rtnl
from berth.host.sysctl import SYSCTL_ROOT, set_sysctl

# --------------------------------------------------------------------------- #
# Lookups


def _kind(ipr: Any, index: int) -> str | None:
    link = ipr.get_links(index)[0]
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _delete_link(name: str, doing: str) -> None:
    with rtnl(doing) as ipr:
        index = link_index(ipr, name)
        if index is None:
            return
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:  # gone meanwhile
                raise


# --------------------------------------------------------------------------- #
# Bridges, taps, links


def ensure_bridge(name: str, gateway_cidr: str, mtu: int = 1500) -> None:
    """Make *name* a bridge carrying exactly the IPv4 address *gateway_cidr*, up.

    Idempotent: an existing bridge is kept (its ports too) and only corrected.

    Raises:
        InvalidArgument: a bad name or address.
        Conflict: *name* exists and is not a bridge.
        FailedPrecondition: the kernel refused.
    """
    check_ifname(name)
    try:
        want = ipaddress.IPv4Interface(gateway_cidr)
    except ValueError:
        raise InvalidArgument(f"invalid gateway address {gateway_cidr!r}: expected e.g. 172.20.0.1/16") from None
    with rtnl(f"set up bridge {name}") as ipr:
        index = link_index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # another caller made it meanwhile
                    raise
            index = link_index(ipr, name)
            if index is None:
                raise FailedPrecondition(f"set up bridge {name}: the bridge vanished right after creation")
        kind = _kind(ipr, index)
        if kind != "bridge":
            raise Conflict(f"interface {name} exists and is a {kind or 'device'} rather than a bridge; "
                           "remove it or choose another bridge name")
        ipr.link("set", index=index, mtu=mtu)
        have_wanted = False
        for addr in ipr.get_addr(index=index, family=socket.AF_INET):
            current = ipaddress.IPv4Interface(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
            if current == want:
                have_wanted = True
            else:
                ipr.addr("del", index=index, address=str(current.ip), prefixlen=current.network.prefixlen)
        if not have_wanted:
            ipr.addr("add", index=index, address=str(want.ip), prefixlen=want.network.prefixlen,
                     broadcast=str(want.network.broadcast_address))
        ipr.link("set", index=index, state="up")


def delete_bridge(name: str) -> None:
    """Delete the bridge *name* (its ports are released, not deleted); fine when it is gone."""
    check_ifname(name)
    _delete_link(name, f"delete bridge {name}")


def create_tap(name: str, bridge: str, mtu: int = 1500) -> None:
    """A persistent tap device on *bridge*, up, for QEMU's ``-netdev tap,ifname=NAME``.

    Raises:
        Conflict: *name* already exists.
        NotFound: there is no *bridge*.
    """
    check_ifname(name)
    check_ifname(bridge)
    with rtnl(f"create tap {name} on {bridge}") as ipr:
        br = link_index(ipr, bridge)
        if br is None:
            raise NotFound(f"create tap {name}: no bridge {bridge}; create the network's bridge first")
        if link_index(ipr, name) is not None:
            raise Conflict(f"create tap {name}: an interface with that name exists; detach it first")
        ipr.link("add", ifname=name, kind="tuntap", mode="tap", ifr={"no_pi": 1, "vnet_hdr": 1})
        try:
            index = link_index(ipr, name)
            if index is None:
                raise FailedPrecondition(f"create tap {name}: the device vanished right after creation")
            ipr.link("set", index=index, mtu=mtu, master=br)
            ipr.link("set", index=index, state="up")
        except BaseException:
            _quiet_delete(ipr, name)
            raise


def adopt_tap(current: str, name: str) -> None:
    """Put the tap *current* (a pooled VM's, opened by its QEMU, on no bridge) in the place of the
    tap *name* made for a container: *name* is deleted and *current*, renamed to it, joins the
    same bridge with the same MTU, up. Whoever deletes *name* later deletes this one.

    Raises:
        NotFound: *current* or *name* does not exist, or *name* is on no bridge.
    """
    check_ifname(current)
    check_ifname(name)
    with rtnl(f"put tap {current} in the place of {name}") as ipr:
        old, new = link_index(ipr, name), link_index(ipr, current)
        if old is None or new is None:
            raise NotFound(f"adopt tap {current} as {name}: {name if old is None else current} does not exist")
        link = ipr.get_links(old)[0]
        master, mtu = link.get_attr("IFLA_MASTER"), link.get_attr("IFLA_MTU")
        if not master:
            raise NotFound(f"adopt tap {current} as {name}: {name} is on no bridge")
        ipr.link("del", index=old)
        ipr.link("set", index=new, state="down")
        ipr.link("set", index=new, ifname=name)
        ipr.link("set", index=new, mtu=mtu, master=master)
        ipr.link("set", index=new, state="up")


def delete_tap(name: str) -> None:
    """Delete the tap *name*; fine when it is gone."""
    check_ifname(name)
    _delete_link(name, f"delete tap {name}")


def links(prefix: str = "") -> list[str]:
    """Names of the host's interfaces that start with *prefix*, sorted."""
    with rtnl("list interfaces") as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(prefix))


def exists(name: str) -> bool:
    """True when the host has an interface called *name*."""
    with rtnl(f"look up interface {name}") as ipr:
        return link_index(ipr, name) is not None


def host_networks() -> list[str]:
    """IPv4 subnets the host already reaches: its addresses' subnets and its routes.

    Pass them to berth.network.ipam.pick_subnet with the networks' own subnets so
    that a new bridge never shadows a network the host uses.
    """
    nets: set[ipaddress.IPv4Network] = set()
    with rtnl("list addresses and routes") as ipr:
        for addr in ipr.get_addr(family=socket.AF_INET):
            nets.add(ipaddress.IPv4Interface(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}").network)
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = route.get_attr("RTA_DST")
            if dst and route["dst_len"] > 0:
                nets.add(ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
    return [str(n) for n in sorted(nets)]


# --------------------------------------------------------------------------- #
# Container interfaces


def attach(bridge: str, netns_path: Path, host_if: str, address_cidr: str, gateway: str | None,
           mac: str, mtu: int = 1500, ctr_if: str = "eth0", *,
           address6_cidr: str | None = None, gateway6: str | None = None) -> None:
    """Plug a network namespace into *bridge* with a veth pair.

    The host end *host_if* joins the bridge and comes up; the other end is created
    directly inside the namespace as *ctr_if* with *mac*, gets *address_cidr*, comes
    up, and (when *gateway* is given) carries the namespace's default route.

    Args:
        bridge: the network's bridge (must exist).
        netns_path: the namespace file from create_netns.
        host_if: the host end's name, e.g. veth_name(container_id, network_id).
        address_cidr: the container's address with prefix, e.g. "172.20.0.2/16".
        gateway: the default route's next hop, or None (a second network needs none).
        mac: the container end's MAC, e.g. ipam.mac_for(address).
        address6_cidr: an IPv6 address with prefix (a network with --ipv6), or None.
        gateway6: the IPv6 default route's next hop, or None.

    Whatever the network, the container end takes no router advertisements
    (accept_ra=0): a neighbour container could otherwise give it addresses and
    routes (CVE-2020-13401).

    Raises:
        NotFound: no such bridge or namespace.
        Conflict: *host_if* exists, or *ctr_if* exists in the namespace.
        InvalidArgument: a malformed name or address.
        FailedPrecondition: the kernel refused.
    """
    for name in (bridge, host_if, ctr_if):
        check_ifname(name)
    try:
        iface = ipaddress.IPv4Interface(address_cidr)
        gw = ipaddress.IPv4Address(gateway) if gateway else None
        iface6 = ipaddress.IPv6Interface(address6_cidr) if address6_cidr else None
        gw6 = ipaddress.IPv6Address(gateway6) if gateway6 else None
    except ValueError:
        raise InvalidArgument(f"invalid container address {address_cidr!r}/{address6_cidr!r} or gateway "
                              f"{gateway!r}/{gateway6!r}") from None
    netns_path = Path(netns_path)
    try:
        ns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NotFound(f"network namespace {netns_path}: {exc.strerror}; create it first") from exc
    doing = f"attach {host_if} to {bridge}"
    try:
        with rtnl(doing) as ipr:
            br = link_index(ipr, bridge)
            if br is None:
                raise NotFound(f"{doing}: no bridge {bridge}; create the network's bridge first")
            if link_index(ipr, host_if) is not None:
                raise Conflict(f"{doing}: interface {host_if} already exists; detach it first")
            try:
                ipr.link("add", ifname=host_if, kind="veth", mtu=mtu,
                         peer={"ifname": ctr_if, "net_ns_fd": ns_fd, "mtu": mtu, "address": mac})
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise Conflict(f"{doing}: {ctr_if} already exists in {netns_path}; "
                                   "choose another container interface name") from exc
                raise
            try:
                index = link_index(ipr, host_if)
                if index is None:
                    raise FailedPrecondition(f"{doing}: {host_if} vanished right after creation")
                ipr.link("set", index=index, master=br)
                ipr.link("set", index=index, state="up")
                in_netns(netns_path, lambda: _configure_inside(netns_path, ctr_if, iface, gw, iface6, gw6))
            except BaseException:
                _quiet_delete(ipr, host_if)
                raise
    finally:
        os.close(ns_fd)


def _configure_inside(netns_path: Path, ctr_if: str, iface: ipaddress.IPv4Interface,
                      gateway: ipaddress.IPv4Address | None, iface6: ipaddress.IPv6Interface | None = None,
                      gateway6: ipaddress.IPv6Address | None = None) -> None:
    # Runs on a thread inside the namespace: /proc/sys/net is the namespace's own there.
    if (SYSCTL_ROOT / "net/ipv6/conf" / ctr_if).exists():
        set_sysctl(f"net/ipv6/conf/{ctr_if}/accept_ra", "0")  # before the link is up
    elif iface6 is not None:
        raise FailedPrecondition(f"configure {ctr_if} in {netns_path}: no IPv6 here for {iface6}")
    with rtnl(f"configure {ctr_if} in {netns_path}") as ipr:
        index = link_index(ipr, ctr_if)
        if index is None:
            raise FailedPrecondition(f"configure {ctr_if} in {netns_path}: the veth end did not arrive")
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                 broadcast=str(iface.network.broadcast_address))
        if iface6 is not None:
            ipr.addr("add", index=index, address=str(iface6.ip), prefixlen=iface6.network.prefixlen,
                     flags=IFA_F_NODAD)
        ipr.link("set", index=index, state="up")
        if gateway is not None:
            ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=index)
        if gateway6 is not None:
            ipr.route("add", dst="::/0", gateway=str(gateway6), oif=index, family=socket.AF_INET6)


def detach(host_if: str) -> None:
    """Delete a container's veth pair by its host end; fine when it is gone."""
    check_ifname(host_if)
    _delete_link(host_if, f"detach {host_if}")


def _quiet_delete(ipr: Any, name: str) -> None:
    # Best-effort undo while another error is already on its way up.
    try:
        index = link_index(ipr, name)
        if index is not None:
            ipr.link("del", index=index)
    except (NetlinkError, OSError):
        pass
