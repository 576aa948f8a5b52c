"""Hostile containers against the host's loopback and out of --internal networks (issue 10).

Theory of operation
-------------------
A container with the default capabilities has NET_RAW, so it can write whole
Ethernet frames: addressed to the gateway's MAC, with any IPv4 source and
destination it likes. With route_localnet=1 on a bridge (which published ports
on 127.0.0.1 need) the kernel would take a frame addressed to 127.0.0.1 as its
own and answer it: the CVE-2020-8558 pattern, which makes a host service bound
to 127.0.0.1 (berthd -H tcp://127.0.0.1:PORT among them) reachable from every
container.

The probe is a small static C program built here with ``gcc -static`` and
bind-mounted into the container (process or VM isolation: the same x86_64
binary runs in the guest). It sends one TCP SYN or UDP datagram as a raw frame
to the gateway's MAC (read from the container's ARP table after a ping) and,
for TCP, prints what came back: "synack", "rst" or "nothing". The host side is
plain Python sockets: listeners on 127.0.0.1 must receive nothing; listeners
on the bridge's gateway address are the control that shows the probe works.

Internal networks: no default route, nothing forwarded out or accepted by the
host apart from the embedded DNS, which answers the network's own names only
(SERVFAIL for the rest without asking upstream, as Docker's does).

Traffic goes only to 127.0.0.1, to the test daemon's own bridges and to its
containers. Every test ends with assert_responsive.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from berth_e2e_conftest import (
    assert_responsive,
    docker,
    is_dockerd,
    unique_name,
    wait_until,
)

from berth.api.wiring import nft_table
from berth.host import nftables, nftrules
from berth.network import dns, dnswire
from berth.network.dnswire import CLASS_IN, Rcode, Record, Type

HAVE_QEMU = Path("/usr/bin/qemu-system-x86_64").exists()
HTTPD = ["sh", "-c", "echo served-by-$(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]
VM = ["--isolation", "hyperv"]
# busybox's `wget -T` crashes in the test image: fetch with nc, which has a working timeout.
HTTP_GET = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w {wait} {host} 80 | tail -1"

PROBE_C = r"""/* Raw-frame probe: one IPv4 TCP SYN or UDP datagram, sent as an Ethernet frame to a given MAC.
 * usage: probe IFNAME|auto DSTMAC SRCIP|auto DSTIP tcp|udp PORT [WAIT_MS]
 * Prints "sent", then for tcp "synack", "rst" or "nothing" (what came back within WAIT_MS). */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint32_t sum16(const void *data, size_t len, uint32_t sum) {
    const uint8_t *p = data;
    for (; len > 1; len -= 2, p += 2) sum += (uint32_t)(p[0] << 8 | p[1]);
    if (len) sum += (uint32_t)(p[0] << 8);
    return sum;
}

static uint16_t fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return htons((uint16_t)~sum);
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void die(const char *what) { perror(what); exit(2); }

