"""HostConfig's process, mount and cgroup knobs: checked at create, applied at start.

Strategy: every knob Docker applies on Linux beyond memory/cpu/pids (Ulimits, ShmSize, Sysctls,
OomScoreAdj, Cpuset*, MemoryReservation, MemorySwappiness, Blkio*, CgroupParent, CgroupnsMode,
Devices, DeviceCgroupRules, CpuRealtime*, KernelMemory*, StorageOpt, DnsSearch/DnsOptions' checks)
is kept in HostConfig.extra (wire.containerspec) and read here, never ignored:
  - `check_create` (pure, on the event loop) parses every value in Docker's words, refuses what
    the container's isolation cannot apply (a 400 naming the field, the mode and what to do), and
    returns Docker's create Warnings for what this host's cgroups lack (the knob is then dropped,
    as dockerd drops it);
  - `resources` and `process` turn the record into runtime_spec values at start; only
    `devices`, `blkio` and `check_realtime_budget` do I/O (a stat of each host device path the
    user named: a host path by design, never a path inside a container root; the parent cgroup's
    real-time budget), so the start runs them in a thread.
The host's cgroup support is probed once at daemon start (`CgroupSupport.probe`).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import stat
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument
from berth.oci import hostresources as hr
from berth.oci import runtime_spec
from berth.wire.containerspec import HostConfig

CGROUP = "/sys/fs/cgroup"
_THROTTLES = (("BlkioDeviceReadBps", "read_bps"), ("BlkioDeviceWriteBps", "write_bps"),
              ("BlkioDeviceReadIOps", "read_iops"), ("BlkioDeviceWriteIOps", "write_iops"))
#: Every HostConfig.extra knob this module applies, in the order refusals name them.
FIELDS = ("Ulimits", "ShmSize", "Sysctls", "OomScoreAdj", "CpusetCpus", "CpusetMems", "MemoryReservation",
          "BlkioWeight", "BlkioWeightDevice", *(k for k, _ in _THROTTLES), "CgroupParent", "Devices",
          "DeviceCgroupRules", "CpuRealtimePeriod", "CpuRealtimeRuntime", "KernelMemory", "KernelMemoryTCP",
          "Annotations")
#: What gVisor (runsc) cannot apply: berth runs it with --ignore-cgroups (no cgroup knob reaches the
#: host), its sandbox has no host device nodes, and its own kernel ignores the spec's sysctls. It does
#: apply Ulimits and ShmSize inside, and OomScoreAdj to the sandbox's host process.
_RUNSC_APPLIED = ("Ulimits", "ShmSize", "OomScoreAdj", "KernelMemory", "KernelMemoryTCP",  # the KernelMemory*: warned
                  "Annotations")
RUNSC_REFUSED = tuple(k for k in FIELDS if k not in _RUNSC_APPLIED) + ("MemorySwappiness", "CgroupnsMode")
#: What `docker update` changes live (runc update takes them).
UPDATABLE = ("CpusetCpus", "CpusetMems", "MemoryReservation", "BlkioWeight", "CpuRealtimePeriod",
             "CpuRealtimeRuntime", "KernelMemory")  # the last: kept and warned about, as at create
LIST_MAX = 256  # devices, rules, throttles, ulimits, sysctls: more is an attack, not a request


@dataclass(frozen=True, slots=True)
class CgroupSupport:
    """What this host's cgroup hierarchy offers (Docker's sysinfo), probed once at daemon start."""

    cpus: str = ""                  # the host's cpuset ("0-1"); "" = not known: not checked
    mems: str = ""
    blkio_weight: bool = True
    blkio_weight_device: bool = True
    blkio_throttle: bool = True
    memory_reservation: bool = True
    memory_swappiness: bool = True
    cpu_realtime: bool = True

    @classmethod
    def probe(cls, root: str = CGROUP) -> CgroupSupport:
        """Read the host's cgroup v1 (or v2) files. Blocking: at daemon start."""
        def has(*paths: str) -> bool:
            return any(os.path.exists(os.path.join(root, p)) for p in paths)

        if has("cgroup.controllers"):  # v2: one tree; no swappiness, no rt, io.weight for weights
            return cls(_read(root, "cpuset.cpus.effective"), _read(root, "cpuset.mems.effective"),
                       has("io.weight", "io.bfq.weight"), has("io.weight", "io.bfq.weight"), True, True, False, False)
        weight = has("blkio/blkio.weight", "blkio/blkio.bfq.weight")
        return cls(_read(root, "cpuset/cpuset.cpus"), _read(root, "cpuset/cpuset.mems"), weight,
                   has("blkio/blkio.weight_device", "blkio/blkio.bfq.weight_device"),
                   has("blkio/blkio.throttle.read_bps_device"), has("memory/memory.soft_limit_in_bytes"),
                   has("memory/memory.swappiness"), has("cpu/cpu.rt_runtime_us"))


