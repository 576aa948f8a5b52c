"""berth's nftables rules as text: NAT and filtering for bridge networks and published ports.

Strategy: pure functions build ``nft`` commands from typed values (a PortRule;
a network's id, bridge, subnet and gateway) and check every name and address
before it goes into the text, so no argument can smuggle in a rule of its own.
The unit tests check the text without a kernel; host.nftables lists, builds
and applies it. berth owns one table, ``ip berth`` (plus ``ip6 berth`` once a
network has IPv6), and every rule carries the comment "berth:<owner>", where
the owner is a network id or a container id, so an owner's rules are found in
a JSON listing (owned_handles) and deleted by handle (delete_rules).

Theory of operation (one network on bridge B with subnet S and gateway G; one published port):

    chain guard_pre    filter/prerouting, priority -300 (raw: before conntrack and NAT)
        iifname B ip daddr 127.0.0.0/8 drop   -> nothing from a container reaches the host's loopback
        iifname B ip saddr 127.0.0.0/8 drop   -> nor poses as it (spoofed 127.x sources)
    chain isolate      filter/forward, priority -1, runs first
        iifname B oifname != B ct status ! dnat jump isolate_stage2
    chain isolate_stage2  (regular)
        oifname B drop                  -> a packet from one berth bridge to another dies
    chain forward      filter/forward, priority 0
        oifname B ct state established,related accept
        oifname B ct status dnat accept -> published ports are reachable from anywhere
        iifname B accept                -> containers may go out
        oifname B drop                  -> nothing else reaches a container from outside
    chain prerouting   nat, dstnat: fib daddr type local ip daddr != 127.0.0.0/8 tcp dport P dnat to C:Q
    chain output       nat, -100:   fib daddr type local tcp dport P dnat to C:Q  (host's own clients)
    chain postrouting  nat, srcnat
        ip saddr S oifname != B masquerade                -> containers reach the world
        ip saddr 127.0.0.0/8 oifname B masquerade         -> 127.0.0.1:P works (with route_localnet=1 on B)
        ip saddr S oifname B ct status dnat masquerade    -> a container reaches a published port via the host
    chain guard_post   filter/postrouting, priority 300 (after srcnat)
        oifname B ip saddr 127.0.0.0/8 drop   -> a loopback source never leaves unmasqueraded

Loopback: route_localnet=1 on B is what lets a host client's 127.0.0.1:P reach a
container (the masqueraded reply arrives on B addressed to G and becomes
127.0.0.1 only at dstnat, -100), but it also makes the kernel accept a frame a
container sends to G's MAC addressed to 127.0.0.1 (CVE-2020-8558). guard_pre
runs before conntrack and NAT, so it sees addresses as they are on the wire:
a packet addressed to 127/8 there was sent that way by a container and dies,
while replies of the published-port flows (addressed to G) pass untouched.

An internal network (``docker network create --internal``) gets, instead of
the forward and masquerade rules:

    chain isolate      iifname B oifname != B drop;  oifname B iifname != B drop
    chain input        filter/input, priority 0
        iifname B ct state established,related accept  -> replies to the host's own connections
        iifname B ip daddr G udp|tcp dport 53 accept    -> the embedded DNS on the gateway
        iifname B drop                                  -> no other host address or service

so nothing leaves the network, whatever a container writes into its frames.
The accept verdicts only end *this* table's chain: a host firewall's own drop
still applies, as nftables evaluates every table's base chains at a hook.

IPv6 (networks made with ``--ipv6``) has a table of its own, ``ip6 berth``,
with the filter chains only (no NAT: IPv6 is not masqueraded, as Docker does
not by default), and rules tagged with the same owner comments:

    chain guard_pre    iifname B ip6 daddr|saddr ::1 drop, and the same for ::ffff:0:0/96
                       (v4-mapped addresses: the host's 127.0.0.1 in IPv6 clothing)
    chain isolate      iifname B oifname != B jump isolate_stage2;  isolate_stage2: oifname B drop
    chain forward      oifname B ct state established,related accept; iifname B accept; oifname B drop
    internal:  isolate drops both ways; input accepts established traffic and neighbour
               discovery from B and drops the rest (no IPv6 DNS: the resolver is on the IPv4 gateway)

The kernel itself already drops ::1 arriving on a non-loopback device; the
guards keep that true whatever the kernel version.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument, NotImplemented_

TABLE = "berth"
COMMENT_PREFIX = "berth:"
PROTOCOLS = ("tcp", "udp", "sctp")

# Chain name -> declaration (idempotent `add chain` bodies).
_CHAINS: tuple[tuple[str, str], ...] = (
    ("guard_pre", "{ type filter hook prerouting priority -300; policy accept; }"),
    ("isolate", "{ type filter hook forward priority -1; policy accept; }"),
    ("isolate_stage2", ""),
    ("forward", "{ type filter hook forward priority 0; policy accept; }"),
    ("prerouting", "{ type nat hook prerouting priority -100; policy accept; }"),
    ("output", "{ type nat hook output priority -100; policy accept; }"),
    ("postrouting", "{ type nat hook postrouting priority 100; policy accept; }"),
    ("input", "{ type filter hook input priority 0; policy accept; }"),
    ("guard_post", "{ type filter hook postrouting priority 300; policy accept; }"),
)
# The ip6 table has the filter chains only: berth does not NAT IPv6.
_CHAINS6 = tuple((name, body) for name, body in _CHAINS if name in ("guard_pre", "isolate", "isolate_stage2",
                                                                     "forward", "input"))
FAMILIES = ("ip", "ip6")

_OWNER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")
_TABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK6 = ipaddress.IPv6Network("::1/128")
_MAPPED6 = ipaddress.IPv6Network("::ffff:0:0/96")


# --------------------------------------------------------------------------- #
# Values


@dataclass(frozen=True, slots=True)
class PortRule:
    """One published port: host_ip:host_port/proto -> container_ip:container_port.

    host_ip "" or "0.0.0.0" means every local address of the host.
    """

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    def __post_init__(self) -> None:
        if self.proto not in PROTOCOLS:
            raise InvalidArgument(f"invalid protocol {self.proto!r} for a published port: use tcp, udp or sctp")
        for what, port in (("host", self.host_port), ("container", self.container_port)):
            if not 1 <= port <= 65535:
                raise InvalidArgument(f"invalid {what} port {port}: ports run from 1 to 65535")
        _ipv4(self.container_ip, "container address")
        if self.host_ip not in ("", "0.0.0.0"):
            _ipv4(self.host_ip, "host address")

    @property
    def any_host_ip(self) -> bool:
        return self.host_ip in ("", "0.0.0.0")


def _ipv4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: expected an IPv4 address") from None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise NotImplemented_(f"{what} {text}: IPv6 port publishing is not supported by berth; use an IPv4 address")
    return addr


def _check_owner(owner: str) -> None:
    if not _OWNER_RE.fullmatch(owner):
        raise InvalidArgument(f"invalid rule owner {owner!r}: use a network or container id (letters, digits, _.-)")


def check_table(table: str) -> None:
    if not _TABLE_RE.fullmatch(table):
        raise InvalidArgument(f"invalid nftables table name {table!r}: use letters, digits and _")


def _check_bridge(bridge: str) -> None:
    if not _IFNAME_RE.fullmatch(bridge):
        raise InvalidArgument(f"invalid bridge name {bridge!r}: 1 to 15 letters, digits or _.-")


# --------------------------------------------------------------------------- #
# Pure rule-text builders


def comment(owner: str) -> str:
    """The comment that tags *owner*'s rules: "berth:<owner>"."""
    _check_owner(owner)
    return COMMENT_PREFIX + owner


