"""The pool of ready VMs (`--vm-pool`, berth.runtime.vmpool and berth.vm.poolmember), end to end.

Each test starts its own berthd with the pool it needs, runs VM-isolated
containers through the real docker CLI, and looks at what the pool leaves on
disk (<root>/s/p-*/ready: the waiting VM's pid, its QEMU's pid, its shape) to
tell a container served from the pool (its State.Pid is that QEMU) from one
started as before. Covered: hand-out and refill, binds through a pooled VM's
shares, its network card, fresh random state and clock at every hand-out, a
pooled VM that died, a template that fails to restore, a daemon killed and
restarted with VMs waiting, the memory bound, `--vm-pool 0`, and a clean stop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from berth_e2e_conftest import VM_DIR, docker, is_dockerd, wait_until

from berth.host import proc

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 is not installed"),
]

NO_NET = ("--network", "none")


@pytest.fixture(autouse=True)
def berthd_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("the VM pool is berth's own")


def waiting(d) -> dict[str, dict]:
    """The pooled VMs waiting now: member directory name -> its ready file."""
    out = {}
    for ready in Path(d.root, "s").glob("p-*/ready"):
        try:
            out[ready.parent.name] = json.loads(ready.read_text())
        except (OSError, ValueError):
            pass
    return out


def pool_daemon(berthd_factory, rootfs_tar, *args: str):
    d = berthd_factory(extra_args=args)
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    return d


def warm(d, *run_args: str, count: int = 1) -> dict[str, dict]:
    """Teach the pool a shape (one container of it) and wait until *count* VMs of it wait."""
    docker(d, "run", "--rm", "--isolation", "vm", *run_args, "busybox", "true", timeout=180)
    return wait_until(lambda: len(waiting(d)) >= count and waiting(d), 180, f"{count} pooled VM(s)")


def state_pid(d, name: str) -> int:
    return int(docker(d, "inspect", "-f", "{{.State.Pid}}", name).stdout)


def test_a_start_takes_a_waiting_vm_and_the_pool_refills(berthd_factory, rootfs_tar):
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "1")
    before = warm(d, *NO_NET)
    (member, state), = before.items()
    docker(d, "run", "-d", "--name", "p1", "--isolation", "vm", *NO_NET, "busybox", "sleep", "300", timeout=120)
    assert state_pid(d, "p1") == state["qemu_pid"], "the container's VM is the pooled one"
    assert state["shape"] == {"mem_mib": 256, "vcpus": 1, "slots": 0, "nic": False}
    assert docker(d, "exec", "p1", "cat", "/etc/hostname").stdout.strip() == \
        docker(d, "inspect", "-f", "{{.Config.Hostname}}", "p1").stdout.strip()
    assert docker(d, "exec", "p1", "sh", "-c", "exit 7", check=False).returncode == 7
    refilled = wait_until(lambda: {k: v for k, v in waiting(d).items() if k != member}, 120, "a refill")
    assert member not in waiting(d)
    new_state = next(iter(refilled.values()))
    sched = Path(f"/proc/{new_state['qemu_pid']}/stat").read_text().rsplit(")", 1)[1].split()
    assert sched[38] == "5", "a waiting VM runs at SCHED_IDLE"  # field 41, policy: 5 = SCHED_IDLE
    claimed = Path(f"/proc/{state['qemu_pid']}/stat").read_text().rsplit(")", 1)[1].split()
    assert claimed[38] == "0", "a handed-out VM runs at normal priority again"
    docker(d, "rm", "-f", "p1", timeout=60)
    wait_until(lambda: not Path(d.root, "s", member).exists(), 30, "the claimed VM's directory to go")
    assert not proc.pid_alive(state["qemu_pid"])


def test_pooled_vms_never_share_random_state_and_get_the_time(berthd_factory, rootfs_tar):
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "1")
    seen = []
    for i in range(2):
        (_, state), = warm(d, *NO_NET).items() if i == 0 else \
            wait_until(lambda: waiting(d), 120, "a refill").items()
        time.sleep(6)  # waiting in the pool: its clock would fall behind unless set at hand-out
        name = f"r{i}"
        docker(d, "run", "-d", "--name", name, "--isolation", "vm", *NO_NET, "busybox", "sh", "-c",
               "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s; sleep 300", timeout=120)
        assert state_pid(d, name) == state["qemu_pid"]
        out = wait_until(lambda n=name: len(docker(d, "logs", n).stdout.split()) >= 2 and docker(d, "logs", n).stdout,
                         60, "the container's output")
        random_hex, guest_time = out.split()[:2]
        assert abs(int(guest_time) - time.time()) < 5, "the guest's clock is set when it is handed out"
        seen.append(random_hex)
        docker(d, "rm", "-f", name, timeout=60)
    assert len(seen[0]) == 64 and seen[0] != seen[1], "two VMs from the pool drew the same random bytes"


def test_binds_reach_a_pooled_vm(berthd_factory, rootfs_tar, tmp_path):
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "1")
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("from the host\n")
    one = tmp_path / "one.conf"
    one.write_text("one file\n")
    binds = ("-v", f"{data}:/data", "-v", f"{one}:/etc/one.conf", *NO_NET)
    (_, state), = warm(d, *binds).items()
    assert state["shape"]["slots"] == 2  # the directory and the stage of the single file
    docker(d, "run", "-d", "--name", "b1", "--isolation", "vm", *binds, "busybox", "sh", "-c",
           "cat /data/in /etc/one.conf; echo from the vm > /data/out; sleep 300", timeout=120)
    assert state_pid(d, "b1") == state["qemu_pid"]
    wait_until(lambda: (data / "out").exists(), 60, "the VM's write")
    assert (data / "out").read_text() == "from the vm\n"
    assert docker(d, "logs", "b1").stdout == "from the host\none file\n"
    (data / "late").write_text("later\n")
    assert docker(d, "exec", "b1", "cat", "/data/late").stdout == "later\n"
    docker(d, "rm", "-f", "b1", timeout=60)
    assert (data / "in").read_text() == "from the host\n", "removing the container kept the bind's files"


def test_a_pooled_vm_gets_the_container_s_network(berthd_factory, rootfs_tar):
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "1")
    (member, state), = warm(d).items()
    assert state["shape"]["nic"] is True
    pool_tap = "bp" + member.removeprefix("p-")
    assert Path("/sys/class/net", pool_tap).exists(), "the waiting VM has its own tap"
    gateway = d.bip.split("/")[0]
    docker(d, "run", "-d", "--name", "n1", "--isolation", "vm", "busybox", "sleep", "300", timeout=120)
    assert state_pid(d, "n1") == state["qemu_pid"]
    address = docker(d, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "n1").stdout.strip()
    assert address in docker(d, "exec", "n1", "ip", "addr").stdout
    assert docker(d, "exec", "n1", "ping", "-c", "1", "-W", "5", gateway, check=False).returncode == 0
    assert not Path("/sys/class/net", pool_tap).exists(), "the pooled tap took the container tap's name"
    docker(d, "rm", "-f", "n1", timeout=60)


def test_a_pooled_vm_that_died_is_not_handed_out(berthd_factory, rootfs_tar):
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "1")
    (member, state), = warm(d, *NO_NET).items()
    os.kill(state["qemu_pid"], signal.SIGKILL)
    cp = docker(d, "run", "--rm", "--isolation", "vm", *NO_NET, "busybox", "echo", "still works", timeout=120)
    assert cp.stdout == "still works\n"
    wait_until(lambda: not Path(d.root, "s", member).exists(), 30, "the dead pooled VM's directory to go")
    wait_until(lambda: waiting(d), 120, "a new pooled VM")


def test_a_template_that_fails_to_restore_is_rebuilt_for_the_pool(berthd_factory, rootfs_tar):
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "1", "--vm-pool-memory", "256MiB")
    (member, _), = warm(d, *NO_NET).items()
    shape = {"mem_mib": 256, "nic": False, "share_tags": ["rootfs"], "vcpus": 1}
    templates = [t for t in Path(VM_DIR, "templates").glob("*/template.json")
                 if {k: json.loads(t.read_text()).get(k) for k in shape} == shape]
    assert templates, "the shape's template"
    for t in templates:
        state = t.parent / "state"
        state.write_bytes(b"\0" * state.stat().st_size)  # QEMU refuses to load it
    docker(d, "run", "--rm", "--isolation", "vm", *NO_NET, "busybox", "true", timeout=120)  # takes the waiting one
    new = wait_until(lambda: {k: v for k, v in waiting(d).items() if k != member}, 240, "a pooled VM after a rebuild")
    log = Path(d.root, "s", next(iter(new)), "member.log").read_text()
    assert "failed" in log and "rebuilding it" in log, log
    cp = docker(d, "run", "--rm", "--isolation", "vm", *NO_NET, "busybox", "echo", "ok", timeout=120)
    assert cp.stdout == "ok\n"


def test_a_restarted_daemon_adopts_the_waiting_vms(berthd_factory, rootfs_tar):
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "1")
    (member, state), = warm(d, *NO_NET).items()
    d.kill9()
    assert proc.pid_alive(state["qemu_pid"]), "a waiting VM outlives a daemon crash"
    d.restart()
    wait_until(lambda: "adopted 1 waiting VM" in d.log_path.read_text(), 30, "the adoption's log line")
    docker(d, "run", "-d", "--name", "a1", "--isolation", "vm", *NO_NET, "busybox", "sleep", "300", timeout=120)
    assert state_pid(d, "a1") == state["qemu_pid"], "the adopted VM served the next start"
    docker(d, "rm", "-f", "a1", timeout=60)


def test_the_memory_bound_and_a_disabled_pool(berthd_factory, rootfs_tar):
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "3", "--vm-pool-memory", "600MiB")
    warm(d, *NO_NET, count=2)
    time.sleep(5)
    assert len(waiting(d)) == 2, "three 256 MiB VMs would pass the 600 MiB bound"
    off = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "0")
    docker(off, "run", "--rm", "--isolation", "vm", *NO_NET, "busybox", "true", timeout=180)
    time.sleep(3)
    assert not list(Path(off.root, "s").glob("p-*")), "--vm-pool 0 pools nothing"


def test_a_clean_stop_stops_the_waiting_vms(berthd_factory, rootfs_tar):
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "2", "--vm-pool-memory", "2GiB")
    members = warm(d, *NO_NET, count=2)
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(60)
    for state in members.values():
        wait_until(lambda s=state: not proc.pid_alive(s["qemu_pid"]) and not proc.pid_alive(s["pid"]), 20,
                   "the waiting VMs to stop")
    assert not list(Path(d.root, "s").glob("p-*"))
    out = subprocess.run(["pgrep", "-f", f"berth.vm.poolmember.*{d.root}"], capture_output=True, text=True)
    assert out.stdout == ""


def test_a_stop_while_a_pooled_vm_is_starting_leaves_no_vm(berthd_factory, rootfs_tar):
    """The refill is cancelled half way: the pooled VM, finding no one reading its report, stops itself."""
    d = pool_daemon(berthd_factory, rootfs_tar, "--vm-pool", "1")
    warm(d, *NO_NET)
    docker(d, "run", "--rm", "--isolation", "vm", *NO_NET, "busybox", "true", timeout=120)  # takes it: a refill
    time.sleep(0.6)  # the refill has started a pooled VM, which is restoring its clone now
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(60)

    def left() -> str:
        return subprocess.run(["pgrep", "-f", f"berth.vm.poolmember.*{d.root}"], capture_output=True,
                              text=True).stdout
    wait_until(lambda: left() == "", 60, "no pooled VM left after the daemon stopped")
    wait_until(lambda: not list(Path(d.root, "s").glob("p-*")), 20, "no pooled VM directory left")