def _read(root: str, name: str) -> str:
    try:
        with open(os.path.join(root, name)) as f:
            return f.read(4096).strip()
    except OSError:
        return ""


def _available(text: str) -> frozenset[int] | None:
    return hr.parse_cpuset(text) if text else None


def _given(host: HostConfig) -> list[str]:
    """The knobs *host* sets (a value other than zero, empty or null)."""
    out = [k for k in FIELDS if host.extra.get(k) not in (None, 0, "", [], {})]
    if host.extra.get("CgroupnsMode") == "private":
        out.append("CgroupnsMode")
    out += [k for k in ("MaskedPaths", "ReadonlyPaths") if host.extra.get(k) is not None]
    if host.memory_swappiness not in (None, -1):
        out.insert(out.index("BlkioWeight") if "BlkioWeight" in out else len(out), "MemorySwappiness")
    return out


def _list(host: HostConfig, key: str) -> list[Any]:
    value = host.extra.get(key) or []
    if len(value) > LIST_MAX:
        raise InvalidArgument(f"HostConfig.{key}: {len(value)} entries, more than the {LIST_MAX} berth takes")
    return list(value)


def check_create(host: HostConfig, isolation: str, runtime: str, network: str,
                 support: CgroupSupport) -> list[str]:
    """Check the knobs of a create, for a container run under *runtime* with *isolation* and *network*.

    Returns:
        Docker's create Warnings (a knob this host's cgroups lack, KernelMemory's deprecation).

    Raises:
        InvalidArgument: a value Docker refuses (in Docker's words), or a knob the isolation cannot
            apply ("HostConfig.Ulimits is not applied in a VM-isolated container ...").
    """
    extra = host.extra
    hr.ulimits(_list(host, "Ulimits"))
    hr.shm_size(extra.get("ShmSize"))
    if len(extra.get("Sysctls") or {}) > LIST_MAX:
        raise InvalidArgument(f"HostConfig.Sysctls: more than the {LIST_MAX} berth takes")
    hr.sysctls(extra.get("Sysctls"), network, host.ipc_mode)
    hr.oom_score_adj(extra.get("OomScoreAdj"))
    hr.cpuset(extra.get("CpusetCpus"), "cpus", _available(support.cpus), support.cpus)
    hr.cpuset(extra.get("CpusetMems"), "mems", _available(support.mems), support.mems)
    hr.memory_reservation(extra.get("MemoryReservation"), host.memory)
    hr.memory_swappiness(host.memory_swappiness)
    hr.blkio_weight(extra.get("BlkioWeight"))
    if (extra.get("KernelMemoryTCP") or 0) < 0:
        raise InvalidArgument(f"invalid KernelMemoryTCP: {extra['KernelMemoryTCP']} must not be negative")
    hr.realtime(extra.get("CpuRealtimePeriod"), extra.get("CpuRealtimeRuntime"))
    _cgroup_parent(extra.get("CgroupParent"))
    for rule in _list(host, "DeviceCgroupRules"):
        hr.device_cgroup_rule(rule)
    for d in _list(host, "Devices"):
        _device_request(d)
    for key, _ in _THROTTLES:
        for item in _list(host, key):
            _rate(item, key)
    for item in _list(host, "BlkioWeightDevice"):
        _rate(item, "BlkioWeightDevice")
    _cgroupns(extra.get("CgroupnsMode"))
    hr.resolv_words(extra.get("DnsSearch"), "DnsSearch")
    hr.resolv_words(extra.get("DnsOptions"), "DnsOptions")
    hr.paths(extra.get("MaskedPaths"), "MaskedPaths")
    hr.paths(extra.get("ReadonlyPaths"), "ReadonlyPaths")
    hr.annotation_pairs(extra.get("Annotations"))
    if extra.get("UsernsMode") not in (None, "", "host", "private"):  # berth has no user-namespace remapping
        raise InvalidArgument(f"invalid USER mode: {str(extra['UsernsMode'])[:64]} (use host)")
    if extra.get("Cgroup"):
        raise InvalidArgument(f"HostConfig.Cgroup {str(extra['Cgroup'])[:64]!r}: berth cannot join another "
                              "container's cgroup; leave it empty")
    driver = extra.get("VolumeDriver")
    named = [b for b in host.binds or [] if not str(b).startswith("/")] + \
        [m for m in host.mounts or [] if isinstance(m, dict) and m.get("Type", "volume") == "volume"]
    if driver not in (None, "", "local") and named:  # as Docker: the driver matters once a volume needs it
        raise InvalidArgument(f'error looking up volume plugin {str(driver)[:64]}: plugin "{str(driver)[:64]}" '
                              "not found (berth has the local volume driver only)")
    if extra.get("StorageOpt"):  # Docker's words: berth's overlay has no per-container quota
        raise InvalidArgument("--storage-opt is supported only for overlay over xfs with 'pquota' mount option")
    given = _given(host)
    if isolation == "hyperv":
        for key in given:
            raise InvalidArgument(
                f"HostConfig.{key} is not applied in a VM-isolated container (--isolation hyperv): its VM "
                "is sized from Memory and NanoCpus only; drop the option, or run it with --isolation process")
    if runtime == "runsc":
        for key in given:
            if key in RUNSC_REFUSED:
                raise InvalidArgument(_RUNSC_REFUSAL.format(key=key))
    return _warnings(host, support)


