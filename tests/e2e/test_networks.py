"""Networks with the real docker CLI and SDK: the default bridge, user networks with DNS, published ports.

Traffic goes only between the test daemon's own containers and from the host to its own bridges and
127.0.0.1 (each test daemon has its own default bridge and subnet, see conftest).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from berth_e2e_conftest import docker, is_dockerd, unique_name, wait_until

from berth.api.wiring import nft_table
from berth.host import nftables

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's

HTTPD = ["sh", "-c", "echo served-by-$(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]


@pytest.fixture(autouse=True)
def berth_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("the reference dockerd runs with --bridge none here")


def _get(url: str, timeout: float = 3.0) -> str:
    """The body at *url*, or "" when nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return ""


def test_default_bridge_gives_an_address_and_hosts_entry(berthd, image):
    out = docker(berthd, "run", "--rm", image, "sh", "-c",
                 "ip -o -4 addr show eth0; ip route | head -1; grep -v localhost /etc/hosts").stdout
    subnet = berthd.bip.rsplit(".", 1)[0]
    assert f"inet {subnet}." in out and f"default via {berthd.bip.split('/')[0]}" in out, out
    assert "bridge" in docker(berthd, "network", "ls", "--format", "{{.Name}}").stdout.split()


def test_none_has_only_loopback(berthd, image):
    out = docker(berthd, "run", "--rm", "--network", "none", image, "ip", "-o", "link").stdout
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]


def test_user_network_names_aliases_ping_and_wget(berthd, image, network, names):
    net = network()
    web = names()
    docker(berthd, "run", "-d", "--name", web, "--network", net, "--network-alias", "www", image, *HTTPD)
    out = docker(berthd, "run", "--rm", "--network", net, image, "sh", "-c",
                 f"ping -c1 -W3 {web} >/dev/null && echo ping-ok; wget -qO- http://www/index.html; "
                 f"wget -qO- http://{web}/index.html", timeout=60).stdout
    host = docker(berthd, "inspect", "-f", "{{.Config.Hostname}}", web).stdout.strip()
    assert out == f"ping-ok\nserved-by-{host}\nserved-by-{host}\n", out
    inspect = docker(berthd, "network", "inspect", net, "--format", "{{range .Containers}}{{.Name}} {{end}}").stdout
    assert web in inspect.split()


