"""VM isolation (`--isolation hyperv` / `vm`) through the real docker CLI and SDK.

Each test runs the same busybox image in a utility VM with its own kernel
(QEMU, TCG on this machine) and checks what a user sees: output, exit codes,
streams, stdin, binds, exec, -it and resizes, logs, pause, stop, top, and that
nothing is left behind. The per-container monitor is berth.vm.shim while the VM
starts and the C berth-vm-monitor after, so these tests cover both halves.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import pexpect
import pytest
from berth_e2e_conftest import active_cli, docker, is_dockerd, wait_until

from berth.host import cgroups

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 is not installed"),
]


@pytest.fixture(autouse=True)
def berthd_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("VM isolation is berth's own")


def vm_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "qemu-system-x86_64|berth.vm.shim|berth-vm-monitor"],
                         capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def test_same_output_in_every_mode(berthd, image):
    cmd = ["sh", "-c", "echo hello; id -u; exit 3"]
    outputs = {}
    for mode in (["--isolation", "process"], ["--isolation", "hyperv"], ["--runtime", "runsc"]):
        cp = docker(berthd, "run", "--rm", *mode, image, *cmd, check=False, timeout=120)
        assert cp.returncode == 3, (mode, cp.stderr)
        outputs[" ".join(mode)] = cp.stdout
    assert len(set(outputs.values())) == 1, outputs


def test_guest_kernel_differs_from_host(berthd, image):
    guest = docker(berthd, "run", "--rm", "--isolation", "hyperv", image, "uname", "-r", timeout=120).stdout.strip()
    assert guest and guest != platform.release()
    assert docker(berthd, "run", "--rm", "--isolation", "vm", image, "uname", "-r", timeout=120).stdout.strip() == guest


def test_streams_env_user_workdir(berthd, image):
    cp = docker(berthd, "run", "--rm", "--isolation", "hyperv", "-e", "A=1", "-u", "bob", "-w", "/tmp", image,
                "sh", "-c", 'echo "$A $(id -un) $(pwd)"; echo err >&2', timeout=120)
    assert cp.stdout == "1 bob /tmp\n"
    assert cp.stderr == "err\n"


def test_bind_mount_written_from_the_vm(berthd, image, tmp_path):
    shared = tmp_path / "data"
    shared.mkdir()
    docker(berthd, "run", "--rm", "--isolation", "hyperv", "-v", f"{shared}:/data", image,
           "sh", "-c", "echo from-the-vm > /data/out", timeout=120)
    assert (shared / "out").read_text() == "from-the-vm\n"


def test_detached_logs_exec_top_stop(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--isolation", "hyperv", image,
           "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done", timeout=120)
    wait_until(lambda: "tick 3" in docker(berthd, "logs", name).stdout, 60, "three ticks")
    assert docker(berthd, "exec", name, "sh", "-c", "exit 5", check=False).returncode == 5
    assert docker(berthd, "exec", name, "cat", "/etc/hostname").stdout.strip() == \
        docker(berthd, "inspect", "-f", "{{.Config.Hostname}}", name).stdout.strip()
    assert "tick" in docker(berthd, "top", name).stdout or "sh -c" in docker(berthd, "top", name).stdout
    assert docker(berthd, "inspect", "-f", "{{.HostConfig.Isolation}}", name).stdout.strip() == "hyperv"
    assert name in docker(berthd, "ps", "--filter", "isolation=hyperv", "--format", "{{.Names}}").stdout
    docker(berthd, "stop", "-t", "2", name, timeout=60)
    code = int(docker(berthd, "inspect", "-f", "{{.State.ExitCode}}", name).stdout)
    assert code in (137, 143)


def test_run_it_typing(berthd, image):
    child = pexpect.spawn(active_cli(), ["run", "-it", "--rm", "--isolation", "hyperv", image, "sh"], env=berthd.env,
                          encoding="utf-8", timeout=90, dimensions=(30, 100))
    child.expect("#")
    child.sendline("echo typed-$((40+2)); stty size")
    child.expect("typed-42")
    child.expect("30 100")
    child.setwinsize(40, 120)  # the CLI passes SIGWINCH on: the ctl fifo, then a RESIZE frame
    wait_until(lambda: child.sendline("stty size") and child.expect(["40 120", pexpect.TIMEOUT], timeout=2) == 0,
               30, "the new terminal size inside the VM")
    child.sendline("exit 4")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4


def test_exec_it_in_a_vm(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--isolation", "hyperv", image, "sleep", "300", timeout=120)
    child = pexpect.spawn(active_cli(), ["exec", "-it", name, "sh"], env=berthd.env, encoding="utf-8", timeout=60)
    child.expect("#")
    child.sendline("uname -r; exit 6")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 6
    assert docker(berthd, "exec", name, "nosuch", check=False).returncode == 126


def test_piped_stdin_reaches_the_vm(berthd, image):
    cp = docker(berthd, "run", "-i", "--rm", "--isolation", "hyperv", image, "sh", "-c", "cat; echo done",
                input="piped\nlines\n", timeout=120)
    assert cp.stdout == "piped\nlines\ndone\n"


def test_pause_freezes_the_vm(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--isolation", "hyperv", image,
           "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done", timeout=120)
    try:
        wait_until(lambda: "tick 2" in docker(berthd, "logs", name).stdout, 60, "output")
        docker(berthd, "pause", name)
        assert docker(berthd, "inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "paused"
        time.sleep(0.5)  # a tick that was under way when the VM stopped may still land
        frozen = docker(berthd, "logs", name).stdout
        time.sleep(1)
        assert docker(berthd, "logs", name).stdout == frozen
        docker(berthd, "unpause", name)
        wait_until(lambda: docker(berthd, "logs", name).stdout != frozen, 30, "output after unpause")
    finally:
        docker(berthd, "rm", "-f", name, timeout=60)


def pooled(root: Path) -> set[int]:
    """The processes of the VMs waiting in the daemon's pool (berth.vm.poolmember and its QEMU)."""
    out = set()
    for ready in root.glob("s/p-*/ready"):
        try:
            state = json.loads(ready.read_text())
            out |= {int(state["pid"]), int(state["qemu_pid"])}
        except (OSError, ValueError, KeyError):
            pass
    return out


