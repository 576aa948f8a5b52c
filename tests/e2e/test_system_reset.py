"""End-to-end: `berth system reset` removes what a data root left on the host, and nothing else.

A berthd is killed with containers running (one on a user network, one paused, one with a
volume bound to a host directory), then `berth system reset` must leave no bridge, nftables
table, process, mount, cgroup or data root behind, and must not touch the host directory behind
the bound volume. It refuses while a berthd serves the root, and without --force when it cannot
ask. A data root with a mount and symlinks out of it (what a hostile container could leave) is
reset without following either.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from berth_e2e_conftest import (
    assert_responsive,
    docker,
    is_dockerd,
    unique_name,
    wait_until,
)

from berth.host.ifnames import veth_name
from berth.tools.resetplan import mentions, nft_table

BERTH = str(Path(sys.executable).parent / "berth")

pytestmark = pytest.mark.skipif(is_dockerd(), reason="berth system reset is berth's own command")


def reset(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([BERTH, "system", "reset", *args], capture_output=True, text=True, timeout=120,
                          stdin=stdin)


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().partition("@")[0] for line in out.splitlines() if ":" in line}


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def pids_mentioning(root: str) -> list[tuple[int, str]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if mentions([a for a in argv if a], root):
            found.append((int(entry), " ".join(argv)))
    return found


def mounts_under(root: str) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == root or p.startswith(root + "/")]


def cgroups_of(cid: str) -> list[str]:
    base = Path("/sys/fs/cgroup")
    return [str(p) for p in [base / "berth" / cid, *base.glob(f"*/berth/{cid}")] if p.exists()]


def test_reset_after_kill9_leaves_nothing(berthd_factory, rootfs_tar, tmp_path):
    before = links()
    d = berthd_factory()
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    net = unique_name("rsnet")
    net_id = docker(d, "network", "create", net).stdout.strip()
    host_dir = tmp_path / "host-data"
    host_dir.mkdir()
    (host_dir / "canary").write_text("keep me")
    docker(d, "volume", "create", "plain")
    docker(d, "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", f"device={host_dir}", "bound")
    on_net = docker(d, "run", "-d", "--network", net, "-v", "plain:/p", "-v", "bound:/b",
                    "busybox:latest", "sleep", "1000").stdout.strip()
    paused = docker(d, "run", "-d", "busybox:latest", "sleep", "1000").stdout.strip()
    docker(d, "pause", paused)
    default_bridge, net_bridge = d.bridge, f"br-{net_id[:12]}"
    assert link_exists(default_bridge) and link_exists(net_bridge)
    assert nft_table(d.root) in nft_tables()
    assert mounts_under(d.root)

    d.kill9()
    assert pids_mentioning(d.root), "the containers' monitors should outlive the daemon"

    r = reset("--root", d.root, "--bridge", d.bridge, "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Deleted bridge {net_bridge}" in r.stdout and f"Deleted bridge {default_bridge}" in r.stdout
    assert f"Removed data root {d.root}" in r.stdout
    assert "VM templates: left in place" in r.stdout

    assert not link_exists(default_bridge) and not link_exists(net_bridge)
    assert not link_exists(veth_name(on_net, net_id))
    assert links() - before == set(), "interfaces the daemon made are left"
    assert nft_table(d.root) not in nft_tables()
    assert pids_mentioning(d.root) == []
    assert mounts_under(d.root) == []
    assert cgroups_of(on_net) == [] and cgroups_of(paused) == []
    assert not os.path.lexists(d.root)
    # the host directory behind the bound volume is untouched
    assert (host_dir / "canary").read_text() == "keep me"
    assert Path(d.tmp).is_dir()

    # the host is as before: a daemon starts again on the same root, from nothing
    d.restart()
    assert docker(d, "ps", "-aq").stdout.strip() == ""
    assert_responsive(d)


def test_reset_after_kill9_with_runsc_and_vm_containers(berthd_factory, rootfs_tar):
    before = links()
    d = berthd_factory()
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    gvisor = docker(d, "run", "-d", "--runtime", "runsc", "busybox:latest", "sleep", "1000").stdout.strip()
    vm = docker(d, "run", "-d", "--isolation", "hyperv", "busybox:latest", "sleep", "1000",
                timeout=180).stdout.strip()
    wait_until(lambda: docker(d, "inspect", "-f", "{{.State.Running}}", vm).stdout.strip() == "true", 120,
               "the VM container running")
    d.kill9()
    assert pids_mentioning(d.root)

    r = reset("--root", d.root, "--bridge", d.bridge, "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert pids_mentioning(d.root) == []
    assert mounts_under(d.root) == []
    assert cgroups_of(gvisor) == [] and cgroups_of(vm) == []
    assert not link_exists(d.bridge)
    assert links() - before == set(), "the VM's tap (it outlives QEMU) or another interface is left"
    assert nft_table(d.root) not in nft_tables()
    assert not os.path.lexists(d.root)
    assert Path("/var/cache/berth-test-vm/vmlinux").exists() or "VM templates: left in place" in r.stdout
    d.restart()
    assert_responsive(d)


def test_reset_refuses_while_the_daemon_serves(berthd_factory):
    d = berthd_factory()
    r = reset("--root", d.root, "--bridge", d.bridge, "--force")
    assert r.returncode == 1
    assert "berthd" in r.stderr and "stop" in r.stderr and str(d.proc.pid) in r.stderr, r.stderr
    assert r.stdout == ""
    assert Path(d.root, "berth.db").exists()
    assert link_exists(d.bridge)
    assert nft_table(d.root) in nft_tables()
    assert_responsive(d)


def test_reset_asks_first_and_refuses_without_force_when_it_cannot_ask(berthd_factory):
    d = berthd_factory()
    d.kill9()
    r = reset("--root", d.root)
    assert r.returncode == 1 and "--force" in r.stderr, r.stderr
    assert Path(d.root, "berth.db").exists() and link_exists(d.bridge)
    # on a terminal it asks, and anything but y/yes removes nothing
    master, slave = pty.openpty()
    try:
        os.write(master, b"n\n")
        r = reset("--root", d.root, stdin=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert "Are you sure you want to continue? [y/N]" in r.stdout
    assert r.returncode == 1 and "aborted, nothing removed" in r.stderr, r.stderr
    assert Path(d.root, "berth.db").exists() and link_exists(d.bridge)
    d.restart()
    assert_responsive(d)


def test_reset_never_follows_links_or_crosses_mounts_out_of_the_root(berthd_factory, tmp_path):
    d = berthd_factory()
    d.kill9()
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "canary").write_text("keep me")
    bound = tmp_path / "bound"
    bound.mkdir()
    (bound / "canary").write_text("keep me too")
    root = Path(d.root)
    (root / "containers" / ("f" * 64)).mkdir(parents=True)
    os.symlink(outside, root / "containers" / ("f" * 64) / "rootfs")  # a link out of the root
    os.symlink(outside / "deep", root / "volumes" / "escape")
    target = root / "volumes" / "leftover" / "_data"
    target.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(bound), str(target)], check=True)
    vm_dir = tmp_path / "vm"  # an explicit --vm-dir: its templates go, what else it holds stays
    (vm_dir / "templates" / "k1").mkdir(parents=True)
    (vm_dir / "templates" / ".lock").touch()
    os.symlink(outside, vm_dir / "templates" / "k1" / "escape")
    (vm_dir / "vmlinux").write_text("kernel")
    try:
        r = reset("--root", d.root, "--bridge", d.bridge, "--vm-dir", str(vm_dir), "--force")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"Unmounted {target}" in r.stdout
        assert not (vm_dir / "templates").exists() and (vm_dir / "vmlinux").read_text() == "kernel"
        assert not os.path.lexists(d.root) and mounts_under(d.root) == []
        assert (outside / "deep" / "canary").read_text() == "keep me"
        assert (bound / "canary").read_text() == "keep me too"
        assert not link_exists(d.bridge)
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
    d.restart()
    wait_until(lambda: link_exists(d.bridge), 10, "the bridge made again")
    assert_responsive(d)