_RUNSC_REFUSAL = ("HostConfig.{key} is not applied under gVisor (--runtime runsc): berth runs runsc without "
                  "cgroups (--ignore-cgroups), and its sandbox has no host devices nor the spec's sysctls; drop "
                  "the option, or run the container with --runtime runc")


def check_update(host: HostConfig) -> None:
    """The updatable knobs of *host* (a container's HostConfig with an update applied), in Docker's words.

    Raises:
        InvalidArgument: a malformed cpuset, a reservation above the memory limit, a weight out of range.
    """
    extra = host.extra
    given = [k for k in UPDATABLE if extra.get(k)]
    if given and host.runtime == "runsc":
        raise InvalidArgument(_RUNSC_REFUSAL.format(key=given[0]))
    if given and host.vm:
        raise InvalidArgument(f"HostConfig.{given[0]} is not applied in a VM-isolated container: its VM is sized "
                              "from Memory and NanoCpus only")
    hr.cpuset(extra.get("CpusetCpus"), "cpus")
    hr.cpuset(extra.get("CpusetMems"), "mems")
    hr.memory_reservation(extra.get("MemoryReservation"), host.memory)
    hr.blkio_weight(extra.get("BlkioWeight"))
    hr.realtime(extra.get("CpuRealtimePeriod"), extra.get("CpuRealtimeRuntime"))


def update_warnings(given: tuple[tuple[str, object], ...], support: CgroupSupport) -> list[str]:
    """Docker's Warnings for an update's knobs this host's cgroups lack (dropped, as dockerd drops them)."""
    return _warnings(HostConfig(extra=dict(given)), support)


def _warnings(host: HostConfig, support: CgroupSupport) -> list[str]:
    """Docker's words for a knob the host cannot apply (it is then dropped at start, as dockerd drops it)."""
    extra, out = host.extra, []
    if extra.get("KernelMemory"):
        out.append(hr.KERNEL_MEMORY_WARNING)
    if extra.get("KernelMemoryTCP"):
        out.append(hr.KERNEL_MEMORY_TCP_WARNING)
    if extra.get("MemoryReservation") and not support.memory_reservation:
        out.append("Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. "
                   "Reservation discarded.")
    if host.memory_swappiness not in (None, -1) and not support.memory_swappiness:
        out.append("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. "
                   "Memory swappiness discarded.")
    if extra.get("BlkioWeight") and not support.blkio_weight:
        out.append("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.")
    if extra.get("BlkioWeightDevice") and not support.blkio_weight_device:
        out.append("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. "
                   "Weight-device discarded.")
    if any(extra.get(k) for k, _ in _THROTTLES) and not support.blkio_throttle:
        out.append("Your kernel does not support Block I/O throttling or the cgroup is not mounted. "
                   "Block I/O limits discarded.")
    if (extra.get("CpuRealtimePeriod") or extra.get("CpuRealtimeRuntime")) and not support.cpu_realtime:
        raise InvalidArgument("Your kernel does not support CPU real-time scheduler: drop --cpu-rt-period "
                              "and --cpu-rt-runtime")
    return out


