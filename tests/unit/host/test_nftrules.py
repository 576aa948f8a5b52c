"""nftables rule text: the skeleton, network and port rules, and reading listings (pure)."""

from __future__ import annotations

import json

import pytest

from berth.errors import InvalidArgument, NotImplemented_
from berth.host import nftrules as nft
from berth.host.nftrules import PortRule

NET = "3f2a9c"
CTR = "c0ffee42"


def test_skeleton_declares_table_and_chains_idempotently() -> None:
    assert nft.skeleton("t1") == [
        "add table ip t1",
        "add chain ip t1 guard_pre { type filter hook prerouting priority -300; policy accept; }",
        "add chain ip t1 isolate { type filter hook forward priority -1; policy accept; }",
        "add chain ip t1 isolate_stage2",
        "add chain ip t1 forward { type filter hook forward priority 0; policy accept; }",
        "add chain ip t1 prerouting { type nat hook prerouting priority -100; policy accept; }",
        "add chain ip t1 output { type nat hook output priority -100; policy accept; }",
        "add chain ip t1 postrouting { type nat hook postrouting priority 100; policy accept; }",
        "add chain ip t1 input { type filter hook input priority 0; policy accept; }",
        "add chain ip t1 guard_post { type filter hook postrouting priority 300; policy accept; }",
    ]
    assert nft.skeleton()[0] == "add table ip berth"


def test_network_rules() -> None:
    tag = f'comment "berth:{NET}"'
    assert nft.network_rules(NET, "br-3f2a9c", "172.20.0.0/16") == [
        f'add rule ip berth guard_pre iifname "br-3f2a9c" ip daddr 127.0.0.0/8 drop {tag}',
        f'add rule ip berth guard_pre iifname "br-3f2a9c" ip saddr 127.0.0.0/8 drop {tag}',
        f'add rule ip berth guard_post oifname "br-3f2a9c" ip saddr 127.0.0.0/8 drop {tag}',
        f'add rule ip berth isolate iifname "br-3f2a9c" oifname != "br-3f2a9c" ct status ! dnat '
        f"jump isolate_stage2 {tag}",
        f'add rule ip berth isolate_stage2 oifname "br-3f2a9c" drop {tag}',
        f'add rule ip berth forward oifname "br-3f2a9c" ct state established,related accept {tag}',
        f'add rule ip berth forward oifname "br-3f2a9c" ct status dnat accept {tag}',
        f'add rule ip berth forward iifname "br-3f2a9c" accept {tag}',
        f'add rule ip berth forward oifname "br-3f2a9c" drop {tag}',
        f'add rule ip berth postrouting ip saddr 172.20.0.0/16 oifname != "br-3f2a9c" masquerade {tag}',
        f'add rule ip berth postrouting ip saddr 127.0.0.0/8 oifname "br-3f2a9c" masquerade {tag}',
        f'add rule ip berth postrouting ip saddr 172.20.0.0/16 oifname "br-3f2a9c" ct status dnat masquerade {tag}',
    ]


def test_loopback_guards_run_before_conntrack_and_after_masquerade() -> None:
    # Raw priority (before conntrack at -200 and dstnat at -100): addresses as sent on the wire,
    # so a masqueraded reply (addressed to the gateway) is not taken for a loopback packet.
    chains = dict(nft._CHAINS)
    assert "hook prerouting priority -300;" in chains["guard_pre"]
    assert "hook postrouting priority 300;" in chains["guard_post"]  # after srcnat (100)
    for internal in (False, True):
        rules = nft.network_rules(NET, "br0", "172.20.0.0/16", internal=internal, gateway="172.20.0.1")
        assert [r for r in rules if " guard_" in r] == [
            f'add rule ip berth guard_pre iifname "br0" ip daddr 127.0.0.0/8 drop comment "berth:{NET}"',
            f'add rule ip berth guard_pre iifname "br0" ip saddr 127.0.0.0/8 drop comment "berth:{NET}"',
            f'add rule ip berth guard_post oifname "br0" ip saddr 127.0.0.0/8 drop comment "berth:{NET}"',
        ]


