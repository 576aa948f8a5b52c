"""The network create request parsed at the API's edge (api.handlers.networks.parse_create)."""

from __future__ import annotations

import pytest

from berth.api.handlers.networks import parse_create
from berth.errors import InvalidArgument
from berth.services.networks import IpamEntry, NetworkCreateRequest


@pytest.mark.parametrize("body, want", [
    ({"Name": "app"}, NetworkCreateRequest("app")),
    ({"Name": "app", "Driver": None, "IPAM": None, "Labels": None, "Options": None}, NetworkCreateRequest("app")),
    ({"Name": "app", "Driver": "bridge", "Internal": True, "Attachable": True, "EnableIPv6": True,
      "Labels": {"a": "b"}, "Options": {"com.docker.network.bridge.name": "br0"}, "CheckDuplicate": True},
     NetworkCreateRequest("app", internal=True, attachable=True, enable_ipv6=True, labels={"a": "b"},
                          options={"com.docker.network.bridge.name": "br0"})),
    ({"Name": "app", "IPAM": {"Driver": "default", "Options": {"k": "v"},
                              "Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1", "IPRange": "10.5.0.0/25",
                                          "AuxiliaryAddresses": {"r": "10.5.0.9"}}, {"Subnet": "fd00:1::/64"}]}},
     NetworkCreateRequest("app", ipam_options={"k": "v"}, ipam_config=(
         IpamEntry("10.5.0.0/24", "10.5.0.1", "10.5.0.0/25", {"r": "10.5.0.9"}), IpamEntry("fd00:1::/64")))),
    ({"Name": "app", "Driver": "overlay", "IPAM": {"Driver": "other", "Config": []}},
     NetworkCreateRequest("app", driver="overlay", ipam_driver="other")),  # refused by the service
    ({}, NetworkCreateRequest("")),  # refused by the service: "a network needs a name"
])
def test_parse_create(body, want):
    assert parse_create(body) == want


@pytest.mark.parametrize("body, words", [
    ([], "must be a JSON object"),
    ({"Name": "a", "IPAM": "x"}, "IPAM: expected an object"),
    ({"Name": "a", "IPAM": {"Config": ["10.0.0.0/8"]}}, "IPAM.Config entries must be objects"),
    ({"Name": "a", "IPAM": {"Config": {"Subnet": "10.0.0.0/8"}}}, "IPAM.Config entries must be objects"),
    ({"Name": "a", "IPAM": {"Config": [{"AuxiliaryAddresses": ["10.0.0.1"]}]}},
     "AuxiliaryAddresses must be an object"),
    ({"Name": "a", "Labels": {"a": 1}}, "Labels: expected an object of strings"),
    ({"Name": "a", "Options": ["x"]}, "Options: expected an object of strings"),
    ({"Name": "a", "IPAM": {"Options": {"k": True}}}, "IPAM.Options: expected an object of strings"),
])
def test_parse_create_refuses(body, words):
    with pytest.raises(InvalidArgument, match=words):
        parse_create(body)
