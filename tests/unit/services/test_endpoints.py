"""Tests for berth.services.endpoints: NetworkingConfig checks and NetworkSettings.Networks shapes."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.services import endpoints
from berth.services.records import ContainerRecord

CID = "0123456789ab" + "c" * 52


def _doc(mode: str = "web_default", listed: dict | None = None, eps: dict | None = None,
         **extra: object) -> ContainerRecord:
    doc = {"Id": CID, "Name": "/web_1", "Config": {"Hostname": CID[:12]},
           "HostConfig": {"NetworkMode": mode}, "EndpointsConfig": listed or {},
           "EndpointsListed": listed is not None, "Endpoints": eps or {}}
    doc.update(extra)
    return ContainerRecord.from_doc(doc)


# -- parsing -----------------------------------------------------------------------------------

def test_endpoint_settings_are_kept_as_given():
    cfg = endpoints.parse_endpoint({
        "Aliases": ["db", "database"], "Links": ["other:alias"], "DriverOpts": {"k": "v"},
        "IPAMConfig": {"IPv4Address": "10.5.0.7", "LinkLocalIPs": ["169.254.8.8"]}, "MacAddress": "",
        "NetworkID": "ignored", "IPAddress": "ignored too"})
    assert cfg == {"IPAMConfig": {"IPv4Address": "10.5.0.7", "LinkLocalIPs": ["169.254.8.8"]},
                   "Links": ["other:alias"], "Aliases": ["db", "database"], "MacAddress": "",
                   "DriverOpts": {"k": "v"}}


def test_unset_endpoint_settings_are_null():
    assert endpoints.parse_endpoint(None) == {"IPAMConfig": None, "Links": None, "Aliases": None,
                                              "MacAddress": "", "DriverOpts": None}
    # compose sends an empty IPAMConfig: shown as {} (Docker keeps the empty object)
    assert endpoints.parse_endpoint({"IPAMConfig": {}})["IPAMConfig"] == {}


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


# -- what a record is on -------------------------------------------------------------------------

def test_old_records_add_the_network_mode_implicitly():
    old = _doc("web_default", None, EndpointsConfig={"default": {"Aliases": ["x"]}})
    old.endpoints_listed = False
    assert endpoints.requested(old) == {"bridge": {"Aliases": ["x"]}, "web_default": {}}
    assert endpoints.requested(_doc("none", None)) == {}


def test_listed_records_are_exactly_their_list():
    # disconnected from the NetworkMode's network: on nothing, NetworkMode unchanged
    assert endpoints.requested(_doc("web_default", {})) == {}
    assert list(endpoints.requested(_doc("web_default", {"web_default": {}, "other": {}}))) == ["web_default",
                                                                                                 "other"]


# -- how inspect shows it ------------------------------------------------------------------------

def test_created_container_shows_its_settings_without_addresses():
    cfg = endpoints.parse_endpoint({"Aliases": ["hello"], "DriverOpts": {"key1": "a"}}) | {"NetworkID": "n" * 64}
    nets = endpoints.networks(_doc("web_default", {"web_default": cfg}))
    assert list(nets) == ["web_default"]
    net = nets["web_default"]
    assert net["Aliases"] == ["hello"] and net["DriverOpts"] == {"key1": "a"}
    assert net["NetworkID"] == "n" * 64 and net["IPAddress"] == "" and net["EndpointID"] == ""
    assert net["DNSNames"] == ["web_1", "hello", CID[:12]]


def test_running_container_shows_its_attachment_and_settings():
    cfg = endpoints.parse_endpoint({"IPAMConfig": {"IPv4Address": "10.5.0.7"}, "Links": ["up:bar"]})
    ep = {"network": "n" * 64, "ip": "10.5.0.7", "prefix": 24, "gateway": "10.5.0.1", "mac": "02:42:0a:05:00:07",
          "host_if": "veth1", "aliases": [], "name": "web_default"}
    net = endpoints.networks(_doc("web_default", {"web_default": cfg}, {"n" * 64: ep}))["web_default"]
    assert net["IPAMConfig"] == {"IPv4Address": "10.5.0.7"} and net["Links"] == ["up:bar"]
    assert (net["IPAddress"], net["IPPrefixLen"], net["Gateway"]) == ("10.5.0.7", 24, "10.5.0.1")
    assert net["MacAddress"] == "02:42:0a:05:00:07" and net["Aliases"] is None


def test_default_bridge_has_no_dns_names():
    net = endpoints.networks(_doc("default", {"bridge": {}}))["bridge"]
    assert net["DNSNames"] is None


def test_mac_address_asked_for_shows_before_start():
    cfg = endpoints.parse_endpoint({"MacAddress": "02:42:ac:11:00:02"})
    assert endpoints.networks(_doc("n", {"n": cfg}))["n"]["MacAddress"] == "02:42:ac:11:00:02"


def test_disconnected_bridged_container_shows_no_network():
    assert endpoints.networks(_doc("web_default", {})) == {}


@pytest.mark.parametrize("mode", ["none", "host"])
def test_pseudo_networks_show_for_host_and_none(mode):
    assert list(endpoints.networks(_doc(mode, {}))) == [mode]


def test_old_clients_see_the_short_id_among_aliases():
    cfg = endpoints.parse_endpoint({"Aliases": ["web"]})
    nets = endpoints.networks(_doc("web_default", {"web_default": cfg, "bridge": {}}))
    old = endpoints.for_version(nets, _doc(), "1.41")
    assert old["web_default"]["Aliases"] == ["web", CID[:12]]  # hostname = short id: once
    assert old["bridge"]["Aliases"] is None  # not on the default bridge
    assert endpoints.for_version(nets, _doc(), "1.45")["web_default"]["Aliases"] == ["web"]
    assert nets["web_default"]["Aliases"] == ["web"]  # the input is not changed


def test_hostname_joins_aliases_for_old_clients():
    doc = _doc(Config={"Hostname": "db-host"})
    nets = {"n": endpoints.entry(doc, "n", {"Aliases": None}, None)}
    assert endpoints.for_version(nets, doc, "1.44")["n"]["Aliases"] == [CID[:12], "db-host"]


def test_versions_compare_as_numbers():
    assert endpoints.version("1.9") < endpoints.version("1.10") < endpoints.version("1.45")
    assert endpoints.version("bogus") > endpoints.version("1.47")
