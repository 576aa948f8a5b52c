"""Bridge network records: pools, internal networks, filters, interface names, IPv6 planning."""

from __future__ import annotations

import dataclasses

import pytest

from berth.errors import Conflict, InvalidArgument
from berth.network import bridgeplan
from berth.network.record import IpamEntry, NetworkRecord


def _net(**kw: object) -> NetworkRecord:
    net = bridgeplan.new_network("app", "bridge", [bridgeplan.ipam_config("10.5.0.0/24", None, None)],
                                 labels={"team": "a"})
    return dataclasses.replace(net, **kw)  # type: ignore[arg-type]


def test_new_record_and_pools():
    net = _net()
    assert len(net.id) == 64 and net.ipam_options is None
    assert str(bridgeplan.pool_of(net).gateway) == "10.5.0.1"
    assert bridgeplan.bridge_name(net) == "br-" + net.id[:12]
    assert bridgeplan.pool6_of(net) is None
    six = bridgeplan.plan6(IpamEntry("fd00:1::/64"), True, [])
    assert str(bridgeplan.pool6_of(_net(enable_ipv6=True, ipam=(net.ipam[0], *six))).subnet) == "fd00:1::/64"


def test_new_record_is_stored_as_docker_writes_it():
    net = bridgeplan.new_network("app", "bridge", [bridgeplan.ipam_config("10.5.0.0/24", None, "10.5.0.128/25",
                                                                          {"router": "10.5.0.2"})],
                                 options={"o": "1"}, ipam_options={"k": "v"})
    doc = net.to_doc()
    assert list(doc) == ["Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal", "Attachable",
                         "Ingress", "ConfigFrom", "ConfigOnly", "Options", "Labels"]
    assert doc["IPAM"] == {"Driver": "default", "Options": {"k": "v"},
                           "Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1", "IPRange": "10.5.0.128/25",
                                       "AuxiliaryAddresses": {"router": "10.5.0.2"}}]}
    assert (doc["Scope"], doc["ConfigFrom"], doc["Options"], doc["Labels"]) == ("local", {"Network": ""}, {"o": "1"}, {})
    assert NetworkRecord.from_doc(doc) == net
    assert NetworkRecord.from_doc(doc).to_doc() == doc


def test_unknown_stored_keys_are_kept():
    doc = _net().to_doc() | {"Future": {"x": 1}}
    assert NetworkRecord.from_doc(doc).to_doc() == doc


def test_default_bridge_config_follows_bip():
    assert bridgeplan.default_bridge_config("") == IpamEntry("172.17.0.0/16", "172.17.0.1")
    assert bridgeplan.default_bridge_config("10.9.0.5/24").to_doc() == {"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.5"}


def test_plan6():
    assert bridgeplan.plan6(None, False, []) == []
    assert bridgeplan.plan6(None, True, [])[0].subnet.startswith("fd")
    with pytest.raises(InvalidArgument, match="needs its IPv6 --subnet"):
        bridgeplan.plan6(IpamEntry(gateway="fd00::1"), True, [])
    with pytest.raises(Conflict, match="overlaps"):
        bridgeplan.plan6(IpamEntry("fd00:1::/64"), True, ["fd00:1::/48"])


def test_internal_and_filters():
    assert bridgeplan.is_internal(_net(internal=True)) and not bridgeplan.is_internal(_net())
    assert not bridgeplan.is_internal(_net(internal=True, name="bridge"))
    net = _net()
    assert bridgeplan.matches(net, {"name": ["ap"], "label": ["team=a"], "type": ["custom"], "driver": ["bridge"]})
    assert not bridgeplan.matches(net, {"type": ["builtin"]})
    assert not bridgeplan.matches(net, {"label": ["team=b"]})
    with pytest.raises(InvalidArgument):
        bridgeplan.matches(net, {"colour": ["red"]})


def test_free_ifname_reuses_gaps():
    assert bridgeplan.free_ifname([]) == "eth0"
    assert bridgeplan.free_ifname(["eth0", "eth2"]) == "eth1"
    assert bridgeplan.free_ifname(["", ""]) == "eth2"  # old records: in order