def test_internal_network_rules() -> None:
    tag = f'comment "berth:{NET}"'
    assert nft.network_rules(NET, "br0", "172.20.0.0/16", "t1", internal=True, gateway="172.20.0.1") == [
        f'add rule ip t1 guard_pre iifname "br0" ip daddr 127.0.0.0/8 drop {tag}',
        f'add rule ip t1 guard_pre iifname "br0" ip saddr 127.0.0.0/8 drop {tag}',
        f'add rule ip t1 guard_post oifname "br0" ip saddr 127.0.0.0/8 drop {tag}',
        f'add rule ip t1 isolate iifname "br0" oifname != "br0" drop {tag}',
        f'add rule ip t1 isolate oifname "br0" iifname != "br0" drop {tag}',
        f'add rule ip t1 input iifname "br0" ct state established,related accept {tag}',
        f'add rule ip t1 input iifname "br0" ip daddr 172.20.0.1 udp dport 53 accept {tag}',
        f'add rule ip t1 input iifname "br0" ip daddr 172.20.0.1 tcp dport 53 accept {tag}',
        f'add rule ip t1 input iifname "br0" drop {tag}',
    ]
    # No way out: nothing masqueraded, nothing accepted in forward.
    rules = nft.network_rules(NET, "br0", "172.20.0.0/16", internal=True, gateway="172.20.0.1")
    assert not [r for r in rules if "masquerade" in r or " forward " in r]


@pytest.mark.parametrize("gateway, words", [("", "invalid gateway address"), ("10.0.0.1", "not in its subnet"),
                                             ('172.20.0.1" accept', "invalid gateway address")])
