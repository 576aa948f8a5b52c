"""Unit tests for berth.oci.runtime_spec.build (ContainerSpec -> config.json)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from berth.errors import FailedPrecondition, InvalidArgument
from berth.oci import seccomp
from berth.oci.capabilities import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from berth.oci.runtime_spec import (
    MASKED_PATHS,
    READONLY_PATHS,
    BindMount,
    ContainerSpec,
    Resources,
    build,
)

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def spec(**kw: Any) -> ContainerSpec:
    kw.setdefault("args", ("/bin/sh", "-c", "true"))
    kw.setdefault("rootfs", "/var/lib/berth/rootfs/abc")
    return ContainerSpec(**kw)


def by_dest(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in config["mounts"]}


def test_json_serialisable_and_version() -> None:
    config = build(spec())
    assert json.loads(json.dumps(config)) == config
    assert config["ociVersion"] == "1.0.2"


def test_process_defaults() -> None:
    p = build(spec())["process"]
    assert p["terminal"] is False
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": []}
    assert p["args"] == ["/bin/sh", "-c", "true"]
    assert p["env"] == [DEFAULT_PATH]
    assert p["cwd"] == "/"
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}]
    assert p["noNewPrivileges"] is False
    assert p["oomScoreAdj"] == 0
    caps = p["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        assert set(caps[kind]) == set(DEFAULT_CAPABILITIES)
    assert caps["inheritable"] == [] and caps["ambient"] == []


def test_process_fields_from_spec() -> None:
    p = build(spec(uid=1000, gid=100, additional_gids=(10, 20), cwd="/work", tty=True,
                   env=("PATH=/x", "A=b"), no_new_privileges=True))["process"]
    assert p["user"] == {"uid": 1000, "gid": 100, "additionalGids": [10, 20]}
    assert p["cwd"] == "/work"
    assert p["terminal"] is True
    assert p["env"] == ["PATH=/x", "A=b", "TERM=xterm"]
    assert p["noNewPrivileges"] is True


def test_term_kept_and_not_added_without_tty() -> None:
    assert build(spec(tty=True, env=("TERM=vt100",)))["process"]["env"] == [DEFAULT_PATH, "TERM=vt100"]
    assert "TERM=xterm" not in build(spec(env=("A=1",)))["process"]["env"]


def test_nofile_override() -> None:
    assert build(spec(resources=Resources(nofile=20000)))["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]
    assert build(spec(resources=Resources(nofile=0)))["process"]["rlimits"] == []


def test_root_hostname_annotations() -> None:
    config = build(spec(readonly_rootfs=True, hostname="web", annotations=(("a", "1"), ("b", "2"))))
    assert config["root"] == {"path": "/var/lib/berth/rootfs/abc", "readonly": True}
    assert config["hostname"] == "web"
    assert config["annotations"] == {"a": "1", "b": "2"}
    plain = build(spec())
    assert "hostname" not in plain and "annotations" not in plain


def test_default_mounts() -> None:
    mounts = by_dest(build(spec()))
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert mounts["/proc"]["type"] == "proc"
    assert mounts["/dev"]["type"] == "tmpfs"
    assert {"mode=755", "size=65536k", "strictatime", "nosuid"} <= set(mounts["/dev"]["options"])
    assert {"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"} <= set(mounts["/dev/pts"]["options"])
    assert mounts["/sys"]["type"] == "sysfs" and "ro" in mounts["/sys"]["options"]
    assert mounts["/sys/fs/cgroup"]["type"] == "cgroup"
    assert {"ro", "nosuid", "noexec", "nodev", "relatime"} <= set(mounts["/sys/fs/cgroup"]["options"])
    assert mounts["/dev/mqueue"]["type"] == "mqueue"
    assert {"size=67108864", "mode=1777", "noexec"} <= set(mounts["/dev/shm"]["options"])


def test_bind_mounts() -> None:
    config = build(spec(mounts=(
        BindMount("/host/a", "/data/a/b"),
        BindMount("/host/ro", "/data", readonly=True),
        BindMount("/host/x", "/x", options=("rslave",)),
    )))
    binds = [m for m in config["mounts"] if m["type"] == "bind"]
    assert [b["destination"] for b in binds] == ["/data", "/x", "/data/a/b"]  # parents first
    assert binds[0] == {"destination": "/data", "type": "bind", "source": "/host/ro",
                        "options": ["rbind", "rprivate", "ro"]}
    assert binds[1]["options"] == ["rbind", "rslave"]
    assert binds[2]["options"] == ["rbind", "rprivate"]
    assert config["mounts"][-1]["type"] == "bind"


def test_bind_replaces_default_at_same_or_parent_destination() -> None:
    mounts = by_dest(build(spec(mounts=(BindMount("/host/shm", "/dev/shm"),))))
    assert mounts["/dev/shm"]["type"] == "bind"
    assert len([d for d in mounts if d == "/dev/shm"]) == 1
    mounts = by_dest(build(spec(mounts=(BindMount("/dev", "/dev"),))))
    assert mounts["/dev"]["type"] == "bind"
    assert "/dev/pts" not in mounts and "/dev/shm" not in mounts
    assert "/proc" in mounts


def test_relative_bind_paths_rejected() -> None:
    with pytest.raises(InvalidArgument):
        build(spec(mounts=(BindMount("relative", "/x"),)))
    with pytest.raises(InvalidArgument):
        build(spec(mounts=(BindMount("/abs", "x"),)))
    with pytest.raises(InvalidArgument):
        build(spec(mounts=(BindMount("/abs", "//"),)))
    assert by_dest(build(spec(mounts=(BindMount("/abs", "//data/./x/"),))))["/data/x"]["source"] == "/abs"


def test_namespaces() -> None:
    types = [n["type"] for n in build(spec())["linux"]["namespaces"]]
    assert types == ["pid", "ipc", "uts", "mount", "network"]
    types = [n["type"] for n in build(spec(network_mode="host"))["linux"]["namespaces"]]
    assert types == ["pid", "ipc", "uts", "mount"]
    assert "user" not in types
    with pytest.raises(InvalidArgument, match="bridge"):
        build(spec(network_mode="bridge"))


def test_cgroups_path() -> None:
    assert build(spec(cgroups_path="/berth/abc"))["linux"]["cgroupsPath"] == "/berth/abc"
    assert "cgroupsPath" not in build(spec())["linux"]


def test_no_limits_by_default() -> None:
    resources = build(spec())["linux"]["resources"]
    assert set(resources) == {"devices"}


def test_memory_and_swap() -> None:
    mib = 1 << 20
    res = lambda **kw: build(spec(resources=Resources(**kw)))["linux"]["resources"]  # noqa: E731
    assert res(memory=64 * mib)["memory"] == {"limit": 64 * mib, "swap": 128 * mib}
    assert res(memory=64 * mib, memory_swap=100 * mib)["memory"] == {"limit": 64 * mib, "swap": 100 * mib}
    assert res(memory=64 * mib, memory_swap=-1)["memory"] == {"limit": 64 * mib, "swap": -1}
    assert res(memory=64 * mib, swap_accounting=False)["memory"] == {"limit": 64 * mib}
    with pytest.raises(InvalidArgument):
        res(memory=64 * mib, memory_swap=32 * mib)
    with pytest.raises(InvalidArgument):
        res(memory_swap=32 * mib)
    with pytest.raises(InvalidArgument):
        res(memory=-5)


def test_cpu() -> None:
    res = lambda **kw: build(spec(resources=Resources(**kw)))["linux"]["resources"]  # noqa: E731
    assert res(nano_cpus=1_500_000_000)["cpu"] == {"quota": 150000, "period": 100000}
    assert res(nano_cpus=10_000_000)["cpu"] == {"quota": 1000, "period": 100000}
    assert res(cpu_quota=50000, cpu_period=200000)["cpu"] == {"quota": 50000, "period": 200000}
    assert res(cpu_quota=50000)["cpu"] == {"quota": 50000}
    assert res(cpu_shares=512)["cpu"] == {"shares": 512}
    with pytest.raises(InvalidArgument):
        res(nano_cpus=1_000_000_000, cpu_quota=50000)
    with pytest.raises(InvalidArgument):
        res(nano_cpus=1_000_000)
    with pytest.raises(InvalidArgument):
        res(cpu_quota=10)


def test_pids() -> None:
    res = lambda **kw: build(spec(resources=Resources(**kw)))["linux"]["resources"]  # noqa: E731
    assert res(pids_limit=20)["pids"] == {"limit": 20}
    assert "pids" not in res(pids_limit=0)
    assert res(pids_limit=-1)["pids"] == {"limit": -1}  # unlimited: what lifts a limit at `docker update`


def test_devices_default() -> None:
    devices = build(spec())["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    allowed = {(d.get("type"), d.get("major"), d.get("minor"), d["access"]) for d in devices[1:]}
    assert ("c", None, None, "m") in allowed and ("b", None, None, "m") in allowed
    for major, minor in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200)]:
        assert ("c", major, minor, "rwm") in allowed
    assert ("c", 136, None, "rwm") in allowed
    assert all(d["allow"] for d in devices[1:])


def test_security_defaults() -> None:
    linux = build(spec())["linux"]
    assert linux["maskedPaths"] == list(MASKED_PATHS)
    assert "/proc/kcore" in linux["maskedPaths"] and "/sys/firmware" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    assert "/proc/sys" in linux["readonlyPaths"]
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert seccomp.verdict(linux["seccomp"], "mount") == seccomp.EPERM


def test_seccomp_follows_caps_and_arch() -> None:
    config = build(spec(cap_add=("SYS_ADMIN",)), arch="arm64")
    assert seccomp.verdict(config["linux"]["seccomp"], "mount") == "allow"
    assert config["linux"]["seccomp"]["architectures"][0] == "SCMP_ARCH_AARCH64"


def test_seccomp_options() -> None:
    assert "seccomp" not in build(spec(seccomp_profile="unconfined"))["linux"]
    assert build(spec(seccomp_profile="builtin"))["linux"]["seccomp"] == build(spec())["linux"]["seccomp"]
    custom = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}'
    section = build(spec(seccomp_profile=custom))["linux"]["seccomp"]
    assert section["defaultAction"] == "SCMP_ACT_ALLOW" and section["syscalls"][0]["names"] == ["mkdir"]
    assert build(spec(seccomp_profile=custom, privileged=True))["linux"]["seccomp"] == section  # as dockerd
    assert "seccomp" not in build(spec(privileged=True, seccomp_profile="builtin"))["linux"]
    assert "seccomp" not in build(spec(seccomp_profile="{}"))["linux"]
    with pytest.raises(InvalidArgument, match="defaultAction"):
        build(spec(seccomp_profile='{"defaultAction": "nope"}'))


def test_privileged() -> None:
    config = build(spec(privileged=True, cap_drop=("ALL",)))
    linux = config["linux"]
    assert config["process"]["capabilities"]["effective"] == list(ALL_CAPABILITIES)
    assert "seccomp" not in linux and "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    mounts = by_dest(config)
    assert "rw" in mounts["/sys"]["options"] and "ro" not in mounts["/sys"]["options"]
    assert "rw" in mounts["/sys/fs/cgroup"]["options"]


def test_host_capabilities_limit_privileged() -> None:
    host = tuple(c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE")
    caps = build(spec(privileged=True, host_capabilities=host))["process"]["capabilities"]
    assert caps["bounding"] == list(host)
    with pytest.raises(FailedPrecondition):
        build(spec(cap_add=("SYS_RESOURCE",), host_capabilities=host))


def test_bad_input() -> None:
    with pytest.raises(InvalidArgument, match="CAP_WIZARD"):
        build(spec(cap_add=("CAP_WIZARD",)))
    with pytest.raises(InvalidArgument):
        build(spec(args=()))
    with pytest.raises(InvalidArgument):
        build(spec(cwd="relative"))


def test_pure_and_deterministic() -> None:
    s = spec(cap_add=("NET_ADMIN", "chown"), resources=Resources(memory=1 << 26))
    assert build(s) == build(s)
