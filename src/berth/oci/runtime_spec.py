"""ContainerSpec -> OCI runtime config.json (runtime-spec 1.0.2), as runc/runsc read it.

Strategy: every decision about a container (process, user, mounts, limits,
security) is made once, here, as a pure function of a ContainerSpec; every
isolation driver consumes the same document. No I/O in this module.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument
from berth.oci import capabilities, hostresources, seccomp, seccompprofile
from berth.oci.hostresources import BlockIO, DeviceRule, Rlimit

OCI_VERSION = "1.0.2"
NOFILE_DEFAULT = 1048576  # Docker's RLIMIT_NOFILE, soft and hard


@dataclass(frozen=True, slots=True)
class BindMount:
    source: str            # absolute host path
    destination: str       # absolute path in the container
    readonly: bool = False
    options: tuple[str, ...] = ()   # extra options, e.g. ("rprivate",)


@dataclass(frozen=True, slots=True)
class Resources:
    memory: int = 0            # bytes; 0 = unlimited
    memory_swap: int = 0       # bytes incl. memory; 0 = default (2 x memory), -1 = unlimited
    nano_cpus: int = 0         # 1e9 = one CPU; maps to quota/period with period 100000
    cpu_shares: int = 0        # 0 = default
    cpu_quota: int = 0         # microseconds per cpu_period; 0 = unlimited
    cpu_period: int = 0        # microseconds; 0 = default (100000)
    pids_limit: int = 0        # 0 or negative = unlimited
    swap_accounting: bool = True   # False: the host has no memsw; never set a swap limit
    # RLIMIT_NOFILE soft and hard; 0 = inherit the runtime's. runc cannot raise the hard
    # limit above its own without CAP_SYS_RESOURCE: the caller caps it at its hard limit.
    nofile: int = NOFILE_DEFAULT
    disable_oom_killer: bool = False
    cpuset_cpus: str = ""      # "0-2,4"; "" = all
    cpuset_mems: str = ""
    memory_reservation: int = 0    # bytes, the soft limit; 0 = none
    memory_swappiness: int | None = None   # 0-100; None = the host's
    cpu_rt_period: int = 0     # microseconds; 0 = the default
    cpu_rt_runtime: int = 0
    blkio: BlockIO = field(default_factory=BlockIO)


@dataclass(frozen=True, slots=True)
class Device:
    """A device node to create in the container's /dev (privileged containers get the host's)."""

    path: str
    kind: str          # "c" or "b"
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    args: tuple[str, ...]                  # argv, already joined from entrypoint + cmd (+ init)
    rootfs: str                            # absolute path of the mounted root file system
    env: tuple[str, ...] = ()              # "KEY=value"
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    hostname: str = ""
    tty: bool = False
    readonly_rootfs: bool = False
    mounts: tuple[BindMount, ...] = ()     # binds, plus generated /etc/hosts etc.
    cap_add: tuple[str, ...] = ()          # "NET_ADMIN" or "CAP_NET_ADMIN" or "ALL"
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = False
    # "" or "builtin" = berth's policy (none when privileged), "unconfined" = no filter,
    # else a Docker-format profile's JSON text (applied even when privileged, as dockerd does)
    seccomp_profile: str = ""
    kernel_release: str = ""               # the host's uname -r, for a profile's minKernel; "" = new enough
    runtime: str = "runc"                  # the OCI runtime that reads the config: "runc" or "runsc"
    seccomp_abis: tuple[str, ...] | None = None  # the host kernel's ABIs (seccomp.kernel_abis); None = all
    resources: Resources = field(default_factory=Resources)
    network_mode: str = "none"             # "none" (own netns, loopback only), "host", or a netns path to join
    cgroups_path: str = ""                 # e.g. "/berth/<id>"
    annotations: tuple[tuple[str, str], ...] = ()
    # The runtime's own bounding set ("CAP_*" names), read by the caller from
    # /proc/self/status CapBnd; None = assume every capability. "ALL" and
    # privileged are limited to it, since runc cannot grant more.
    host_capabilities: tuple[str, ...] | None = None
    devices: tuple[Device, ...] = ()
    tmpfs: tuple[tuple[str, str], ...] = ()   # (destination, "opt,opt") as HostConfig.Tmpfs
    # "" = own namespace, "host" = the host's, "/proc/<pid>/ns/<kind>" = another container's
    pid_mode: str = ""
    ipc_mode: str = ""
    uts_mode: str = ""
    rlimits: tuple[Rlimit, ...] = ()      # HostConfig.Ulimits; RLIMIT_NOFILE defaults to resources.nofile
    shm_size: int = 0                      # /dev/shm's size in bytes; 0 = Docker's 64 MiB
    sysctl: tuple[tuple[str, str], ...] = ()
    oom_score_adj: int = 0
    device_rules: tuple[DeviceRule, ...] = ()  # cgroup allow rules: --device's and --device-cgroup-rule's
    cgroup_ns: bool = False                # a cgroup namespace of its own (--cgroupns private)
    masked_paths: tuple[str, ...] | None = None     # HostConfig.MaskedPaths; None = Docker's list
    readonly_paths: tuple[str, ...] | None = None   # HostConfig.ReadonlyPaths; None = Docker's list


PATH_DEFAULT = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_DEFAULT = 100000
NETWORK_MODES = ("none", "host")

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

#: (type, major, minor) allowed with rwm besides mknod; None = any.
DEFAULT_DEVICES: tuple[tuple[str, int, int | None], ...] = (
    ("c", 1, 3),    # null
    ("c", 1, 5),    # zero
    ("c", 1, 7),    # full
    ("c", 1, 8),    # random
    ("c", 1, 9),    # urandom
    ("c", 5, 0),    # tty
    ("c", 5, 1),    # console
    ("c", 5, 2),    # ptmx
    ("c", 136, None),  # pts/*
    ("c", 10, 200),  # net/tun
)


def _default_mounts(privileged: bool, shm_size: int = 0) -> list[dict[str, Any]]:
    sys_mode = "rw" if privileged else "ro"
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", sys_mode]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size or hostresources.SHM_DEFAULT}"]},
    ]


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/")


def _mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    binds: list[dict[str, Any]] = []
    for m in spec.mounts:
        if not posixpath.isabs(m.source):
            raise InvalidArgument(f"bind mount source must be an absolute path: {m.source!r}")
        if not posixpath.isabs(m.destination):
            raise InvalidArgument(f"bind mount destination must be an absolute path: {m.destination!r}")
        if _clean(m.destination) == "/":
            raise InvalidArgument(f"bind mount destination cannot be '/': {m.source!r}")
        options = ["rbind", *(m.options or ("rprivate",))]
        if m.readonly and "ro" not in options:
            options.append("ro")
        binds.append({"destination": _clean(m.destination), "type": "bind",
                      "source": m.source, "options": options})
    for destination, opts in spec.tmpfs:
        if not posixpath.isabs(destination):
            raise InvalidArgument(f"tmpfs destination must be an absolute path: {destination!r}")
        options = [o for o in opts.split(",") if o] or ["rw", "nosuid", "nodev", "noexec"]
        binds.append({"destination": _clean(destination), "type": "tmpfs", "source": "tmpfs",
                      "options": options})
    # Parents before children, keeping the caller's order among equals.
    binds.sort(key=lambda b: b["destination"].rstrip("/").count("/"))
    taken = [b["destination"] for b in binds]
    defaults = [d for d in _default_mounts(spec.privileged, spec.shm_size)
                if not any(_is_under(d["destination"], t) for t in taken)]
    return defaults + binds


def _env(spec: ContainerSpec) -> list[str]:
    env = [item for item in spec.env if "=" in item]  # "-e VAR" unset on the client: not set at all
    keys = {item.partition("=")[0] for item in env}
    if "PATH" not in keys:
        env.insert(0, PATH_DEFAULT)
    if spec.tty and "TERM" not in keys:
        env.append("TERM=xterm")
    return env


def _memory(r: Resources) -> dict[str, Any]:
    if r.memory < 0:
        raise InvalidArgument(f"memory limit must not be negative: {r.memory}")
    if r.memory_swap < -1:
        raise InvalidArgument(f"invalid memory swap limit: {r.memory_swap}")
    if r.memory == 0:
        if r.memory_swap > 0:
            raise InvalidArgument("a memory swap limit needs a memory limit")
        return {**({"disableOOMKiller": True} if r.disable_oom_killer else {}), **_memory_soft(r)}
    out: dict[str, Any] = {"limit": r.memory}
    if r.disable_oom_killer:
        out["disableOOMKiller"] = True
    out.update(_memory_soft(r))
    if not r.swap_accounting:
        return out
    if r.memory_swap == 0:
        out["swap"] = 2 * r.memory
    elif r.memory_swap == -1:
        out["swap"] = -1
    elif r.memory_swap < r.memory:
        raise InvalidArgument(
            f"memory swap limit ({r.memory_swap}) must be at least the memory limit ({r.memory})")
    else:
        out["swap"] = r.memory_swap
    return out


def _memory_soft(r: Resources) -> dict[str, int]:
    out = {}
    if r.memory_reservation:
        out["reservation"] = r.memory_reservation
    if r.memory_swappiness is not None:
        out["swappiness"] = r.memory_swappiness
    return out


def _cpu(r: Resources) -> dict[str, int | str]:
    for name in ("nano_cpus", "cpu_shares", "cpu_quota", "cpu_period"):
        if getattr(r, name) < 0:
            raise InvalidArgument(f"{name} must not be negative: {getattr(r, name)}")
    out: dict[str, int | str] = {}
    if r.nano_cpus:
        if r.cpu_quota or r.cpu_period:
            raise InvalidArgument("nano_cpus conflicts with cpu_quota/cpu_period; set one or the other")
        quota = r.nano_cpus * CPU_PERIOD_DEFAULT // 1_000_000_000
        if quota < 1000:
            raise InvalidArgument(f"nano_cpus {r.nano_cpus} is below the minimum of 0.01 CPU")
        out["quota"], out["period"] = quota, CPU_PERIOD_DEFAULT
    else:
        if r.cpu_quota:
            if r.cpu_quota < 1000:
                raise InvalidArgument(f"cpu_quota must be at least 1000 microseconds: {r.cpu_quota}")
            out["quota"] = r.cpu_quota
        if r.cpu_period:
            if not 1000 <= r.cpu_period <= 1_000_000:
                raise InvalidArgument(f"cpu_period must be 1000-1000000 microseconds: {r.cpu_period}")
            out["period"] = r.cpu_period
    if r.cpu_shares:
        out["shares"] = r.cpu_shares
    if r.cpuset_cpus:
        out["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        out["mems"] = r.cpuset_mems
    if r.cpu_rt_period:
        out["realtimePeriod"] = r.cpu_rt_period
    if r.cpu_rt_runtime:
        out["realtimeRuntime"] = r.cpu_rt_runtime
    return out


def _devices(privileged: bool, extra: tuple[DeviceRule, ...] = ()) -> list[dict[str, Any]]:
    if privileged:
        return [{"allow": True, "access": "rwm"}]
    rules: list[dict[str, Any]] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "access": "m"},
        {"allow": True, "type": "b", "access": "m"},
    ]
    for kind, major, minor in DEFAULT_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": kind, "major": major, "access": "rwm"}
        if minor is not None:
            rule["minor"] = minor
        rules.append(rule)
    return rules + [r.to_doc() for r in extra]


def limits(r: Resources) -> dict[str, Any]:
    """The memory, cpu, pids and blockIO parts of linux.resources (also what `runc update` takes).

    Raises:
        InvalidArgument: inconsistent or negative limits.
    """
    out: dict[str, Any] = {}
    memory, cpu = _memory(r), _cpu(r)
    if memory:
        out["memory"] = memory
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit:
        out["pids"] = {"limit": r.pids_limit if r.pids_limit > 0 else -1}  # -1: unlimited (update lifts one)
    blockio = hostresources.blockio_section(r.blkio)
    if blockio:
        out["blockIO"] = blockio
    return out


def _seccomp(spec: ContainerSpec, caps: list[str], arch: str) -> dict[str, Any] | None:
    if spec.seccomp_profile in ("", "builtin"):
        if spec.privileged:
            return None
        return seccomp.default_profile(caps, arch, spec.runtime, spec.seccomp_abis)
    if spec.seccomp_profile == "unconfined":
        return None
    profile = seccompprofile.parse_docker_profile(spec.seccomp_profile)
    return seccompprofile.docker_profile(profile, caps, arch, seccompprofile.kernel_version(spec.kernel_release))


def build(spec: ContainerSpec, arch: str = "amd64") -> dict[str, Any]:
    """Return the OCI runtime config (config.json content) for *spec*.

    Args:
        spec: the container to describe.
        arch: the host architecture for the seccomp filter ("amd64" or "arm64").

    Returns:
        A JSON-ready dict following runtime-spec 1.0.2.

    Raises:
        berth.errors.InvalidArgument: an unknown capability name, an unknown
            network mode, a relative mount path, inconsistent resources, or a
            malformed seccomp profile.
        berth.errors.FailedPrecondition: a requested capability is not in
            spec.host_capabilities.
    """
    if not spec.args:
        raise InvalidArgument("no command given for the container")
    if spec.network_mode not in NETWORK_MODES and not spec.network_mode.startswith("/"):
        raise InvalidArgument(f"unsupported network mode: {spec.network_mode!r}")
    if not posixpath.isabs(spec.cwd):
        raise InvalidArgument(f"the working directory must be an absolute path: {spec.cwd!r}")
    caps = capabilities.effective(spec.cap_add, spec.cap_drop, spec.privileged, spec.host_capabilities)
    r = spec.resources

    process: dict[str, Any] = {
        "terminal": spec.tty,
        "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": list(spec.additional_gids)},
        "args": list(spec.args),
        "env": _env(spec),
        "cwd": spec.cwd,
        "capabilities": {
            "bounding": list(caps),
            "effective": list(caps),
            "permitted": list(caps),
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": hostresources.rlimits_section(spec.rlimits, r.nofile),
        "noNewPrivileges": spec.no_new_privileges,
        "oomScoreAdj": spec.oom_score_adj,
    }

    namespaces: list[dict[str, str]] = []
    for kind, mode in (("pid", spec.pid_mode), ("ipc", spec.ipc_mode), ("uts", spec.uts_mode),
                       ("mount", ""), ("network", "" if spec.network_mode == "none" else spec.network_mode)):
        if mode == "host":
            continue  # share the host's
        if mode.startswith("/"):
            namespaces.append({"type": kind, "path": mode})  # join another container's, or a prepared one
        elif mode:
            raise InvalidArgument(f"invalid {kind} namespace mode {mode!r}: use host or a namespace path")
        else:
            namespaces.append({"type": kind})
    if spec.cgroup_ns:
        namespaces.append({"type": "cgroup"})

    resources: dict[str, Any] = {"devices": _devices(spec.privileged, spec.device_rules), **limits(r)}

    linux: dict[str, Any] = {"namespaces": namespaces, "resources": resources}
    if spec.sysctl:
        linux["sysctl"] = dict(spec.sysctl)
    if spec.devices:
        linux["devices"] = [{"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor,
                             "fileMode": d.mode, "uid": d.uid, "gid": d.gid} for d in spec.devices]
    if spec.cgroups_path:
        linux["cgroupsPath"] = spec.cgroups_path
    if not spec.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS if spec.masked_paths is None else spec.masked_paths)
        linux["readonlyPaths"] = list(READONLY_PATHS if spec.readonly_paths is None else spec.readonly_paths)
    section = _seccomp(spec, caps, arch)
    if section is not None:
        linux["seccomp"] = section

    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": spec.rootfs, "readonly": spec.readonly_rootfs},
        "mounts": _mounts(spec),
        "linux": linux,
    }
    if spec.hostname and not spec.uts_mode:
        config["hostname"] = spec.hostname
    if spec.annotations:
        config["annotations"] = dict(spec.annotations)
    return config