def skeleton(table: str = TABLE, family: str = "ip") -> list[str]:
    """Idempotent commands declaring the table and its chains (*family* "ip" or "ip6")."""
    check_table(table)
    check_family(family)
    lines = [f"add table {family} {table}"]
    for name, body in (_CHAINS if family == "ip" else _CHAINS6):
        lines.append(f"add chain {family} {table} {name} {body}".rstrip())
    return lines


def check_family(family: str) -> None:
    if family not in FAMILIES:
        raise InvalidArgument(f"invalid nftables family {family!r}: berth uses ip and ip6")


def network_rules6(net_id: str, bridge: str, subnet: str, table: str = TABLE, *,
                   internal: bool = False) -> list[str]:
    """`add rule ip6` commands for a network with IPv6 (``--ipv6``): guards, isolation, forwarding.

    No masquerade: berth, like Docker by default, does not NAT IPv6. See the module's
    docstring for the chains.
    """
    _check_bridge(bridge)
    try:
        ipaddress.IPv6Network(subnet)
    except ValueError:
        raise InvalidArgument(f"invalid IPv6 subnet {subnet!r} for network {net_id}: expected e.g. fd00:1::/64") \
            from None
    tag = f'comment "{comment(net_id)}"'
    b = f'"{bridge}"'
    rules = [("guard_pre", f"iifname {b} ip6 {way} {net} drop")
             for net in (_LOOPBACK6, _MAPPED6) for way in ("daddr", "saddr")]
    if internal:
        rules += [
            ("isolate", f"iifname {b} oifname != {b} drop"),
            ("isolate", f"oifname {b} iifname != {b} drop"),
            ("input", f"iifname {b} ct state established,related accept"),
            ("input", f"iifname {b} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept"),
            ("input", f"iifname {b} drop"),
        ]
    else:
        rules += [
            ("isolate", f"iifname {b} oifname != {b} jump isolate_stage2"),
            ("isolate_stage2", f"oifname {b} drop"),
            ("forward", f"oifname {b} ct state established,related accept"),
            ("forward", f"iifname {b} accept"),
            ("forward", f"oifname {b} drop"),
        ]
    return [f"add rule ip6 {table} {chain} {body} {tag}" for chain, body in rules]


