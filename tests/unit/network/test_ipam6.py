"""IPv6 IPAM (pure): pools, IPAM.Config entries, ULA choice, allocation."""

from __future__ import annotations

import ipaddress

import pytest

from berth.errors import Conflict, InvalidArgument
from berth.network import ipam6
from berth.network.ipam6 import Pool6
from berth.network.record import IpamEntry


def net6(text: str) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(text)


# --------------------------------------------------------------------------- pools


def test_pool_defaults_gateway_to_first_address() -> None:
    pool = Pool6.parse("fd00:1::/64")
    assert pool == Pool6(net6("fd00:1::/64"), ipaddress.IPv6Address("fd00:1::1"), None)
    assert pool.gateway_cidr == "fd00:1::1/64"
    assert pool.address_cidr("fd00:1::9") == "fd00:1::9/64"
    assert pool.config() == IpamEntry("fd00:1::/64", "fd00:1::1")


def test_pool_with_gateway_and_range_as_the_sdk_sends_them() -> None:
    # docker-py's own test: subnet 2001:389::/64, iprange 2001:389::0/96, gateway 2001:389::ffff
    pool = Pool6.parse("2001:389::/64", gateway="2001:389::ffff", ip_range="2001:389::0/96")
    assert pool.config().to_doc() == {"Subnet": "2001:389::/64", "Gateway": "2001:389::ffff",
                                      "IPRange": "2001:389::/96"}
    assert ipam6.allocate6(pool, set(), "2001:389::f00d") == "2001:389::f00d"


@pytest.mark.parametrize("subnet, gateway, ip_range, words", [
    ("nonsense", None, None, "invalid CIDR address"),
    ("fd00:1::", None, None, "invalid CIDR address"),  # no prefix
    ("fd00:1::/129", None, None, "invalid CIDR address"),
    ("fd00:1::5/64", None, None, "it should be fd00:1::/64"),
    ("fd00:1::/127", None, None, "no room"),
    ("172.20.0.0/16", None, None, "expected an IPv6 subnet"),
    ("ff02::/64", None, None, "not unicast"),
    ("fe80::/64", None, None, "not unicast"),
    ("::/64", None, None, "not unicast"),
    ("::ffff:0:0/112", None, None, "not unicast"),
    ("::/0", None, None, "not unicast"),
    ("fd00:1::/64", "fd00:2::1", None, "no matching subnet for gateway fd00:2::1"),
    ("fd00:1::/64", "fd00:1::", None, "network address"),
    ("fd00:1::/64", "gw", None, "invalid gateway"),
    ("fd00:1::/64", "172.20.0.1", None, "invalid gateway"),
    ("fd00:1::/64", "fe80::1%eth0", None, "invalid gateway"),
    ("fd00:1::/64", None, "fd00:2::/80", "no matching subnet for range fd00:2::/80"),
    ("fd00:1::/64", None, "fd00:1::7/80", "it should be fd00:1::/80"),
])
def test_pool_rejects(subnet: str, gateway: str | None, ip_range: str | None, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        Pool6.parse(subnet, gateway, ip_range)


# --------------------------------------------------------------------------- IPAM.Config


def test_split_configs_by_family_in_any_order() -> None:
    v4 = IpamEntry("172.30.0.0/16")
    v6 = IpamEntry("fd00:1::/64", "fd00:1::1")
    assert ipam6.split_configs([v6, v4]) == (v4, v6)
    assert ipam6.split_configs([v6]) == (IpamEntry(), v6)
    assert ipam6.split_configs([]) == (IpamEntry(), None)
    assert ipam6.split_configs([IpamEntry(gateway="fd00:1::1")]) == (IpamEntry(), IpamEntry(gateway="fd00:1::1"))


@pytest.mark.parametrize("configs, words", [
    ([IpamEntry("fd00:1::/64"), IpamEntry("fd00:2::/64")], "one IPv6 subnet"),
    ([IpamEntry("172.30.0.0/16"), IpamEntry("172.31.0.0/16")], "one IPv4 subnet"),
])
def test_split_configs_rejects(configs: list, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        ipam6.split_configs(configs)


def test_overlap_is_a_conflict_and_ipv4_is_ignored() -> None:
    ipam6.check_overlap6(net6("fd00:1::/64"), ["172.17.0.0/16", "fd00:2::/64"])
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space"):
        ipam6.check_overlap6(net6("fd00:1::/64"), ["fd00::/16"])


# --------------------------------------------------------------------------- ULA


def test_ula_subnet_is_fd_global_id_subnet_zero() -> None:
    gid = bytes.fromhex("0123456789")
    assert ipam6.ula_subnet(gid) == net6("fd01:2345:6789::/64")
    assert ipam6.ula_subnet(gid, ["fd01:2345:6789::/64", "10.0.0.0/8"]) == net6("fd01:2345:6789:1::/64")
    assert ipam6.ula_subnet(gid).subnet_of(net6("fd00::/8"))


def test_ula_subnet_needs_forty_bits_and_a_free_slot() -> None:
    with pytest.raises(InvalidArgument, match="40 bits"):
        ipam6.ula_subnet(b"\x00" * 4)
    with pytest.raises(Conflict, match="every /64"):
        ipam6.ula_subnet(bytes(5), ["fd00::/47"])


# --------------------------------------------------------------------------- allocation


def test_allocate_first_free_after_the_gateway() -> None:
    pool = Pool6.parse("fd00:1::/64")
    assert ipam6.allocate6(pool, set()) == "fd00:1::2"
    assert ipam6.allocate6(pool, {"fd00:1::2", "fd00:1::3/64"}) == "fd00:1::4"
    assert ipam6.allocate6(pool, {"fd00:1:0:0::2"}) == "fd00:1::3"  # any spelling of a held address


def test_allocate_within_range_skips_a_gateway_inside_it() -> None:
    pool = Pool6.parse("fd00:1::/64", gateway="fd00:1::1:0", ip_range="fd00:1::1:0/112")
    assert ipam6.allocate6(pool, set()) == "fd00:1::1:1"


def test_allocate_wanted_address() -> None:
    pool = Pool6.parse("fd00:1::/64", ip_range="fd00:1::/96")
    assert ipam6.allocate6(pool, {"fd00:1::2"}, "fd00:1::abc") == "fd00:1::abc"
    with pytest.raises(Conflict, match="Address already in use"):
        ipam6.allocate6(pool, {"fd00:1::abc"}, "fd00:1::abc")
    with pytest.raises(Conflict, match="gateway"):
        ipam6.allocate6(pool, set(), "fd00:1::1")
    with pytest.raises(InvalidArgument, match="It does not belong to any of this network's subnets"):
        ipam6.allocate6(pool, set(), "fd00:2::5")
    with pytest.raises(InvalidArgument, match="It does not belong"):
        ipam6.allocate6(pool, set(), "fd00:1::1:0:0")  # in the subnet, outside the range
    with pytest.raises(InvalidArgument, match="It does not belong"):
        ipam6.allocate6(pool, set(), "fd00:1::")  # the subnet-router anycast address
    with pytest.raises(InvalidArgument, match="expected an IPv6 address"):
        ipam6.allocate6(pool, set(), "172.20.0.5")


def test_allocate_exhausted() -> None:
    pool = Pool6.parse("fd00:1::/126")  # ::1 gateway, ::2 and ::3 for containers
    assert ipam6.allocate6(pool, {"fd00:1::2"}) == "fd00:1::3"
    with pytest.raises(Conflict, match="no available IPv6 addresses"):
        ipam6.allocate6(pool, {"fd00:1::2", "fd00:1::3"})
