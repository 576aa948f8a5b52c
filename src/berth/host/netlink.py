"""Links, addresses, routes and network namespaces, through netlink (pyroute2).

Strategy: every function is synchronous, opens one rtnetlink socket, does its
few requests and closes it: milliseconds, no subprocess, no cached state that
could go stale. Work *inside* a network namespace runs on a short-lived thread
that has setns(2)'d into it: a network namespace belongs to a thread, not to the
process, so the daemon's own threads never leave the host's namespace and no
helper process is forked (pyroute2's NetNS forks one per namespace).

A container's namespace is a file the caller names (like ``ip netns add``, which
always uses /run/netns): a bind mount of the namespace onto an empty file keeps
the namespace alive with no process in it, and runc joins it through the path in
config.json. The directory holding these files is made a shared mount point, as
iproute2 does, so that unmounting one also unmounts the copies other mount
namespaces took.

Kernel errors are translated once (``_kernel_error``): EEXIST becomes Conflict,
a missing device NotFound, anything else FailedPrecondition, each with the
kernel's words (strerror) and what was being done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import ipaddress
import os
import re
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from berth.errors import (
    AlreadyExists,
    BerthError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from berth.host import mount

T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_CLONE_NEWNET = 0x40000000
_MS_REC = 0x4000
_MS_SHARED = 1 << 20
_IFNAMSIZ = 15  # usable characters of an interface name (16 with the NUL)
_SYSCTL_ROOT = Path("/proc/sys")


# --------------------------------------------------------------------------- #
# Names


def veth_name(container_id: str, network_id: str = "") -> str:
    """The host end of a container's veth on one network: "veth" + 11 hex characters.

    Derived from both ids, so one container on several networks gets distinct
    names and the caller can recompute the name to detach it.
    """
    digest = hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()
    return "veth" + digest[:11]


def check_ifname(name: str) -> None:
    """Raises InvalidArgument unless *name* is usable as an interface name."""
    if not name or len(name) > _IFNAMSIZ or name in (".", "..") or any(
            c in name for c in "/: \t\n\"'\\") or not name.isprintable():
        raise InvalidArgument(
            f"invalid interface name {name!r}: use 1 to {_IFNAMSIZ} characters without '/', ':', "
            "quotes or white space")


# --------------------------------------------------------------------------- #
# Errors and sockets


def _kernel_error(exc: BaseException, doing: str) -> BerthError:
    code = getattr(exc, "code", None) if isinstance(exc, NetlinkError) else getattr(exc, "errno", None)
    words = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    if code == errno.EEXIST:
        return Conflict(f"{doing}: {words}")
    if code in (errno.ENODEV, errno.ENOENT):
        return NotFound(f"{doing}: {words}")
    if code in (errno.EPERM, errno.EACCES):
        return FailedPrecondition(f"{doing}: {words} (berthd must run as root, with CAP_NET_ADMIN)")
    if code == errno.EOPNOTSUPP:
        return FailedPrecondition(f"{doing}: {words} (this kernel lacks the device type; it needs bridge, "
                                  "veth and tun support)")
    return FailedPrecondition(f"{doing}: {words}")


@contextmanager
def _rtnl(doing: str) -> Iterator[Any]:
    """An rtnetlink socket in the calling thread's namespace; kernel errors become BerthErrors."""
    try:
        ipr = IPRoute()
    except OSError as exc:
        raise _kernel_error(exc, doing) from exc
    try:
        yield ipr
    except (NetlinkError, OSError) as exc:
        raise _kernel_error(exc, doing) from exc
    finally:
        ipr.close()


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _kind(ipr: Any, index: int) -> str | None:
    link = ipr.get_links(index)[0]
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _delete_link(name: str, doing: str) -> None:
    with _rtnl(doing) as ipr:
        index = _index(ipr, name)
        if index is None:
            return
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:  # gone meanwhile
                raise


# --------------------------------------------------------------------------- #
# Sysctls


def set_sysctl(path: str, value: str) -> None:
    """Write *value* to /proc/sys/*path* ("net/ipv4/ip_forward" or "net.ipv4.ip_forward").

    Raises:
        FailedPrecondition: the setting does not exist here or cannot be written.
    """
    rel = path.replace(".", "/") if "/" not in path else path
    target = _SYSCTL_ROOT / rel.lstrip("/")
    try:
        target.write_text(f"{value}\n")
    except OSError as exc:
        raise FailedPrecondition(f"set sysctl {rel}={value}: {exc.strerror or exc}") from exc


def get_sysctl(path: str) -> str:
    """Read /proc/sys/*path*, without the trailing newline."""
    rel = path.replace(".", "/") if "/" not in path else path
    try:
        return (_SYSCTL_ROOT / rel.lstrip("/")).read_text().strip()
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
    if not (_SYSCTL_ROOT / "net/ipv6/conf" / ifname).exists():
        return
    if get_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6") != "1":
        set_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "1")


