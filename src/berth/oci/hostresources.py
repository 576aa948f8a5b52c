"""The HostConfig knobs beyond memory/cpu/pids, as typed values and their config.json sections.

Strategy: pure, no I/O. Values from a create request (HostConfig's Ulimits, Sysctls, ShmSize,
OomScoreAdj, Cpuset*, MemoryReservation, MemorySwappiness, Blkio*, CpuRealtime*, Devices,
DeviceCgroupRules) are checked here in Docker's words and turned into runtime-spec sections.
Anything needing the host (a device path's major:minor, which CPUs exist, what the cgroup
hierarchy supports) is read by services.hostlimits and passed in as plain values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument

RLIM_INFINITY = (1 << 64) - 1  # an OCI rlimit is a uint64; Docker's -1 is the kernel's RLIM_INFINITY

#: Docker's (go-units') ulimit names.
RLIMITS: dict[str, str] = {name: "RLIMIT_" + name.upper() for name in (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack")}

#: The sysctls Docker lets a container set (namespaced ones): these names, and these prefixes.
SYSCTL_NAMES = frozenset(("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                          "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"))
SYSCTL_PREFIXES = ("net.", "fs.mqueue.")
_SYSCTL_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
SYSCTL_VALUE_MAX = 4096

SHM_DEFAULT = 64 << 20
MEMORY_MIN = 6 << 20
_CPUSET = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
CPUSET_MAX = 1 << 16  # more CPUs than any host has: a bound on the parse
_RULE = re.compile(r"([acb]) (\d+|\*):(\d+|\*) ([rwm]{1,3})")
_ACCESS = re.compile(r"[rwm]{1,3}")
KERNEL_MEMORY_WARNING = "Specifying a kernel memory limit is deprecated and will be removed in a future release."
# runc 1.1 ignores kernel memory limits (both): said at create, never passed to it
KERNEL_MEMORY_TCP_WARNING = ("KernelMemoryTCP is not applied: the OCI runtime (runc 1.1) ignores kernel memory "
                             "limits. Limit discarded.")


@dataclass(frozen=True, slots=True)
class Rlimit:
    type: str     # "RLIMIT_NOFILE"
    soft: int     # RLIM_INFINITY for unlimited
    hard: int


@dataclass(frozen=True, slots=True)
class DeviceRate:
    """A block device (its major:minor) and a rate (bytes or operations per second) or weight."""

    major: int
    minor: int
    rate: int


@dataclass(frozen=True, slots=True)
class BlockIO:
    weight: int = 0                        # 10-1000; 0 = the default
    weight_devices: tuple[DeviceRate, ...] = ()
    read_bps: tuple[DeviceRate, ...] = ()
    write_bps: tuple[DeviceRate, ...] = ()
    read_iops: tuple[DeviceRate, ...] = ()
    write_iops: tuple[DeviceRate, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceRule:
    """A device cgroup allow rule: kind "a", "b" or "c"; major/minor None = any."""

    kind: str
    major: int | None
    minor: int | None
    access: str

    def to_doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allow": True, "type": self.kind, "access": self.access}
        if self.major is not None:
            out["major"] = self.major
        if self.minor is not None:
            out["minor"] = self.minor
        return out


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{where}: expected an integer")
    return value


def ulimits(values: Any) -> tuple[Rlimit, ...]:
    """HostConfig.Ulimits ([{"Name", "Soft", "Hard"}]) as rlimits; -1 is unlimited.

    Raises:
        InvalidArgument: "invalid ulimit type: foo", or a soft limit above the hard one.
    """
    out: dict[str, Rlimit] = {}
    for item in values or []:
        if not isinstance(item, dict):
            raise InvalidArgument("HostConfig.Ulimits: expected objects with Name, Soft and Hard")
        name = item.get("Name") or ""
        if not isinstance(name, str) or name not in RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {str(name)[:64]} (use one of {', '.join(RLIMITS)})")
        soft, hard = _int(item.get("Soft") or 0, "HostConfig.Ulimits.Soft"), _int(item.get("Hard") or 0,
                                                                                  "HostConfig.Ulimits.Hard")
        for v in (soft, hard):
            if v < -1 or v >= 1 << 63:
                raise InvalidArgument(f"invalid ulimit value for {name}: {v} (use -1 for unlimited)")
        s = RLIM_INFINITY if soft == -1 else soft
        h = RLIM_INFINITY if hard == -1 else hard
        if s > h:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        out[name] = Rlimit(RLIMITS[name], s, h)  # a name given twice: the last one, as Docker's map
    return tuple(out.values())


def rlimits_section(given: tuple[Rlimit, ...], nofile_default: int) -> list[dict[str, int | str]]:
    """process.rlimits: the given ones, and Docker's RLIMIT_NOFILE when none is given for it."""
    out: list[dict[str, int | str]] = []
    if nofile_default and not any(r.type == "RLIMIT_NOFILE" for r in given):
        out.append({"type": "RLIMIT_NOFILE", "hard": nofile_default, "soft": nofile_default})
    out += [{"type": r.type, "hard": r.hard, "soft": r.soft} for r in given]
    return out


