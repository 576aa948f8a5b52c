"""Container network operations as compose and the SDK use them: NetworkingConfig at create, disconnect
then connect again (created and running), the settings inspect shows, and bad input.

Traffic goes only between the test daemon's own containers on its own bridges.
"""

from __future__ import annotations

import docker as docker_sdk
import pytest
from berth_e2e_conftest import assert_responsive, docker, is_dockerd, unique_name

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's

SLEEP = ["sleep", "300"]


@pytest.fixture(autouse=True)
def berth_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("the reference dockerd runs with --bridge none here")


@pytest.fixture
def api(berthd):
    """A low-level SDK client factory: api(version) -> docker.APIClient at that API version."""
    made = []

    def make(version: str = "1.47") -> docker_sdk.APIClient:
        c = docker_sdk.APIClient(base_url=berthd.host, version=version, timeout=60)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def _resolves(berthd, image, net: str, name: str) -> str:
    """What `nslookup`-style resolution of *name* gives from a fresh container on *net* ("" when nothing)."""
    cp = docker(berthd, "run", "--rm", "--network", net, image, "ping", "-c1", "-W3", name, check=False, timeout=60)
    if cp.returncode != 0:
        return ""
    return cp.stdout.split("(", 1)[1].split(")", 1)[0] if "(" in cp.stdout else "?"


def test_created_container_disconnected_and_connected_again_with_aliases(berthd, api, image, network, names):
    """compose's sequence: create on the project network, disconnect, connect with aliases, start."""
    net = network()
    c = api()
    name = names()
    cid = c.create_container(image, SLEEP, name=name, host_config=c.create_host_config(network_mode=net))["Id"]
    c.disconnect_container_from_network(cid, net)
    settings = c.inspect_container(cid)
    assert settings["HostConfig"]["NetworkMode"] == net  # kept, as Docker keeps it
    assert settings["NetworkSettings"]["Networks"] == {}
    assert c.containers(all=True, filters={"network": net}) == []  # off the network, whatever its NetworkMode
    c.connect_container_to_network(cid, net, aliases=["web", "frontend"])
    assert [x["Id"] for x in c.containers(all=True, filters={"network": net})] == [cid]
    c.start(cid)
    shown = c.inspect_container(cid)["NetworkSettings"]["Networks"][net]
    assert shown["Aliases"] == ["web", "frontend"] and shown["IPAddress"]
    assert shown["DNSNames"] == [name, "web", "frontend", cid[:12]]
    assert _resolves(berthd, image, net, "frontend") == shown["IPAddress"]
    assert _resolves(berthd, image, net, name) == shown["IPAddress"]