def test_networks_are_isolated_from_each_other(berthd, image, network, names):
    a, b = network(), network()
    web = names()
    docker(berthd, "run", "-d", "--name", web, "--network", a, image, *HTTPD)
    ip = docker(berthd, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", web).stdout.strip()
    # nc, not wget: busybox's wget -T segfaults in this image, so its exit code would prove nothing.
    fetch = f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80"
    wait_until(lambda: "served-by" in docker(berthd, "run", "--rm", "--network", a, image, "sh", "-c", fetch,
                                             check=False, timeout=60).stdout, 30, "the server, from its own network")
    cp = docker(berthd, "run", "--rm", "--network", b, image, "sh", "-c", fetch, check=False, timeout=60)
    assert "served-by" not in cp.stdout, cp
    cp = docker(berthd, "run", "--rm", "--network", b, image, "nslookup", web, check=False, timeout=60)
    assert ip not in cp.stdout


def test_published_port_answers_from_the_host(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", "--name", name, "-p", "127.0.0.1::80", "-p", "0:80", image, *HTTPD)
    ports = docker(berthd, "port", name, "80").stdout.split()
    assert len(ports) == 2, ports
    for binding in ports:
        port = binding.rsplit(":", 1)[1]
        wait_until(lambda p=port: "served-by" in _get(f"http://127.0.0.1:{p}/index.html"), 10, "the published port")
    gateway = berthd.bip.split("/")[0]
    port = next(p.rsplit(":", 1)[1] for p in ports if p.startswith("0.0.0.0"))
    assert "served-by" in _get(f"http://{gateway}:{port}/index.html")
    assert "->80/tcp" in docker(berthd, "ps", "--filter", f"name={name}", "--format", "{{.Ports}}").stdout


def test_a_taken_host_port_is_refused_and_leaves_nothing(berthd, image, names):
    first, second = names(), names()
    docker(berthd, "run", "-d", "--name", first, "-p", "127.0.0.1:0:80", image, "sleep", "60")
    port = docker(berthd, "port", first, "80").stdout.strip().rsplit(":", 1)[1]
    before = _veths()
    cp = docker(berthd, "run", "--name", second, "-p", f"127.0.0.1:{port}:80", image, "true", check=False)
    assert cp.returncode == 125 and "port is already allocated" in cp.stderr, cp.stderr
    assert _veths() == before


def test_network_create_inspect_rm_errors(berthd, image, network, names):
    net = network("--subnet", "10.213.7.0/24", "--gateway", "10.213.7.254", "--label", "team=a")
    doc = docker(berthd, "network", "inspect", net, "--format",
                 "{{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}} {{.Labels.team}}").stdout
    assert doc.split() == ["10.213.7.0/24", "10.213.7.254", "a"]
    cp = docker(berthd, "network", "create", "--subnet", "10.213.7.128/25", unique_name("ovl"), check=False)
    assert cp.returncode != 0 and "overlaps" in cp.stderr, cp.stderr
    cp = docker(berthd, "network", "create", net, check=False)
    assert cp.returncode != 0 and "already exists" in cp.stderr
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--network", net, "--ip", "10.213.7.50", image, "sleep", "60")
    assert "10.213.7.50" in docker(berthd, "inspect", name).stdout
    cp = docker(berthd, "network", "rm", net, check=False)
    assert cp.returncode != 0 and "active endpoints" in cp.stderr, cp.stderr
    cp = docker(berthd, "run", "--rm", "--network", net, "--ip", "10.213.7.50", image, "true", check=False)
    assert cp.returncode == 125 and "in use" in cp.stderr.lower(), cp.stderr
    cp = docker(berthd, "run", "--rm", "--network", "no-such-net", image, "true", check=False)
    assert cp.returncode == 125 and "not found" in cp.stderr
    cp = docker(berthd, "network", "rm", "bridge", check=False)
    assert cp.returncode != 0 and "pre-defined" in cp.stderr


def test_ipam_auxiliary_addresses_and_options_as_sent(berthd, client, image, network, names):
    net = network("--subnet", "10.213.9.0/29", "--gateway", "10.213.9.1", "--aux-address", "router=10.213.9.2",
                  "--ipam-opt", "k=v")
    fmt = "{{json .IPAM.Options}} {{json (index .IPAM.Config 0).AuxiliaryAddresses}}"
    assert docker(berthd, "network", "inspect", net, "--format", fmt).stdout.split() == \
        ['{"k":"v"}', '{"router":"10.213.9.2"}']
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--network", net, image, "sleep", "60")
    ip = docker(berthd, "inspect", name, "--format", f"{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}")
    assert ip.stdout.strip() == "10.213.9.3"  # the reserved address is skipped
    plain = network("--subnet", "10.213.9.8/29")
    assert docker(berthd, "network", "inspect", plain, "--format", "{{json .IPAM.Options}}").stdout.strip() == "null"
    # The docker CLI checks this itself; the API must too (the SDK sends what it is given).
    import docker as sdk
    pool = sdk.types.IPAMPool(subnet="10.213.9.16/29", aux_addresses={"x": "10.9.9.9"})
    with pytest.raises(sdk.errors.APIError) as err:
        client.networks.create(unique_name("aux"), ipam=sdk.types.IPAMConfig(pool_configs=[pool]))
    assert err.value.status_code == 400 and "subnet" in str(err.value), err.value


def test_connect_and_disconnect_a_running_container(berthd, image, network, names):
    net = network()
    name = names()
    docker(berthd, "run", "-d", "--name", name, image, "sleep", "60")
    docker(berthd, "network", "connect", "--alias", "joined", net, name)
    out = docker(berthd, "exec", name, "ip", "-o", "-4", "addr").stdout
    assert "eth1" in out, out
    peer = docker(berthd, "run", "--rm", "--network", net, image, "ping", "-c1", "-W3", "joined", check=False,
                  timeout=60)
    assert peer.returncode == 0, peer.stdout + peer.stderr
    docker(berthd, "network", "disconnect", net, name)
    assert "eth1" not in docker(berthd, "exec", name, "ip", "-o", "link").stdout


def test_sdk_networks(client, image):
    net = client.networks.create(unique_name("sdk"), driver="bridge")
    try:
        c = client.containers.run(image, ["sleep", "60"], detach=True, network=net.name)
        try:
            net.reload()
            assert c.id in net.attrs["Containers"]
            c.reload()
            assert c.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
        finally:
            c.remove(force=True)
    finally:
        net.remove()


def _veths() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_fifty_containers_with_ports_and_networks_leave_nothing(berthd, image, network):
    net = network()
    before_veths = _veths()
    ids = []
    for i in range(50):
        args = ["-p", "127.0.0.1::80"] if i % 2 else ["--network", net, "-p", "127.0.0.1::8080"]
        ids.append(docker(berthd, "run", "-d", *args, image, "sleep", "60").stdout.strip())
    docker(berthd, "rm", "-f", *ids, timeout=180)
    wait_until(lambda: _veths() <= before_veths, 20, "no veth left")
    owners = asyncio.run(nftables.owners(table=nft_table(berthd.root)))
    assert not owners & set(ids), owners
    netns = Path(berthd.root, "netns")
    assert not [p for p in netns.iterdir()] if netns.is_dir() else True
    mounts = Path("/proc/self/mountinfo").read_text()
    assert not any(cid in mounts for cid in ids)


def test_daemon_restart_keeps_networking(berthd_factory, image, rootfs_tar):
    d = berthd_factory()
    docker(d, "import", str(rootfs_tar), "busybox:latest")
    docker(d, "run", "-d", "--name", "keeper", "-p", "127.0.0.1::80", "busybox:latest", *HTTPD)
    port = docker(d, "port", "keeper", "80").stdout.strip().rsplit(":", 1)[1]
    wait_until(lambda: "served-by" in _get(f"http://127.0.0.1:{port}/index.html"), 10, "served")
    d.kill9()
    time.sleep(0.5)
    assert "served-by" in _get(f"http://127.0.0.1:{port}/index.html")  # the kernel's rules, not the daemon
    d.restart()
    veth = docker(d, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.EndpointID}}{{end}}",
                  "keeper").stdout.strip()
    assert veth in _veths()  # the daemon found its container's network as it was
    docker(d, "rm", "-f", "keeper")
    wait_until(lambda: veth not in _veths(), 20, "the container's veth removed after the restart")


