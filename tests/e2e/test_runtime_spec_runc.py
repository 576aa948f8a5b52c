"""build() output run by the real runc: the config means what we say it means.

Strategy: one busybox rootfs per module (made by berth.testing.rootfs, unpacked
with the system tar); each test writes build(spec) into a fresh bundle and runs
`runc run` with captured stdio, then always force-deletes the container and
its bundle. The host's capability bounding set and RLIMIT_NOFILE hard limit
are passed in, as berthd must do.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from berth.oci.capabilities import DEFAULT_CAPABILITIES, bitmask, from_bitmask
from berth.oci.runtime_spec import BindMount, ContainerSpec, Resources, build
from berth.testing.rootfs import write_rootfs_tar

RUNC = "/usr/sbin/runc"

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def _host_capabilities() -> tuple[str, ...]:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return tuple(from_bitmask(int(line.split()[1], 16)))
    raise AssertionError("no CapBnd in /proc/self/status")


HOST_CAPS = _host_capabilities()
NOFILE = min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
CGROUP_PARENT = f"berth-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="berth-rs-"))
    try:
        tar = write_rootfs_tar(base / "rootfs.tar")
        (base / "rootfs").mkdir()
        subprocess.run(["tar", "-xf", str(tar), "-C", str(base / "rootfs")], check=True)
        (base / "runc").mkdir()
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
        # runc removes each container's cgroup; the shared parent is ours to remove.
        for controller in Path("/sys/fs/cgroup").iterdir():
            try:
                (controller / CGROUP_PARENT).rmdir()
            except OSError:
                pass


def _spec(workdir: Path, script: str, **kw: Any) -> ContainerSpec:
    resources = kw.pop("resources", Resources())
    return ContainerSpec(
        args=("/bin/sh", "-c", script),
        rootfs=str(workdir / "rootfs"),
        resources=replace(resources, nofile=NOFILE),
        host_capabilities=HOST_CAPS,
        **kw,
    )


def run(workdir: Path, spec: ContainerSpec, tweak: Any = None) -> Result:
    """Run *spec* with runc and return its exit status and output."""
    cid = f"berth-rs-{uuid.uuid4().hex[:12]}"
    if not spec.cgroups_path:
        spec = replace(spec, cgroups_path=f"/{CGROUP_PARENT}/{cid}")
    bundle = workdir / cid
    bundle.mkdir()
    config = build(spec)
    if tweak is not None:
        tweak(config)
    (bundle / "config.json").write_text(json.dumps(config))
    root = ["--root", str(workdir / "runc")]
    try:
        proc = subprocess.run(
            [RUNC, *root, "run", "--bundle", str(bundle), cid],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)
    finally:
        subprocess.run([RUNC, *root, "delete", "-f", cid], capture_output=True)
        shutil.rmtree(bundle, ignore_errors=True)


def _status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split()[1]
    raise AssertionError(f"{name} not in output: {text!r}")


def test_exit_code_propagates(workdir: Path) -> None:
    res = run(workdir, _spec(workdir, "echo out; echo err >&2; exit 7"))
    assert res.returncode == 7, res.stderr
    assert res.stdout == "out\n"
    assert "err" in res.stderr


def test_default_capabilities_and_seccomp(workdir: Path) -> None:
    res = run(workdir, _spec(workdir, "cat /proc/self/status"))
    assert res.returncode == 0, res.stderr
    expected = bitmask(DEFAULT_CAPABILITIES)
    for name in ("CapEff", "CapPrm", "CapBnd"):
        assert int(_status_field(res.stdout, name), 16) == expected, name
    assert int(_status_field(res.stdout, "CapInh"), 16) == 0
    assert int(_status_field(res.stdout, "CapAmb"), 16) == 0
    assert _status_field(res.stdout, "Seccomp") == "2"


def test_cap_drop_and_add(workdir: Path) -> None:
    spec = _spec(workdir, "cat /proc/self/status", cap_drop=("chown", "CAP_KILL"), cap_add=("NET_ADMIN",))
    res = run(workdir, spec)
    assert res.returncode == 0, res.stderr
    want = (bitmask(DEFAULT_CAPABILITIES) & ~bitmask(["CHOWN", "KILL"])) | bitmask(["NET_ADMIN"])
    assert int(_status_field(res.stdout, "CapEff"), 16) == want


def test_mount_refused_by_default(workdir: Path) -> None:
    res = run(workdir, _spec(workdir, "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m"))
    assert res.returncode != 0
    assert "denied" in res.stderr or "not permitted" in res.stderr


def test_mount_allowed_with_sys_admin(workdir: Path) -> None:
    script = "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && grep ' /tmp/m ' /proc/mounts"
    res = run(workdir, _spec(workdir, script, cap_add=("SYS_ADMIN",)))
    assert res.returncode == 0, res.stderr
    assert "tmpfs" in res.stdout


def test_seccomp_blocks_even_with_capability(workdir: Path) -> None:
    # swapon is refused by the filter whatever the caps; without the filter the
    # kernel would get past the capability check and reject the file instead.
    script = "swapon /etc/passwd; echo rc=$?"
    res = run(workdir, _spec(workdir, script, cap_add=("SYS_ADMIN",)))
    assert "Operation not permitted" in res.stderr, res.stderr
    priv = run(workdir, _spec(workdir, script, privileged=True))
    assert "Operation not permitted" not in priv.stderr, priv.stderr


def test_unknown_syscall_names_are_ignored_by_runc(workdir: Path) -> None:
    def tweak(config: dict[str, Any]) -> None:
        config["linux"]["seccomp"]["syscalls"][0]["names"].append("berth_no_such_syscall")

    res = run(workdir, _spec(workdir, "grep Seccomp: /proc/self/status"), tweak)
    assert res.returncode == 0, res.stderr
    assert "2" in res.stdout


def test_privileged(workdir: Path) -> None:
    script = ("cat /proc/self/status; grep -E ' /sys | /proc/sys ' /proc/self/mountinfo; "
              "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted")
    res = run(workdir, _spec(workdir, script, privileged=True))
    assert res.returncode == 0, res.stderr
    assert int(_status_field(res.stdout, "CapEff"), 16) == bitmask(HOST_CAPS)
    assert _status_field(res.stdout, "Seccomp") == "0"
    assert "mounted" in res.stdout
    sys_line = next(line for line in res.stdout.splitlines() if " /sys " in line)
    assert " rw," in sys_line
    assert " /proc/sys " not in res.stdout  # no read-only remount


def test_masked_and_readonly_paths(workdir: Path) -> None:
    script = (
        "echo kcore=$(cat /proc/kcore 2>/dev/null | wc -c); "
        "echo timer=$(cat /proc/timer_list 2>/dev/null | wc -c); "
        "echo firmware=$(ls /sys/firmware | wc -l); "
        "grep ' /proc/sys ' /proc/self/mountinfo; "
        "echo x > /proc/sysrq-trigger; echo sysrq=$?"
    )
    res = run(workdir, _spec(workdir, script))
    assert res.returncode == 0, res.stderr
    assert "kcore=0" in res.stdout
    assert "timer=0" in res.stdout
    assert "firmware=0" in res.stdout
    proc_sys = next(line for line in res.stdout.splitlines() if " /proc/sys " in line)
    assert " ro," in proc_sys
    assert "sysrq=0" not in res.stdout


def test_memory_limit(workdir: Path) -> None:
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
              "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo none")
    res = run(workdir, _spec(workdir, script, resources=Resources(memory=64 << 20)))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines[0] == str(64 << 20)
    if lines[1] != "none":  # the host has swap accounting: default swap is 2 x memory
        assert lines[1] == str(128 << 20)


def test_cpu_and_pids_files(workdir: Path) -> None:
    script = ("cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
              "/sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/pids/pids.max")
    res = run(workdir, _spec(workdir, script,
                             resources=Resources(nano_cpus=500_000_000, cpu_shares=512, pids_limit=50)))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["50000", "100000", "512", "50"]


def test_pids_limit_stops_fork_bomb(workdir: Path) -> None:
    script = "for i in $(seq 60); do sleep 5 & done; echo done"
    res = run(workdir, _spec(workdir, script, resources=Resources(pids_limit=20)))
    assert "can't fork" in res.stderr, res.stderr


def test_user_cwd_env_hostname(workdir: Path) -> None:
    spec = _spec(workdir, 'id; pwd; echo "foo=$FOO"; echo "path=$PATH"; hostname; ulimit -n',
                 uid=1000, gid=1000, additional_gids=(10,), cwd="/home/bob",
                 env=("FOO=bar baz",), hostname="boxy")
    res = run(workdir, spec)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("uid=1000(bob) gid=1000(bob)")
    assert "10(wheel)" in lines[0]
    assert lines[1] == "/home/bob"
    assert lines[2] == "foo=bar baz"
    assert lines[3] == "path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert lines[4] == "boxy"
    assert lines[5] == str(NOFILE)


def test_readonly_rootfs(workdir: Path) -> None:
    script = "touch /berth-ro-probe; echo root=$?; touch /dev/shm/x; echo shm=$?"
    res = run(workdir, _spec(workdir, script, readonly_rootfs=True))
    assert res.returncode == 0, res.stderr
    assert "root=1" in res.stdout
    assert "shm=0" in res.stdout
    assert not (workdir / "rootfs" / "berth-ro-probe").exists()


def test_bind_mounts(workdir: Path) -> None:
    host = workdir / "binds"
    (host / "ro").mkdir(parents=True)
    (host / "rw").mkdir(parents=True)
    (host / "ro" / "hello").write_text("from host\n")
    mounts = (
        BindMount(str(host / "ro"), "/data/ro", readonly=True),
        BindMount(str(host / "rw"), "/data/rw"),
    )
    script = ("cat /data/ro/hello; touch /data/ro/new; echo ro=$?; "
              "echo written > /data/rw/out; echo rw=$?")
    try:
        res = run(workdir, _spec(workdir, script, mounts=mounts))
        assert res.returncode == 0, res.stderr
        assert "from host" in res.stdout
        assert "ro=1" in res.stdout
        assert "rw=0" in res.stdout
        assert (host / "rw" / "out").read_text() == "written\n"
        assert not (host / "ro" / "new").exists()
    finally:
        shutil.rmtree(host, ignore_errors=True)


def test_network_modes(workdir: Path) -> None:
    script = "ls /sys/class/net"
    own = run(workdir, _spec(workdir, script))
    assert own.returncode == 0, own.stderr
    assert own.stdout.split() == ["lo"]
    host = run(workdir, _spec(workdir, script, network_mode="host"))
    assert host.returncode == 0, host.stderr
    assert sorted(host.stdout.split()) == sorted(os.listdir("/sys/class/net"))
