"""The ip6 table's rule text for networks with IPv6 (pure; `nft -c` checks the syntax where nft exists)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from berth.errors import InvalidArgument
from berth.host import nftrules as nft

NET = "n" * 12


def bodies(lines: list[str]) -> list[str]:
    return [line.split(" ", 4)[4].rsplit(" comment ", 1)[0] for line in lines]


def test_ip6_skeleton_has_the_filter_chains_only() -> None:
    lines = nft.skeleton("berth", "ip6")
    assert lines[0] == "add table ip6 berth"
    chains = [line.split()[4] for line in lines[1:]]
    assert chains == ["guard_pre", "isolate", "isolate_stage2", "forward", "input"]  # no NAT for IPv6
    assert "priority -300" in lines[1]  # the guards run before conntrack, as the IPv4 ones
    with pytest.raises(InvalidArgument, match="family"):
        nft.skeleton("berth", "inet")


def test_network_rules6_guard_loopback_and_v4_mapped_both_ways() -> None:
    lines = nft.network_rules6(NET, "br-x", "fd00:1::/64")
    assert all(line.startswith("add rule ip6 berth ") and line.endswith(f'comment "berth:{NET}"') for line in lines)
    got = bodies(lines)
    for addr in ("::1/128", "::ffff:0:0/96"):
        assert f'guard_pre iifname "br-x" ip6 daddr {addr} drop' in got
        assert f'guard_pre iifname "br-x" ip6 saddr {addr} drop' in got
    assert 'isolate iifname "br-x" oifname != "br-x" jump isolate_stage2' in got
    assert 'isolate_stage2 oifname "br-x" drop' in got
    assert 'forward oifname "br-x" drop' in got
    assert not any("masquerade" in b or "input" in b.split()[0] for b in got)


def test_internal_network_rules6_accept_only_replies_and_neighbour_discovery() -> None:
    got = bodies(nft.network_rules6(NET, "br-i", "fd00:2::/64", internal=True))
    inputs = [b for b in got if b.startswith("input ")]
    assert inputs == ['input iifname "br-i" ct state established,related accept',
                      'input iifname "br-i" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept',
                      'input iifname "br-i" drop']
    assert 'isolate iifname "br-i" oifname != "br-i" drop' in got
    assert 'isolate oifname "br-i" iifname != "br-i" drop' in got
    assert not any(b.startswith("forward ") for b in got)


@pytest.mark.parametrize("subnet", ["172.20.0.0/16", "fd00:1::5/64", "nonsense"])
def test_network_rules6_refuse_a_bad_subnet(subnet: str) -> None:
    with pytest.raises(InvalidArgument, match="IPv6 subnet"):
        nft.network_rules6(NET, "br-x", subnet)


def test_delete_rules_in_the_ip6_table() -> None:
    assert nft.delete_rules([("forward", 7)], "berth", "ip6") == ["delete rule ip6 berth forward handle 7"]


@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft")
def test_rules6_are_valid_nft() -> None:
    lines = [*nft.skeleton("berthcheck", "ip6"), *nft.network_rules6(NET, "br-x", "fd00:1::/64", "berthcheck"),
             *nft.network_rules6("m" * 12, "br-y", "fd00:2::/64", "berthcheck", internal=True)]
    # -c: check only, nothing is applied
    cp = subprocess.run(["nft", "-c", "-f", "-"], input=nft.script(lines).encode(), capture_output=True, check=False)
    assert cp.returncode == 0, cp.stderr.decode()