def sysctls(values: Any, network_mode: str, ipc_mode: str) -> tuple[tuple[str, str], ...]:
    """HostConfig.Sysctls, checked by Docker's rule: only namespaced ones, and only in the container's
    own namespace (*network_mode* "host": no net.*; *ipc_mode* "host": no kernel.* IPC ones).

    Raises:
        InvalidArgument: "sysctl 'vm.swappiness=10' is not allowed", naming what is.
    """
    out: list[tuple[str, str]] = []
    for name, value in (values or {}).items():
        if not isinstance(value, str):
            raise InvalidArgument(f"HostConfig.Sysctls[{name[:64]!r}]: expected a string")
        shown = f"{name[:128]}={value[:128]}"
        if not _SYSCTL_NAME.fullmatch(name) or len(value) > SYSCTL_VALUE_MAX or "\n" in value or "\0" in value:
            raise InvalidArgument(f"sysctl '{shown}' is not allowed: a malformed name or value")
        is_net = name.startswith("net.")
        if not (name in SYSCTL_NAMES or name.startswith(SYSCTL_PREFIXES)):
            raise InvalidArgument(
                f"sysctl '{shown}' is not allowed: a container may set only namespaced sysctls "
                "(net.*, fs.mqueue.*, kernel.msgmax, kernel.msgmnb, kernel.msgmni, kernel.sem, "
                "kernel.shmall, kernel.shmmax, kernel.shmmni, kernel.shm_rmid_forced)")
        if is_net and network_mode == "host":
            raise InvalidArgument(f'sysctl "{name}" not allowed in host network namespace: '
                                  "drop --network host, or the sysctl")
        if not is_net and ipc_mode == "host":
            raise InvalidArgument(f'sysctl "{name}" is not allowed in the hosts ipc namespace: '
                                  "drop --ipc host, or the sysctl")
        out.append((name, value))
    return tuple(out)


def shm_size(value: Any) -> int:
    """HostConfig.ShmSize in bytes (0 = Docker's 64 MiB).

    Raises:
        InvalidArgument: "SHM size can not be less than 0".
    """
    size = _int(value or 0, "HostConfig.ShmSize")
    if size < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    return size or SHM_DEFAULT


def oom_score_adj(value: Any) -> int:
    adj = _int(value or 0, "HostConfig.OomScoreAdj")
    if not -1000 <= adj <= 1000:
        raise InvalidArgument(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    return adj


def cpuset(text: Any, what: str, available: frozenset[int] | None = None, shown: str = "") -> str:
    """A cpuset list ("0-2,4") checked (and against *available*, when known); "" when not given.

    *what* is "cpus" or "mems"; *shown* is the available list as the host writes it.

    Raises:
        InvalidArgument: "Invalid value abc for cpuset cpus: invalid format: abc", or
            "Requested CPUs are not available - requested 5, available: 0-1".
    """
    if not text:
        return ""
    if not isinstance(text, str) or not _CPUSET.fullmatch(text):
        raise InvalidArgument(f"Invalid value {str(text)[:64]} for cpuset {what}: invalid format: {str(text)[:64]}")
    wanted: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if a > b or b >= CPUSET_MAX:
            raise InvalidArgument(f"Invalid value {text} for cpuset {what}: invalid range: {part}")
        wanted.update(range(a, b + 1))
    if available is not None and not wanted <= available:
        noun = "CPUs" if what == "cpus" else "memory nodes"
        raise InvalidArgument(f"Requested {noun} are not available - requested {text}, available: {shown}")
    return text


def parse_cpuset(text: str) -> frozenset[int]:
    """The host's own cpuset list ("0-1\\n") as a set; an unreadable one is empty."""
    out: set[int] = set()
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()) and int(hi or lo) < CPUSET_MAX:
            out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


def memory_reservation(value: Any, memory: int) -> int:
    reservation = _int(value or 0, "HostConfig.MemoryReservation")
    if reservation < 0:
        raise InvalidArgument(f"invalid MemoryReservation: {reservation} must not be negative")
    if 0 < reservation < MEMORY_MIN:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > memory:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    return reservation


def memory_swappiness(value: Any) -> int | None:
    """0-100, or None (-1 or not given: the host's)."""
    if value is None or value == -1:
        return None
    swappiness = _int(value, "HostConfig.MemorySwappiness")
    if not 0 <= swappiness <= 100:
        raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    return swappiness


def blkio_weight(value: Any, where: str = "blkio weight") -> int:
    weight = _int(value or 0, f"HostConfig.{where}")
    if weight and not 10 <= weight <= 1000:
        raise InvalidArgument(f"Range of {where} is from 10 to 1000")
    return weight


def realtime(period: Any, runtime: Any) -> tuple[int, int]:
    p, r = _int(period or 0, "HostConfig.CpuRealtimePeriod"), _int(runtime or 0, "HostConfig.CpuRealtimeRuntime")
    if p < 0 or r < 0:
        raise InvalidArgument("cpu real-time period and runtime must not be negative")
    if p and r > p:
        raise InvalidArgument("cpu real-time runtime cannot be higher than cpu real-time period")
    return p, r