def test_many_vms_leave_nothing_behind(berthd, image):
    before = vm_processes()
    shm_before = set(os.listdir("/dev/shm"))
    names = [f"many-{i}" for i in range(20)]
    for name in names:
        docker(berthd, "run", "-d", "--name", name, "--isolation", "hyperv", image, "sleep", "60", timeout=120)
    docker(berthd, "rm", "-f", *names, timeout=120)
    root = Path(berthd.root)
    wait_until(lambda: vm_processes() - pooled(root) <= before, 30, "no QEMU or shim left (but the pool's)")

    def leftovers() -> list[str]:  # the VM pool's waiting VMs and its shapes file are not litter
        ready = {p.parent.name for p in (root / "s").glob("p-*/ready")}
        return [p.name for p in (root / "s").iterdir()
                if not p.is_symlink() and p.name not in ready and p.name != "pool-shapes.json"] \
            if (root / "s").exists() else []
    wait_until(lambda: not leftovers(), 10, f"no sockets or VM work directories left: {leftovers()}")
    assert not [c for c in os.listdir(root / "containers") if c.startswith(tuple(n for n in names))]
    assert set(os.listdir("/dev/shm")) <= shm_before | {"berth-templates"}


def test_sdk_runs_in_a_vm(client, image):
    out = client.containers.run(image, ["uname", "-r"], isolation="hyperv", remove=True)
    assert out.decode().strip() != platform.release()


def test_oom_inside_the_vm_is_reported(berthd, image, names):
    name = names()
    cp = docker(berthd, "run", "--name", name, "--isolation", "hyperv", "-m", "64m", image,
                "sh", "-c", "tail /dev/zero", check=False, timeout=180)
    assert cp.returncode == 137, cp.stderr
    assert docker(berthd, "inspect", "-f", "{{.State.OOMKilled}}", name).stdout.strip() == "true"


def test_daemon_restart_keeps_vm_running(berthd_factory, image, rootfs_tar):
    d = berthd_factory()
    docker(d, "import", str(rootfs_tar), "busybox:latest")
    docker(d, "run", "-d", "--name", "vm-survivor", "--isolation", "hyperv", "busybox:latest",
           "sh", "-c", "i=0; while true; do i=$((i+1)); echo n $i; sleep 0.2; done", timeout=120)
    wait_until(lambda: "n 2" in docker(d, "logs", "vm-survivor").stdout, 60, "output")
    d.kill9()
    time.sleep(1)
    d.restart()
    assert docker(d, "inspect", "-f", "{{.State.Running}}", "vm-survivor").stdout.strip() == "true"
    docker(d, "stop", "-t", "1", "vm-survivor", timeout=60)
    assert docker(d, "inspect", "-f", "{{.State.Running}}", "vm-survivor").stdout.strip() == "false"
    docker(d, "rm", "vm-survivor")



def test_bad_requests_are_refused_clearly(berthd, image):
    cp = docker(berthd, "run", "--rm", "--isolation", "hyperv", "-m", "900g", image, "true", check=False)
    assert cp.returncode == 125 and "MiB" in cp.stderr and "--memory" in cp.stderr, cp.stderr
    cp = docker(berthd, "run", "--rm", "--isolation", "hyperv", "--runtime", "runsc", image, "true", check=False)
    assert cp.returncode == 125 and "cannot be combined" in cp.stderr, cp.stderr
    cp = docker(berthd, "run", "--rm", "--isolation", "hyperv", image, "/nonexistent", check=False, timeout=120)
    assert cp.returncode == 127, cp.stderr
    cp = docker(berthd, "run", "--rm", "--isolation", "hyperv", image, "/etc/passwd", check=False, timeout=120)
    assert cp.returncode == 126, cp.stderr