int main(int argc, char **argv) {
    if (argc < 7) { fprintf(stderr, "usage: probe IF DSTMAC SRCIP DSTIP tcp|udp PORT [WAIT_MS]\n"); return 2; }
    char ifname[IF_NAMESIZE] = {0};
    if (strcmp(argv[1], "auto") == 0) {
        struct if_nameindex *ifs = if_nameindex(), *i;
        for (i = ifs; i && i->if_index; i++)
            if (strcmp(i->if_name, "lo") != 0) { strncpy(ifname, i->if_name, IF_NAMESIZE - 1); break; }
        if (!ifname[0]) { fprintf(stderr, "no interface\n"); return 2; }
    } else strncpy(ifname, argv[1], IF_NAMESIZE - 1);
    unsigned m[6];
    if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) return 2;
    int tcp = strcmp(argv[5], "tcp") == 0;
    int port = atoi(argv[6]);
    int wait_ms = argc > 7 ? atoi(argv[7]) : 2000;

    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (fd < 0) die("socket");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IF_NAMESIZE - 1);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) die("SIOCGIFINDEX");
    int ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
    uint8_t srcmac[6];
    memcpy(srcmac, ifr.ifr_hwaddr.sa_data, 6);
    struct in_addr src, dst;
    if (strcmp(argv[3], "auto") == 0) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (s < 0 || ioctl(s, SIOCGIFADDR, &ifr) < 0) die("SIOCGIFADDR");
        src = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr;
        close(s);
    } else if (inet_pton(AF_INET, argv[3], &src) != 1) return 2;
    if (inet_pton(AF_INET, argv[4], &dst) != 1) return 2;

    struct sockaddr_ll ll;
    memset(&ll, 0, sizeof ll);
    ll.sll_family = AF_PACKET;
    ll.sll_protocol = htons(ETH_P_IP);
    ll.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) die("bind");

    srand((unsigned)(getpid() ^ now_ms()));
    uint16_t sport = (uint16_t)(40000 + rand() % 20000);
    uint32_t seq = (uint32_t)rand();
    uint8_t f[128];
    memset(f, 0, sizeof f);
    for (int i = 0; i < 6; i++) f[i] = (uint8_t)m[i];
    memcpy(f + 6, srcmac, 6);
    f[12] = 0x08; f[13] = 0x00;
    uint8_t *ip = f + 14, *l4 = ip + 20;
    const char payload[] = "berth-probe";
    size_t l4len;
    if (tcp) {
        l4len = 20;
        l4[0] = sport >> 8; l4[1] = sport & 0xff; l4[2] = port >> 8; l4[3] = port & 0xff;
        l4[4] = seq >> 24; l4[5] = seq >> 16; l4[6] = seq >> 8; l4[7] = seq;
        l4[12] = 5 << 4; l4[13] = 0x02; /* SYN */
        l4[14] = 0xfa; l4[15] = 0xf0;
    } else {
        l4len = 8 + sizeof payload - 1;
        l4[0] = sport >> 8; l4[1] = sport & 0xff; l4[2] = port >> 8; l4[3] = port & 0xff;
        l4[4] = l4len >> 8; l4[5] = l4len & 0xff;
        memcpy(l4 + 8, payload, sizeof payload - 1);
    }
    size_t iplen = 20 + l4len;
    ip[0] = 0x45; ip[2] = iplen >> 8; ip[3] = iplen & 0xff; ip[6] = 0x40; ip[8] = 64;
    ip[9] = tcp ? IPPROTO_TCP : IPPROTO_UDP;
    memcpy(ip + 12, &src, 4); memcpy(ip + 16, &dst, 4);
    uint16_t c = fold(sum16(ip, 20, 0));
    memcpy(ip + 10, &c, 2);
    uint8_t pseudo[12];
    memcpy(pseudo, &src, 4); memcpy(pseudo + 4, &dst, 4);
    pseudo[8] = 0; pseudo[9] = ip[9]; pseudo[10] = l4len >> 8; pseudo[11] = l4len & 0xff;
    c = fold(sum16(l4, l4len, sum16(pseudo, 12, 0)));
    memcpy(l4 + (tcp ? 16 : 6), &c, 2);
    if (send(fd, f, 14 + iplen, 0) < 0) die("send");
    printf("sent\n");
    fflush(stdout);
    if (!tcp) return 0;

    long deadline = now_ms() + wait_ms;
    uint8_t buf[2048];
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0) continue;
        struct sockaddr_ll from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 20 || from.sll_pkttype == PACKET_OUTGOING) continue;
        uint8_t *r = buf; /* SOCK_RAW on ETH_P_IP: frames start with the Ethernet header */
        if (n < 14 + 20) continue;
        r += 14;
        size_t ihl = (size_t)(r[0] & 0x0f) * 4;
        if ((r[0] >> 4) != 4 || r[9] != IPPROTO_TCP || (size_t)n < 14 + ihl + 20) continue;
        if (memcmp(r + 12, &dst, 4) != 0) continue;
        uint8_t *t = r + ihl;
        if (((t[0] << 8) | t[1]) != port || ((t[2] << 8) | t[3]) != sport) continue;
        if ((t[13] & 0x12) == 0x12) { printf("synack\n"); return 0; }
        if (t[13] & 0x04) { printf("rst\n"); return 0; }
    }
    printf("nothing\n");
    return 0;
}
"""


@pytest.fixture(autouse=True)
def berth_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("the reference dockerd runs with --bridge none here")


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the static probe, for `-v DIR:/probe:ro`."""
    d = tmp_path_factory.mktemp("probe")
    d.chmod(0o755)
    (d / "probe.c").write_text(PROBE_C)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "probe"), str(d / "probe.c")], check=True,
                   capture_output=True)
    return d