def _cgroup_parent(value: Any) -> str:
    if not value:
        return ""
    if not isinstance(value, str) or "\0" in value or len(value) > 1024 or ".." in value.split("/"):
        raise InvalidArgument(f"invalid CgroupParent {str(value)[:64]!r}: a cgroup path such as /mygroup, "
                              "without '..'")
    return posixpath.normpath("/" + value.strip("/"))


def cgroups_path(host: HostConfig, cid: str) -> str:
    """The container's cgroup: /berth/<id>, or <CgroupParent>/<id> as Docker's cgroupfs driver places it."""
    parent = _cgroup_parent(host.extra.get("CgroupParent")) or "/berth"
    return posixpath.join(parent, cid)


def _device_request(d: Any) -> tuple[str, str, str]:
    if not isinstance(d, dict) or not isinstance(d.get("PathOnHost") or "", str):
        raise InvalidArgument("HostConfig.Devices: expected objects with PathOnHost, PathInContainer and "
                              "CgroupPermissions")
    host_path = d.get("PathOnHost") or ""
    inside = d.get("PathInContainer") or host_path
    if not isinstance(inside, str) or not posixpath.isabs(host_path) or not posixpath.isabs(inside) \
            or "\0" in host_path + inside or len(host_path) > 4096 or len(inside) > 4096 \
            or posixpath.normpath(inside) == "/":
        raise InvalidArgument(f"HostConfig.Devices: {str(host_path)[:256]!r} and {str(inside)[:256]!r}: "
                              "a device's paths must be absolute (--device /dev/sdb:/dev/xvdb:rwm)")
    return host_path, posixpath.normpath(inside), hr.device_access(d.get("CgroupPermissions"), host_path)


