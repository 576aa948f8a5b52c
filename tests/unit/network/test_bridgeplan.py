"""Bridge network records: pools, internal networks, filters, interface names, IPv6 planning."""

from __future__ import annotations

import pytest

from berth.errors import Conflict, InvalidArgument
from berth.network import bridgeplan


def _doc(**kw: object) -> dict:
    doc = bridgeplan.new_network_doc("app", "bridge", [bridgeplan.ipam_config("10.5.0.0/24", None, None)],
                                     labels={"team": "a"})
    doc.update(kw)
    return doc


def test_new_record_and_pools():
    doc = _doc()
    assert len(doc["Id"]) == 64 and doc["IPAM"]["Options"] is None
    assert str(bridgeplan.pool_of(doc).gateway) == "10.5.0.1"
    assert bridgeplan.bridge_name(doc) == "br-" + doc["Id"][:12]
    assert bridgeplan.pool6_of(doc) is None
    six = bridgeplan.plan6({"Subnet": "fd00:1::/64"}, True, [])
    assert str(bridgeplan.pool6_of(_doc(EnableIPv6=True, IPAM={"Config": [doc["IPAM"]["Config"][0], *six]})).subnet) \
        == "fd00:1::/64"


def test_default_bridge_config_follows_bip():
    assert bridgeplan.default_bridge_config("") == {"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}
    assert bridgeplan.default_bridge_config("10.9.0.5/24") == {"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.5"}


def test_plan6():
    assert bridgeplan.plan6(None, False, []) == []
    assert bridgeplan.plan6(None, True, [])[0]["Subnet"].startswith("fd")
    with pytest.raises(InvalidArgument, match="needs its IPv6 --subnet"):
        bridgeplan.plan6({"Gateway": "fd00::1"}, True, [])
    with pytest.raises(Conflict, match="overlaps"):
        bridgeplan.plan6({"Subnet": "fd00:1::/64"}, True, ["fd00:1::/48"])


def test_internal_and_filters():
    assert bridgeplan.is_internal(_doc(Internal=True)) and not bridgeplan.is_internal(_doc())
    assert not bridgeplan.is_internal(_doc(Internal=True, Name="bridge"))
    doc = _doc()
    assert bridgeplan.matches(doc, {"name": ["ap"], "label": ["team=a"], "type": ["custom"], "driver": ["bridge"]})
    assert not bridgeplan.matches(doc, {"type": ["builtin"]})
    assert not bridgeplan.matches(doc, {"label": ["team=b"]})
    with pytest.raises(InvalidArgument):
        bridgeplan.matches(doc, {"colour": ["red"]})


def test_free_ifname_reuses_gaps():
    assert bridgeplan.free_ifname({}) == "eth0"
    assert bridgeplan.free_ifname({"a": {"ctr_if": "eth0"}, "b": {"ctr_if": "eth2"}}) == "eth1"
    assert bridgeplan.free_ifname({"a": {}, "b": {}}) == "eth2"  # old records: in order
