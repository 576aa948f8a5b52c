"""network create's address flags grouped by subnet, with docker's CLI refusals."""

from __future__ import annotations

import pytest

from berth.cli.ipamopts import ipam_configs
from berth.errors import InvalidArgument


def test_each_flag_joins_the_subnet_that_holds_it() -> None:
    got = ipam_configs(["10.5.0.0/24", "fd00:1::/64"], ["10.5.0.128/25"], ["fd00:1::1", "10.5.0.1"],
                       [("host", "10.5.0.9")])
    assert got == [{"Subnet": "10.5.0.0/24", "IPRange": "10.5.0.128/25", "Gateway": "10.5.0.1",
                    "AuxiliaryAddresses": {"host": "10.5.0.9"}},
                   {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::1"}]
    assert ipam_configs([], [], [], []) == []
    assert ipam_configs(["bogus"], [], [], []) == [{"Subnet": "bogus"}]  # the daemon says what is wrong


@pytest.mark.parametrize("subnets, ranges, gateways, aux, words", [
    ([], [], ["10.5.0.1"], [], "every ip-range or gateway must have a corresponding subnet"),
    (["10.5.0.0/24"], ["10.9.0.0/24"], [], [], "no matching subnet for range 10.9.0.0/24"),
    (["10.5.0.0/24"], [], [], [("a", "10.9.0.2")], "no matching subnet for aux-address 10.9.0.2"),
    (["10.5.0.0/16", "10.5.1.0/24"], [], [], [], "multiple overlapping subnet configuration is not supported"),
    (["10.5.0.0/24", "10.6.0.0/24"], [], ["10.5.0.1", "10.5.0.2"], [],
     "cannot configure multiple gateways (10.5.0.2, 10.5.0.1) for the same subnet (10.5.0.0/24)"),
])
def test_docker_refusals(subnets, ranges, gateways, aux, words) -> None:
    with pytest.raises(InvalidArgument) as info:
        ipam_configs(subnets, ranges, gateways, aux)
    assert str(info.value) == words
