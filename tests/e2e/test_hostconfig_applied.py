"""HostConfig knobs reach the container: checked from inside it, with both CLIs.

Each knob (ulimits, /dev/shm size, cpuset, sysctls, oom_score_adj, memory reservation and
swappiness, block I/O throttles, devices and device rules, cgroup parent) is set through the
active client's `run`, and read back from inside the container (its /proc and its cgroup files).
Refusals are checked by exit code and Docker's words; isolations that cannot apply a knob refuse it.
"""

from __future__ import annotations

import os
import shutil
import stat

import pytest
from berth_e2e_conftest import RUN_NET, assert_responsive, docker, is_dockerd, unique_name

pytestmark = pytest.mark.usefixtures("each_cli")

CG = "/sys/fs/cgroup"


def _block_device() -> str:
    for name in sorted(os.listdir("/sys/block")):
        path = f"/dev/{name}"
        try:
            if stat.S_ISBLK(os.stat(path).st_mode):
                return path
        except OSError:
            continue
    pytest.skip("no block device on this host")


def _host_untouched() -> None:
    with open("/proc/sys/kernel/shmmax") as f:
        assert f.read().strip() != "1000000"  # the container's IPC namespace, not the host's


def test_knobs_applied_inside(berthd, image, names) -> None:
    dev = _block_device()
    st = os.stat(dev)
    script = ("ulimit -n; ulimit -Hn; ulimit -u; grep ' /dev/shm ' /proc/mounts; "
              "grep Cpus_allowed_list /proc/self/status; cat /proc/sys/kernel/shmmax; "
              "cat /proc/sys/net/ipv4/ip_forward; cat /proc/self/oom_score_adj; "
              f"cat {CG}/memory/memory.soft_limit_in_bytes {CG}/memory/memory.swappiness; "
              f"cat {CG}/blkio/blkio.throttle.read_bps_device {CG}/blkio/blkio.throttle.write_iops_device; "
              "ls -ln /dev/mynull; echo x > /dev/mynull && echo wrote; "
              f"grep -c '^c 42:\\* rm$' {CG}/devices/devices.list")
    out = docker(berthd, "run", "--rm", "--name", names(), *RUN_NET,
                 "--ulimit", "nofile=100:200", "--ulimit", "nproc=50", "--shm-size", "1m",
                 "--cpuset-cpus", "0", "--sysctl", "kernel.shmmax=1000000", "--sysctl", "net.ipv4.ip_forward=1",
                 "--oom-score-adj", "500", "--memory-reservation", "100m", "--memory-swappiness", "10",
                 "--device-read-bps", f"{dev}:1mb", "--device-write-iops", f"{dev}:100",
                 "--device", "/dev/null:/dev/mynull:rw", "--device-cgroup-rule", "c 42:* rm",
                 image, "sh", "-c", script).stdout.splitlines()
    major_minor = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    assert out[:3] == ["100", "200", "50"], out
    assert "size=1024k" in out[3], out
    assert out[4].split() == ["Cpus_allowed_list:", "0"]
    assert out[5:8] == ["1000000", "1", "500"]
    assert out[8:10] == [str(100 << 20), "10"]
    assert out[10:12] == [f"{major_minor} 1048576", f"{major_minor} 100"]
    assert out[12].startswith("crw") and " 1,   3 " in out[12], out[12]  # the host node's kind and numbers
    assert out[13:] == ["wrote", "1"], out
    _host_untouched()
    assert_responsive(berthd)


def test_defaults(berthd, image, names) -> None:
    out = docker(berthd, "run", "--rm", "--name", names(), *RUN_NET, image, "sh", "-c",
                 "ulimit -n; grep ' /dev/shm ' /proc/mounts; cat /proc/self/oom_score_adj").stdout.splitlines()
    assert int(out[0]) >= 1024 and "size=65536k" in out[1] and out[2] == "0", out  # Docker's nofile, up to the daemon's


def test_dns_search_and_options(berthd, image, names) -> None:
    out = docker(berthd, "run", "--rm", "--name", names(), *RUN_NET, "--dns-search", "example.com",
                 "--dns-search", "corp.test", "--dns-option", "ndots:2", image, "cat", "/etc/resolv.conf").stdout
    lines = out.splitlines()
    assert "search example.com corp.test" in lines and "options ndots:2" in lines, out
    assert sum(1 for ln in lines if ln.startswith(("search", "options"))) == 2, out  # the host's replaced


