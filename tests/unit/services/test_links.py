"""berth.services.links: Docker's link syntax, variables and hosts lines (pure: containers are stand-in records)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from berth.errors import Conflict, InvalidArgument, NotFound
from berth.services import containerrows, links
from berth.services.endpoints import Endpoint
from berth.services.records import Container, ContainerRecord
from berth.wire.containerspec import HostConfig


def _record(doc: dict[str, Any]) -> ContainerRecord:
    return containerrows.decode(json.dumps({"Id": "w" * 64, "Name": "/web"} | doc))


def _lookup(*cs: Container):
    def get(ref: str) -> Container:
        for c in cs:
            if ref in (c.name, c.id):
                return c
        raise NotFound(f"No such container: {ref}")
    return get


def _ctr(name: str, mode: str = "default", env=(), ports=(), ip="172.17.0.5") -> Container:
    record = containerrows.decode(json.dumps({"Id": name + "0" * 60, "Name": "/" + name, "HostConfig": {"NetworkMode": mode},
                                       "Config": {"Env": list(env), "ExposedPorts": {p: {} for p in ports}},
                                       "Endpoints": {"n1": {"name": "bridge", "ip": ip}}}))
    record.state.running = True
    return Container(record, "/nonexistent")


@pytest.mark.parametrize("text,target,alias", [("db", "db", "db"), ("db:data", "db", "data"),
                                               ("/db:/web/data", "db", "data")])
def test_parse(text, target, alias):
    assert links.parse(text) == links.LinkSpec(target, alias)


@pytest.mark.parametrize("text", ["", "a:b:c", ":x", "x:"])
def test_parse_refuses(text):
    with pytest.raises(InvalidArgument):
        links.parse(text)


def test_at_create_keeps_docker_form_and_names_a_missing_container():
    get = _lookup(_ctr("db"), _ctr("hostnet", "host"), _ctr("side", "container:db"))
    assert links.at_create(HostConfig.from_doc({"Links": ["db:data", "db"]}), "web", get) == ["/db:/web/data", "/db:/web/db"]
    assert links.at_create(HostConfig.from_doc({"Links": ["side:s"]}), "web", get) == ["/db:/web/s"]  # its namespace's owner
    with pytest.raises(InvalidArgument, match="^could not get container for nope: No such container: nope$"):
        links.at_create(HostConfig.from_doc({"Links": ["nope:x"]}), "web", get)
    with pytest.raises(InvalidArgument, match="host type networking can't be used with links"):
        links.at_create(HostConfig.from_doc({"Links": ["hostnet"]}), "web", get)
    # A user-defined network: aliases for later, kept as given (the target may not exist yet).
    assert links.at_create(HostConfig.from_doc({"Links": ["later:bar"], "NetworkMode": "mynet"}), "web", get) == ["later:bar"]


def test_env_vars_as_docker_writes_them():
    link = links.Link("db-1", "/web/db-1", "/db", "abc", "172.17.0.5", ((80, "tcp"), (53, "udp")),
                      ("FOO=1", "PATH=/bin", "HOME=/root", "EMPTY="))
    assert link.env_vars() == [
        "DB_1_PORT=udp://172.17.0.5:53",
        "DB_1_PORT_53_UDP=udp://172.17.0.5:53", "DB_1_PORT_53_UDP_ADDR=172.17.0.5", "DB_1_PORT_53_UDP_PORT=53",
        "DB_1_PORT_53_UDP_PROTO=udp",
        "DB_1_PORT_80_TCP=tcp://172.17.0.5:80", "DB_1_PORT_80_TCP_ADDR=172.17.0.5", "DB_1_PORT_80_TCP_PORT=80",
        "DB_1_PORT_80_TCP_PROTO=tcp",
        "DB_1_NAME=/web/db-1", "DB_1_ENV_FOO=1", "DB_1_ENV_EMPTY="]


def test_runs_of_three_ports_get_start_and_end():
    link = links.Link("r", "/w/r", "/r", "h", "10.0.0.2", ((8000, "tcp"), (8001, "tcp"), (8002, "tcp")), ())
    env = link.env_vars()
    assert env[:7] == ["R_PORT=tcp://10.0.0.2:8000", "R_PORT_8000_TCP_START=tcp://10.0.0.2:8000",
                       "R_PORT_8000_TCP_ADDR=10.0.0.2", "R_PORT_8000_TCP_PROTO=tcp", "R_PORT_8000_TCP_PORT_START=8000",
                       "R_PORT_8000_TCP_END=tcp://10.0.0.2:8002", "R_PORT_8000_TCP_PORT_END=8002"]
    pair = links.Link("r", "/w/r", "/r", "h", "10.0.0.2", ((8000, "tcp"), (8001, "tcp")), ())
    assert not any("START" in v for v in pair.env_vars())


def test_hosts_line_and_own_variables_win():
    link = links.Link("data", "/web/data", "/db", "dbhost", "172.17.0.5", (), ("X=1",))
    assert link.hosts_line() == ("172.17.0.5", "data dbhost db")
    same = links.Link("db", "/web/db", "/db", "dbhost", "172.17.0.5", (), ())
    assert same.hosts_line() == ("172.17.0.5", "db dbhost")
    assert links.merged_env([link], ["DATA_ENV_X=mine", "A=b"]) == ["DATA_NAME=/web/data", "DATA_ENV_X=mine", "A=b"]


def test_at_start_needs_running_targets():
    db = _ctr("db", env=["FOO=1"], ports=["80/tcp"])
    doc = _record({"Name": "/web", "HostConfig": {"Links": ["/db:/web/data"], "NetworkMode": "default"}})
    [link] = links.at_start(doc, _lookup(db))
    assert (link.alias, link.name, link.ip, link.ports, link.env) == ("data", "/web/data", "172.17.0.5",
                                                                      ((80, "tcp"),), ("FOO=1",))
    db.state.running = False
    with pytest.raises(Conflict, match="Cannot link to a non running container: /db AS /web/data"):
        links.at_start(doc, _lookup(db))
    with pytest.raises(Conflict, match="does not exist"):
        links.at_start(doc, _lookup())
    assert links.at_start(_record({"Name": "/w", "HostConfig": {"Links": ["db"], "NetworkMode": "mynet"}}),
                          _lookup()) == []


def test_without():
    assert links.without(["/db:/web/data", "/db:/web/db"], "data") == ["/db:/web/db"]
    assert links.without(["/db:/web/db"], "data") == ["/db:/web/db"]
    assert links.without([], "db") == []


def test_unlink_removes_the_link_and_saves():
    web = _ctr("web")
    web.record.host.links = ["/db:/web/data", "/db:/web/db"]
    saved: list[Container] = []

    class Table:
        def get(self, ref: str) -> Container:
            return _lookup(web)(ref)

        def save(self, c: Container) -> None:
            saved.append(c)
    links.unlink(Table(), "web", "data")
    assert web.record.host.links == ["/db:/web/db"] and saved == [web]
    links.unlink(Table(), "web", "db")
    assert web.record.host.links is None
    with pytest.raises(NotFound, match="^No such container: web/db$"):
        links.unlink(Table(), "web", "db")
    with pytest.raises(NotFound, match="^No such container: nope/db$"):
        links.unlink(Table(), "nope", "db")


def test_on_a_user_network_a_hosts_line_and_no_variables():
    db = _ctr("db", "mynet", env=["FOO=1"])
    db.record.endpoints = {"n9": Endpoint(name="mynet", network="n9", ip="10.9.0.3")}
    doc = _record({"Name": "/web", "HostConfig": {"Links": ["db:bar", "missing:x"], "NetworkMode": "mynet"},
                   "EndpointsConfig": {"mynet": {"Links": ["db:baz"]}},
                   "Endpoints": {"n9": {"name": "mynet", "network": "n9", "ip": "10.9.0.2"}}})
    got = links.at_start(doc, _lookup(db))
    assert [link.hosts_line() for link in got] == [("10.9.0.3", "bar db0000000000 db"),
                                                   ("10.9.0.3", "baz db0000000000 db")]
    assert links.merged_env(got, ["A=1"]) == ["A=1"]
    db.state.running = False
    assert links.at_start(doc, _lookup(db)) == []
