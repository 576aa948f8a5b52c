"""Published ports planned as a pure function: ranges, random ports, clashes with other containers."""

from __future__ import annotations

import pytest

from berth.errors import Conflict, InvalidArgument
from berth.network.portplan import PortBinding, plan_ports


def _host(host: dict) -> tuple:
    return host.get("PortBindings"), bool(host.get("PublishAllPorts"))


def _free(busy: set[int] = frozenset()):  # type: ignore[assignment]
    return lambda ip, port, proto: port not in busy


def _random(start: int = 40000):
    def pick(proto: str, host_ip: str, exclude=()) -> int:
        n = start
        while n in set(exclude):
            n += 1
        return n
    return pick


def test_fixed_any_and_zero_ports():
    host = {"PortBindings": {"80/tcp": [{"HostPort": "8080"}], "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "0"}],
                             "22": None}}
    got = plan_ports(*_host(host), [], set(), _free(), _random())
    assert got == [PortBinding(80, "tcp", "", 8080), PortBinding(53, "udp", "127.0.0.1", 40000),
                   PortBinding(22, "tcp", "", 40000)]  # per protocol
    # stored as Docker writes ports: HostPort a string
    assert [b.to_doc() for b in got][1] == {"Port": 53, "Proto": "udp", "HostIp": "127.0.0.1", "HostPort": "40000"}
    assert [PortBinding.from_doc(b.to_doc()) for b in got] == got


def test_publish_all_adds_exposed_ports_once():
    host = {"PublishAllPorts": True, "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}
    got = plan_ports(*_host(host), ["80/tcp", "443/tcp"], set(), _free(), _random())
    assert [(b.port, b.host_port) for b in got] == [(80, 8080), (443, 40000)]


def test_a_range_takes_its_first_free_port():
    host = {"PortBindings": {"80/tcp": [{"HostPort": "9000-9003"}]}}
    taken = {("tcp", 9000, "0.0.0.0")}
    got = plan_ports(*_host(host), [], taken, _free({9001}), _random())
    assert got[0].host_port == 9002
    with pytest.raises(Conflict, match="all ports of the range"):
        plan_ports(*_host(host), [], taken, _free({9001, 9002, 9003}), _random())


@pytest.mark.parametrize(("taken_ip", "asked_ip"), [("0.0.0.0", "127.0.0.1"), ("127.0.0.1", ""), ("10.0.0.1", "10.0.0.1")])
def test_a_port_another_container_publishes_is_taken(taken_ip, asked_ip):
    host = {"PortBindings": {"80/tcp": [{"HostIp": asked_ip, "HostPort": "8080"}]}}
    with pytest.raises(Conflict, match="port is already allocated"):
        plan_ports(*_host(host), [], {("tcp", 8080, taken_ip)}, _free(), _random())


def test_other_addresses_and_protocols_do_not_clash():
    host = {"PortBindings": {"80/tcp": [{"HostIp": "10.0.0.2", "HostPort": "8080"}]}}
    assert plan_ports(*_host(host), [], {("tcp", 8080, "10.0.0.1"), ("udp", 8080, "0.0.0.0")}, _free(), _random())


@pytest.mark.parametrize(("key", "port"), [("80/sctp", "1"), ("x/tcp", "1"), ("80/tcp", "70000"), ("0/tcp", "1")])
def test_bad_ports_are_refused(key, port):
    with pytest.raises(InvalidArgument):
        plan_ports({key: [{"HostPort": port}]}, False, [], set(), _free(), _random())