_IFA_F_NODAD = 0x02  # no duplicate address detection: the address works at once (berth hands out unique ones)


def enable_ipv6(ifname: str, gateway6_cidr: str) -> None:
    """Give bridge *ifname* IPv6 (a network made with --ipv6): exactly the global address *gateway6_cidr*.

    The bridge never takes configuration from its containers: router
    advertisements (accept_ra), SLAAC (autoconf) and redirects are off before
    IPv6 comes on, so a container cannot add routes or addresses to the host.
    berth's ip6 guards (host.nftables.network_rules6) must already be in place.

    Raises:
        InvalidArgument: a bad name or address.
        FailedPrecondition: this host has no IPv6, or the kernel refused.
    """
    check_ifname(ifname)
    try:
        want = ipaddress.IPv6Interface(gateway6_cidr)
    except ValueError:
        raise InvalidArgument(f"invalid IPv6 gateway {gateway6_cidr!r}: expected e.g. fd00:1::1/64") from None
    if not (_SYSCTL_ROOT / "net/ipv6/conf" / ifname).exists():
        raise FailedPrecondition(f"{ifname} has no IPv6 settings: is IPv6 turned off on this host "
                                 "(ipv6.disable=1)? Create the network without --ipv6")
    for key in ("accept_ra", "autoconf", "accept_redirects"):
        if get_sysctl(f"net/ipv6/conf/{ifname}/{key}") != "0":
            set_sysctl(f"net/ipv6/conf/{ifname}/{key}", "0")
    if get_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6") != "0":
        set_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "0")
    with _rtnl(f"set the IPv6 address of {ifname}") as ipr:
        index = _index(ipr, ifname)
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
                     flags=_IFA_F_NODAD)


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
    with _rtnl(f"set up bridge {name}") as ipr:
        index = _index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # another caller made it meanwhile
                    raise
            index = _index(ipr, name)
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
    with _rtnl(f"create tap {name} on {bridge}") as ipr:
        br = _index(ipr, bridge)
        if br is None:
            raise NotFound(f"create tap {name}: no bridge {bridge}; create the network's bridge first")
        if _index(ipr, name) is not None:
            raise Conflict(f"create tap {name}: an interface with that name exists; detach it first")
        ipr.link("add", ifname=name, kind="tuntap", mode="tap", ifr={"no_pi": 1, "vnet_hdr": 1})
        try:
            index = _index(ipr, name)
            if index is None:
                raise FailedPrecondition(f"create tap {name}: the device vanished right after creation")
            ipr.link("set", index=index, mtu=mtu, master=br)
            ipr.link("set", index=index, state="up")
        except BaseException:
            _quiet_delete(ipr, name)
            raise


def delete_tap(name: str) -> None:
    """Delete the tap *name*; fine when it is gone."""
    check_ifname(name)
    _delete_link(name, f"delete tap {name}")


def links(prefix: str = "") -> list[str]:
    """Names of the host's interfaces that start with *prefix*, sorted."""
    with _rtnl("list interfaces") as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(prefix))


def exists(name: str) -> bool:
    """True when the host has an interface called *name*."""
    with _rtnl(f"look up interface {name}") as ipr:
        return _index(ipr, name) is not None


