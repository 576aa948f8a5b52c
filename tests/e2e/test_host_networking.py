"""Bridges, veths, namespaces and nftables on the real kernel (root).

Each test builds a small lab with berth.host.netlink and berth.host.nftables: a
bridge or two, network namespaces standing in for containers, a TCP echo server
inside one of them. All names start with "n1" + a random suffix, the nftables
table is a private one (never ``ip berth``, which a daemon under test may own),
and the subnets are 10.x.y.0/24 ranges the host does not use. Traffic goes only
to 127.0.0.1, to the lab's bridges and to its namespaces. Every test ends by
tearing the lab down and asserting that nothing of it is left.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from berth.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from berth.host import hostports, ifnames, mount, netlink, netns, nftables, nftrules, sysctl
from berth.host.nftrules import PortRule
from berth.network import ipam

ECHO_SERVER = r"""
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(16)
print("ready", flush=True)
while True:
    conn, peer = srv.accept()
    with conn:
        data = conn.recv(1024)
        conn.sendall(b"echo " + data + b" from " + peer[0].encode())
"""

ECHO_CLIENT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as c:
        c.sendall(b"hi")
        print(c.recv(1024).decode())
except OSError as e:
    print("failed:", e)
"""


@dataclass(frozen=True)
class Ctr:
    id: str
    netns: Path
    ip: str
    host_if: str


@dataclass(frozen=True)
class Net:
    id: str
    bridge: str
    pool: ipam.Pool


