"""IPv6 on user-defined networks (``--ipv6``) and ``--mac-address``, with the real docker CLI and the SDK.

Theory of operation
-------------------
A network made with ``--ipv6`` gets an IPv6 IPAM entry (the given subnet, or a
unique local /64 berth picks), its bridge the gateway address, each container
an address (``--ip6`` to choose it) and a default IPv6 route via the gateway;
the embedded DNS answers AAAA for names and aliases. Containers reach each other
over IPv6; nothing is NATed (berth, like Docker by default, does not masquerade
IPv6), and the host does not forward IPv6 for them.

The hostile half follows test_hostile_network.py: a static C probe, bind-mounted
into the container (which has NET_RAW by default), writes whole Ethernet frames
to the gateway's MAC with any IPv6 source and destination, here the host's
``::1`` and the v4-mapped ``::ffff:127.0.0.1``. Listeners on the host's loopback
must receive nothing; a listener on the gateway address is the control that
shows the probe works. An internal IPv6 network has no default route and its
containers reach no host address, global or link-local, over IPv6.

Traffic goes only to ::1/127.0.0.1, to the test daemon's own bridges and to its
containers. Every test ends with assert_responsive. Subnets are random ULAs, so
that daemons running side by side do not share one.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker as docker_sdk
import pytest
from berth_e2e_conftest import assert_responsive, docker, is_dockerd, wait_until

pytestmark = [pytest.mark.usefixtures("each_cli"),  # every test with both CLIs
              pytest.mark.skipif(not Path("/proc/sys/net/ipv6").exists(), reason="no IPv6 on this host")]

TOP = ["sleep", "300"]


@pytest.fixture(autouse=True)
def berth_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("the reference dockerd runs with --bridge none here")


def ula() -> str:
    """A random unique local /64."""
    return str(ipaddress.IPv6Network((int.from_bytes(b"\xfd" + secrets.token_bytes(7) + bytes(8), "big"), 64)))


def inspect_net(berthd, name: str) -> dict:
    import json
    return json.loads(docker(berthd, "network", "inspect", name).stdout)[0]


def endpoint(berthd, container: str, net: str) -> dict:
    import json
    doc = json.loads(docker(berthd, "inspect", container).stdout)[0]
    return doc["NetworkSettings"]["Networks"][net]


def host_state() -> tuple[str, str]:
    """What a container must not change on the host: IPv6 forwarding and the host's IPv6 default routes."""
    forwarding = Path("/proc/sys/net/ipv6/conf/all/forwarding").read_text().strip()
    routes = subprocess.run(["ip", "-6", "route", "show", "default"], capture_output=True, text=True).stdout
    return forwarding, routes


# --------------------------------------------------------------------------- networks


def test_ipv6_network_inspect_shows_both_ipam_configs(berthd, network):
    subnet = ula()
    gw = str(ipaddress.IPv6Network(subnet).network_address + 1)
    net = network("--ipv6", "--subnet", subnet)
    doc = inspect_net(berthd, net)
    assert doc["EnableIPv6"] is True
    configs = doc["IPAM"]["Config"]
    assert len(configs) == 2 and ":" not in configs[0]["Subnet"], configs
    assert configs[1] == {"Subnet": subnet, "Gateway": gw}
    bridge = f"br-{doc['Id'][:12]}"
    assert Path(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6").read_text().strip() == "0"
    # The bridge takes nothing from its containers: no router advertisements, no SLAAC.
    assert Path(f"/proc/sys/net/ipv6/conf/{bridge}/accept_ra").read_text().strip() == "0"
    addrs = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", bridge, "scope", "global"],
                           capture_output=True, text=True).stdout
    assert f"{gw}/64" in addrs
    assert_responsive(berthd)


def test_ipv6_without_a_subnet_gets_a_unique_local_64(berthd, network):
    net = network("--ipv6")
    configs = inspect_net(berthd, net)["IPAM"]["Config"]
    v6 = ipaddress.IPv6Network(configs[1]["Subnet"])
    assert v6.prefixlen == 64 and v6.subnet_of(ipaddress.IPv6Network("fd00::/8")), configs
    assert_responsive(berthd)