def test_running_container_disconnected_from_its_only_network_and_connected_again(berthd, api, image, network,
                                                                                    names):
    net = network()
    c = api()
    name = names()
    cid = c.create_container(image, SLEEP, name=name, host_config=c.create_host_config(network_mode=net))["Id"]
    c.start(cid)
    c.disconnect_container_from_network(cid, net)
    links = docker(berthd, "exec", name, "ip", "-o", "link").stdout
    assert "eth0" not in links, links
    with pytest.raises(docker_sdk.errors.APIError):  # not connected any more
        c.disconnect_container_from_network(cid, net)
    c.connect_container_to_network(cid, net, aliases=["again"])
    addr = c.inspect_container(cid)["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert f"inet {addr}/" in docker(berthd, "exec", name, "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert _resolves(berthd, image, net, "again") == addr
    with pytest.raises(docker_sdk.errors.APIError) as exc:  # twice: refused
        c.connect_container_to_network(cid, net)
    assert "already exists" in str(exc.value)


def test_second_network_disconnected_then_reconnected_reuses_its_interface_name(berthd, api, image, network,
                                                                              names):
    one, two, three = network(), network(), network()
    c = api()
    name = names()
    cid = c.create_container(image, SLEEP, name=name, host_config=c.create_host_config(network_mode=one))["Id"]
    c.start(cid)
    c.connect_container_to_network(cid, two)
    c.connect_container_to_network(cid, three)
    c.disconnect_container_from_network(cid, two)  # eth1 is free again
    c.connect_container_to_network(cid, two, aliases=["back"])
    out = docker(berthd, "exec", name, "ip", "-o", "-4", "addr").stdout
    by_dev = {line.split()[1]: line.split()[3].split("/")[0] for line in out.splitlines()}
    nets = c.inspect_container(cid)["NetworkSettings"]["Networks"]
    assert by_dev == {"lo": "127.0.0.1", "eth0": nets[one]["IPAddress"], "eth1": nets[two]["IPAddress"],
                      "eth2": nets[three]["IPAddress"]}, out


@pytest.mark.parametrize("mode, message", [
    ("none", "container cannot be connected to multiple networks with one of the networks in private (none) mode"),
    ("host", "container sharing network namespace with another container or host cannot be connected"),
])
def test_host_and_none_containers_are_refused_with_dockers_words(berthd, api, image, network, names, mode, message):
    net = network()
    c = api()
    cid = c.create_container(image, SLEEP, name=names(), host_config=c.create_host_config(network_mode=mode))["Id"]
    with pytest.raises(docker_sdk.errors.APIError) as exc:
        c.connect_container_to_network(cid, net)
    assert exc.value.status_code == 400 and message in str(exc.value)
    assert_responsive(berthd)


def test_container_mode_is_refused(berthd, api, image, network, names):
    net = network()
    c = api()
    first = c.create_container(image, SLEEP, name=names())["Id"]
    c.start(first)
    cid = c.create_container(image, SLEEP, name=names(),
                             host_config=c.create_host_config(network_mode=f"container:{first}"))["Id"]
    with pytest.raises(docker_sdk.errors.APIError) as exc:
        c.connect_container_to_network(cid, net)
    assert exc.value.status_code == 400 and "sharing network namespace" in str(exc.value)


def test_networking_config_at_create_is_kept_and_shown(berthd, api, image, network, names):
    net = network("--subnet", "10.123.0.0/24")
    c = api()
    upstream = names()
    cid = c.create_container(
        image, SLEEP, name=names(), host_config=c.create_host_config(network_mode=net),
        networking_config=c.create_networking_config({net: c.create_endpoint_config(
            aliases=["db", "database"], ipv4_address="10.123.0.23", link_local_ips=["169.254.8.8"],
            links=[(upstream, "up")], driver_opt={"com.example.setting": "on"})}))["Id"]
    created = c.inspect_container(cid)["NetworkSettings"]["Networks"]
    assert list(created) == [net]
    assert created[net]["Aliases"] == ["db", "database"] and created[net]["IPAddress"] == ""
    c.start(cid)
    shown = c.inspect_container(cid)["NetworkSettings"]["Networks"][net]
    assert shown["IPAMConfig"] == {"IPv4Address": "10.123.0.23", "LinkLocalIPs": ["169.254.8.8"]}
    assert shown["IPAddress"] == "10.123.0.23"
    assert shown["Links"] == [f"{upstream}:up"]
    assert shown["DriverOpts"] == {"com.example.setting": "on"}
    assert shown["Aliases"] == ["db", "database"]
    assert _resolves(berthd, image, net, "database") == "10.123.0.23"


def test_default_bridge_keeps_link_local_ips_and_driver_opts(berthd, api, image, names):
    c = api()
    cid = c.create_container(
        image, SLEEP, name=names(), host_config=c.create_host_config(network_mode="bridge"),
        networking_config=c.create_networking_config({"bridge": c.create_endpoint_config(
            link_local_ips=["169.254.8.8"], driver_opt={"com.docker-py.setting": "on"})}))["Id"]
    c.start(cid)
    shown = c.inspect_container(cid)["NetworkSettings"]["Networks"]["bridge"]
    assert shown["IPAMConfig"]["LinkLocalIPs"] == ["169.254.8.8"]
    assert shown["DriverOpts"] == {"com.docker-py.setting": "on"}
    assert shown["DNSNames"] is None


def test_two_networks_at_create_from_api_1_44(berthd, api, image, network, names):
    one, two = network(), network()
    config = {"EndpointsConfig": {one: {"Aliases": ["a1"]}, two: {"Aliases": ["a2"]}}}
    old = api("1.43")
    with pytest.raises(docker_sdk.errors.APIError) as exc:
        old.create_container(image, SLEEP, name=unique_name("two"), networking_config=config,
                             host_config=old.create_host_config(network_mode=one))
    assert exc.value.status_code == 400 and "Container cannot be connected to network endpoints" in str(exc.value)
    c = api("1.44")
    name = names()
    cid = c.create_container(image, SLEEP, name=name, networking_config=config,
                             host_config=c.create_host_config(network_mode=one))["Id"]
    c.start(cid)
    nets = c.inspect_container(cid)["NetworkSettings"]["Networks"]
    assert sorted(nets) == sorted([one, two]) and all(n["IPAddress"] for n in nets.values())
    assert _resolves(berthd, image, two, "a2") == nets[two]["IPAddress"]
    assert _resolves(berthd, image, one, "a1") == nets[one]["IPAddress"]
    route = docker(berthd, "exec", name, "ip", "route", "show", "default").stdout
    assert "dev eth0" in route, route  # the NetworkMode's network is the first one


def test_old_clients_see_the_short_id_among_aliases(berthd, api, image, network, names):
    """Docker below API 1.45 lists the short id (and hostname) among Aliases: compose 1.29 relies on it."""
    net = network()
    old = api("1.41")
    cid = old.create_container(
        image, SLEEP, name=names(), host_config=old.create_host_config(network_mode=net),
        networking_config=old.create_networking_config({net: old.create_endpoint_config(aliases=["svc"])}))["Id"]
    assert old.inspect_container(cid)["NetworkSettings"]["Networks"][net]["Aliases"] == ["svc", cid[:12]]
    assert api("1.45").inspect_container(cid)["NetworkSettings"]["Networks"][net]["Aliases"] == ["svc"]


def test_unknown_network_in_networking_config_is_refused_at_create(berthd, api, image, network):
    net = network()
    c = api()
    with pytest.raises(docker_sdk.errors.APIError) as exc:
        c.create_container(image, SLEEP, name=unique_name("undeclared"),
                           host_config=c.create_host_config(network_mode=net),
                           networking_config={"EndpointsConfig": {net: {}, "no-such-network-here": {}}})
    assert exc.value.status_code == 400 and "no-such-network-here" in str(exc.value)


@pytest.mark.parametrize("networking, field", [
    ("x", "NetworkingConfig"),
    ({"EndpointsConfig": "x"}, "EndpointsConfig"),
    ({"EndpointsConfig": {"bridge": "x"}}, "EndpointsConfig['bridge']"),
    ({"EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": "10.0.0.300"}}}}, "IPv4Address"),
    ({"EndpointsConfig": {"bridge": {"Aliases": "one"}}}, "Aliases"),
])
def test_bad_networking_config_is_a_400_naming_the_field(berthd, api, image, networking, field):
    c = api()
    with pytest.raises(docker_sdk.errors.APIError) as exc:
        c.create_container(image, SLEEP, name=unique_name("bad"), networking_config=networking)
    assert exc.value.status_code == 400 and field in str(exc.value), str(exc.value)
    assert_responsive(berthd)