# --- host listeners -------------------------------------------------------------


@dataclass
class Listener:
    """A host socket that records whatever reaches it (TCP connections, UDP datagrams)."""

    proto: str
    address: str
    sock: socket.socket = field(init=False)
    got: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        kind = socket.SOCK_STREAM if self.proto == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind((self.address, 0))
        if self.proto == "tcp":
            self.sock.listen(16)
        self.sock.setblocking(False)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def poll(self) -> list[str]:
        """Everything that arrived so far (never blocks)."""
        while True:
            try:
                if self.proto == "tcp":
                    conn, peer = self.sock.accept()
                    conn.close()
                    self.got.append(f"connection from {peer[0]}")
                else:
                    data, peer = self.sock.recvfrom(2048)
                    self.got.append(f"datagram {data!r} from {peer[0]}")
            except BlockingIOError:
                return self.got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def listen() -> Iterator:
    made: list[Listener] = []

    def make(proto: str, address: str) -> Listener:
        lst = Listener(proto, address)
        made.append(lst)
        return lst
    yield make
    for lst in made:
        lst.close()


def gateway_of(berthd, net: str) -> str:
    if net == "bridge":
        return berthd.bip.split("/")[0]
    return docker(berthd, "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", net).stdout.strip()


# The container side: learn the gateway's MAC from ARP, then run the probes given as lines
# "<label> <srcip|auto> <dstip> <tcp|udp> <port>"; print "<label> <result>" for each.
PROBE_SCRIPT = r"""
gw=$1; shift
ping -c1 -W2 "$gw" >/dev/null 2>&1
mac=$(awk -v g="$gw" '$1 == g {print $4}' /proc/net/arp)
echo "mac $mac"
echo "route $(ip route | grep -c '^default')"
while [ $# -ge 5 ]; do
  echo "$1 $(/probe/probe auto "$mac" "$2" "$3" "$4" "$5" 3000 | tail -1)"
  shift 5
done
"""


def run_probes(berthd, probe_dir: Path, net_args: list[str], gw: str, probes: list[tuple[str, str, str, str, int]],
               iso: list[str]) -> dict[str, str]:
    args: list[str] = []
    for label, src, dst, proto, port in probes:
        args += [label, src, dst, proto, str(port)]
    cp = docker(berthd, "run", "--rm", *iso, *net_args, "-v", f"{probe_dir}:/probe:ro", "busybox:latest",
                "sh", "-c", PROBE_SCRIPT, "probe", gw, *args, timeout=180)
    out = dict(line.split(" ", 1) for line in cp.stdout.splitlines() if " " in line)
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", out.get("mac", "")), cp.stdout + cp.stderr
    return out


# --- the host's loopback ------------------------------------------------------------

CASES = [pytest.param([], "bridge", id="default-bridge-process"),
         pytest.param([], "user", id="user-network-process"),
         pytest.param(VM, "bridge", id="default-bridge-vm",
                      marks=pytest.mark.skipif(not HAVE_QEMU, reason="needs QEMU")),
         pytest.param(VM, "user", id="user-network-vm",
                      marks=pytest.mark.skipif(not HAVE_QEMU, reason="needs QEMU"))]


