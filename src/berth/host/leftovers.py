"""What a data root leaves on the host, found and removed: processes, cgroups, bridge ports.

Strategy: small synchronous functions for `berth system reset` (berth.tools.reset), which runs
as a command of its own, never in berthd's event loop. Processes are read from /proc with
bounded reads (a command line is cut at CMDLINE_LIMIT bytes); cgroups are the `berth/<id>`
directories runc and the VM monitor make under every hierarchy; links are looked at and
deleted through one rtnetlink socket per call (host.rtnetlink). Nothing here decides what
belongs to a root: the caller says which ids, paths and names (berth.tools.resetplan).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.host.ifnames import check_ifname
from berth.host.rtnetlink import link_index, rtnl

CGROUP_ROOT = Path("/sys/fs/cgroup")
CMDLINE_LIMIT = 64 * 1024  # bytes of /proc/PID/cmdline read
_CID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Process:
    pid: int
    argv: tuple[str, ...]
    root: str  # where /proc/PID/root points ("" when unreadable)

    @property
    def name(self) -> str:
        return os.path.basename(self.argv[0]) if self.argv else f"pid {self.pid}"


def _read(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return b""


def processes() -> list[Process]:
    """Every process on the host (kernel threads have an empty argv)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        raw = _read(f"/proc/{entry}/cmdline", CMDLINE_LIMIT)
        argv = tuple(p.decode(errors="replace") for p in raw.split(b"\0") if p)
        try:
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            root = ""
        out.append(Process(int(entry), argv, root))
    return out


def ancestors(pid: int) -> set[int]:
    """*pid* and every process above it up to init (never to be killed by the process itself)."""
    seen = {pid}
    while pid > 1:
        stat = _read(f"/proc/{pid}/stat", 4096)
        try:
            pid = int(stat[stat.rfind(b")") + 2:].split()[1])
        except (ValueError, IndexError):
            break
        if pid in seen:
            break
        seen.add(pid)
    return seen


def kill(pid: int) -> bool:
    """SIGKILL *pid*; False when it was already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def cgroup_dirs(cid: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """The container's `berth/<id>` cgroup directories that exist, on every hierarchy (v1 and v2)."""
    if not _CID.fullmatch(cid):
        return []
    found = []
    if (root / "berth" / cid).is_dir():
        found.append(root / "berth" / cid)
    try:
        hierarchies = sorted(os.listdir(root))
    except OSError:
        return found
    for name in hierarchies:
        d = root / name / "berth" / cid
        if not (root / name).is_symlink() and d.is_dir():  # cpu,cpuacct links to cpu: list it once
            found.append(d)
    return found


def cgroup_pids(directory: Path) -> list[int]:
    """The processes in a cgroup and the cgroups below it."""
    pids: list[int] = []
    for d, _, _ in os.walk(directory):
        for line in _read(os.path.join(d, "cgroup.procs"), 1 << 20).split():
            with contextlib.suppress(ValueError):
                pids.append(int(line))
    return pids


def thaw(directory: Path) -> bool:
    """Thaw a v1 freezer cgroup (a frozen process cannot die of SIGKILL); True when it was frozen."""
    state = directory / "freezer.state"
    if not state.exists() or _read(str(state), 64).strip() == b"THAWED":
        return False
    with contextlib.suppress(OSError):
        state.write_text("THAWED\n")
    return True


def remove_cgroup(directory: Path) -> list[Path]:
    """rmdir *directory* and the cgroups below it, deepest first; returns those still there (busy)."""
    left = []
    for d, _, _ in sorted(os.walk(directory), key=lambda t: t[0].count("/"), reverse=True):
        try:
            os.rmdir(d)
        except FileNotFoundError:
            continue
        except OSError:
            left.append(Path(d))
    return left


def remove_parent_if_empty(root: Path = CGROUP_ROOT) -> None:
    """Remove the shared `berth` cgroup directories once nothing is in them (runc makes them again)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            if name == "berth":
                with contextlib.suppress(OSError):
                    os.rmdir(root / name)
            elif (root / name / "berth").is_dir() and not (root / name).is_symlink():
                with contextlib.suppress(OSError):
                    os.rmdir(root / name / "berth")


def _kind(ipr: Any, index: int) -> str | None:
    link = ipr.get_links(index)[0]
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def link_kind(name: str) -> str | None:
    """The kind of the interface *name* ("bridge", "veth", "tun", ...; "" for a plain device), None when absent."""
    check_ifname(name)
    with rtnl(f"look up interface {name}") as ipr:
        index = link_index(ipr, name)
        if index is None:
            return None
        return _kind(ipr, index) or ""


def bridge_ports(name: str) -> list[tuple[str, str | None]]:
    """The interfaces enslaved to the bridge *name*, with their kinds."""
    check_ifname(name)
    with rtnl(f"list the ports of {name}") as ipr:
        index = link_index(ipr, name)
        if index is None:
            return []
        out = []
        for link in ipr.get_links():
            if link.get_attr("IFLA_MASTER") == index:
                info = link.get_attr("IFLA_LINKINFO")
                out.append((str(link.get_attr("IFLA_IFNAME")),
                            info.get_attr("IFLA_INFO_KIND") if info is not None else None))
        return out


def delete_link(name: str) -> None:
    """Delete the interface *name* (a veth's peer goes with it); fine when it is gone."""
    check_ifname(name)
    with rtnl(f"delete interface {name}") as ipr:
        index = link_index(ipr, name)
        if index is not None:
            ipr.link("del", index=index)
