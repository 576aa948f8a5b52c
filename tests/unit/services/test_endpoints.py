"""Tests for berth.services.endpoints: NetworkingConfig checks, the stored settings, the networks a record is on."""

from __future__ import annotations

import json

import pytest

from berth.errors import InvalidArgument
from berth.services import containerrows, endpoints
from berth.services.endpoints import Endpoint, EndpointIpam, EndpointSettings
from berth.services.records import ContainerRecord

CID = "0123456789ab" + "c" * 52


def _doc(mode: str = "web_default", listed: dict | None = None, eps: dict | None = None,
         **extra: object) -> ContainerRecord:
    doc = {"Id": CID, "Name": "/web_1", "Config": {"Hostname": CID[:12]},
           "HostConfig": {"NetworkMode": mode}, "EndpointsConfig": listed or {},
           "EndpointsListed": listed is not None, "Endpoints": eps or {}}
    doc.update(extra)
    return containerrows.decode(json.dumps(doc))


# -- parsing -----------------------------------------------------------------------------------

def test_endpoint_settings_are_kept_as_given():
    cfg = endpoints.parse_endpoint({
        "Aliases": ["db", "database"], "Links": ["other:alias"], "DriverOpts": {"k": "v"},
        "IPAMConfig": {"IPv4Address": "10.5.0.7", "LinkLocalIPs": ["169.254.8.8"]}, "MacAddress": "",
        "NetworkID": "ignored", "IPAddress": "ignored too"})
    assert cfg == EndpointSettings(ipam=EndpointIpam("10.5.0.7", "", ("169.254.8.8",)), links=("other:alias",),
                                   aliases=("db", "database"), mac="", driver_opts={"k": "v"}, given=True)
    assert cfg.to_doc() == {"IPAMConfig": {"IPv4Address": "10.5.0.7", "LinkLocalIPs": ["169.254.8.8"]},
                            "Links": ["other:alias"], "Aliases": ["db", "database"], "MacAddress": "",
                            "DriverOpts": {"k": "v"}}
    assert cfg.ipv4 == "10.5.0.7" and cfg.configured


def test_unset_endpoint_settings_are_null():
    cfg = endpoints.parse_endpoint(None)
    assert cfg.to_doc() == {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None}
    assert not cfg.configured
    # compose sends an empty IPAMConfig: kept as {} (Docker keeps the empty object)
    assert endpoints.parse_endpoint({"IPAMConfig": {}}).to_doc()["IPAMConfig"] == {}


@pytest.mark.parametrize("value, field", [
    ("x", "NetworkingConfig"),
    (["x"], "NetworkingConfig"),
    ({"EndpointsConfig": "x"}, "NetworkingConfig.EndpointsConfig"),
    ({"EndpointsConfig": {"net": "x"}}, "EndpointsConfig['net']"),
    ({"EndpointsConfig": {"net": {"Aliases": "db"}}}, "Aliases"),
    ({"EndpointsConfig": {"net": {"Aliases": [1]}}}, "Aliases"),
    ({"EndpointsConfig": {"net": {"Links": {"a": "b"}}}}, "Links"),
    ({"EndpointsConfig": {"net": {"IPAMConfig": "10.0.0.1"}}}, "IPAMConfig"),
    ({"EndpointsConfig": {"net": {"IPAMConfig": {"IPv4Address": "10.0.0.300"}}}}, "IPv4Address"),
    ({"EndpointsConfig": {"net": {"IPAMConfig": {"IPv4Address": "fd00::1"}}}}, "IPv4Address"),
    ({"EndpointsConfig": {"net": {"IPAMConfig": {"IPv4Address": 7}}}}, "IPv4Address"),
    ({"EndpointsConfig": {"net": {"IPAMConfig": {"LinkLocalIPs": ["nope"]}}}}, "LinkLocalIPs"),
    ({"EndpointsConfig": {"net": {"DriverOpts": {"k": 1}}}}, "DriverOpts"),
    ({"EndpointsConfig": {"net": {"DriverOpts": "k=v"}}}, "DriverOpts"),
    ({"EndpointsConfig": {"net": {"MacAddress": 5}}}, "MacAddress"),
    ({"EndpointsConfig": {"": {}}}, "EndpointsConfig"),
])
def test_bad_networking_config_names_the_field(value, field):
    with pytest.raises(InvalidArgument) as exc:
        endpoints.parse_networking_config(value)
    assert field in str(exc.value)


def test_networking_config_is_bounded():
    with pytest.raises(InvalidArgument):
        endpoints.parse_endpoint({"Aliases": ["a"] * 1000})
    with pytest.raises(InvalidArgument):
        endpoints.parse_endpoint({"Aliases": ["a" * 10_000]})
    with pytest.raises(InvalidArgument):
        endpoints.parse_networking_config({"EndpointsConfig": {f"n{i}": {} for i in range(1000)}})


def test_more_than_one_network_at_create_needs_api_1_44():
    body = {"NetworkingConfig": {"EndpointsConfig": {"a": {}, "b": {}}}}
    with pytest.raises(InvalidArgument, match="Container cannot be connected to network endpoints: a, b"):
        endpoints.check_create_version(body, "1.43")
    endpoints.check_create_version(body, "1.44")
    endpoints.check_create_version({"NetworkingConfig": {"EndpointsConfig": {"a": {}}}}, "1.25")
    endpoints.check_create_version({"NetworkingConfig": "x"}, "1.25")  # the shape is validate's business