@pytest.mark.parametrize("iso, where", CASES)
def test_raw_frames_never_reach_the_hosts_loopback(berthd, image, probe_dir, network, listen, iso, where):
    net = "bridge" if where == "bridge" else network()
    gw = gateway_of(berthd, net)
    tcp_lo, udp_lo = listen("tcp", "127.0.0.1"), listen("udp", "127.0.0.1")
    tcp_gw, udp_gw = listen("tcp", gw), listen("udp", gw)  # controls: the probe does work
    udp_spoofed = listen("udp", "0.0.0.0")
    out = run_probes(berthd, probe_dir, ["--network", net], gw, [
        ("lo-tcp", "auto", "127.0.0.1", "tcp", tcp_lo.port),
        ("lo-udp", "auto", "127.0.0.1", "udp", udp_lo.port),
        ("lo-tcp-other", "auto", "127.1.2.3", "tcp", tcp_lo.port),
        ("spoofed-udp", "127.0.0.1", gw, "udp", udp_spoofed.port),
        ("spoofed-tcp", "127.0.0.1", "127.0.0.1", "tcp", tcp_lo.port),
        ("gw-tcp", "auto", gw, "tcp", tcp_gw.port),
        ("gw-udp", "auto", gw, "udp", udp_gw.port),
    ], iso)
    assert out["gw-tcp"] == "synack", out  # the control: a raw SYN to the gateway is answered
    wait_until(lambda: udp_gw.poll(), 5, "the control datagram to the gateway")
    assert out["lo-tcp"] == "nothing" and out["lo-tcp-other"] == "nothing", out
    assert out["spoofed-tcp"] == "nothing", out
    assert tcp_lo.poll() == [] and udp_lo.poll() == [], "a container reached the host's 127.0.0.1"
    assert udp_spoofed.poll() == [], "a datagram with a spoofed 127.0.0.1 source reached the host"
    assert_responsive(berthd)