def test_volumes_files_tmpfs_and_read_only_in_the_vm(berthd, image, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "keep").write_text("kept\n")
    one = tmp_path / "one.conf"
    one.write_text("one\n")
    (tmp_path / "fixed.real").write_text("fixed\n")
    fixed = tmp_path / "fixed.conf"  # a symlink: bound by its target, as Docker does
    fixed.symlink_to("fixed.real")
    script = ("echo a > /rw/a; cat /ro/keep; echo no > /ro/x 2>/dev/null || echo ro-refused; "
              "cat /etc/one.conf; echo two >> /etc/one.conf; cat /fixed.conf; "
              "echo no >> /fixed.conf 2>/dev/null || echo file-ro-refused; "
              "echo t > /scratch/t && grep -c ' /scratch tmpfs' /proc/mounts")
    for _ in range(2):  # the second run starts from the template of this share shape
        one.write_text("one\n")
        cp = docker(berthd, "run", "--rm", "--isolation", "hyperv", "-v", f"{rw}:/rw", "-v", f"{ro}:/ro:ro",
                    "-v", f"{one}:/etc/one.conf", "-v", f"{fixed}:/fixed.conf:ro", "--tmpfs", "/scratch",
                    image, "sh", "-c", script, timeout=120)
        assert cp.stdout.split() == ["kept", "ro-refused", "one", "fixed", "file-ro-refused", "1"], cp.stdout
        assert (rw / "a").read_text() == "a\n"
        assert one.read_text() == "one\ntwo\n"
        assert not (ro / "x").exists() and fixed.read_text() == "fixed\n"


def test_cpu_and_memory_limits_size_the_vm(berthd, image):
    cp = docker(berthd, "run", "--rm", "--isolation", "hyperv", "--cpus", "1.5", "-m", "512m", image,
                "sh", "-c", "nproc; sed -n 's/MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo", timeout=120)
    vcpus, mem_kib = cp.stdout.split()
    assert vcpus == str(min(2, os.cpu_count() or 1))
    assert 512 * 1024 < int(mem_kib) < 700 * 1024
    small = docker(berthd, "run", "--rm", "--isolation", "hyperv", image,
                   "sed", "-n", "s/MemTotal: *\\([0-9]*\\) kB/\\1/p", "/proc/meminfo", timeout=120).stdout
    assert int(small) < int(mem_kib)


def test_guest_kernel_panic_is_reported(berthd, image, names):
    before = vm_processes()
    name = names()
    cp = docker(berthd, "run", "--name", name, "--isolation", "hyperv", image,
                "sh", "-c", "echo before; echo c > /proc/sysrq-trigger; sleep 30; echo after",
                check=False, timeout=120)
    assert cp.returncode != 0 and "guest kernel panic" in cp.stderr, cp.stderr
    assert "after" not in cp.stdout
    state = docker(berthd, "inspect", "-f", "{{.State.ExitCode}}|{{.State.Error}}", name).stdout.strip()
    assert state.startswith("255|") and "guest kernel panic" in state, state
    assert "guest kernel panic" in docker(berthd, "logs", name).stderr
    wait_until(lambda: vm_processes() - pooled(Path(berthd.root)) <= before, 30, "QEMU and the shim gone (but the pool's)")


def test_stats_of_a_vm_are_its_qemu(berthd, image, names):
    name = names()
    cid = docker(berthd, "run", "-d", "--name", name, "--isolation", "hyperv", image, "sh", "-c",
                 "while :; do :; done", timeout=120).stdout.strip()
    assert any((d / "cgroup.procs").exists() for d in cgroups.paths(cid))
    try:
        def busy() -> bool:
            out = docker(berthd, "stats", "--no-stream", "--format", "{{.CPUPerc}} {{.MemUsage}}", name).stdout
            cpu, mem = out.split()[0], out.split()[1]
            return float(cpu.rstrip("%")) > 0 and not mem.startswith("0B")
        wait_until(busy, 30, "CPU and memory use of the VM in docker stats")
    finally:
        docker(berthd, "rm", "-f", name, timeout=60)
    wait_until(lambda: not any(d.exists() for d in cgroups.paths(cid)), 10, "the VM's cgroups removed")


def test_hostname_and_loopback_in_the_vm(berthd, image):
    out = docker(berthd, "run", "--rm", "--isolation", "hyperv", "--hostname", "inside-vm", "--network", "none",
                 image, "sh", "-c", "hostname; ping -c1 -W3 127.0.0.1 >/dev/null && echo lo-up", timeout=120)
    assert out.stdout == "inside-vm\nlo-up\n"