HTTP_GET = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc {host} 80 | tail -1"


@pytest.mark.skipif(not Path("/usr/bin/qemu-system-x86_64").exists(), reason="needs QEMU")
def test_vm_and_process_containers_share_a_network(berthd, image, network, names):
    net = network()
    vm, proc = names(), names()
    docker(berthd, "run", "-d", "--name", vm, "--isolation", "hyperv", "--network", net, image, *HTTPD, timeout=120)
    docker(berthd, "run", "-d", "--name", proc, "--network", net, image, *HTTPD)
    vm_host = docker(berthd, "inspect", "-f", "{{.Config.Hostname}}", vm).stdout.strip()
    proc_host = docker(berthd, "inspect", "-f", "{{.Config.Hostname}}", proc).stdout.strip()

    def served(client_args: list[str], target: str, want: str) -> bool:
        cp = docker(berthd, "run", "--rm", "--network", net, *client_args, image, "sh", "-c",
                    HTTP_GET.format(host=target), check=False, timeout=120)
        return cp.stdout.strip() == want
    wait_until(lambda: served([], vm, f"served-by-{vm_host}"), 30, "the VM's server, by name, from a process")
    assert served(["--isolation", "hyperv"], proc, f"served-by-{proc_host}"), "a VM reaches a process by name"
    ip = docker(berthd, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", vm).stdout
    assert ip.strip()


@pytest.mark.skipif(not Path("/usr/bin/qemu-system-x86_64").exists(), reason="needs QEMU")
def test_vm_published_port_and_loopback(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--isolation", "hyperv", "-p", "127.0.0.1::80", image, *HTTPD,
           timeout=120)
    port = docker(berthd, "port", name, "80").stdout.strip().rsplit(":", 1)[1]
    wait_until(lambda: "served-by" in _get(f"http://127.0.0.1:{port}/index.html"), 30, "the VM's published port")
    out = docker(berthd, "run", "--rm", "--isolation", "hyperv", "--network", "none", image, "sh", "-c",
                 "ping -c1 -W3 127.0.0.1 >/dev/null && echo lo-ok; ip -o link | wc -l", timeout=120).stdout
    assert out.split() == ["lo-ok", "1"], out
    docker(berthd, "rm", "-f", name, timeout=60)
    wait_until(lambda: not [t for t in _links() if t.startswith("tap")], 20, "the VM's tap removed")


def _links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def test_a_host_port_range_takes_a_free_port(berthd, image, names):
    first, second = names(), names()
    base = 28000 + int(unique_name("r").split("-")[-1], 16) % 2000
    docker(berthd, "run", "-d", "--name", first, "-p", f"127.0.0.1:{base}-{base + 3}:80", image, "sleep", "60")
    docker(berthd, "run", "-d", "--name", second, "-p", f"127.0.0.1:{base}-{base + 3}:80", image, "sleep", "60")
    ports = {docker(berthd, "port", n, "80").stdout.strip().rsplit(":", 1)[1] for n in (first, second)}
    assert len(ports) == 2 and all(base <= int(p) <= base + 3 for p in ports), ports