def test_cgroupns_private(berthd, image, names) -> None:
    out = docker(berthd, "run", "--rm", "--name", names(), *RUN_NET, "--cgroupns", "private", image,
                 "grep", "memory", "/proc/self/cgroup").stdout
    assert out.strip().endswith(":memory:/"), out  # its own cgroup is its namespace's root


def test_cgroup_parent(berthd, image, names) -> None:
    parent = unique_name("hcparent")
    try:
        out = docker(berthd, "run", "--rm", "--name", names(), *RUN_NET, "--cgroup-parent", f"/{parent}",
                     image, "grep", "memory", "/proc/self/cgroup").stdout
        assert f":/{parent}/" in out, out
    finally:
        for controller in os.listdir(CG):
            path = os.path.join(CG, controller, parent)
            if os.path.isdir(path):
                _rmdir_tree(path)
    assert_responsive(berthd)


def _rmdir_tree(path: str) -> None:
    """A cgroup directory and its (empty) children: cgroupfs removes a cgroup with rmdir only."""
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            _rmdir_tree(entry.path)
    try:
        os.rmdir(path)
    except OSError:
        pass


@pytest.mark.parametrize(("args", "words"), [
    (["--ulimit", "foo=1"], "invalid ulimit type: foo"),
    (["--sysctl", "vm.swappiness=10"], "sysctl 'vm.swappiness=10' is not allowed"),
    (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], "not allowed in host network namespace"),
    (["--oom-score-adj", "5000"], "range for oom score adj is [-1000, 1000]"),
    (["--cpuset-cpus", "4095"], "Requested CPUs are not available - requested 4095"),
    (["--device-cgroup-rule", "x 1:2 rwm"], "invalid device cgroup"),
    (["--device", "/etc/passwd:/dev/x"], "not a device node"),
    (["--storage-opt", "size=1G"], "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"),
])
def test_refused(berthd, image, names, args, words) -> None:
    cp = docker(berthd, "run", "--rm", "--name", names(), *([] if "--network" in args else RUN_NET), *args,
                image, "true", check=False)
    assert cp.returncode == 125, (cp.returncode, cp.stderr)
    if is_dockerd(berthd) and ("runc create failed" in cp.stderr or "error gathering" in cp.stderr):
        pass  # dockerd 20.10 leaves these to runc, at start; berth refuses them at create, in Docker's words
    else:
        assert words in cp.stderr, cp.stderr
    _host_untouched()
    assert_responsive(berthd)


def _has_blkio_weight() -> bool:
    return os.path.exists(f"{CG}/blkio/blkio.weight")


def test_blkio_weight_applied_or_warned(berthd, image, names) -> None:
    cp = docker(berthd, "run", "--rm", "--name", names(), *RUN_NET, "--blkio-weight", "300", image, "sh", "-c",
                f"cat {CG}/blkio/blkio.weight 2>/dev/null || echo none")
    if _has_blkio_weight():
        assert cp.stdout.strip() == "300", cp.stdout
    else:  # Docker's create Warning, as dockerd gives it on a host without the knob
        assert "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded." \
            in cp.stderr, cp.stderr


def test_realtime(berthd, image, names) -> None:
    if not os.path.exists(f"{CG}/cpu/cpu.rt_period_us"):
        pytest.skip("no real-time group scheduling on this host")
    out = docker(berthd, "run", "--rm", "--name", names(), *RUN_NET, "--cpu-rt-period", "500000", image,
                 "cat", f"{CG}/cpu/cpu.rt_period_us").stdout
    assert out.strip() == "500000", out
    if is_dockerd(berthd):
        return
    cp = docker(berthd, "run", "--rm", "--name", names(), *RUN_NET, "--cpu-rt-runtime", "1000", image, "true",
                check=False)
    assert cp.returncode == 125 and "parent cgroup /berth has a real-time budget of 0" in cp.stderr, cp.stderr
    assert_responsive(berthd)


def test_kernel_memory_warns(berthd, client, image, names) -> None:
    """Docker 20.10's answer: a create Warning, the limit not applied (runc 1.1 ignores it). The docker CLI
    (API 1.42 and later) no longer sends the field at all; berth's CLI does."""
    reply = client.api._result(client.api._post_json(client.api._url("/containers/create"), params={"name": names()},
                               data={"Image": image, "Cmd": ["true"], "HostConfig": {"KernelMemory": 10 << 20}}),
                               json=True)
    assert reply["Warnings"] == ["Specifying a kernel memory limit is deprecated and will be removed in a future "
                                 "release."], reply