def test_networks_without_ipv6_keep_it_off(berthd, network):
    net = network()
    doc = inspect_net(berthd, net)
    assert doc["EnableIPv6"] is False and len(doc["IPAM"]["Config"]) == 1
    assert Path(f"/proc/sys/net/ipv6/conf/br-{doc['Id'][:12]}/disable_ipv6").read_text().strip() == "1"
    assert_responsive(berthd)


@pytest.mark.parametrize("args, words", [
    (["--subnet", "fd00:1::5/64"], "it should be"),
    (["--subnet", "fd00:1::/127"], "no room"),
    (["--subnet", "ff02::/64"], "not unicast"),
    (["--subnet", "fe80::/64"], "not unicast"),
    (["--subnet", "fd00:1::/64", "--gateway", "fd00:2::1"], "no matching subnet for gateway"),
    (["--subnet", "fd00:1::/64", "--subnet", "fd00:2::/64"], "one IPv6 subnet"),
])
def test_bad_ipv6_subnets_are_refused(berthd, args, words):
    cp = docker(berthd, "network", "create", "--ipv6", *args, "bad-v6-net", check=False)
    assert cp.returncode != 0 and words in cp.stderr, cp.stderr
    assert "not supported" not in cp.stderr
    assert_responsive(berthd)


def test_overlapping_ipv6_subnets_conflict(berthd, network):
    subnet = ula()
    network("--ipv6", "--subnet", subnet)
    cp = docker(berthd, "network", "create", "--ipv6", "--subnet", subnet, "dup-v6-net", check=False)
    assert cp.returncode != 0 and "Pool overlaps" in cp.stderr, cp.stderr
    assert_responsive(berthd)


def test_sdk_creates_an_ipv6_network_and_a_container_with_an_ipv6_address(berthd, client, image, names):
    from docker.types import IPAMConfig, IPAMPool
    api = client.api
    subnet = ula()
    base = ipaddress.IPv6Network(subnet).network_address
    net = api.create_network(f"sdkv6-{secrets.token_hex(4)}", enable_ipv6=True, ipam=IPAMConfig(
        driver="default", pool_configs=[IPAMPool(subnet=subnet, iprange=f"{base}/96", gateway=str(base + 0xffff))]))
    try:
        assert api.inspect_network(net["Id"])["EnableIPv6"] is True
        name = names()
        wanted = str(base + 0xf00d)
        ctr = api.create_container(image, TOP, name=name,
                                   host_config=api.create_host_config(network_mode=net["Id"]),
                                   networking_config=api.create_networking_config(
                                       {net["Id"]: api.create_endpoint_config(ipv6_address=wanted)}))
        api.start(ctr)
        settings = api.inspect_container(ctr)["NetworkSettings"]["Networks"]
        (ep,) = settings.values()
        assert ep["GlobalIPv6Address"] == wanted and ep["GlobalIPv6PrefixLen"] == 64
        assert ep["IPv6Gateway"] == str(base + 0xffff)
        api.remove_container(ctr, force=True)
    finally:
        api.remove_network(net["Id"])
    assert_responsive(berthd)


# --------------------------------------------------------------------------- containers