def network_rules(net_id: str, bridge: str, subnet: str, table: str = TABLE, *,
                  internal: bool = False, gateway: str = "") -> list[str]:
    """`add rule` commands for one network: loopback guards, isolation, forwarding and masquerade.

    Args:
        internal: the network has no way out (``--internal``): no forwarding to or
            from other interfaces, no masquerade, and of the host only the embedded
            DNS on *gateway* port 53 is reachable.
        gateway: the bridge's address; required when *internal*.
    """
    _check_bridge(bridge)
    try:
        net = ipaddress.IPv4Network(subnet)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {subnet!r} for network {net_id}: expected e.g. 172.20.0.0/16") from None
    tag = f'comment "{comment(net_id)}"'
    b = f'"{bridge}"'
    rules = [
        ("guard_pre", f"iifname {b} ip daddr {_LOOPBACK} drop"),
        ("guard_pre", f"iifname {b} ip saddr {_LOOPBACK} drop"),
        ("guard_post", f"oifname {b} ip saddr {_LOOPBACK} drop"),
    ]
    if internal:
        gw = _ipv4(gateway, "gateway address")
        if gw not in net:
            raise InvalidArgument(f"gateway {gw} of internal network {net_id} is not in its subnet {net}")
        rules += [
            ("isolate", f"iifname {b} oifname != {b} drop"),
            ("isolate", f"oifname {b} iifname != {b} drop"),
            ("input", f"iifname {b} ct state established,related accept"),
            ("input", f"iifname {b} ip daddr {gw} udp dport 53 accept"),
            ("input", f"iifname {b} ip daddr {gw} tcp dport 53 accept"),
            ("input", f"iifname {b} drop"),
        ]
    else:
        rules += [
            ("isolate", f"iifname {b} oifname != {b} ct status ! dnat jump isolate_stage2"),
            ("isolate_stage2", f"oifname {b} drop"),
            ("forward", f"oifname {b} ct state established,related accept"),
            ("forward", f"oifname {b} ct status dnat accept"),
            ("forward", f"iifname {b} accept"),
            ("forward", f"oifname {b} drop"),
            ("postrouting", f"ip saddr {net} oifname != {b} masquerade"),
            ("postrouting", f"ip saddr {_LOOPBACK} oifname {b} masquerade"),
            # Postrouting knows no input interface (ip_output passes none): match the source instead.
            ("postrouting", f"ip saddr {net} oifname {b} ct status dnat masquerade"),
        ]
    return [f"add rule ip {table} {chain} {body} {tag}" for chain, body in rules]


def port_rules(owner: str, ports: Sequence[PortRule], table: str = TABLE) -> list[str]:
    """`add rule` commands publishing *ports* for *owner* (a container id).

    A port on every address gets a DNAT rule in prerouting (clients elsewhere)
    and in output (clients on this host, 127.0.0.1 included). A port on one
    address matches that address; a loopback one only in output, so that no
    other machine can reach it by sending packets addressed to 127.0.0.1.
    """
    tag = f'comment "{comment(owner)}"'
    lines: list[str] = []
    for p in ports:
        target = f"{p.proto} dport {p.host_port} dnat to {p.container_ip}:{p.container_port}"
        if p.any_host_ip:
            lines.append(f"add rule ip {table} prerouting fib daddr type local ip daddr != {_LOOPBACK} "
                         f"{target} {tag}")
            lines.append(f"add rule ip {table} output fib daddr type local {target} {tag}")
        else:
            if ipaddress.IPv4Address(p.host_ip) not in _LOOPBACK:
                lines.append(f"add rule ip {table} prerouting ip daddr {p.host_ip} {target} {tag}")
            lines.append(f"add rule ip {table} output ip daddr {p.host_ip} {target} {tag}")
    return lines


def delete_rules(handles: Iterable[tuple[str, int]], table: str = TABLE, family: str = "ip") -> list[str]:
    """`delete rule` commands for (chain, handle) pairs."""
    check_family(family)
    return [f"delete rule {family} {table} {chain} handle {handle}" for chain, handle in handles]


def script(lines: Iterable[str]) -> str:
    """Join commands into one nft script (one transaction)."""
    return "".join(line + "\n" for line in lines)


def owned_handles(listing: dict[str, Any], owner: str) -> list[tuple[str, int]]:
    """(chain, handle) of every rule tagged for *owner* in an ``nft -j list table`` answer."""
    want = comment(owner)
    return [(r["chain"], int(r["handle"])) for r in _rules(listing) if r.get("comment") == want]


def parse_owners(listing: dict[str, Any]) -> set[str]:
    """Every owner that has at least one rule in an ``nft -j list table`` answer."""
    found = set()
    for r in _rules(listing):
        text = r.get("comment")
        if isinstance(text, str) and text.startswith(COMMENT_PREFIX):
            found.add(text[len(COMMENT_PREFIX):])
    return found


def _rules(listing: dict[str, Any]) -> list[dict[str, Any]]:
    return [item["rule"] for item in listing.get("nftables", []) if isinstance(item, dict) and "rule" in item]
