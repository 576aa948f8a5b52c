"""IPv4 address management for bridge networks: pools, subnet choice, address allocation.

Strategy: pure functions over the stdlib ``ipaddress`` types. A network's address
space is a ``Pool`` (subnet, gateway, optional ip_range); which addresses are taken
is the caller's business (the network service keeps them in its database) and comes
in as a set of strings, so nothing here holds state or touches the host.

Allocation follows Docker's default IPAM: the first free address, counting from
the start of the ip_range (or of the subnet when there is none), never the
subnet's network or broadcast address and never the gateway. Networks created
without --subnet get the first candidate that overlaps none of the existing
ones: 172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/20 ... 192.168.240.0/20,
as Docker's default address pools do. IPv6 pools are network.ipam6's; MAC
addresses (Docker's derived one, a --mac-address value) are here too.

Error messages keep Docker's wording where the docker CLI's users would know it
("Pool overlaps with other one on this address space", "Address already in use",
"no available IPv4 addresses on this network's address pools").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from berth.errors import Conflict, FailedPrecondition, InvalidArgument

Network = ipaddress.IPv4Network
Address = ipaddress.IPv4Address


def _default_candidates() -> tuple[str, ...]:
    wide = [f"172.{n}.0.0/16" for n in range(17, 32)]
    narrow = [f"192.168.{n}.0/20" for n in range(0, 256, 16)]
    return tuple(wide + narrow)


# Docker's default local address pools, in the order Docker tries them.
DEFAULT_CANDIDATES: tuple[str, ...] = _default_candidates()

# A subnet needs room for a network address, a gateway, one container and a broadcast.
_MAX_PREFIX = 30


def parse_subnet(text: str) -> Network:
    """Parse a --subnet value such as "172.20.0.0/16".

    Raises:
        InvalidArgument: not a CIDR, host bits set, or too small to hold a container.
        InvalidArgument: an IPv6 subnet (those are network.ipam6's).
    """
    net = _parse_network(text, "subnet")
    if net.prefixlen > _MAX_PREFIX:
        raise InvalidArgument(
            f"invalid subnet {text}: a /{net.prefixlen} has no room for a gateway and a "
            f"container; use a prefix of /{_MAX_PREFIX} or shorter")
    return net


def parse_address(text: str, what: str = "address") -> Address:
    """Parse one IPv4 address (a --gateway, --ip or --aux-address value).

    Raises:
        InvalidArgument: not an IPv4 address.
        InvalidArgument: an IPv6 address.
    """
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: expected an IPv4 address such as 172.20.0.1") from None
    if isinstance(addr, ipaddress.IPv6Address):
        raise InvalidArgument(f"invalid {what} {text}: an IPv6 address where an IPv4 one is needed (IPv6 goes "
                              "with an IPv6 subnet: --ipv6 --subnet fd00:1::/64, and --ip6 for a container)")
    return addr


def _parse_network(text: str, what: str) -> Network:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid CIDR address: {text} (expected a {what} such as 172.20.0.0/16)") from None
    if isinstance(net, ipaddress.IPv6Network):
        raise InvalidArgument(f"invalid {what} {text}: an IPv6 {what} where an IPv4 one is needed (an IPv6 "
                              "subnet has its own IPAM config entry: --ipv6 --subnet fd00:1::/64)")
    if str(net.network_address) != text.strip().split("/")[0]:
        raise InvalidArgument(f"invalid {what} {text}: it should be {net}")
    return net


@dataclass(frozen=True, slots=True)
class Pool:
    """The address space of one network.

    Invariants (checked on construction): the gateway is a host address of the
    subnet; the ip_range, when given, lies inside the subnet.
    """

    subnet: Network
    gateway: Address
    ip_range: Network | None = None

    def __post_init__(self) -> None:
        if self.subnet.prefixlen > _MAX_PREFIX:
            raise InvalidArgument(f"invalid subnet {self.subnet}: use a prefix of /{_MAX_PREFIX} or shorter")
        if self.gateway not in self.subnet:
            raise InvalidArgument(
                f"no matching subnet for gateway {self.gateway}: the gateway must lie inside {self.subnet}")
        if self.gateway in (self.subnet.network_address, self.subnet.broadcast_address):
            raise InvalidArgument(
                f"invalid gateway {self.gateway}: it is the network or broadcast address of {self.subnet}")
        if self.ip_range is not None and not self.ip_range.subnet_of(self.subnet):
            raise InvalidArgument(
                f"no matching subnet for range {self.ip_range}: the range must lie inside {self.subnet}")

    @classmethod
    def parse(cls, subnet: str, gateway: str | None = None, ip_range: str | None = None) -> Pool:
        """Build a pool from --subnet/--gateway/--ip-range strings.

        The gateway defaults to the subnet's first host address (172.20.0.1 for 172.20.0.0/16).

        Raises:
            InvalidArgument: a value does not parse, or the values do not fit together.
        """
        net = parse_subnet(subnet)
        gw = parse_address(gateway, "gateway") if gateway else net.network_address + 1
        rng = _parse_network(ip_range, "ip-range") if ip_range else None
        return cls(net, gw, rng)

    @property
    def gateway_cidr(self) -> str:
        """The gateway with the subnet's prefix, as the bridge carries it: "172.20.0.1/16"."""
        return f"{self.gateway}/{self.subnet.prefixlen}"

    def address_cidr(self, address: str | Address) -> str:
        """*address* with the subnet's prefix, as a container's interface carries it."""
        return f"{address}/{self.subnet.prefixlen}"

    def candidates(self) -> Iterator[Address]:
        """Every address a container may get, in allocation order."""
        space = self.ip_range if self.ip_range is not None else self.subnet
        first = max(int(space.network_address), int(self.subnet.network_address) + 1)
        last = min(int(space.broadcast_address), int(self.subnet.broadcast_address) - 1)
        for n in range(first, last + 1):
            addr = Address(n)
            if addr != self.gateway:
                yield addr

    def assignable(self, address: Address) -> bool:
        """True when *address* is one a container may hold in this pool (taken or not)."""
        if address == self.gateway or address not in self.subnet:
            return False
        if address in (self.subnet.network_address, self.subnet.broadcast_address):
            return False
        return self.ip_range is None or address in self.ip_range


def overlaps(a: Network | str, b: Network | str) -> bool:
    """True when the two subnets share any address."""
    return _as_network(a).overlaps(_as_network(b))


def check_overlap(subnet: Network | str, existing: Iterable[Network | str]) -> None:
    """Refuse a subnet that overlaps one already in use.

    Raises:
        Conflict: "Pool overlaps with other one on this address space", naming the other subnet.
    """
    new = _as_network(subnet)
    for other_net in _ipv4_only(existing):
        if new.overlaps(other_net):
            raise Conflict(
                f"invalid pool request: Pool overlaps with other one on this address space "
                f"({new} overlaps {other_net}); choose another --subnet or remove the network using it")


def pick_subnet(existing: Sequence[Network | str],
                candidates: Sequence[Network | str] = DEFAULT_CANDIDATES) -> Network:
    """The first candidate subnet that overlaps none of *existing*.

    *existing* should hold the subnets of every berth network and of the host's own
    interfaces and routes, so a new bridge never shadows a reachable network.

    Raises:
        FailedPrecondition: every candidate is taken.
    """
    taken = _ipv4_only(existing)
    for cand in candidates:
        net = _as_network(cand)
        if not any(net.overlaps(t) for t in taken):
            return net
    raise FailedPrecondition(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to "
        "assign to the network; remove unused networks (docker network prune) or pass --subnet")


def auxiliary_addresses(pool: Pool, given: Mapping[str, str]) -> dict[str, str]:
    """IPAM's AuxiliaryAddresses (name -> address the network reserves, never given to a container):
    each an address of the subnet, and not the gateway.

    Raises:
        InvalidArgument: too many, or an address outside the subnet.
    """
    if len(given) > 1024:
        raise InvalidArgument("IPAM.Config.AuxiliaryAddresses must be an object of names to addresses")
    out = {}
    for name, value in given.items():
        addr = parse_address(str(value), "auxiliary address")
        if addr not in pool.subnet:
            raise InvalidArgument(f"auxiliary address {name}={addr} is not in the network's subnet {pool.subnet}")
        out[str(name)] = str(addr)
    return out


def allocate(pool: Pool, used: set[str], wanted: str | None = None) -> str:
    """Choose an address for a container.

    Args:
        pool: the network's address space.
        used: addresses already held by containers on this network (strings).
        wanted: a --ip the user asked for, or None for the first free address.

    Returns:
        The address, as a string without prefix.

    Raises:
        InvalidArgument: *wanted* is not an address, or not an assignable one in this pool.
        Conflict: *wanted* is taken ("Address already in use"), or the pool is full.
    """
    taken = {_normalise(u) for u in used}
    if wanted:
        addr = parse_address(wanted, "IP address")
        if addr == pool.gateway:
            raise Conflict(f"Address already in use: {addr} is the gateway of {pool.subnet}; choose another --ip")
        if not pool.assignable(addr):
            where = f"range {pool.ip_range} of {pool.subnet}" if pool.ip_range is not None else str(pool.subnet)
            raise InvalidArgument(
                f"Invalid address {addr}: It does not belong to any of this network's subnets "
                f"(containers take host addresses of {where})")
        if str(addr) in taken:
            raise Conflict(f"Address already in use: {addr} is held by another container on this network")
        return str(addr)
    for addr in pool.candidates():
        if str(addr) not in taken:
            return str(addr)
    space = pool.ip_range if pool.ip_range is not None else pool.subnet
    raise Conflict(
        f"no available IPv4 addresses on this network's address pools ({space} is full); "
        "remove containers from the network or create it with a larger --subnet/--ip-range")


def parse_mac(text: Any, what: str = "MAC address") -> str:
    """A --mac-address value as the kernel takes it: six lower-case hex bytes joined by colons.

    Accepts "02:42:ac:11:00:02" and "02-42-AC-11-00-02".

    Raises:
        InvalidArgument: not six bytes, or a multicast or all-zero address (no interface can carry it).
    """
    raw = text.strip() if isinstance(text, str) else ""
    parts = re.split(r"[:-]", raw)
    if len(parts) != 6 or len(set(re.findall(r"[:-]", raw))) != 1 or \
            not all(re.fullmatch(r"[0-9A-Fa-f]{2}", p) for p in parts):
        raise InvalidArgument(f"invalid {what} {text!r}: expected six hex bytes such as 02:42:ac:11:00:02")
    octets = bytes(int(p, 16) for p in parts)
    if octets[0] & 1 or not any(octets):
        raise InvalidArgument(f"invalid {what} {text}: a multicast or all-zero address cannot be an "
                              "interface's; use a unicast one such as 02:42:ac:11:00:02")
    return ":".join(f"{b:02x}" for b in octets)


def mac_for(ip: str | Address) -> str:
    """Docker's MAC address for a container address: 02:42 then the four IPv4 bytes."""
    addr = ip if isinstance(ip, Address) else parse_address(ip)
    return ":".join(f"{b:02x}" for b in (0x02, 0x42, *addr.packed))


def _as_network(value: Network | str) -> Network:
    # Lenient on purpose: an interface address such as "192.0.2.7/24" stands for its subnet.
    if isinstance(value, Network):
        return value
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid CIDR address: {value} (expected a subnet such as 172.20.0.0/16)") from None
    if isinstance(net, ipaddress.IPv6Network):
        raise InvalidArgument(f"subnet {value}: an IPv6 subnet where an IPv4 one is needed")
    return net


def _ipv4_only(values: Iterable[Network | str]) -> list[Network]:
    # The host's IPv6 routes cannot overlap an IPv4 pool: leave them out rather than fail.
    return [_as_network(v) for v in values if isinstance(v, Network) or ":" not in v]


def _normalise(text: str) -> str:
    # "172.20.0.2/16" and "172.20.0.2" are the same holder.
    return text.split("/", 1)[0].strip()