def device_cgroup_rule(text: Any) -> DeviceRule:
    """One DeviceCgroupRules entry, "c 1:3 rwm" ("*" for any major or minor; "a" for any kind).

    Raises:
        InvalidArgument: "invalid device cgroup rule format: 'x 1:2 rwm'".
    """
    m = _RULE.fullmatch(text) if isinstance(text, str) else None
    if m is None or len(set(m.group(4))) != len(m.group(4)):
        raise InvalidArgument(f"invalid device cgroup rule format: '{str(text)[:64]}' "
                              "(expected TYPE MAJOR:MINOR ACCESS, as 'c 1:3 rwm')")
    major = None if m.group(2) == "*" else int(m.group(2))
    minor = None if m.group(3) == "*" else int(m.group(3))
    return DeviceRule(m.group(1), major, minor, m.group(4))


def device_access(text: Any, path: str) -> str:
    """A Devices entry's CgroupPermissions ("" = rwm)."""
    access = text or "rwm"
    if not isinstance(access, str) or not _ACCESS.fullmatch(access) or len(set(access)) != len(access):
        raise InvalidArgument(f"invalid device mode {str(access)[:16]!r} for {path[:256]}: use r, w and m")
    return access


def rates_section(rates: tuple[DeviceRate, ...], key: str) -> list[dict[str, int]]:
    return [{"major": d.major, "minor": d.minor, key: d.rate} for d in rates]


def blockio_section(b: BlockIO) -> dict[str, Any]:
    """linux.resources.blockIO ({} when nothing is asked)."""
    out: dict[str, Any] = {}
    if b.weight:
        out["weight"] = b.weight
    if b.weight_devices:
        out["weightDevice"] = rates_section(b.weight_devices, "weight")
    for key, rates in (("throttleReadBpsDevice", b.read_bps), ("throttleWriteBpsDevice", b.write_bps),
                       ("throttleReadIOPSDevice", b.read_iops), ("throttleWriteIOPSDevice", b.write_iops)):
        if rates:
            out[key] = rates_section(rates, "rate")
    return out


def paths(values: object, key: str) -> tuple[str, ...] | None:
    """HostConfig.MaskedPaths or ReadonlyPaths: None (not given: Docker's list), or absolute paths.

    Raises:
        InvalidArgument: a relative path, or too many.
    """
    if values is None:
        return None
    if not isinstance(values, list) or len(values) > 256:
        raise InvalidArgument(f"HostConfig.{key}: expected at most 256 absolute paths")
    for p in values:
        if not isinstance(p, str) or not p.startswith("/") or "\0" in p or len(p) > 4096:
            raise InvalidArgument(f"HostConfig.{key}: {str(p)[:256]!r} is not an absolute path")
    return tuple(values)


def annotation_pairs(values: object) -> tuple[tuple[str, str], ...]:
    """HostConfig.Annotations, for the runtime's config (bounded; gVisor's own keys refused: they would
    configure the sandbox).

    Raises:
        InvalidArgument: too many, too long, or a reserved key.
    """
    items = values or {}
    if not isinstance(items, dict) or len(items) > 64:
        raise InvalidArgument("HostConfig.Annotations: expected at most 64 string pairs")
    for k, v in items.items():
        if not isinstance(v, str) or not k or len(k) > 256 or len(v) > 4096:
            raise InvalidArgument(f"HostConfig.Annotations: invalid annotation {k[:64]!r}")
        if k.startswith(("dev.gvisor.", "io.berth.")):
            raise InvalidArgument(f"HostConfig.Annotations: {k[:64]!r} is reserved (it would configure the "
                                  "runtime, not describe the container)")
    return tuple(sorted(items.items()))


def resolv_words(values: object, key: str) -> tuple[str, ...]:
    """HostConfig.DnsSearch or DnsOptions: words for one resolv.conf line (no blanks, bounded).

    Raises:
        InvalidArgument: a word with a blank or a line break in it, or too many.
    """
    words = values or []
    if not isinstance(words, list) or len(words) > 64:
        raise InvalidArgument(f"HostConfig.{key}: expected at most 64 strings")
    for w in words:
        if not isinstance(w, str) or not w or len(w) > 253 or any(c.isspace() or c == "\0" for c in w):
            raise InvalidArgument(f"HostConfig.{key}: invalid entry {str(w)[:64]!r} (one word each, as "
                                  f"{'example.com' if key == 'DnsSearch' else 'ndots:2'})")
    return tuple(words)


def with_resolv_words(resolv: str, search: tuple[str, ...], options: tuple[str, ...]) -> str:
    """*resolv* (resolv.conf's text) with its search and options lines replaced by the given ones, as Docker
    writes --dns-search and --dns-option (a search of "." alone means no search line)."""
    if not search and not options:
        return resolv
    lines = resolv.splitlines()
    if search:
        lines = [ln for ln in lines if ln.split()[:1] not in (["search"], ["domain"])]
        if search != (".",):
            lines.append("search " + " ".join(search))
    if options:
        lines = [ln for ln in lines if ln.split()[:1] != ["options"]]
        lines.append("options " + " ".join(options))
    return "".join(line + "\n" for line in lines)
