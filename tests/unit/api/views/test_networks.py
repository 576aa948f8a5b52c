"""berth.api.views.networks: Docker's JSON for networks and for a container's NetworkSettings.Networks."""

from __future__ import annotations

import json

import pytest

from berth.api.views import networks as views
from berth.network import bridgeplan
from berth.services import containerrows, endpoints
from berth.services.endpoints import Endpoint
from berth.services.networks import NetworkDetails, NetworkMember
from berth.services.records import ContainerRecord

CID = "0123456789ab" + "c" * 52


def _doc(mode: str = "web_default", listed: dict | None = None, eps: dict | None = None,
         **extra: object) -> ContainerRecord:
    doc = {"Id": CID, "Name": "/web_1", "Config": {"Hostname": CID[:12]},
           "HostConfig": {"NetworkMode": mode}, "EndpointsConfig": listed or {},
           "EndpointsListed": listed is not None, "Endpoints": eps or {}}
    doc.update(extra)
    return containerrows.decode(json.dumps(doc))


def _settings(value: dict, network_id: str = "") -> dict:
    """parse_endpoint's settings as a record stores them."""
    doc = endpoints.parse_endpoint(value).to_doc()
    return doc | ({"NetworkID": network_id} if network_id else {})


# -- networks ------------------------------------------------------------------------------------

def test_network_inspect_is_the_record_and_its_running_containers():
    net = bridgeplan.new_network("app", "bridge", [bridgeplan.ipam_config("10.5.0.0/24", None, None)],
                                 labels={"team": "a"})
    ep = Endpoint(network=net.id, ip="10.5.0.2", prefix=24, mac="02:42:0a:05:00:02", host_if="veth1",
                  ip6="fd00::2", prefix6=64)
    shown = views.network(NetworkDetails(net, (NetworkMember(CID, "web", ep),)))
    assert {k: v for k, v in shown.items() if k != "Containers"} == net.to_doc()  # Docker's names, as stored
    assert shown["Containers"] == {CID: {"Name": "web", "EndpointID": "veth1", "MacAddress": "02:42:0a:05:00:02",
                                         "IPv4Address": "10.5.0.2/24", "IPv6Address": "fd00::2/64"}}
    assert views.network(NetworkDetails(net))["Containers"] == {}
    assert shown["IPAM"] == {"Driver": "default", "Options": None,
                             "Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1"}]}


def test_create_and_prune_answers():
    net = bridgeplan.new_network("app", "bridge", [])
    assert views.created(net) == {"Id": net.id, "Warning": ""}
    assert views.pruned([]) == {"NetworksDeleted": None}
    assert views.pruned(["a"]) == {"NetworksDeleted": ["a"]}


# -- a container's networks ----------------------------------------------------------------------

def test_created_container_shows_its_settings_without_addresses():
    cfg = _settings({"Aliases": ["hello"], "DriverOpts": {"key1": "a"}}, "n" * 64)
    nets = views.container_networks(_doc("web_default", {"web_default": cfg}))
    assert list(nets) == ["web_default"]
    net = nets["web_default"]
    assert net["Aliases"] == ["hello"] and net["DriverOpts"] == {"key1": "a"}
    assert net["NetworkID"] == "n" * 64 and net["IPAddress"] == "" and net["EndpointID"] == ""
    assert net["DNSNames"] == ["web_1", "hello", CID[:12]]


def test_running_container_shows_its_attachment_and_settings():
    cfg = _settings({"IPAMConfig": {"IPv4Address": "10.5.0.7"}, "Links": ["up:bar"]})
    ep = {"network": "n" * 64, "ip": "10.5.0.7", "prefix": 24, "gateway": "10.5.0.1", "mac": "02:42:0a:05:00:07",
          "host_if": "veth1", "aliases": [], "name": "web_default"}
    net = views.container_networks(_doc("web_default", {"web_default": cfg}, {"n" * 64: ep}))["web_default"]
    assert net == {
        "IPAMConfig": {"IPv4Address": "10.5.0.7"}, "Links": ["up:bar"], "Aliases": None,
        "MacAddress": "02:42:0a:05:00:07", "DriverOpts": None, "NetworkID": "n" * 64, "EndpointID": "veth1",
        "Gateway": "10.5.0.1", "IPAddress": "10.5.0.7", "IPPrefixLen": 24, "IPv6Gateway": "",
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": ["web_1", CID[:12]]}


def test_default_bridge_has_no_dns_names():
    net = views.container_networks(_doc("default", {"bridge": {}}))["bridge"]
    assert net["DNSNames"] is None


def test_mac_address_asked_for_shows_before_start():
    cfg = _settings({"MacAddress": "02:42:ac:11:00:02"})
    assert views.container_networks(_doc("n", {"n": cfg}))["n"]["MacAddress"] == "02:42:ac:11:00:02"


def test_disconnected_bridged_container_shows_no_network():
    assert views.container_networks(_doc("web_default", {})) == {}


@pytest.mark.parametrize("mode", ["none", "host"])
def test_pseudo_networks_show_for_host_and_none(mode):
    nets = views.container_networks(_doc(mode, {}))
    assert list(nets) == [mode] and nets[mode]["DNSNames"] is None and nets[mode]["NetworkID"] == ""


def test_unset_endpoint_is_all_empty():
    unset = views.unset_endpoint()
    assert (unset["IPAddress"], unset["Gateway"], unset["IPPrefixLen"], unset["MacAddress"]) == ("", "", 0, "")
    assert unset["DNSNames"] is None and unset["IPAMConfig"] is None


def test_old_clients_see_the_short_id_among_aliases():
    cfg = _settings({"Aliases": ["web"]})
    nets = views.container_networks(_doc("web_default", {"web_default": cfg, "bridge": {}}))
    old = views.for_version(nets, _doc(), "1.41")
    assert old["web_default"]["Aliases"] == ["web", CID[:12]]  # hostname = short id: once
    assert old["bridge"]["Aliases"] is None  # not on the default bridge
    assert views.for_version(nets, _doc(), "1.45")["web_default"]["Aliases"] == ["web"]
    assert nets["web_default"]["Aliases"] == ["web"]  # the input is not changed


def test_hostname_joins_aliases_for_old_clients():
    doc = _doc(Config={"Hostname": "db-host"})
    nets = {"n": views.endpoint(doc, endpoints.NetworkEntry("n", endpoints.EndpointSettings()))}
    assert views.for_version(nets, doc, "1.44")["n"]["Aliases"] == [CID[:12], "db-host"]


@pytest.mark.parametrize("aliases, want", [
    (None, ["web_1", CID[:12]]),
    (("db", "web_1", ""), ["web_1", "db", CID[:12]]),
])
def test_dns_names_each_once(aliases, want):
    assert views.dns_names(_doc(), aliases) == want