def _rate(item: Any, key: str) -> tuple[str, int]:
    value_key = "Weight" if key == "BlkioWeightDevice" else "Rate"
    path = item.get("Path") if isinstance(item, dict) else None
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path or len(path) > 4096:
        raise InvalidArgument(f"HostConfig.{key}: expected objects with an absolute Path and a {value_key}")
    value = item.get(value_key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 1 << 64:
        raise InvalidArgument(f"HostConfig.{key}: invalid {value_key} {value!r} for {path[:256]}")
    if key == "BlkioWeightDevice":
        hr.blkio_weight(value, "blkio weight device")
    return path, value


def resources(base: runtime_spec.Resources, host: HostConfig, support: CgroupSupport,
              block_devices: bool = False) -> runtime_spec.Resources:
    """*base* with the knobs' limits (the unsupported ones dropped, as warned at create).

    *block_devices*: resolve the Blkio*Device paths (a stat each: blocking); without it they are left
    out (`docker update` changes none of them).
    """
    extra = host.extra
    out: dict[str, Any] = {  # checked against the host's cpuset again: `docker update` comes here first
        "cpuset_cpus": hr.cpuset(extra.get("CpusetCpus"), "cpus", _available(support.cpus), support.cpus),
        "cpuset_mems": hr.cpuset(extra.get("CpusetMems"), "mems", _available(support.mems), support.mems),
        "cpu_rt_period": extra.get("CpuRealtimePeriod") or 0, "cpu_rt_runtime": extra.get("CpuRealtimeRuntime") or 0,
    }
    if support.memory_reservation:
        out["memory_reservation"] = extra.get("MemoryReservation") or 0
    if support.memory_swappiness and host.memory_swappiness not in (None, -1):
        out["memory_swappiness"] = host.memory_swappiness
    weight = extra.get("BlkioWeight") or 0 if support.blkio_weight else 0
    if block_devices:
        out["blkio"] = blkio(host, support, weight)
    elif weight:
        out["blkio"] = hr.BlockIO(weight=weight)
    return dataclasses.replace(base, **out)


def check_realtime_budget(host: HostConfig, root: str = CGROUP) -> None:
    """Refuse a real-time runtime the container's parent cgroup cannot give (v1: the kernel refuses a
    child more than its parent's cpu.rt_runtime_us, and a new cgroup has none). Blocking.

    Raises:
        InvalidArgument: naming the parent, its budget and what to do.
    """
    wanted = host.extra.get("CpuRealtimeRuntime") or 0
    if not wanted or not os.path.isdir(os.path.join(root, "cpu")):
        return
    parent = posixpath.dirname(cgroups_path(host, "x"))
    text = _read(os.path.join(root, "cpu"), parent.lstrip("/") + "/cpu.rt_runtime_us")
    budget = int(text) if text.lstrip("-").isdigit() else 0
    if budget != -1 and wanted > budget:
        raise InvalidArgument(
            f"CpuRealtimeRuntime {wanted}: the container's parent cgroup {parent} has a real-time budget of "
            f"{budget} microseconds (cpu.rt_runtime_us); give it one (write it to "
            f"{root}/cpu{parent}/cpu.rt_runtime_us) or drop --cpu-rt-runtime")


def blkio(host: HostConfig, support: CgroupSupport, weight: int) -> hr.BlockIO:
    """The BlockIO of *host*, each device path resolved to its major:minor. Blocking.

    Raises:
        InvalidArgument: a path that is not a block device on this host.
    """
    rates: dict[str, tuple[hr.DeviceRate, ...]] = {}
    for key, name in (*_THROTTLES, ("BlkioWeightDevice", "weight_devices")):
        if not (support.blkio_weight_device if key == "BlkioWeightDevice" else support.blkio_throttle):
            continue
        items = []
        for item in _list(host, key):
            path, value = _rate(item, key)
            st = _stat(path, f"HostConfig.{key}")
            if not stat.S_ISBLK(st.st_mode):
                raise InvalidArgument(f"HostConfig.{key}: {path[:256]} is not a block device; give a host block "
                                      "device (such as /dev/vda)")
            items.append(hr.DeviceRate(os.major(st.st_rdev), os.minor(st.st_rdev), value))
        rates[name] = tuple(items)
    return hr.BlockIO(weight=weight, **rates)


def _stat(path: str, where: str) -> os.stat_result:
    try:
        return os.stat(path)  # a host path the user named (a host device, by design)
    except OSError as exc:
        raise InvalidArgument(f"{where}: error gathering device information for {path[:256]!r}: "
                              f"{exc.strerror.lower() if exc.strerror else exc}") from exc


def devices(host: HostConfig) -> tuple[tuple[runtime_spec.Device, ...], tuple[hr.DeviceRule, ...]]:
    """HostConfig.Devices as device nodes (with the host node's mode and owner, as Docker) and their
    cgroup rules, then DeviceCgroupRules. Blocking.

    Raises:
        InvalidArgument: 'error gathering device information while adding custom device "/etc/passwd":
            not a device node'.
    """
    nodes, rules = [], []
    for d in _list(host, "Devices"):
        host_path, inside, access = _device_request(d)
        st = _stat(host_path, f'error gathering device information while adding custom device "{host_path[:256]}"')
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise InvalidArgument(f'error gathering device information while adding custom device '
                                  f'"{host_path[:256]}": not a device node')
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        nodes.append(runtime_spec.Device(inside, kind, major, minor, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
        rules.append(hr.DeviceRule(kind, major, minor, access))
    rules += [hr.device_cgroup_rule(r) for r in _list(host, "DeviceCgroupRules")]
    return tuple(nodes), tuple(rules)


def process(spec: runtime_spec.ContainerSpec, host: HostConfig, network: str) -> runtime_spec.ContainerSpec:
    """*spec* with the process knobs (checked at create; checked again here, for a record written by an
    older berth)."""
    extra = host.extra
    return dataclasses.replace(
        spec, rlimits=hr.ulimits(_list(host, "Ulimits")), shm_size=hr.shm_size(extra.get("ShmSize")),
        sysctl=hr.sysctls(extra.get("Sysctls"), network, host.ipc_mode),
        oom_score_adj=hr.oom_score_adj(extra.get("OomScoreAdj")), cgroup_ns=_cgroupns(extra.get("CgroupnsMode")),
        masked_paths=hr.paths(extra.get("MaskedPaths"), "MaskedPaths"),
        readonly_paths=hr.paths(extra.get("ReadonlyPaths"), "ReadonlyPaths"),
        annotations=spec.annotations + hr.annotation_pairs(extra.get("Annotations")))


def _cgroupns(value: Any) -> bool:
    """--cgroupns: "private" is a namespace of its own; "host" (and "", the default on cgroup v1) the host's."""
    if value in (None, "", "host", "private"):
        return value == "private"
    raise InvalidArgument(f"invalid cgroup namespace mode: {str(value)[:64]} (use host or private)")
