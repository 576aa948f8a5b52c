"""IPv6 address management for bridge networks created with ``--ipv6``: pools, ULA choice, allocation.

Strategy: pure functions over the stdlib ``ipaddress`` types, beside the IPv4
ones in ``ipam`` and shaped like them. A network's IPv6 space is a ``Pool6``
(subnet, gateway, optional ip_range); the addresses containers hold come in as
a set of strings, so nothing here keeps state or touches the host.

Docker's rules, as berth follows them:

- ``IPAM.Config`` holds at most one IPv4 and one IPv6 entry (``split_configs``);
  an IPv6 entry without ``EnableIPv6`` is recorded and otherwise ignored, as
  Docker ignores it.
- ``--ipv6`` without an IPv6 subnet gets a unique local /64 (RFC 4193: fd00::/8,
  a random 40-bit global id, subnet id 0), which is what Docker 27+ does
  (Docker 20.10 refused the request instead).
- The gateway defaults to the subnet's first address after the network address
  (fd00:1::1 for fd00:1::/64); containers get the first free address after it,
  from the ip_range when there is one. The subnet's own network address (the
  subnet-router anycast address) is never handed out.

Error messages keep Docker's wording where its users would know it ("invalid
CIDR address", "no matching subnet for gateway", "Address already in use",
"It does not belong to any of this network's subnets").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Iterator

from berth.errors import Conflict, InvalidArgument
from berth.network.record import IpamEntry

Network6 = ipaddress.IPv6Network
Address6 = ipaddress.IPv6Address

# A subnet needs room for its network address, a gateway and one container.
MAX_PREFIX = 126
ULA_PREFIX = 64
# Address space no bridge may carry as a subnet: multicast, link-local (every interface's own fe80::/64),
# loopback/unspecified/IPv4-compatible, and v4-mapped.
RESERVED: tuple[Network6, ...] = tuple(Network6(n) for n in ("ff00::/8", "fe80::/10", "::/96", "::ffff:0:0/96"))


def parse_subnet6(text: str, what: str = "subnet") -> Network6:
    """Parse an IPv6 --subnet (or --ip-range) value such as "fd00:1::/64".

    Raises:
        InvalidArgument: not an IPv6 CIDR, host bits set, or too small to hold a container.
    """
    raw = str(text).strip()
    try:
        if "/" not in raw:
            raise ValueError(raw)
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid CIDR address: {text} (expected an IPv6 {what} such as fd00:1::/64)") from None
    if not isinstance(net, Network6):
        raise InvalidArgument(f"invalid IPv6 {what} {text}: expected an IPv6 {what} such as fd00:1::/64")
    if ipaddress.IPv6Address(raw.split("/", 1)[0]) != net.network_address:
        raise InvalidArgument(f"invalid {what} {text}: it should be {net}")
    if net.prefixlen > MAX_PREFIX:
        raise InvalidArgument(f"invalid {what} {text}: a /{net.prefixlen} has no room for a gateway and a "
                              f"container; use a prefix of /{MAX_PREFIX} or shorter")
    for reserved in RESERVED:
        if net.overlaps(reserved):
            raise InvalidArgument(f"invalid {what} {text}: it overlaps {reserved}, which is not unicast space a "
                                  "bridge can carry; use a unique local subnet such as fd00:1::/64")
    return net


def parse_address6(text: str, what: str = "IPv6 address") -> Address6:
    """Parse one IPv6 address (a --gateway or --ip6 value); a zone ("%eth0") is refused.

    Raises:
        InvalidArgument: not an IPv6 address.
    """
    try:
        addr = ipaddress.ip_address(str(text).strip())
    except ValueError:
        addr = None
    if not isinstance(addr, Address6) or addr.scope_id is not None:
        raise InvalidArgument(f"invalid {what} {text!r}: expected an IPv6 address such as fd00:1::2")
    return addr


@dataclass(frozen=True, slots=True)
class Pool6:
    """The IPv6 address space of one network.

    Invariants (checked on construction): the gateway lies in the subnet and is
    not its network address; the ip_range, when given, lies inside the subnet.
    """

    subnet: Network6
    gateway: Address6
    ip_range: Network6 | None = None

    def __post_init__(self) -> None:
        if self.subnet.prefixlen > MAX_PREFIX:
            raise InvalidArgument(f"invalid subnet {self.subnet}: use a prefix of /{MAX_PREFIX} or shorter")
        if self.gateway not in self.subnet:
            raise InvalidArgument(
                f"no matching subnet for gateway {self.gateway}: the gateway must lie inside {self.subnet}")
        if self.gateway == self.subnet.network_address:
            raise InvalidArgument(f"invalid gateway {self.gateway}: it is the network address of {self.subnet}")
        if self.ip_range is not None and not self.ip_range.subnet_of(self.subnet):
            raise InvalidArgument(
                f"no matching subnet for range {self.ip_range}: the range must lie inside {self.subnet}")

    @classmethod
    def parse(cls, subnet: str, gateway: str | None = None, ip_range: str | None = None) -> Pool6:
        """Build a pool from --subnet/--gateway/--ip-range strings (gateway: the subnet's first address).

        Raises:
            InvalidArgument: a value does not parse, or the values do not fit together.
        """
        net = parse_subnet6(subnet)
        gw = parse_address6(gateway, "gateway") if gateway else net.network_address + 1
        rng = parse_subnet6(ip_range, "ip-range") if ip_range else None
        return cls(net, gw, rng)

    @property
    def gateway_cidr(self) -> str:
        """The gateway with the subnet's prefix, as the bridge carries it: "fd00:1::1/64"."""
        return f"{self.gateway}/{self.subnet.prefixlen}"

    def address_cidr(self, address: str | Address6) -> str:
        return f"{address}/{self.subnet.prefixlen}"

    def assignable(self, address: Address6) -> bool:
        """True when a container may hold *address* in this pool (taken or not)."""
        if address == self.gateway or address not in self.subnet or address == self.subnet.network_address:
            return False
        return self.ip_range is None or address in self.ip_range

    def candidates(self, limit: int = 1 << 20) -> Iterator[Address6]:
        """Addresses a container may get, in allocation order (at most *limit* of them: a /64 is huge)."""
        space = self.ip_range if self.ip_range is not None else self.subnet
        first = max(int(space.network_address), int(self.subnet.network_address) + 1)
        last = int(space.broadcast_address)
        for n in range(first, min(last, first + limit - 1) + 1):
            addr = Address6(n)
            if addr != self.gateway:
                yield addr

    def config(self) -> IpamEntry:
        """The network's IPAM.Config entry for this pool."""
        return IpamEntry(str(self.subnet), str(self.gateway), str(self.ip_range) if self.ip_range is not None else "")


def split_configs(configs: Iterable[IpamEntry]) -> tuple[IpamEntry, IpamEntry | None]:
    """IPAM.Config entries as (IPv4 entry, IPv6 entry or None); the IPv4 one may be empty (choose one).

    Raises:
        InvalidArgument: there are two entries of one family.
    """
    v4: IpamEntry | None = None
    v6: IpamEntry | None = None
    for cfg in configs:
        if cfg.is_v6:
            if v6 is not None:
                raise InvalidArgument("berth networks have one IPv6 subnet: pass one IPv6 --subnet")
            v6 = cfg
        else:
            if v4 is not None:
                raise InvalidArgument("berth networks have one IPv4 subnet: pass one IPv4 --subnet")
            v4 = cfg
    return v4 or IpamEntry(), v6


def check_overlap6(subnet: Network6, existing: Iterable[Network6 | str]) -> None:
    """Refuse an IPv6 subnet that overlaps one already in use (IPv4 entries are ignored).

    Raises:
        Conflict: "Pool overlaps with other one on this address space".
    """
    for other in existing:
        other_net = other if isinstance(other, Network6) else ipaddress.ip_network(str(other), strict=False)
        if isinstance(other_net, Network6) and subnet.overlaps(other_net):
            raise Conflict(
                f"invalid pool request: Pool overlaps with other one on this address space "
                f"({subnet} overlaps {other_net}); choose another --subnet or remove the network using it")


def ula_subnet(global_id: bytes, existing: Iterable[Network6 | str] = ()) -> Network6:
    """A unique local /64 for ``--ipv6`` without a subnet: fd + *global_id* (5 random bytes), subnet 0,
    or the next subnet id of that /48 when one overlaps *existing*.

    Raises:
        InvalidArgument: *global_id* is not 5 bytes.
        Conflict: the whole /48 is taken (only with a crafted *existing*).
    """
    if len(global_id) != 5:
        raise InvalidArgument("a ULA global id is 40 bits (5 bytes)")
    base = int.from_bytes(b"\xfd" + global_id + b"\x00" * 10, "big")
    taken = [n for n in (e if isinstance(e, Network6) else ipaddress.ip_network(str(e), strict=False)
                         for e in existing) if isinstance(n, Network6)]
    for subnet_id in range(1 << 16):
        net = Network6((base | (subnet_id << 64), ULA_PREFIX))
        if not any(net.overlaps(t) for t in taken):
            return net
    raise Conflict("every /64 of the chosen unique local prefix is taken: pass --subnet")


def allocate6(pool: Pool6, used: set[str], wanted: str | None = None) -> str:
    """Choose an IPv6 address for a container (the first free one, or *wanted* from --ip6).

    Raises:
        InvalidArgument: *wanted* is not an IPv6 address, or not an assignable one in this pool.
        Conflict: *wanted* is taken ("Address already in use"), or the pool is full.
    """
    taken = {str(ipaddress.ip_address(u.split("/", 1)[0].strip())) for u in used if u}
    if wanted:
        addr = parse_address6(wanted, "IPv6 address")
        if addr == pool.gateway:
            raise Conflict(f"Address already in use: {addr} is the gateway of {pool.subnet}; choose another --ip6")
        if not pool.assignable(addr):
            where = f"range {pool.ip_range} of {pool.subnet}" if pool.ip_range is not None else str(pool.subnet)
            raise InvalidArgument(f"Invalid address {addr}: It does not belong to any of this network's subnets "
                                  f"(containers take addresses of {where})")
        if str(addr) in taken:
            raise Conflict(f"Address already in use: {addr} is held by another container on this network")
        return str(addr)
    for addr in pool.candidates(limit=len(taken) + 2):
        if str(addr) not in taken:
            return str(addr)
    space = pool.ip_range if pool.ip_range is not None else pool.subnet
    raise Conflict(f"no available IPv6 addresses on this network's address pools ({space} is full); "
                   "remove containers from the network or create it with a larger --subnet/--ip-range")
