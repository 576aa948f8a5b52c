"""More `run`/`create` flags: the HostConfig and Config fields beyond runopts' core set.

Strategy: pure. `add_extra_flags` declares docker's spelling of each flag;
`apply_extra` copies what was given into the create body (Config) and its
HostConfig, only when given, so the daemon's defaults stay in charge otherwise.
Values that docker parses on the client side (sizes, ulimits, sysctls, devices)
are parsed here with docker's error wording (InvalidArgument; the caller exits 125).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Mapping
from typing import Any

from berth.cli.parser import Parser, integer, typed
from berth.cli.units import ram_in_bytes
from berth.errors import InvalidArgument

_STRINGS = (  # flag, HostConfig field
    ("--ipc", "IpcMode"), ("--pid", "PidMode"), ("--uts", "UTSMode"), ("--userns", "UsernsMode"),
    ("--cgroupns", "CgroupnsMode"), ("--cgroup-parent", "CgroupParent"), ("--cpuset-cpus", "CpusetCpus"),
    ("--cpuset-mems", "CpusetMems"), ("--cidfile", "ContainerIDFile"),
)
_LISTS = (  # flag, HostConfig field
    ("--group-add", "GroupAdd"), ("--dns-search", "DnsSearch"), ("--dns-option", "DnsOptions"),
    ("--link", "Links"), ("--device-cgroup-rule", "DeviceCgroupRules"),
)
_SIZES = (("--shm-size", "ShmSize"), ("--memory-reservation", "MemoryReservation"),
          ("--kernel-memory", "KernelMemory"))
_INTS = (("--oom-score-adj", "OomScoreAdj"), ("--memory-swappiness", "MemorySwappiness"),
         ("--blkio-weight", "BlkioWeight"), ("--cpu-rt-period", "CpuRealtimePeriod"),
         ("--cpu-rt-runtime", "CpuRealtimeRuntime"))
# flags docker's CLI takes only for a daemon on Windows; berthd runs on Linux, so they are refused as docker's
# CLI refuses them for any Linux daemon (after parsing, exit 1)
_WINDOWS_ONLY = (("--cpu-count", "cpu_count"), ("--cpu-percent", "cpu_percent"),
                 ("--io-maxbandwidth", "io_maxbandwidth"), ("--io-maxiops", "io_maxiops"))
_GPU_KEYS = ("driver", "count", "device", "capabilities", "options")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_extra_flags(p: Parser) -> None:
    for flag, _ in _STRINGS:
        p.add_argument(flag, default=None)
    for flag, _ in _LISTS:
        p.add_argument(flag, action="append", default=[])
    for flag, _ in _SIZES:
        p.add_argument(flag, type=typed(flag, ram_in_bytes), default=None)
    for flag, _ in _INTS:
        p.add_argument(flag, type=typed(flag, integer), default=None)
    p.add_argument("--cpu-count", type=typed("--cpu-count", integer), default=None)
    p.add_argument("--cpu-percent", type=typed("--cpu-percent", integer), default=None)
    p.add_argument("--io-maxbandwidth", type=typed("--io-maxbandwidth", ram_in_bytes), default=None)
    p.add_argument("--io-maxiops", type=typed("--io-maxiops", integer), default=None)
    p.add_argument("--gpus", action="append", default=[], type=typed("--gpus", parse_gpus))
    p.add_argument("--link-local-ip", action="append", default=[])
    p.add_argument("--domainname", default=None)
    p.add_argument("--mac-address", default=None)
    p.add_argument("--ip6", default=None)
    p.add_argument("--sysctl", action="append", default=[])
    p.add_argument("--ulimit", action="append", default=[])
    p.add_argument("--device", action="append", default=[])
    p.add_argument("--storage-opt", action="append", default=[])
    p.add_argument("--annotation", action="append", default=[])
    p.add_argument("--label-file", action="append", default=[])
    p.add_argument("--volume-driver", default=None)
    p.add_argument("--blkio-weight-device", action="append", default=[])
    for flag in ("--device-read-bps", "--device-write-bps", "--device-read-iops", "--device-write-iops"):
        p.add_argument(flag, action="append", default=[])
    p.add_argument("--pull", default="missing")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--disable-content-trust", default="true")  # docker's default; berth never verifies signatures


def pull_policy(text: str) -> str:
    """--pull's value, checked as docker checks it (after parsing: not a flag error)."""
    if text not in ("missing", "always", "never"):
        raise InvalidArgument(f'invalid pull option: \'{text}\': must be one of "always", "missing" or "never"')
    return text


def _gpu_count(text: str) -> int:
    if text == "all":
        return -1
    try:
        return int(text, 10)
    except ValueError:
        raise InvalidArgument(f'invalid count ({text}): value must be either "all" or an integer: '
                              "invalid syntax") from None


def parse_gpus(text: str) -> dict[str, Any]:
    """One `--gpus` value (`all`, a count, or CSV of driver=, count=, device=, capabilities=, options=)
    as a HostConfig.DeviceRequests entry, with docker's defaults: one GPU, capability "gpu"."""
    if not text:
        raise InvalidArgument("EOF")  # what Go's CSV reader says of an empty value
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise InvalidArgument("EOF") from None
    request: dict[str, Any] = {"Driver": "", "Count": 0, "DeviceIDs": None, "Capabilities": None, "Options": {}}
    seen: set[str] = set()
    for item in fields:
        key, sep, value = item.partition("=")
        if key in seen:
            raise InvalidArgument(f"gpu request key '{key}' can be specified only once")
        seen.add(key)
        if not sep:
            seen.add("count")
            request["Count"] = _gpu_count(key)
        elif key not in _GPU_KEYS:
            raise InvalidArgument(f"unexpected key '{key}' in '{item}'")
        elif key == "driver":
            request["Driver"] = value
        elif key == "count":
            request["Count"] = _gpu_count(value)
        elif key == "device":
            request["DeviceIDs"] = value.split(",")
        elif key == "capabilities":
            request["Capabilities"] = [[*value.split(","), "gpu"]]
        else:
            request["Options"] = _pairs(next(csv.reader([value]), []), "--gpus")
    if "count" not in seen and request["DeviceIDs"] is None:
        request["Count"] = 1
    request["Capabilities"] = request["Capabilities"] or [["gpu"]]
    return request