def test_containers_talk_over_ipv6_by_name_and_aaaa(berthd, image, network, names):
    subnet = ula()
    base = ipaddress.IPv6Network(subnet).network_address
    net = network("--ipv6", "--subnet", subnet)
    web, fixed = names(), names()
    docker(berthd, "run", "-d", "--name", web, "--network", net, "--network-alias", "www6", image, *TOP)
    docker(berthd, "run", "-d", "--name", fixed, "--network", net, "--ip6", str(base + 0x99), image, *TOP)
    ep = endpoint(berthd, web, net)
    assert ipaddress.IPv6Address(ep["GlobalIPv6Address"]) in ipaddress.IPv6Network(subnet)
    assert ep["GlobalIPv6PrefixLen"] == 64 and ep["IPv6Gateway"] == str(base + 1)
    assert endpoint(berthd, fixed, net)["GlobalIPv6Address"] == str(base + 0x99)
    containers = inspect_net(berthd, net)["Containers"]
    assert {c["IPv6Address"] for c in containers.values()} == {f"{ep['GlobalIPv6Address']}/64", f"{base + 0x99}/64"}
    out = docker(berthd, "exec", fixed, "sh", "-c",
                 f"ip -6 route show default; ip -6 addr show dev eth0 scope global; cat /etc/hosts; "
                 f"nslookup -type=AAAA {web}; nslookup -type=AAAA www6; "
                 f"ping6 -c1 -W3 {web} >/dev/null && echo ping-name-ok; "
                 f"ping6 -c1 -W3 www6 >/dev/null && echo ping-alias-ok; "
                 f"ping6 -c1 -W3 {base + 1} >/dev/null && echo ping-gw-ok; "
                 f"cat /proc/sys/net/ipv6/conf/eth0/accept_ra", timeout=60).stdout
    assert f"default via {base + 1} dev eth0" in out, out
    assert f"{base + 0x99}/64" in out
    assert re.search(rf"^{base + 0x99}\s", out, re.M), out  # the container's IPv6 address in /etc/hosts
    assert out.count(ep["GlobalIPv6Address"]) >= 2, out  # AAAA for the name and for the alias
    assert "ping-name-ok" in out and "ping-alias-ok" in out and "ping-gw-ok" in out, out
    assert out.rstrip().endswith("0"), out  # containers take no router advertisements (CVE-2020-13401)
    taken = docker(berthd, "run", "--rm", "--network", net, "--ip6", str(base + 0x99), image, "true", check=False)
    assert taken.returncode != 0 and "Address already in use" in taken.stderr, taken.stderr
    assert_responsive(berthd)


def test_ip6_on_a_network_without_ipv6_is_refused(berthd, image, network):
    net = network()
    cp = docker(berthd, "run", "--rm", "--network", net, "--ip6", "fd00:1::5", image, "true", check=False)
    assert cp.returncode != 0 and "--ipv6" in cp.stderr, cp.stderr
    cp = docker(berthd, "run", "--rm", "--network", net, "--ip6", "not-an-address", image, "true", check=False)
    assert cp.returncode != 0
    assert_responsive(berthd)


def test_internal_ipv6_network_has_no_way_out(berthd, image, network, names):
    subnet = ula()
    base = ipaddress.IPv6Network(subnet).network_address
    internal = network("--internal", "--ipv6", "--subnet", subnet)
    before = host_state()
    peer = names()
    docker(berthd, "run", "-d", "--name", peer, "--network", internal, image, *TOP)
    peer_ip = endpoint(berthd, peer, internal)["GlobalIPv6Address"]
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as srv:
        srv.bind(("::", 0))  # every host address: the gateway's, the bridge's link-local one, ...
        srv.listen(8)
        srv.setblocking(False)
        port = srv.getsockname()[1]
        out = docker(berthd, "run", "--rm", "--network", internal, image, "sh", "-c",
                     f"echo routes $(ip -6 route show default | wc -l); "
                     f"ping6 -c1 -W3 {peer_ip} >/dev/null && echo peer-ok; "
                     f"echo hi | nc -w 2 {base + 1} {port} >/dev/null 2>&1 && echo connected-gw; "
                     "ping6 -c2 -w3 ff02::1%eth0 >/dev/null 2>&1; "
                     "for a in $(ip -6 neigh | cut -d' ' -f1); do "
                     f"echo hi | nc -w 2 \"$a%eth0\" {port} >/dev/null 2>&1 && echo connected $a; done; echo done",
                     timeout=90).stdout
        assert "routes 0" in out, out  # no IPv6 default route on an internal network
        assert "peer-ok" in out, out  # the control: the network itself works
        assert "connected" not in out and out.rstrip().endswith("done"), out
        with pytest.raises(BlockingIOError):
            srv.accept()
    assert host_state() == before
    assert_responsive(berthd)


# --------------------------------------------------------------------------- the host's loopback