def test_bad_connect_bodies_are_400s(berthd, api, image, network, names):
    net = network("--subnet", "10.124.0.0/24")
    c = api()
    cid = c.create_container(image, SLEEP, name=names())["Id"]
    url = c._url("/networks/{0}/connect", net)
    for body, field in (("x", "JSON object"), ({"Container": 5}, "Container"),
                        ({"Container": cid, "EndpointConfig": "x"}, "EndpointConfig"),
                        ({"Container": cid, "EndpointConfig": {"IPAMConfig": {"IPv4Address": "nope"}}},
                         "IPv4Address"),
                        ({"Container": cid, "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.9.9.9"}}},
                         "no configured subnet")):
        r = c._post_json(url, data=body)
        assert r.status_code == 400 and field in r.json()["message"], (body, r.text)
    # aliases and addresses are for user-defined networks only, as with Docker
    r = c._post_json(c._url("/networks/{0}/connect", "bridge"),
                     data={"Container": cid, "EndpointConfig": {"Aliases": ["x"]}})
    assert r.status_code in (400, 409), r.text  # 409: it is on the default bridge already
    assert_responsive(berthd)


def test_links_on_a_user_network_are_names_for_the_linking_container_only(berthd, api, image, network, names):
    net = network()
    c = api()
    upstream, linked, other = names(), names(), names()
    up = c.create_container(image, SLEEP, name=upstream, host_config=c.create_host_config(network_mode=net))["Id"]
    c.start(up)
    cid = c.create_container(image, SLEEP, name=linked, host_config=c.create_host_config(network_mode=net))["Id"]
    c.start(cid)
    # as docker-py's test_connect_with_links: disconnect, then connect with links
    c.disconnect_container_from_network(cid, net)
    c.connect_container_to_network(cid, net, links=[(upstream, "bar")])
    assert c.inspect_container(cid)["NetworkSettings"]["Networks"][net]["Links"] == [f"{upstream}:bar"]
    addr = c.inspect_container(up)["NetworkSettings"]["Networks"][net]["IPAddress"]
    out = docker(berthd, "exec", linked, "nslookup", "bar").stdout
    assert addr in out, out
    docker(berthd, "run", "-d", "--name", other, "--network", net, image, *SLEEP)
    cp = docker(berthd, "exec", other, "nslookup", "bar", check=False)
    assert addr not in cp.stdout, cp.stdout  # not a name of the network: only the linking container's