def test_masked_paths_replace_dockers(berthd, client, image, names) -> None:
    """HostConfig.MaskedPaths (API): the given list replaces Docker's (here: /proc/kcore's mask lifted,
    /etc/hostname masked instead)."""
    name = names()
    client.api._result(client.api._post_json(client.api._url("/containers/create"), params={"name": name},
                       data={"Image": image, "Cmd": ["sh", "-c", "wc -c < /etc/hostname; grep -c kcore /proc/mounts"],
                             "HostConfig": {"MaskedPaths": ["/etc/hostname"], "NetworkMode": "none"}}), json=True)
    client.api.start(name)
    client.api.wait(name)
    assert client.api.logs(name).decode().split() == ["0", "0"]


def test_kernel_memory_tcp_warns(berthd, client, image, names) -> None:
    """Only the API sets it (no CLI flag); runc 1.1 ignores kernel memory limits, so berth says so."""
    reply = client.api._result(client.api._post_json(client.api._url("/containers/create"), params={"name": names()},
                               data={"Image": image, "Cmd": ["true"], "HostConfig": {"KernelMemoryTCP": 32 << 20}}),
                               json=True)
    assert any("KernelMemoryTCP is not applied" in w for w in reply["Warnings"]), reply


def test_update_reaches_the_cgroup(berthd, image, names) -> None:
    name = names()
    docker(berthd, "run", "-d", "--name", name, *RUN_NET, "--pids-limit", "30", image, "sleep", "60")
    docker(berthd, "update", "--cpuset-cpus", "0", "--memory-reservation", "50m", "--pids-limit", "20", name)

    def read(path: str) -> str:
        return docker(berthd, "exec", name, "cat", f"{CG}/{path}").stdout.strip()

    assert read("cpuset/cpuset.cpus") == "0"
    assert read("memory/memory.soft_limit_in_bytes") == str(50 << 20)
    assert read("pids/pids.max") == "20"
    docker(berthd, "update", "--pids-limit", "-1", name)
    assert read("pids/pids.max") == "max"
    cp = docker(berthd, "update", "--blkio-weight", "300", name)
    if _has_blkio_weight():
        assert read("blkio/blkio.weight") == "300"
    else:
        assert "Weight discarded" in cp.stdout + cp.stderr, cp  # docker's CLI prints them on stdout
    cp = docker(berthd, "update", "--cpuset-cpus", "abc", name, check=False)
    assert cp.returncode != 0 and "Invalid value abc for cpuset cpus" in cp.stderr, cp.stderr
    docker(berthd, "rm", "-f", name)
    assert_responsive(berthd)


@pytest.mark.skipif(shutil.which("runsc") is None or is_dockerd(), reason="berth's runsc handling")
def test_runsc_applies_or_refuses(berthd, image, names) -> None:
    out = docker(berthd, "run", "--rm", "--name", names(), "--runtime", "runsc", "--ulimit", "nofile=100:100",
                 "--shm-size", "2m", "--oom-score-adj", "300", image, "sh", "-c",
                 "ulimit -n; grep ' /dev/shm ' /proc/mounts; cat /proc/self/oom_score_adj").stdout.splitlines()
    assert out[0] == "100" and "size=2097152" in out[1], out  # gVisor's own /proc/mounts shows bytes
    for args in (["--sysctl", "kernel.shmmax=100"], ["--cpuset-cpus", "0"], ["--device", "/dev/null"]):
        cp = docker(berthd, "run", "--rm", "--name", names(), "--runtime", "runsc", *args, image, "true", check=False)
        assert cp.returncode == 125, (args, cp.returncode, cp.stderr)
        assert "is not applied under gVisor (--runtime runsc)" in cp.stderr, cp.stderr
    assert_responsive(berthd)


@pytest.mark.skipif(is_dockerd(), reason="berth's VM isolation")
def test_vm_refuses_at_create(berthd, image, names) -> None:
    cp = docker(berthd, "run", "--rm", "--name", names(), "--isolation", "hyperv", "--ulimit", "nofile=100:100",
                image, "true", check=False)
    assert cp.returncode == 125, (cp.returncode, cp.stderr)
    assert "HostConfig.Ulimits is not applied in a VM-isolated container" in cp.stderr, cp.stderr
    assert_responsive(berthd)
