"""IPAM: parsing pools, subnet choice, address allocation and MACs (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from berth.errors import Conflict, FailedPrecondition, InvalidArgument
from berth.network import ipam
from berth.network.ipam import Pool


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


# --------------------------------------------------------------------------- pools


def test_pool_defaults_gateway_to_first_host() -> None:
    pool = Pool.parse("172.20.0.0/16")
    assert pool == Pool(net("172.20.0.0/16"), ipaddress.IPv4Address("172.20.0.1"), None)
    assert pool.gateway_cidr == "172.20.0.1/16"
    assert pool.address_cidr("172.20.0.9") == "172.20.0.9/16"


def test_pool_with_gateway_and_range() -> None:
    pool = Pool.parse("10.5.0.0/16", gateway="10.5.255.254", ip_range="10.5.3.0/24")
    assert str(pool.gateway) == "10.5.255.254"
    assert pool.ip_range == net("10.5.3.0/24")


@pytest.mark.parametrize("subnet, gateway, ip_range, error, words", [
    ("nonsense", None, None, InvalidArgument, "invalid CIDR address"),
    ("172.20.0.0/33", None, None, InvalidArgument, "invalid CIDR address"),
    ("172.20.0.5/16", None, None, InvalidArgument, "it should be 172.20.0.0/16"),
    ("172.20.0.0/31", None, None, InvalidArgument, "no room"),
    ("172.20.0.0/16", "172.21.0.1", None, InvalidArgument, "no matching subnet for gateway 172.21.0.1"),
    ("172.20.0.0/16", "172.20.0.0", None, InvalidArgument, "network or broadcast"),
    ("172.20.0.0/16", "172.20.255.255", None, InvalidArgument, "network or broadcast"),
    ("172.20.0.0/16", "gw", None, InvalidArgument, "invalid gateway"),
    ("172.20.0.0/16", None, "172.21.0.0/24", InvalidArgument, "no matching subnet for range 172.21.0.0/24"),
    ("172.20.0.0/16", None, "172.20.0.7/24", InvalidArgument, "it should be 172.20.0.0/24"),
    # IPv6 has its own IPAM.Config entry (network.ipam6): in an IPv4 one it is a 400.
    ("fd00::/64", None, None, InvalidArgument, "IPv6"),
    ("172.20.0.0/16", "fd00::1", None, InvalidArgument, "IPv6"),
])
def test_pool_rejects(subnet: str, gateway: str | None, ip_range: str | None,
                      error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        Pool.parse(subnet, gateway, ip_range)


def test_candidates_skip_network_broadcast_and_gateway() -> None:
    pool = Pool.parse("192.168.7.0/29", gateway="192.168.7.3")
    assert [str(a) for a in pool.candidates()] == ["192.168.7.1", "192.168.7.2", "192.168.7.4",
                                                   "192.168.7.5", "192.168.7.6"]


def test_candidates_of_a_range_at_the_subnet_edges() -> None:
    # The range's own first and last addresses are ordinary hosts of the subnet;
    # only the subnet's network and broadcast addresses are never handed out.
    pool = Pool.parse("10.1.0.0/16", ip_range="10.1.0.0/30")
    assert [str(a) for a in pool.candidates()] == ["10.1.0.2", "10.1.0.3"]
    pool = Pool.parse("10.1.0.0/16", ip_range="10.1.255.252/30")
    assert [str(a) for a in pool.candidates()] == ["10.1.255.252", "10.1.255.253", "10.1.255.254"]
    pool = Pool.parse("10.1.0.0/16", ip_range="10.1.4.0/30")
    assert [str(a) for a in pool.candidates()] == ["10.1.4.0", "10.1.4.1", "10.1.4.2", "10.1.4.3"]


# --------------------------------------------------------------------------- overlap and subnet choice


@pytest.mark.parametrize("a, b, expected", [
    ("172.17.0.0/16", "172.17.5.0/24", True),
    ("172.17.5.0/24", "172.17.0.0/16", True),
    ("172.17.0.0/16", "172.18.0.0/16", False),
    ("10.0.0.0/8", "10.255.255.0/24", True),
    ("192.168.0.0/20", "192.168.16.0/20", False),
])
def test_overlaps(a: str, b: str, expected: bool) -> None:
    assert ipam.overlaps(a, b) is expected
    assert ipam.overlaps(net(a), net(b)) is expected


def test_check_overlap_uses_dockers_words() -> None:
    ipam.check_overlap("172.20.0.0/16", ["172.17.0.0/16", "fd00::/64"])
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space"):
        ipam.check_overlap("172.20.0.0/16", ["172.17.0.0/16", "172.20.128.0/17"])


def test_default_candidates_are_dockers() -> None:
    c = ipam.DEFAULT_CANDIDATES
    assert c[0] == "172.17.0.0/16" and c[14] == "172.31.0.0/16"
    assert c[15] == "192.168.0.0/20" and c[-1] == "192.168.240.0/20"
    assert len(c) == 31


def test_pick_subnet_skips_taken_ones() -> None:
    assert ipam.pick_subnet([]) == net("172.17.0.0/16")
    existing = ["172.17.0.0/16", "172.18.3.0/24", "192.0.2.7/24"]  # an interface address counts too
    assert ipam.pick_subnet(existing) == net("172.19.0.0/16")


def test_pick_subnet_moves_on_to_192_168() -> None:
    existing = [f"172.{n}.0.0/16" for n in range(17, 32)] + ["192.168.1.0/24"]
    assert ipam.pick_subnet(existing) == net("192.168.16.0/20")


def test_pick_subnet_ignores_ipv6_and_reports_exhaustion() -> None:
    assert ipam.pick_subnet(["fe80::/64"], candidates=["10.9.0.0/24"]) == net("10.9.0.0/24")
    with pytest.raises(FailedPrecondition, match="could not find an available, non-overlapping IPv4 address pool"):
        ipam.pick_subnet(["172.16.0.0/12", "192.168.0.0/16"])


# --------------------------------------------------------------------------- allocation


def test_allocate_first_free() -> None:
    pool = Pool.parse("172.20.0.0/16")
    assert ipam.allocate(pool, set()) == "172.20.0.2"
    assert ipam.allocate(pool, {"172.20.0.2", "172.20.0.3/16"}) == "172.20.0.4"
    assert ipam.allocate(pool, {"172.20.0.3"}) == "172.20.0.2"  # a freed address is reused


def test_allocate_within_range() -> None:
    pool = Pool.parse("172.20.0.0/16", ip_range="172.20.5.0/24")
    assert ipam.allocate(pool, set()) == "172.20.5.0"
    assert ipam.allocate(pool, {"172.20.5.0"}) == "172.20.5.1"


def test_allocate_wanted_address() -> None:
    pool = Pool.parse("172.20.0.0/16", ip_range="172.20.5.0/24")
    assert ipam.allocate(pool, {"172.20.5.0"}, "172.20.5.77") == "172.20.5.77"
    with pytest.raises(Conflict, match="Address already in use"):
        ipam.allocate(pool, {"172.20.5.77"}, "172.20.5.77")
    with pytest.raises(Conflict, match="Address already in use"):
        ipam.allocate(pool, set(), "172.20.0.1")  # the gateway
    with pytest.raises(InvalidArgument, match="does not belong to any of this network's subnets"):
        ipam.allocate(pool, set(), "172.20.6.1")  # in the subnet, outside the range
    with pytest.raises(InvalidArgument, match="does not belong"):
        ipam.allocate(Pool.parse("172.20.0.0/16"), set(), "172.20.255.255")
    with pytest.raises(InvalidArgument, match="invalid IP address"):
        ipam.allocate(pool, set(), "not-an-ip")


def test_allocate_exhausted() -> None:
    pool = Pool.parse("10.0.0.0/30")  # one host besides the gateway
    assert ipam.allocate(pool, set()) == "10.0.0.2"
    with pytest.raises(Conflict, match="no available IPv4 addresses on this network's address pools"):
        ipam.allocate(pool, {"10.0.0.2"})


# --------------------------------------------------------------------------- MACs


def test_mac_for_is_dockers() -> None:
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert ipam.mac_for(ipaddress.IPv4Address("192.168.255.254")) == "02:42:c0:a8:ff:fe"
    with pytest.raises(InvalidArgument):
        ipam.mac_for("nope")


# --------------------------------------------------------------------------- --mac-address


@pytest.mark.parametrize("text, expected", [
    ("02:42:ac:11:00:0a", "02:42:ac:11:00:0a"),
    ("02:42:AC:11:00:0A", "02:42:ac:11:00:0a"),
    ("02-42-ac-11-00-0a", "02:42:ac:11:00:0a"),
    (" 92:d0:c6:0a:29:33 ", "92:d0:c6:0a:29:33"),
])
def test_parse_mac_normalises(text: str, expected: str) -> None:
    assert ipam.parse_mac(text) == expected


@pytest.mark.parametrize("text, words", [
    ("zz", "six hex bytes"),
    ("02:42:ac:11:00", "six hex bytes"),
    ("02:42:ac:11:00:0a:0b", "six hex bytes"),
    ("02:42-ac:11:00:0a", "six hex bytes"),  # mixed separators
    ("2:42:ac:11:0:a", "six hex bytes"),
    ("0242.ac11.000a", "six hex bytes"),
    ("01:00:5e:00:00:01", "multicast"),  # the kernel refuses a multicast address on an interface
    ("00:00:00:00:00:00", "all-zero"),
    (7, "six hex bytes"),
])
def test_parse_mac_rejects(text: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        ipam.parse_mac(text)


def test_auxiliary_addresses_are_kept_and_checked():
    from berth.network.ipam import Pool, auxiliary_addresses
    pool = Pool.parse("172.28.0.0/16", "172.28.5.254", "172.28.5.0/24")
    assert auxiliary_addresses(pool, {}) == {}
    assert auxiliary_addresses(pool, {"a": "172.28.1.5"}) == {"a": "172.28.1.5"}
    for bad in ({"a": "10.0.0.1"}, {"a": "nope"}, {"a": "fd00::1"}, {str(n): "172.28.1.5" for n in range(1025)}):
        with pytest.raises(InvalidArgument):
            auxiliary_addresses(pool, bad)
