"""HostConfig knobs as runtime-spec values: Docker's rules and words, and the config.json they make."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.oci import hostresources as hr
from berth.oci.runtime_spec import ContainerSpec, Resources, build


def spec(**kw) -> ContainerSpec:
    return ContainerSpec(args=("/bin/sh",), rootfs="/r", **kw)


def test_ulimits() -> None:
    got = hr.ulimits([{"Name": "nofile", "Soft": 100, "Hard": 200}, {"Name": "core", "Soft": -1, "Hard": -1},
                      {"Name": "nproc", "Soft": 5, "Hard": 5}, {"Name": "nproc", "Soft": 7, "Hard": 7}])
    assert got == (hr.Rlimit("RLIMIT_NOFILE", 100, 200), hr.Rlimit("RLIMIT_CORE", hr.RLIM_INFINITY, hr.RLIM_INFINITY),
                   hr.Rlimit("RLIMIT_NPROC", 7, 7))  # a name given twice: the last
    assert hr.ulimits(None) == ()


@pytest.mark.parametrize(("value", "words"), [
    ([{"Name": "foo", "Soft": 1, "Hard": 1}], "invalid ulimit type: foo"),
    ([{"Name": "nofile", "Soft": 100, "Hard": 50}], "ulimit soft limit must be less than or equal to hard limit: 100 > 50"),
    ([{"Name": "nofile", "Soft": -5, "Hard": 50}], "invalid ulimit value"),
    ([{"Name": "nofile", "Soft": 1, "Hard": 1 << 63}], "invalid ulimit value"),
    (["nofile"], "HostConfig.Ulimits"),
])
def test_ulimits_refused(value, words) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(")):
        hr.ulimits(value)


def test_rlimits_in_the_config() -> None:
    process = build(spec(rlimits=(hr.Rlimit("RLIMIT_NPROC", 5, 6),), resources=Resources(nofile=1024)))["process"]
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                                  {"type": "RLIMIT_NPROC", "hard": 6, "soft": 5}]
    own = build(spec(rlimits=(hr.Rlimit("RLIMIT_NOFILE", 100, 100),)))["process"]["rlimits"]
    assert own == [{"type": "RLIMIT_NOFILE", "hard": 100, "soft": 100}]  # the given one replaces Docker's default


@pytest.mark.parametrize(("sysctls", "network", "ipc"), [
    ({"net.ipv4.ip_forward": "1", "kernel.shmmax": "100", "fs.mqueue.msg_max": "20"}, "none", ""),
    ({"kernel.sem": "1 2 3 4"}, "host", ""),       # IPC ones in the container's own IPC namespace
    ({"net.core.somaxconn": "10"}, "bridge", "host"),
])
def test_sysctls_allowed(sysctls, network, ipc) -> None:
    assert hr.sysctls(sysctls, network, ipc) == tuple(sysctls.items())


@pytest.mark.parametrize(("sysctls", "network", "ipc", "words"), [
    ({"vm.swappiness": "10"}, "none", "", "sysctl 'vm.swappiness=10' is not allowed"),
    ({"kernel.hostname": "x"}, "none", "", "sysctl 'kernel.hostname=x' is not allowed"),
    ({"net.ipv4.ip_forward": "1"}, "host", "", 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'),
    ({"kernel.shmmax": "1"}, "none", "host", 'sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace'),
    ({"net/../../x": "1"}, "none", "", "malformed"),
    ({"net..ipv4": "1"}, "none", "", "malformed"),
    ({"net.ipv4.ip_forward": "1\nkernel.x=1"}, "none", "", "malformed"),
    ({"net.ipv4.ip_forward": 1}, "none", "", "expected a string"),
])
def test_sysctls_refused(sysctls, network, ipc, words) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(")):
        hr.sysctls(sysctls, network, ipc)


def test_sysctl_in_the_config() -> None:
    assert build(spec(sysctl=(("kernel.shmmax", "100"),)))["linux"]["sysctl"] == {"kernel.shmmax": "100"}
    assert "sysctl" not in build(spec())["linux"]


def test_shm_size() -> None:
    assert hr.shm_size(None) == hr.shm_size(0) == 64 << 20
    assert hr.shm_size(1 << 20) == 1 << 20
    with pytest.raises(InvalidArgument, match="SHM size can not be less than 0"):
        hr.shm_size(-1)
    shm = next(m for m in build(spec(shm_size=1 << 20))["mounts"] if m["destination"] == "/dev/shm")
    assert "size=1048576" in shm["options"]
    shm = next(m for m in build(spec())["mounts"] if m["destination"] == "/dev/shm")
    assert "size=67108864" in shm["options"]


def test_oom_score_adj() -> None:
    assert build(spec(oom_score_adj=-500))["process"]["oomScoreAdj"] == -500
    assert hr.oom_score_adj(1000) == 1000
    with pytest.raises(InvalidArgument, match=r"Invalid value 5000, range for oom score adj is \[-1000, 1000\]"):
        hr.oom_score_adj(5000)


def test_cpuset() -> None:
    assert hr.cpuset("0-1,3", "cpus", frozenset({0, 1, 2, 3}), "0-3") == "0-1,3"
    assert hr.cpuset("", "cpus") == hr.cpuset(None, "mems") == ""
    assert hr.parse_cpuset("0-1,4\n") == frozenset({0, 1, 4}) and hr.parse_cpuset("junk") == frozenset()
    with pytest.raises(InvalidArgument, match="Invalid value abc for cpuset cpus: invalid format: abc"):
        hr.cpuset("abc", "cpus")
    with pytest.raises(InvalidArgument, match="invalid range"):
        hr.cpuset("3-1", "cpus")
    with pytest.raises(InvalidArgument, match="invalid range"):
        hr.cpuset("0-99999999999", "cpus")  # bounded: never a huge range walked
    with pytest.raises(InvalidArgument, match="Requested CPUs are not available - requested 5, available: 0-1"):
        hr.cpuset("5", "cpus", frozenset({0, 1}), "0-1")
    with pytest.raises(InvalidArgument, match="Requested memory nodes are not available - requested 3, available: 0"):
        hr.cpuset("3", "mems", frozenset({0}), "0")


def test_cpu_and_memory_in_the_config() -> None:
    r = build(spec(resources=Resources(cpuset_cpus="0", cpuset_mems="0", cpu_rt_period=1000000, cpu_rt_runtime=950000,
                                       memory_reservation=50 << 20, memory_swappiness=10)))["linux"]["resources"]
    assert r["cpu"] == {"cpus": "0", "mems": "0", "realtimePeriod": 1000000, "realtimeRuntime": 950000}
    assert r["memory"] == {"reservation": 50 << 20, "swappiness": 10}
    r = build(spec(resources=Resources(memory=100 << 20, memory_reservation=50 << 20)))["linux"]["resources"]
    assert r["memory"] == {"limit": 100 << 20, "reservation": 50 << 20, "swap": 200 << 20}
    assert "memory" not in build(spec())["linux"]["resources"]


def test_memory_checks() -> None:
    assert hr.memory_reservation(50 << 20, 100 << 20) == 50 << 20
    with pytest.raises(InvalidArgument, match="Minimum memory reservation allowed is 6MB"):
        hr.memory_reservation(100, 0)
    with pytest.raises(InvalidArgument, match="Minimum memory limit can not be less than memory reservation limit"):
        hr.memory_reservation(200 << 20, 100 << 20)
    assert hr.memory_swappiness(-1) is None and hr.memory_swappiness(0) == 0
    with pytest.raises(InvalidArgument, match="Invalid value: 200, valid memory swappiness range is 0-100"):
        hr.memory_swappiness(200)


def test_blkio() -> None:
    b = hr.BlockIO(weight=300, weight_devices=(hr.DeviceRate(8, 0, 200),), read_bps=(hr.DeviceRate(8, 0, 1 << 20),),
                   write_iops=(hr.DeviceRate(254, 0, 100),))
    section = build(spec(resources=Resources(blkio=b)))["linux"]["resources"]["blockIO"]
    assert section == {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                       "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1 << 20}],
                       "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 100}]}
    assert "blockIO" not in build(spec())["linux"]["resources"]
    with pytest.raises(InvalidArgument, match="Range of blkio weight is from 10 to 1000"):
        hr.blkio_weight(5)


def test_realtime() -> None:
    assert hr.realtime(1000, 500) == (1000, 500)
    with pytest.raises(InvalidArgument, match="cpu real-time runtime cannot be higher than cpu real-time period"):
        hr.realtime(2000, 5000)


def test_device_rules() -> None:
    assert hr.device_cgroup_rule("c 1:3 rwm") == hr.DeviceRule("c", 1, 3, "rwm")
    assert hr.device_cgroup_rule("a *:* m").to_doc() == {"allow": True, "type": "a", "access": "m"}
    for bad in ("x 1:2 rwm", "c 1:3 rwx", "c 1:3 rr", "c 1 rwm", 5):
        with pytest.raises(InvalidArgument, match="invalid device cgroup rule format"):
            hr.device_cgroup_rule(bad)
    rules = build(spec(device_rules=(hr.DeviceRule("c", 42, None, "rm"),)))["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"} and rules[-1] == {"allow": True, "type": "c", "major": 42,
                                                                          "access": "rm"}
    assert hr.device_access("", "/dev/x") == "rwm"
    with pytest.raises(InvalidArgument, match="invalid device mode"):
        hr.device_access("rwx", "/dev/x")


def test_resolv_words() -> None:
    host = "nameserver 1.1.1.1\nsearch host.lan\ndomain lan\noptions edns0\n"
    assert hr.with_resolv_words(host, ("a.test", "b.test"), ("ndots:2",)) == \
        "nameserver 1.1.1.1\nsearch a.test b.test\noptions ndots:2\n"
    assert hr.with_resolv_words(host, (".",), ()) == "nameserver 1.1.1.1\noptions edns0\n"
    assert hr.with_resolv_words(host, (), ()) == host
    assert hr.resolv_words(["ndots:2"], "DnsOptions") == ("ndots:2",)
    for bad in (["a b"], ["x\nnameserver 6.6.6.6"], [""], ["x"] * 65, "a"):
        with pytest.raises(InvalidArgument, match="HostConfig.DnsSearch"):
            hr.resolv_words(bad, "DnsSearch")


def test_cgroup_namespace() -> None:
    assert {"type": "cgroup"} in build(spec(cgroup_ns=True))["linux"]["namespaces"]
    assert {"type": "cgroup"} not in build(spec())["linux"]["namespaces"]


def test_masked_and_readonly_paths() -> None:
    linux = build(spec(masked_paths=("/proc/x",), readonly_paths=()))["linux"]
    assert linux["maskedPaths"] == ["/proc/x"] and linux["readonlyPaths"] == []
    linux = build(spec())["linux"]
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert hr.paths(None, "MaskedPaths") is None and hr.paths([], "MaskedPaths") == ()
    with pytest.raises(InvalidArgument, match="not an absolute path"):
        hr.paths(["proc/kcore"], "MaskedPaths")


def test_annotations() -> None:
    assert hr.annotation_pairs({"b": "2", "a": "1"}) == (("a", "1"), ("b", "2"))
    assert build(spec(annotations=(("a", "1"),)))["annotations"] == {"a": "1"}
    for bad in ({"dev.gvisor.spec.mount.x.share": "shared"}, {f"k{i}": "v" for i in range(65)}, {"k": "v" * 5000}):
        with pytest.raises(InvalidArgument, match="HostConfig.Annotations"):
            hr.annotation_pairs(bad)