def windows_only(ns: argparse.Namespace) -> str | None:
    """docker's refusal of the first Windows-only flag given, or None."""
    for flag, dest in _WINDOWS_ONLY:
        if getattr(ns, dest, None) is not None:
            return (f'"{flag}" is only supported on a Docker daemon running on windows, '
                    "but the Docker daemon is running on linux")
    return None


def parse_throttle(text: str, rate_is_size: bool) -> dict[str, Any]:
    """`path:rate` of --device-{read,write}-{bps,iops} (bps takes a size like 1mb) and path:weight."""
    path, sep, rate = text.rpartition(":")
    if not sep or not path.startswith("/"):
        raise InvalidArgument(f"bad format: {text}")
    try:
        value = ram_in_bytes(rate) if rate_is_size else int(rate)
    except (InvalidArgument, ValueError):
        raise InvalidArgument(f"invalid rate for device: {text}. The correct format is <device-path>:<number>"
                              f"{'[<unit>]' if rate_is_size else ''}") from None
    return {"Path": path, "Rate": value}


def parse_ulimit(text: str) -> dict[str, Any]:
    """`name=soft[:hard]` as {"Name", "Soft", "Hard"} (hard defaults to soft)."""
    name, sep, limits = text.partition("=")
    if not sep or not name:
        raise InvalidArgument(f"invalid ulimit argument: {text}")
    soft, _, hard = limits.partition(":")
    try:
        lo, hi = int(soft), int(hard or soft)
    except ValueError:
        raise InvalidArgument(f"invalid ulimit argument: {text}") from None
    if lo > hi:
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {lo} > {hi}")
    return {"Name": name, "Soft": lo, "Hard": hi}


def parse_device(text: str) -> dict[str, str]:
    """`host[:container][:perms]` as a HostConfig.Devices entry."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise InvalidArgument(f"invalid device specification: {text}")
    perms = "rwm"
    if len(parts) > 1 and set(parts[-1]) <= set("rwm") and parts[-1]:
        perms = parts.pop()
    inside = parts[1] if len(parts) > 1 else parts[0]
    return {"PathOnHost": parts[0], "PathInContainer": inside, "CgroupPermissions": perms}


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f'invalid argument "{item}" for "{flag}" flag: invalid key/value pair format')
        out[key] = value
    return out


def label_file_lines(text: str) -> list[str]:
    """The labels of a --label-file: one a line, blank lines and # comments skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def read_label_files(paths: list[str]) -> dict[str, str]:
    """The text of each --label-file (I/O; the CLI's own files, read as the user)."""
    out: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                out[path] = f.read(1 << 20)
        except OSError as exc:
            raise InvalidArgument(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
    return out


def apply_extra(ns: argparse.Namespace, body: dict[str, Any], host: dict[str, Any],
                label_files: Mapping[str, str] | None = None) -> None:
    """Copy the extra flags given in *ns* into *body* (Config) and *host* (HostConfig);
    *label_files* maps each --label-file to its text (read_label_files)."""
    pull_policy(ns.pull)
    for flag, key in _STRINGS + _SIZES + _INTS:
        value = getattr(ns, _dest(flag), None)
        if value is not None:
            host[key] = value
    for flag, key in _LISTS:
        values = getattr(ns, _dest(flag), None)
        if values:
            host[key] = list(values)
    if ns.gpus:
        host["DeviceRequests"] = list(ns.gpus)
    if ns.domainname:
        body["Domainname"] = ns.domainname
    if ns.mac_address:
        body["MacAddress"] = ns.mac_address
    if ns.sysctl:
        host["Sysctls"] = _pairs(ns.sysctl, "--sysctl")
    if ns.storage_opt:
        host["StorageOpt"] = _pairs(ns.storage_opt, "--storage-opt")
    if ns.annotation:
        host["Annotations"] = _pairs(ns.annotation, "--annotation")
    if ns.ulimit:
        host["Ulimits"] = [parse_ulimit(u) for u in ns.ulimit]
    if ns.device:
        host["Devices"] = [parse_device(d) for d in ns.device]
    if ns.volume_driver:
        host["VolumeDriver"] = ns.volume_driver
    if ns.blkio_weight_device:
        host["BlkioWeightDevice"] = [{"Path": t["Path"], "Weight": t["Rate"]}
                                     for t in (parse_throttle(w, False)
                                               for w in ns.blkio_weight_device)]
    for attr, key, sized in (("device_read_bps", "BlkioDeviceReadBps", True),
                             ("device_write_bps", "BlkioDeviceWriteBps", True),
                             ("device_read_iops", "BlkioDeviceReadIOps", False),
                             ("device_write_iops", "BlkioDeviceWriteIOps", False)):
        if getattr(ns, attr):
            host[key] = [parse_throttle(t, sized) for t in getattr(ns, attr)]
    if label_files:
        labels: dict[str, str] = {}
        for text in label_files.values():
            for line in label_file_lines(text):
                key, _, value = line.partition("=")
                labels[key] = value
        body["Labels"] = {**labels, **(body.get("Labels") or {})}