# -- the stored form ---------------------------------------------------------------------------

_GIVEN = {"IPAMConfig": {"IPv4Address": "10.5.0.7"}, "Links": None, "Aliases": ["db"], "MacAddress": "",
          "DriverOpts": None, "NetworkID": "n" * 64}
_UNSET = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None}


@pytest.mark.parametrize("doc, stored", [
    ({"NetworkID": "n" * 64}, {"NetworkID": "n" * 64}),  # the NetworkMode's own network, nothing asked for
    (_GIVEN, _GIVEN),
    ({"IPAMConfig": {}, "Links": [], "Aliases": None, "MacAddress": "02:42:ac:11:00:02", "DriverOpts": {"a": "b"},
      "NetworkID": "n"}, None),
    ({}, {}),
    (None, {}),  # an older daemon's null
    ({"Aliases": ["x"], "IPAddress": "10.0.0.9"}, {"IPAddress": "10.0.0.9"} | _UNSET | {"Aliases": ["x"]}),
])
def test_settings_are_stored_as_they_were(doc, stored):
    """What create and connect wrote comes back key for key; older forms keep their unknown keys."""
    assert EndpointSettings.from_doc(doc).to_doc() == (doc if stored is None else stored)


def test_attachments_are_stored_as_they_were():
    doc = {"network": "n" * 64, "ip": "10.5.0.7", "prefix": 24, "gateway": "10.5.0.1", "mac": "02:42:0a:05:00:07",
           "host_if": "veth1", "aliases": ["db"], "name": "web_default", "ip6": "", "prefix6": 0, "gateway6": "",
           "ctr_if": "eth0"}
    assert Endpoint.from_doc(doc).to_doc() == doc
    assert list(Endpoint.from_doc(doc).to_doc()) == list(doc)
    old = Endpoint.from_doc({"network": "n", "ip": "10.0.0.2", "prefix": 16, "gateway": "10.0.0.1", "mac": "m",
                             "host_if": "veth2", "aliases": []})  # before IPv6 and ctr_if
    assert (old.ip6, old.ctr_if, old.name) == ("", "", "")


def test_records_keep_their_network_json():
    eps = {"n" * 64: {"network": "n" * 64, "ip": "10.5.0.7", "prefix": 24, "gateway": "10.5.0.1", "mac": "m",
                      "host_if": "veth1", "aliases": [], "name": "web_default", "ip6": "", "prefix6": 0,
                      "gateway6": "", "ctr_if": "eth0"}}
    listed = {"web_default": {"NetworkID": "n" * 64}}
    ports = [{"Port": 80, "Proto": "tcp", "HostIp": "", "HostPort": "8080"}]
    doc = json.loads(containerrows.encode(_doc("web_default", listed, eps, Ports=ports)))
    assert (doc["EndpointsConfig"], doc["Endpoints"], doc["Ports"]) == (listed, eps, ports)


# -- what a record is on -------------------------------------------------------------------------

def test_old_records_add_the_network_mode_implicitly():
    old = _doc("web_default", None, EndpointsConfig={"default": {"Aliases": ["x"]}})
    old.endpoints_listed = False
    assert endpoints.requested(old) == {"bridge": EndpointSettings(aliases=("x",), given=True),
                                        "web_default": EndpointSettings()}
    assert endpoints.requested(_doc("none", None)) == {}


def test_listed_records_are_exactly_their_list():
    # disconnected from the NetworkMode's network: on nothing, NetworkMode unchanged
    assert endpoints.requested(_doc("web_default", {})) == {}
    assert list(endpoints.requested(_doc("web_default", {"web_default": {}, "other": {}}))) == ["web_default",
                                                                                                 "other"]


# -- which networks inspect shows ------------------------------------------------------------------

def test_entries_pair_settings_with_attachments():
    cfg = endpoints.parse_endpoint({"Aliases": ["db"]})
    ep = {"network": "n" * 64, "ip": "10.5.0.7", "prefix": 24, "name": "web_default"}
    entries = endpoints.network_entries(_doc("web_default", {"web_default": cfg.to_doc(), "other": {}},
                                             {"n" * 64: ep}))
    assert [(e.name, e.settings.aliases, e.endpoint.ip if e.endpoint else None) for e in entries] == [
        ("web_default", ("db",), "10.5.0.7"), ("other", None, None)]


def test_old_records_keyed_by_network_id_and_attachments_without_settings():
    eps = {"n" * 64: {"network": "n" * 64, "ip": "10.5.0.7", "name": "web_default"},
           "m" * 64: {"network": "m" * 64, "ip": "10.6.0.7", "name": ""}}
    entries = endpoints.network_entries(_doc("web_default", {"n" * 64: {"Aliases": ["a"]}}, eps))
    assert [(e.name, e.settings.aliases) for e in entries] == [("web_default", ("a",)), ("m" * 12, None)]


def test_disconnected_bridged_container_is_on_nothing():
    assert endpoints.network_entries(_doc("web_default", {})) == []


@pytest.mark.parametrize("mode", ["none", "host", "container:abc"])
def test_pseudo_networks_for_other_modes(mode):
    assert [e.name for e in endpoints.network_entries(_doc(mode, {}))] == [mode]


def test_versions_compare_as_numbers():
    assert endpoints.version("1.9") < endpoints.version("1.10") < endpoints.version("1.45")
    assert endpoints.version("bogus") > endpoints.version("1.47")