def host_networks() -> list[str]:
    """IPv4 subnets the host already reaches: its addresses' subnets and its routes.

    Pass them to berth.network.ipam.pick_subnet with the networks' own subnets so
    that a new bridge never shadows a network the host uses.
    """
    nets: set[ipaddress.IPv4Network] = set()
    with _rtnl("list addresses and routes") as ipr:
        for addr in ipr.get_addr(family=socket.AF_INET):
            nets.add(ipaddress.IPv4Interface(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}").network)
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = route.get_attr("RTA_DST")
            if dst and route["dst_len"] > 0:
                nets.add(ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
    return [str(n) for n in sorted(nets)]


# --------------------------------------------------------------------------- #
# Network namespaces


def _on_thread(fn: Callable[[], T], name: str) -> T:
    """Run *fn* on a fresh thread (whose namespace changes die with it); re-raise its error here."""
    out: list[T] = []
    err: list[BaseException] = []

    def body() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            err.append(exc)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    if err:
        raise err[0]
    return out[0]


def _in_netns(path: Path, fn: Callable[[], T]) -> T:
    """Run *fn* on a fresh thread that has joined the network namespace at *path*."""

    def body() -> T:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NotFound(f"network namespace {path}: {exc.strerror}; was it created?") from exc
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise FailedPrecondition(
                    f"join network namespace {path}: {os.strerror(code)} (is it a namespace file?)")
        finally:
            os.close(fd)
        return fn()

    return _on_thread(body, "berth-netns")


def prepare_netns_dir(directory: Path) -> None:
    """Make the directory namespaces will be bound in (a shared mount point), ahead of the first one."""
    directory.mkdir(parents=True, exist_ok=True)
    _share_directory(directory)


def _share_directory(directory: Path) -> None:
    # iproute2's recipe for /run/netns: the directory becomes a mount point of its
    # own (a bind onto itself) with shared propagation.
    if not _is_mount_point(directory):
        mount.mount(str(directory), str(directory), "none", flags=mount.MS_BIND | _MS_REC)
    mount.mount("none", str(directory), "none", flags=_MS_SHARED | _MS_REC)


def _is_mount_point(directory: Path) -> bool:
    # os.path.ismount misses a bind mount of a directory onto itself (same device),
    # so read the mount table; its fields escape blanks as octal (\040).
    target = os.path.realpath(directory)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                if point == target:
                    return True
    except OSError:
        return mount.is_mountpoint(target)
    return False


def create_netns(path: Path) -> None:
    """Create a network namespace kept alive by a bind mount on the file *path*, loopback up.

    Raises:
        AlreadyExists: *path* exists.
        FailedPrecondition: the kernel refused (no root, no netns support).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _share_directory(path.parent)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise AlreadyExists(f"network namespace {path} already exists; delete it first") from None

    def body() -> None:
        if _libc.unshare(_CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise FailedPrecondition(f"create network namespace {path}: {os.strerror(code)}")
        mount.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(path), "none",
                    flags=mount.MS_BIND)
        with _rtnl(f"bring up loopback in {path}") as ipr:
            ipr.link("set", index=_index(ipr, "lo"), state="up")

    try:
        # unshare(2) moves only the helper thread; the namespace outlives it through the mount.
        _on_thread(body, "berth-netns-new")
    except BaseException:
        delete_netns(path)
        raise


def delete_netns(path: Path) -> None:
    """Unmount and remove the namespace file *path*; fine when it is already gone.

    The namespace itself ends when no process and no other mount holds it.
    """
    path = Path(path)
    mount.unmount(str(path), lazy=True)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise FailedPrecondition(f"remove network namespace file {path}: {exc.strerror}") from exc


def netns_links(path: Path) -> list[str]:
    """Names of the interfaces inside the namespace at *path*, sorted."""

    def body() -> list[str]:
        with _rtnl(f"list interfaces in {path}") as ipr:
            return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())

    return _in_netns(Path(path), body)


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
        with _rtnl(doing) as ipr:
            br = _index(ipr, bridge)
            if br is None:
                raise NotFound(f"{doing}: no bridge {bridge}; create the network's bridge first")
            if _index(ipr, host_if) is not None:
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
                index = _index(ipr, host_if)
                if index is None:
                    raise FailedPrecondition(f"{doing}: {host_if} vanished right after creation")
                ipr.link("set", index=index, master=br)
                ipr.link("set", index=index, state="up")
                _in_netns(netns_path, lambda: _configure_inside(netns_path, ctr_if, iface, gw, iface6, gw6))
            except BaseException:
                _quiet_delete(ipr, host_if)
                raise
    finally:
        os.close(ns_fd)


def _configure_inside(netns_path: Path, ctr_if: str, iface: ipaddress.IPv4Interface,
                      gateway: ipaddress.IPv4Address | None, iface6: ipaddress.IPv6Interface | None = None,
                      gateway6: ipaddress.IPv6Address | None = None) -> None:
    # Runs on a thread inside the namespace: /proc/sys/net is the namespace's own there.
    if (_SYSCTL_ROOT / "net/ipv6/conf" / ctr_if).exists():
        set_sysctl(f"net/ipv6/conf/{ctr_if}/accept_ra", "0")  # before the link is up
    elif iface6 is not None:
        raise FailedPrecondition(f"configure {ctr_if} in {netns_path}: no IPv6 here for {iface6}")
    with _rtnl(f"configure {ctr_if} in {netns_path}") as ipr:
        index = _index(ipr, ctr_if)
        if index is None:
            raise FailedPrecondition(f"configure {ctr_if} in {netns_path}: the veth end did not arrive")
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                 broadcast=str(iface.network.broadcast_address))
        if iface6 is not None:
            ipr.addr("add", index=index, address=str(iface6.ip), prefixlen=iface6.network.prefixlen,
                     flags=_IFA_F_NODAD)
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
        index = _index(ipr, name)
        if index is not None:
            ipr.link("del", index=index)
    except (NetlinkError, OSError):
        pass