class Lab:
    def __init__(self, tmp: Path) -> None:
        tag = secrets.token_hex(3)
        self.prefix = f"n1{tag}"
        self.table = f"n1test_{tag}"
        self.nsdir = tmp / "netns"
        self.nets: list[Net] = []
        self.ctrs: list[Ctr] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.taken = netlink.host_networks()

    # -- building ----------------------------------------------------------

    def network(self, with_rules: bool = True) -> Net:
        n = len(self.nets)
        candidates = [f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24" for _ in range(64)]
        subnet = ipam.pick_subnet(self.taken, candidates)
        self.taken.append(str(subnet))
        net = Net(f"{self.prefix}net{n}", f"{self.prefix}b{n}", ipam.Pool(subnet, subnet.network_address + 1))
        self.nets.append(net)
        netlink.ensure_bridge(net.bridge, net.pool.gateway_cidr)
        sysctl.enable_route_localnet(net.bridge)
        if with_rules:
            self.add_rules(net)
        return net

    def add_rules(self, net: Net) -> None:
        asyncio.run(nftables.add_network(net.id, net.bridge, str(net.pool.subnet), table=self.table))

    def container(self, net: Net) -> Ctr:
        n = len(self.ctrs)
        used = {c.ip for c in self.ctrs}
        ip = ipam.allocate(net.pool, used)
        ctr = Ctr(f"{self.prefix}ctr{n}", self.nsdir / f"ctr{n}", ip, f"{self.prefix}v{n}")
        self.ctrs.append(ctr)
        netns.create_netns(ctr.netns)
        netlink.attach(net.bridge, ctr.netns, ctr.host_if, net.pool.address_cidr(ip), str(net.pool.gateway),
                       ipam.mac_for(ip))
        return ctr

    def serve(self, ctr: Ctr, port: int = 80) -> None:
        p = subprocess.Popen(["nsenter", f"--net={ctr.netns}", sys.executable, "-c", ECHO_SERVER, str(port)],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready", "echo server did not start"

    # -- probing -----------------------------------------------------------

    def in_ns(self, ctr: Ctr, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net={ctr.netns}", *argv], capture_output=True, text=True,
                              timeout=30)

    def ping(self, ctr: Ctr, address: str) -> bool:
        return self.in_ns(ctr, "busybox", "ping", "-c", "1", "-W", "2", address).returncode == 0

    def echo_from(self, ctr: Ctr, address: str, port: int) -> str:
        return self.in_ns(ctr, sys.executable, "-c", ECHO_CLIENT, address, str(port)).stdout.strip()

    # -- tearing down ------------------------------------------------------

    def teardown(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(10)
        self.procs.clear()
        for c in self.ctrs:
            netlink.detach(c.host_if)
            netns.delete_netns(c.netns)
        for n in self.nets:
            netlink.delete_bridge(n.bridge)
        asyncio.run(nftables.remove_all(table=self.table))
        if self.nsdir.exists():
            mount.unmount(str(self.nsdir))

    def leftovers(self) -> list[str]:
        left = netlink.links(self.prefix)
        left += [str(p) for p in self.nsdir.glob("*")] if self.nsdir.exists() else []
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
        left += [f"table {self.table}"] if f"table ip {self.table}\n" in tables + "\n" else []
        left += [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(self.nsdir) in line]
        return left

    def finish(self) -> None:
        """Tear down and assert that nothing of the lab is left."""
        self.teardown()
        assert self.leftovers() == []


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.teardown()  # again after a failure; every step tolerates what is already gone


def tcp_echo(address: str, port: int) -> str:
    with socket.create_connection((address, port), timeout=5) as c:
        c.sendall(b"hi")
        return c.recv(1024).decode()


def refused(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=3):
            return False
    except ConnectionRefusedError:
        return True


# --------------------------------------------------------------------------- #


def test_netns_lifecycle(lab: Lab) -> None:
    path = lab.nsdir / "solo"
    netns.create_netns(path)
    with pytest.raises(AlreadyExists):
        netns.create_netns(path)
    assert netns.netns_links(path) == ["lo"]
    assert "UP" in lab.in_ns(Ctr("x", path, "", ""), "ip", "-br", "link", "show", "lo").stdout
    assert netns.netns_links(path) != netlink.links()  # a namespace of its own
    netns.delete_netns(path)
    netns.delete_netns(path)  # already gone: fine
    assert not path.exists()
    with pytest.raises(NotFound):
        netns.netns_links(path)
    lab.finish()


def test_containers_on_one_bridge(lab: Lab) -> None:
    net = lab.network(with_rules=False)
    netlink.ensure_bridge(net.bridge, net.pool.gateway_cidr)  # idempotent
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", net.bridge],
                           capture_output=True, text=True, check=True).stdout
    assert addrs.count(" inet ") == 1 and net.pool.gateway_cidr in addrs

    a, b = lab.container(net), lab.container(net)
    assert netns.netns_links(a.netns) == ["eth0", "lo"]
    link = lab.in_ns(a, "ip", "-o", "link", "show", "eth0").stdout
    assert ipam.mac_for(a.ip) in link and "state UP" in link
    assert f"default via {net.pool.gateway} dev eth0" in lab.in_ns(a, "ip", "route").stdout
    master = subprocess.run(["ip", "-o", "link", "show", a.host_if], capture_output=True, text=True).stdout
    assert f"master {net.bridge}" in master

    assert lab.ping(a, b.ip)
    assert lab.ping(b, str(net.pool.gateway))
    lab.serve(b, 7000)
    assert lab.echo_from(a, b.ip, 7000) == f"echo hi from {a.ip}"

    with pytest.raises(Conflict):
        netlink.attach(net.bridge, a.netns, a.host_if, net.pool.address_cidr("10.0.0.9"), None, "02:42:00:00:00:09")
    with pytest.raises(Conflict, match="eth0 already exists"):
        netlink.attach(net.bridge, a.netns, f"{lab.prefix}vx", net.pool.address_cidr(b.ip), None,
                       "02:42:00:00:00:09")
    assert not netlink.exists(f"{lab.prefix}vx")  # the failed attach left nothing behind
    with pytest.raises(NotFound):
        netlink.attach(f"{lab.prefix}nob", a.netns, f"{lab.prefix}vy", "10.0.0.9/24", None, "02:42:00:00:00:09")

    tap = f"{lab.prefix}t0"
    netlink.create_tap(tap, net.bridge)
    detail = subprocess.run(["ip", "-d", "link", "show", tap], capture_output=True, text=True).stdout
    assert f"master {net.bridge}" in detail and "tap" in detail
    # A pooled VM's tap (QEMU's, on no bridge) takes a container's tap's place: name, bridge, up.
    pooled = f"{lab.prefix}p0"
    subprocess.run(["ip", "tuntap", "add", "dev", pooled, "mode", "tap"], check=True)
    subprocess.run(["ip", "link", "set", tap, "mtu", "1400"], check=True)
    netlink.adopt_tap(pooled, tap)
    assert not netlink.exists(pooled)
    detail = subprocess.run(["ip", "-d", "link", "show", tap], capture_output=True, text=True).stdout
    assert f"master {net.bridge}" in detail and "mtu 1400" in detail and ",UP" in detail, detail
    with pytest.raises(NotFound):
        netlink.adopt_tap(pooled, tap)  # it is gone: renamed
    netlink.delete_tap(tap)
    netlink.delete_tap(tap)

    netlink.detach(a.host_if)
    assert netns.netns_links(a.netns) == ["lo"]  # deleting the host end took the pair
    netlink.detach(a.host_if)  # already gone: fine
    lab.finish()


def test_published_port(lab: Lab) -> None:
    net = lab.network()
    server, peer = lab.container(net), lab.container(net)
    lab.serve(server, 80)
    gw = str(net.pool.gateway)
    port = hostports.random_port("tcp")
    hostports.check_port("", port, "tcp")
    rule = PortRule("tcp", "", port, server.ip, 80)
    asyncio.run(nftables.publish(server.id, [rule], table=lab.table))

    # From the host: 127.0.0.1 (route_localnet + masquerade: the server sees the gateway) and the gateway.
    assert tcp_echo("127.0.0.1", port) == f"echo hi from {gw}"
    assert tcp_echo(gw, port) == f"echo hi from {gw}"
    # From another container through the host's address (hairpin NAT).
    assert lab.echo_from(peer, gw, port) == f"echo hi from {gw}"

    async def rules_of(owner: str) -> int:
        listing = await nftables._listing(lab.table)
        return len(nftrules.owned_handles(listing, owner))

    assert asyncio.run(rules_of(server.id)) == 2
    asyncio.run(nftables.publish(server.id, [rule], table=lab.table))  # setting again changes nothing
    assert asyncio.run(rules_of(server.id)) == 2
    lab.add_rules(net)
    assert asyncio.run(rules_of(net.id)) == len(nftrules.network_rules(net.id, net.bridge, str(net.pool.subnet)))

    # A port published on 127.0.0.1 only answers there.
    local_port = hostports.random_port("tcp", exclude={port})
    asyncio.run(nftables.publish(server.id, [rule, PortRule("tcp", "127.0.0.1", local_port, server.ip, 80)],
                                 table=lab.table))
    assert tcp_echo("127.0.0.1", local_port).startswith("echo hi")
    assert refused(gw, local_port)

    assert asyncio.run(nftables.owners(table=lab.table)) == {net.id, server.id}
    asyncio.run(nftables.unpublish(server.id, table=lab.table))
    asyncio.run(nftables.unpublish(server.id, table=lab.table))  # none left: fine
    assert refused("127.0.0.1", port)
    assert asyncio.run(nftables.owners(table=lab.table)) == {net.id}
    asyncio.run(nftables.remove_network(net.id, table=lab.table))
    assert asyncio.run(nftables.owners(table=lab.table)) == set()
    lab.finish()


def test_networks_are_isolated(lab: Lab) -> None:
    one = lab.network(with_rules=False)
    two = lab.network(with_rules=False)
    a, b = lab.container(one), lab.container(two)
    lab.serve(b, 80)
    sysctl.enable_ip_forward()
    # Without berth's rules the host routes between the bridges ...
    assert lab.ping(a, b.ip)
    # ... with them it does not, in either direction, while each bridge still reaches its gateway.
    lab.add_rules(one)
    lab.add_rules(two)
    assert not lab.ping(a, b.ip)
    assert not lab.ping(b, a.ip)
    assert lab.echo_from(a, b.ip, 80).startswith("failed")
    assert lab.ping(a, str(one.pool.gateway))
    # A port that b publishes on the host is reachable from the other network, as with Docker.
    port = hostports.random_port("tcp")
    asyncio.run(nftables.publish(b.id, [PortRule("tcp", "", port, b.ip, 80)], table=lab.table))
    assert lab.echo_from(a, str(one.pool.gateway), port).startswith("echo hi from ")
    # Removing one network's rules lifts the isolation it imposed, and only that.
    asyncio.run(nftables.remove_network(one.id, table=lab.table))
    assert asyncio.run(nftables.owners(table=lab.table)) == {two.id, b.id}
    lab.finish()


def test_rule_text_is_accepted_by_nft(lab: Lab) -> None:
    lines = [*nftrules.skeleton(lab.table),
             *nftrules.network_rules("net1", f"{lab.prefix}b9", "10.254.0.0/24", lab.table),
             *nftrules.port_rules("ctr1", [PortRule("tcp", "", 8080, "10.254.0.2", 80),
                                           PortRule("udp", "127.0.0.1", 5353, "10.254.0.2", 53),
                                           PortRule("sctp", "10.254.0.1", 9, "10.254.0.2", 9)], lab.table)]
    # -c: the kernel checks the whole transaction and commits nothing.
    check = subprocess.run(["nft", "-c", "-f", "-"], input=nftrules.script(lines), capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert asyncio.run(nftables.owners(table=lab.table)) == set()  # no table: no owners, no error
    asyncio.run(nftables.remove_owner("ctr1", table=lab.table))
    asyncio.run(nftables.ensure_table(table=lab.table))
    asyncio.run(nftables.ensure_table(table=lab.table))
    asyncio.run(nftables.remove_all(table=lab.table))
    asyncio.run(nftables.remove_all(table=lab.table))
    lab.finish()


def test_host_ports() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not hostports.port_free("127.0.0.1", port, "tcp")
        assert not hostports.port_free("", port, "tcp")  # every address includes 127.0.0.1
        with pytest.raises(Conflict, match=f"Bind for 127.0.0.1:{port} failed: port is already allocated"):
            hostports.check_port("127.0.0.1", port, "tcp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy_udp:
        busy_udp.bind(("127.0.0.1", 0))
        assert not hostports.port_free("127.0.0.1", busy_udp.getsockname()[1], "udp")
    low, high = hostports.ephemeral_range()
    chosen = hostports.random_port("udp", "127.0.0.1")
    assert low <= chosen <= high and hostports.port_free("127.0.0.1", chosen, "udp")
    everything_but_one = set(range(low, high + 1)) - {chosen}
    assert hostports.random_port("udp", "127.0.0.1", exclude=everything_but_one) == chosen
    with pytest.raises(InvalidArgument, match="cannot assign requested address"):
        hostports.port_free("198.51.100.1", 8080, "tcp")  # bind only: not an address of this host


def test_veth_name() -> None:
    name = ifnames.veth_name("a" * 64, "b" * 64)
    assert len(name) == 15 and name.startswith("veth") and int(name[4:], 16) >= 0
    assert name == ifnames.veth_name("a" * 64, "b" * 64)
    assert name != ifnames.veth_name("a" * 64, "c" * 64)
    with pytest.raises(InvalidArgument):
        ifnames.check_ifname("much-too-long-name")
    assert ipaddress.IPv4Network(netlink.host_networks()[0])  # the host reaches at least 127.0.0.0/8