def test_internal_network_needs_its_gateway(gateway: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        nft.network_rules(NET, "br0", "172.20.0.0/16", internal=True, gateway=gateway)


@pytest.mark.parametrize("bridge", ['br"; flush ruleset', "a-name-far-too-long", "", "br 0"])
def test_network_rules_refuse_unsafe_bridge_names(bridge: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid bridge name"):
        nft.network_rules(NET, bridge, "172.20.0.0/16")


def test_network_rules_refuse_bad_subnet_and_owner() -> None:
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        nft.network_rules(NET, "br0", "172.20.0.1/16")
    with pytest.raises(InvalidArgument, match="invalid rule owner"):
        nft.network_rules('x" accept', "br0", "172.20.0.0/16")


def test_port_rules_any_address() -> None:
    tag = f'comment "berth:{CTR}"'
    rules = nft.port_rules(CTR, [PortRule("tcp", "", 8080, "172.20.0.2", 80),
                                 PortRule("udp", "0.0.0.0", 5353, "172.20.0.2", 53)], table="t1")
    assert rules == [
        f"add rule ip t1 prerouting fib daddr type local ip daddr != 127.0.0.0/8 "
        f"tcp dport 8080 dnat to 172.20.0.2:80 {tag}",
        f"add rule ip t1 output fib daddr type local tcp dport 8080 dnat to 172.20.0.2:80 {tag}",
        f"add rule ip t1 prerouting fib daddr type local ip daddr != 127.0.0.0/8 "
        f"udp dport 5353 dnat to 172.20.0.2:53 {tag}",
        f"add rule ip t1 output fib daddr type local udp dport 5353 dnat to 172.20.0.2:53 {tag}",
    ]


def test_port_rules_one_address() -> None:
    tag = f'comment "berth:{CTR}"'
    assert nft.port_rules(CTR, [PortRule("sctp", "10.1.2.3", 9000, "172.20.0.2", 9000)]) == [
        f"add rule ip berth prerouting ip daddr 10.1.2.3 sctp dport 9000 dnat to 172.20.0.2:9000 {tag}",
        f"add rule ip berth output ip daddr 10.1.2.3 sctp dport 9000 dnat to 172.20.0.2:9000 {tag}",
    ]


def test_port_rules_loopback_only_from_the_host() -> None:
    # Nothing in prerouting: another machine must not reach it by addressing 127.0.0.1.
    assert nft.port_rules(CTR, [PortRule("tcp", "127.0.0.1", 8080, "172.20.0.2", 80)]) == [
        f'add rule ip berth output ip daddr 127.0.0.1 tcp dport 8080 dnat to 172.20.0.2:80 comment "berth:{CTR}"',
    ]


def test_port_rules_for_no_ports_is_empty() -> None:
    assert nft.port_rules(CTR, []) == []


@pytest.mark.parametrize("args, error, words", [
    (("icmp", "", 80, "172.20.0.2", 80), InvalidArgument, "invalid protocol"),
    (("tcp", "", 0, "172.20.0.2", 80), InvalidArgument, "invalid host port 0"),
    (("tcp", "", 80, "172.20.0.2", 65536), InvalidArgument, "invalid container port"),
    (("tcp", "", 80, "ctr", 80), InvalidArgument, "invalid container address"),
    (("tcp", "localhost", 80, "172.20.0.2", 80), InvalidArgument, "invalid host address"),
    (("tcp", "::", 80, "172.20.0.2", 80), NotImplemented_, "IPv6"),
])
def test_port_rule_validation(args: tuple[str, str, int, str, int], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        PortRule(*args)


# A listing as `nft -j list table ip berth` prints it (nftables 1.0.6), trimmed.
LISTING = json.loads("""
{"nftables": [
 {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
 {"table": {"family": "ip", "name": "berth", "handle": 4}},
 {"chain": {"family": "ip", "table": "berth", "name": "forward", "handle": 3, "type": "filter",
            "hook": "forward", "prio": 0, "policy": "accept"}},
 {"rule": {"family": "ip", "table": "berth", "chain": "forward", "handle": 11, "comment": "berth:3f2a9c",
           "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "br0"}},
                    {"accept": null}]}},
 {"rule": {"family": "ip", "table": "berth", "chain": "postrouting", "handle": 14, "comment": "berth:3f2a9c",
           "expr": [{"masquerade": null}]}},
 {"rule": {"family": "ip", "table": "berth", "chain": "output", "handle": 26, "comment": "berth:c0ffee42",
           "expr": [{"dnat": {"addr": "172.20.0.2", "port": 80}}]}},
 {"rule": {"family": "ip", "table": "berth", "chain": "output", "handle": 27, "comment": "someone else",
           "expr": [{"accept": null}]}},
 {"rule": {"family": "ip", "table": "berth", "chain": "output", "handle": 28,
           "expr": [{"accept": null}]}}
]}
""")


def test_owned_handles() -> None:
    assert nft.owned_handles(LISTING, NET) == [("forward", 11), ("postrouting", 14)]
    assert nft.owned_handles(LISTING, CTR) == [("output", 26)]
    assert nft.owned_handles(LISTING, "3f2a") == []  # exact owners only
    assert nft.owned_handles({"nftables": []}, NET) == []


def test_parse_owners() -> None:
    assert nft.parse_owners(LISTING) == {NET, CTR}


def test_delete_rules_and_script() -> None:
    lines = nft.delete_rules([("forward", 11), ("postrouting", 14)], table="t1")
    assert lines == ["delete rule ip t1 forward handle 11", "delete rule ip t1 postrouting handle 14"]
    assert nft.script(lines) == "delete rule ip t1 forward handle 11\ndelete rule ip t1 postrouting handle 14\n"
    assert nft.script([]) == ""


def test_comment() -> None:
    assert nft.comment("a" * 64) == "berth:" + "a" * 64
    with pytest.raises(InvalidArgument):
        nft.comment("")
    with pytest.raises(InvalidArgument):
        nft.skeleton("berth; flush ruleset")