PROBE6_C = r"""/* IPv6 raw-frame probe: one TCP SYN or UDP datagram, in an Ethernet frame to a given MAC.
 * usage: probe6 IFNAME DSTMAC SRCIP DSTIP tcp|udp PORT [WAIT_MS]
 *        probe6 IFNAME DSTMAC SRCIP DSTIP ra PREFIX   (a router advertisement: default route + PREFIX/64)
 * Prints "sent", then for tcp "synack", "rst" or "nothing" (what came back within WAIT_MS). */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint32_t add16(const uint8_t *p, size_t n, uint32_t s) {
    for (; n > 1; n -= 2, p += 2) s += (uint32_t)(p[0] << 8 | p[1]);
    if (n) s += (uint32_t)(p[0] << 8);
    return s;
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

int main(int argc, char **argv) {
    if (argc < 7) return 2;
    unsigned m[6];
    uint8_t dmac[6], f[128] = {0}, buf[2048];
    struct in6_addr src, dst, prefix;
    int tcp = strcmp(argv[5], "tcp") == 0, ra = strcmp(argv[5], "ra") == 0;
    int port = ra ? 0 : atoi(argv[6]), wait = argc > 7 ? atoi(argv[7]) : 2000;
    if (ra && inet_pton(AF_INET6, argv[6], &prefix) != 1) return 2;
    if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) return 2;
    for (int i = 0; i < 6; i++) dmac[i] = (uint8_t)m[i];
    if (inet_pton(AF_INET6, argv[3], &src) != 1 || inet_pton(AF_INET6, argv[4], &dst) != 1) return 2;
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IPV6));
    if (s < 0) { perror("socket"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) { perror("ifindex"); return 1; }
    int index = ifr.ifr_ifindex;
    if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) { perror("hwaddr"); return 1; }
    memcpy(f, dmac, 6);
    memcpy(f + 6, ifr.ifr_hwaddr.sa_data, 6);
    f[12] = 0x86; f[13] = 0xdd;
    uint8_t *ip = f + 14, *l4 = f + 54;
    int len = ra ? 56 : tcp ? 20 : 12, proto = ra ? 58 : tcp ? 6 : 17;
    ip[0] = 0x60; ip[4] = 0; ip[5] = (uint8_t)len; ip[6] = (uint8_t)proto; ip[7] = ra ? 255 : 64;
    memcpy(ip + 8, &src, 16);
    memcpy(ip + 24, &dst, 16);
    int sport = 40000 + getpid() % 20000;
    l4[0] = sport >> 8; l4[1] = sport & 0xff; l4[2] = port >> 8; l4[3] = port & 0xff;
    if (ra) {  /* type 134; hop limit 64; router lifetime 1800 s; then source link-layer and prefix options */
        l4[0] = 134; l4[1] = 0; l4[2] = 0; l4[3] = 0; l4[4] = 64; l4[6] = 0x07; l4[7] = 0x08;
        l4[16] = 1; l4[17] = 1; memcpy(l4 + 18, ifr.ifr_hwaddr.sa_data, 6);
        uint8_t *pi = l4 + 24;
        pi[0] = 3; pi[1] = 4; pi[2] = 64; pi[3] = 0xc0;  /* on-link, autonomous */
        pi[5] = 0x01; pi[6] = 0x51; pi[7] = 0x80; pi[9] = 0x00; pi[10] = 0x38; pi[11] = 0x40;
        memcpy(pi + 16, &prefix, 16);
    } else if (tcp) {
        l4[4] = 1; l4[5] = 2; l4[6] = 3; l4[7] = 4; l4[12] = 0x50; l4[13] = 0x02; l4[14] = 0xff; l4[15] = 0xff;
    } else {
        l4[5] = (uint8_t)len; memcpy(l4 + 8, "hi6!", 4);
    }
    uint32_t sum = add16(ip + 8, 32, 0) + (uint32_t)len + (uint32_t)proto;
    sum = add16(l4, (size_t)len, sum);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    uint16_t c = (uint16_t)~sum;
    if (!tcp && !ra && c == 0) c = 0xffff;
    int at = ra ? 2 : tcp ? 16 : 6;
    l4[at] = c >> 8; l4[at + 1] = c & 0xff;
    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET; to.sll_ifindex = index; to.sll_halen = 6; to.sll_protocol = htons(ETH_P_IPV6);
    memcpy(to.sll_addr, dmac, 6);
    if (sendto(s, f, (size_t)(54 + len), 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("sendto"); return 1; }
    printf("sent\n");
    if (!tcp) return 0;
    long end = now_ms() + wait;
    for (long left; (left = end - now_ms()) > 0;) {
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0) break;
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n < 74 || buf[12] != 0x86 || buf[13] != 0xdd || buf[20] != 6) continue;
        uint8_t *t = buf + 54;
        if ((t[0] << 8 | t[1]) != port || (t[2] << 8 | t[3]) != sport) continue;
        if ((t[13] & 0x12) == 0x12) { printf("synack\n"); return 0; }
        if (t[13] & 0x04) { printf("rst\n"); return 0; }
    }
    printf("nothing\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def probe6_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("probe6")
    d.chmod(0o755)
    (d / "probe6.c").write_text(PROBE6_C)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "probe6"), str(d / "probe6.c")], check=True,
                   capture_output=True)
    return d


@pytest.fixture()
def listeners() -> Iterator:
    made: list[socket.socket] = []

    def make(proto: str, address: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        sock.bind((address, 0))
        if proto == "tcp":
            sock.listen(8)
        sock.setblocking(False)
        made.append(sock)
        return sock
    yield make
    for sock in made:
        sock.close()


def got(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            if sock.type == socket.SOCK_STREAM:
                conn, peer = sock.accept()
                conn.close()
                out.append(f"connection from {peer[0]}")
            else:
                _, peer = sock.recvfrom(2048)
                out.append(f"datagram from {peer[0]}")
        except BlockingIOError:
            return out


PROBE6_SCRIPT = r"""
gw=$1; src=$2; shift 2
ping6 -c1 -W2 "$gw" >/dev/null 2>&1
mac=$(ip -6 neigh show dev eth0 | awk -v g="$gw" '$1 == g {print $3}')
echo "mac $mac"
while [ $# -ge 5 ]; do
  s=$2; [ "$s" = auto ] && s=$src
  echo "$1 $(/probe/probe6 eth0 "$mac" "$s" "$3" "$4" "$5" 3000 | tail -1)"
  shift 5
done
"""


def test_raw_ipv6_frames_never_reach_the_hosts_loopback(berthd, image, network, probe6_dir, listeners):
    subnet = ula()
    gw = str(ipaddress.IPv6Network(subnet).network_address + 1)
    ctr_ip = str(ipaddress.IPv6Network(subnet).network_address + 0x77)
    net = network("--ipv6", "--subnet", subnet)
    before = host_state()
    lo_tcp, lo_udp = listeners("tcp", "::1"), listeners("udp", "::1")
    any_tcp, any_udp = listeners("tcp", "::"), listeners("udp", "::")  # dual-stack: 127.0.0.1 too
    gw_udp = listeners("udp", gw)  # the control datagram's
    probes = [
        ("lo-tcp", "auto", "::1", "tcp", lo_tcp.getsockname()[1]),
        ("lo-udp", "auto", "::1", "udp", lo_udp.getsockname()[1]),
        ("mapped-tcp", "auto", "::ffff:127.0.0.1", "tcp", any_tcp.getsockname()[1]),
        ("spoofed-udp", "::1", gw, "udp", any_udp.getsockname()[1]),
        ("spoofed-tcp", "::1", "::1", "tcp", lo_tcp.getsockname()[1]),
        ("gw-tcp", "auto", gw, "tcp", any_tcp.getsockname()[1]),  # the controls
        ("gw-udp", "auto", gw, "udp", gw_udp.getsockname()[1]),
    ]
    args = [str(x) for p in probes for x in p]
    cp = docker(berthd, "run", "--rm", "--network", net, "--ip6", ctr_ip, "-v", f"{probe6_dir}:/probe:ro",
                image, "sh", "-c", PROBE6_SCRIPT, "probe", gw, ctr_ip, *args, timeout=120)
    out = dict(line.split(" ", 1) for line in cp.stdout.splitlines() if " " in line)
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", out.get("mac", "")), cp.stdout + cp.stderr
    assert out["gw-tcp"] == "synack", out  # the probe works: a raw SYN to the gateway is answered
    assert out["lo-tcp"] == "nothing" and out["mapped-tcp"] == "nothing" and out["spoofed-tcp"] == "nothing", out
    wait_until(lambda: got(gw_udp), 5, "the control datagram to the gateway")
    assert got(any_tcp) == []  # SYNs only: no connection was completed
    assert got(lo_tcp) == [] and got(lo_udp) == [], "a container reached the host's ::1"
    assert got(any_udp) == [], "a datagram with a spoofed ::1 source reached the host"
    assert host_state() == before
    assert_responsive(berthd)


# --------------------------------------------------------------------------- --mac-address


def test_mac_address_with_the_cli(berthd, image, names, network):
    name = names()
    mac = "02:42:ac:11:00:0a"
    docker(berthd, "run", "-d", "--name", name, "--mac-address", mac.upper(), image, *TOP)
    import json
    doc = json.loads(docker(berthd, "inspect", name).stdout)[0]
    assert doc["NetworkSettings"]["MacAddress"] == mac
    assert doc["NetworkSettings"]["Networks"]["bridge"]["MacAddress"] == mac
    assert docker(berthd, "exec", name, "cat", "/sys/class/net/eth0/address").stdout.strip() == mac
    # On a user network too, and the default stays Docker's: 02:42 and the IPv4 address.
    net = network()
    other = names()
    docker(berthd, "run", "-d", "--name", other, "--network", net, image, *TOP)
    ep = endpoint(berthd, other, net)
    assert ep["MacAddress"] == "02:42:" + ":".join(f"{int(b):02x}" for b in ep["IPAddress"].split("."))
    assert_responsive(berthd)


def test_mac_address_with_the_sdk(berthd, client, image, names, network):
    api = client.api
    mac = "02:42:ac:11:00:0b"
    ctr = api.create_container(image, TOP, name=names(), mac_address=mac)
    api.start(ctr)
    assert api.inspect_container(ctr)["NetworkSettings"]["MacAddress"] == mac
    # `docker network connect --mac-address` (EndpointConfig.MacAddress), before the start
    net = network()
    late = api.create_container(image, TOP, name=names())
    api.connect_container_to_network(late, net, mac_address="02:42:ac:11:00:0c")
    api.start(late)
    networks = api.inspect_container(late)["NetworkSettings"]["Networks"]
    assert networks[net]["MacAddress"] == "02:42:ac:11:00:0c"
    macs = api.exec_start(api.exec_create(late, ["sh", "-c", "cat /sys/class/net/eth*/address"])).decode()
    assert "02:42:ac:11:00:0c" in macs.split(), macs
    for bad in ("zz", "01:00:5e:00:00:01", "02:42:ac:11:00"):
        with pytest.raises(docker_sdk.errors.APIError) as err:
            api.create_container(image, TOP, mac_address=bad)
        assert err.value.status_code == 400 and "MAC address" in str(err.value), err.value
    assert_responsive(berthd)


# --------------------------------------------------------------------------- restarts and removal


def _rules6_of(table: str, owner: str) -> list[str]:
    import asyncio

    from berth.host import nftables, nftrules
    listing = asyncio.run(nftables._listing(table, "ip6"))
    return sorted(chain for chain, _ in nftrules.owned_handles(listing, owner))


def test_ipv6_rules_and_addresses_are_reapplied_once_and_removed_with_the_network(berthd_factory, rootfs_tar):
    from berth_e2e_conftest import unique_name

    from berth.api.wiring import nft_table
    d = berthd_factory()
    image = "busybox:latest"
    docker(d, "import", str(rootfs_tar), image, timeout=120)
    table = nft_table(d.root)
    subnet = ula()
    gw = str(ipaddress.IPv6Network(subnet).network_address + 1)
    name, internal = unique_name("v6net"), unique_name("v6int")
    docker(d, "network", "create", "--ipv6", "--subnet", subnet, name)
    docker(d, "network", "create", "--ipv6", "--internal", internal)
    net_id = docker(d, "network", "inspect", "-f", "{{.Id}}", name).stdout.strip()
    int_id = docker(d, "network", "inspect", "-f", "{{.Id}}", internal).stdout.strip()
    bridge_id = docker(d, "network", "inspect", "-f", "{{.Id}}", "bridge").stdout.strip()
    before = (_rules6_of(table, net_id), _rules6_of(table, int_id))
    assert before[0].count("guard_pre") == 4 and "forward" in before[0], before
    assert before[1].count("guard_pre") == 4 and before[1].count("input") == 3, before
    assert _rules6_of(table, bridge_id) == []  # the default bridge has no IPv6
    d.kill9()
    d.restart()
    assert (_rules6_of(table, net_id), _rules6_of(table, int_id)) == before
    addrs = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", f"br-{net_id[:12]}", "scope", "global"],
                           capture_output=True, text=True).stdout
    assert addrs.count(" inet6 ") == 1 and f"{gw}/64" in addrs, addrs
    out = docker(d, "run", "--rm", "--network", name, image, "sh", "-c", f"ping6 -c1 -W3 {gw} >/dev/null && echo ok",
                 timeout=60).stdout
    assert "ok" in out
    docker(d, "network", "rm", name, internal)
    assert _rules6_of(table, net_id) == [] and _rules6_of(table, int_id) == []
    assert_responsive(d)


RA_SCRIPT = r"""
me=$(ip -6 addr show dev eth0 scope link | awk '/inet6/ {print $2}' | cut -d/ -f1)
echo "from $me"
/probe/probe6 eth0 33:33:00:00:00:01 "$me" ff02::1 ra "$1"
"""

WAIT_RA = r"""
for i in $(seq 50); do ip -6 route show default | grep -q 'via fe80' && break; sleep 0.1; done
echo "routes: $(ip -6 route show default | tr '\n' ';')"
echo "addrs: $(ip -6 addr show dev eth0 | grep -c "inet6 ${1%::}")"
grep -E "Icmp6InRouterAdvertisements|Icmp6InCsumErrors|Icmp6InErrors" /proc/net/snmp6 | tr -s ' \n' ' '
"""


@pytest.mark.parametrize("ipv6", [True, False], ids=["ipv6-network", "ipv4-network"])
def test_router_advertisements_from_a_container_configure_nothing(berthd, image, network, names, probe6_dir, ipv6):
    # CVE-2020-13401's pattern: a container (NET_RAW) advertises itself as a router to all nodes.
    net = network("--ipv6", "--subnet", ula()) if ipv6 else network()
    bridge = "br-" + inspect_net(berthd, net)["Id"][:12]
    prefix = str(ipaddress.IPv6Network(ula()).network_address)
    before = host_state()
    control, neighbour = names(), names()
    # The control takes advertisements (accept_ra=1, which only a privileged container can set): it
    # shows that the advertisement is a valid one.
    docker(berthd, "run", "-d", "--name", control, "--network", net, "--privileged", image, "sh", "-c",
           "echo 1 > /proc/sys/net/ipv6/conf/eth0/accept_ra; exec sleep 300")
    docker(berthd, "run", "-d", "--name", neighbour, "--network", net, image, *TOP)
    wait_until(lambda: docker(berthd, "exec", control, "cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra").stdout
               .strip() == "1", 10, "the control's accept_ra=1")
    sent = docker(berthd, "run", "--rm", "--network", net, "-v", f"{probe6_dir}:/probe:ro", image, "sh", "-c",
                  RA_SCRIPT, "ra", prefix, timeout=60).stdout
    assert "sent" in sent, sent
    ctl = docker(berthd, "exec", control, "sh", "-c", WAIT_RA, "wait", prefix, timeout=30).stdout
    assert "via fe80" in ctl and "addrs: 1" in ctl, ctl  # the control: the advertisement works
    other = docker(berthd, "exec", neighbour, "sh", "-c", WAIT_RA.replace("seq 50", "seq 1"), "wait", prefix,
                   timeout=30).stdout
    assert "via fe80" not in other and "addrs: 0" in other, other
    host_addrs = subprocess.run(["ip", "-6", "addr", "show", "dev", bridge], capture_output=True, text=True).stdout
    assert prefix.rstrip(":") not in host_addrs, host_addrs
    host_routes = subprocess.run(["ip", "-6", "route", "show"], capture_output=True, text=True).stdout
    assert prefix.rstrip(":") not in host_routes and f"dev {bridge} proto ra" not in host_routes, host_routes
    assert host_state() == before
    assert_responsive(berthd)