def _get(url: str, timeout: float = 3.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return ""


@pytest.mark.parametrize("iso", [pytest.param([], id="process"),
                                 pytest.param(VM, id="vm", marks=pytest.mark.skipif(not HAVE_QEMU,
                                                                                      reason="needs QEMU"))])
def test_ports_published_on_loopback_still_work(berthd, image, names, network, iso):
    for net in ("bridge", network()):
        name = names()
        docker(berthd, "run", "-d", "--name", name, "--network", net, *iso, "-p", "127.0.0.1::80", image, *HTTPD,
               timeout=180)
        port = docker(berthd, "port", name, "80").stdout.strip().rsplit(":", 1)[1]
        wait_until(lambda p=port: "served-by" in _get(f"http://127.0.0.1:{p}/index.html"), 60,
                   f"the port published on 127.0.0.1 ({net})")
        docker(berthd, "rm", "-f", name, timeout=60)
    assert_responsive(berthd)


# --- internal networks ------------------------------------------------------------


def test_internal_network_has_no_way_out(berthd, image, probe_dir, network, names, listen):
    internal = network("--internal")
    assert docker(berthd, "network", "inspect", "-f", "{{.Internal}}", internal).stdout.strip() == "true"
    igw = gateway_of(berthd, internal)
    bgw = berthd.bip.split("/")[0]
    # Targets outside the network: the host on the default bridge's address and on the internal
    # gateway (a port that is not DNS), and a container on the default bridge.
    host_b, host_i, udp_b = listen("tcp", bgw), listen("tcp", igw), listen("udp", bgw)
    outside = names()
    docker(berthd, "run", "-d", "--name", outside, image, *HTTPD)
    outside_ip = docker(berthd, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", outside).stdout.strip()
    wait_until(lambda: "served-by" in docker(berthd, "run", "--rm", image, "sh", "-c",
                                             HTTP_GET.format(wait=2, host=outside_ip), check=False).stdout,
               30, "the outside container's server (control, from the default bridge)")
    out = run_probes(berthd, probe_dir, ["--network", internal], igw, [
        ("host-bridge-gw", "auto", bgw, "tcp", host_b.port),
        ("host-internal-gw", "auto", igw, "tcp", host_i.port),
        ("outside-ctr", "auto", outside_ip, "tcp", 80),
        ("host-udp", "auto", bgw, "udp", udp_b.port),
    ], [])
    assert out["route"] == "0", out  # no default route, as Docker gives none on an internal network
    assert out["host-bridge-gw"] == "nothing" and out["host-internal-gw"] == "nothing", out
    assert out["outside-ctr"] == "nothing", out
    assert host_b.poll() == [] and host_i.poll() == [] and udp_b.poll() == []
    cp = docker(berthd, "run", "--rm", "--network", internal, image, "sh", "-c",
                HTTP_GET.format(wait=2, host=outside_ip), check=False)
    assert "served-by" not in cp.stdout
    assert_responsive(berthd)


IPV6_SWEEP = r"""
ping6 -c2 -w3 ff02::1%eth0 >/dev/null 2>&1
for a in $(ip -6 neigh | cut -d' ' -f1); do
  echo "try $a"
  echo hi | nc -w 2 "$a%eth0" "$1" >/dev/null 2>&1 && echo "connected $a"
done
echo done
"""


@pytest.mark.skipif(not Path("/proc/sys/net/ipv6").exists(), reason="no IPv6 on this host")
def test_internal_network_has_no_ipv6_way_to_the_host(berthd, image, network):
    # IPv6 link-local needs no route: were IPv6 on the bridge, its fe80:: address would reach
    # any host service listening on [::], internal network or not.
    internal = network("--internal")
    net_id = docker(berthd, "network", "inspect", "-f", "{{.Id}}", internal).stdout.strip()
    assert Path(f"/proc/sys/net/ipv6/conf/br-{net_id[:12]}/disable_ipv6").read_text().strip() == "1"
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as srv:
        srv.bind(("::", 0))
        srv.listen(8)
        srv.setblocking(False)
        out = docker(berthd, "run", "--rm", "--network", internal, image, "sh", "-c", IPV6_SWEEP, "sweep",
                     str(srv.getsockname()[1]), timeout=60).stdout
        assert out.rstrip().endswith("done") and "connected" not in out, out
        with pytest.raises(BlockingIOError):
            srv.accept()
    assert_responsive(berthd)


def test_internal_network_names_resolve_inside_only(berthd, image, network, names):
    internal, plain = network("--internal"), network()
    web = names()
    docker(berthd, "run", "-d", "--name", web, "--network", internal, "--network-alias", "www", image, *HTTPD)
    host = docker(berthd, "inspect", "-f", "{{.Config.Hostname}}", web).stdout.strip()
    script = (f"ping -c1 -W3 {web} >/dev/null && echo ping-ok; {HTTP_GET.format(wait=5, host='www')}; "
              "nslookup deb.debian.org >/dev/null 2>&1 && echo outside-resolved || echo outside-failed")
    out = docker(berthd, "run", "--rm", "--network", internal, image, "sh", "-c", script, timeout=60).stdout
    assert out.splitlines()[:2] == ["ping-ok", f"served-by-{host}"], out
    assert "outside-failed" in out, out
    # The control: on a plain user network the same name resolves through the host's resolvers.
    cp = docker(berthd, "run", "--rm", "--network", plain, image, "nslookup", "deb.debian.org", check=False,
                timeout=60)
    if cp.returncode != 0:
        pytest.skip("the host's resolvers do not answer deb.debian.org here; the control cannot run")
    assert_responsive(berthd)


def test_internal_network_publishes_no_ports(berthd, image, network, names):
    internal = network("--internal")
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--network", internal, "-p", "127.0.0.1::80", image, *HTTPD)
    assert docker(berthd, "port", name).stdout.strip() == ""
    assert docker(berthd, "ps", "--filter", f"name={name}", "--format", "{{.Ports}}").stdout.strip() in ("", "80/tcp")
    assert_responsive(berthd)


@pytest.mark.skipif(not HAVE_QEMU, reason="needs QEMU")
def test_vm_on_an_internal_network_has_no_default_route(berthd, image, network, names):
    internal = network("--internal")
    web = names()
    docker(berthd, "run", "-d", "--name", web, "--network", internal, image, *HTTPD)
    host = docker(berthd, "inspect", "-f", "{{.Config.Hostname}}", web).stdout.strip()
    out = docker(berthd, "run", "--rm", *VM, "--network", internal, image, "sh", "-c",
                 f"ip route | grep -c ^default; {HTTP_GET.format(wait=10, host=web)}", check=False,
                 timeout=180).stdout
    assert out.split() == ["0", f"served-by-{host}"], out
    assert_responsive(berthd)


# --- the resolver of an internal network, against a fake upstream -------------------


def _free_address() -> str:
    for _ in range(100):
        addr = f"127.53.{random.randrange(256)}.{random.randrange(2, 255)}"
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((addr, 53))
        except OSError:
            continue
        return addr
    raise RuntimeError("no free 127.53.x.y address")


def _ask(server: str, name: str) -> dnswire.Message:
    query = dnswire.Message(id=random.randrange(65536), rd=True,
                            questions=(dnswire.Question(name, Type.A, CLASS_IN),))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(dnswire.encode(query), (server, 53))
        return dnswire.parse(s.recv(4096))


def test_internal_resolver_never_asks_upstream(berthd):
    seen: list[str] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    up, internal, plain = _free_address(), _free_address(), _free_address()

    class Upstream(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            q = dnswire.parse(data)
            seen.append(q.questions[0].name)
            rec = Record(q.questions[0].name, Type.A, CLASS_IN, 60, "198.51.100.7")
            self.transport.sendto(dnswire.encode(dnswire.reply(q, answers=(rec,))), addr)

    async def setup():
        transport, _ = await loop.create_datagram_endpoint(Upstream, local_addr=(up, 53))
        resolver = dns.Resolver(lambda server, name: ["172.30.0.2"] if name == "web" else [],
                                f"nameserver {up}\n", loopback_upstreams=True)
        await resolver.start(internal, forward=False)
        await resolver.start(plain)
        return transport, resolver

    transport, resolver = run(setup())
    try:
        assert _ask(internal, "web").rcode == Rcode.NOERROR  # the network's own names
        answer = _ask(internal, "example.test")
        assert answer.rcode == Rcode.SERVFAIL and not answer.answers
        assert seen == [], "an internal network's resolver asked upstream"
        forwarded = _ask(plain, "example.test")
        assert forwarded.rcode == Rcode.NOERROR and seen == ["example.test"]
    finally:
        run(resolver.close())
        loop.call_soon_threadsafe(transport.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    assert_responsive(berthd)


# --- restarts ------------------------------------------------------------------------


def _rules_of(table: str, owner: str) -> list[str]:
    listing = asyncio.run(nftables._listing(table))
    return sorted(chain for chain, _ in nftrules.owned_handles(listing, owner))


def test_guards_are_reapplied_once_at_every_start(berthd_factory):
    d = berthd_factory()
    internal = unique_name("hnet")
    docker(d, "network", "create", "--internal", internal)
    net_id = docker(d, "network", "inspect", "-f", "{{.Id}}", internal).stdout.strip()
    bridge_id = docker(d, "network", "inspect", "-f", "{{.Id}}", "bridge").stdout.strip()
    table = nft_table(d.root)
    before = (_rules_of(table, bridge_id), _rules_of(table, net_id))
    assert before[0].count("guard_pre") == 2 and before[0].count("guard_post") == 1, before
    assert before[1].count("guard_pre") == 2 and "postrouting" not in before[1], before
    d.kill9()
    d.restart()
    assert (_rules_of(table, bridge_id), _rules_of(table, net_id)) == before
    gw = gateway_of(d, internal)
    bridge = f"br-{net_id[:12]}"
    assert Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip() == "0"
    assert Path(f"/proc/sys/net/ipv4/conf/{d.bridge}/route_localnet").read_text().strip() == "1"
    assert gw and docker(d, "network", "inspect", "-f", "{{.Internal}}", internal).stdout.strip() == "true"
    assert_responsive(d)
