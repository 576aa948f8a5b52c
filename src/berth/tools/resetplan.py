"""`berth system reset`, the pure part: what belongs to a data root, and in which order it goes.

Strategy: berth.tools.reset gathers facts from the host (argv lists from /proc, mountinfo, the
names in the root's directories, `nft list tables`, the network records) and acts; every decision
taken on those facts is a function here, with no I/O, so the unit tests drive it with canned
facts. Which processes are the root's (`mentions`), whether a berthd serves the root
(`berthd_root`), which directory names are container ids (`container_ids`), the order of the
unmounts (`unmount_order`), the bridges of the root's networks (`bridge_names`), its nftables
tables (`nft_table`, `nft_families`) and whether a directory is a data root at all
(`looks_like_root`) are decided here.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument
from berth.host.ifnames import veth_name
from berth.network import bridgeplan
from berth.network.record import NetworkRecord

DEFAULT_ROOT = "/var/lib/berth"  # berthd's --root default
DEFAULT_BRIDGE = "berth0"  # berthd's --bridge default
ROOT_MARKERS = frozenset({"berthd.pid", "berth.db", "containers", "snapshots", "blobs", "runtime"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_IFNAME_BAD = set("/: \t\n\"'\\")
_SYSTEM_DIRS = frozenset({"/", "/usr", "/etc", "/var", "/var/lib", "/home", "/root", "/tmp", "/boot", "/bin", "/sbin",
                          "/lib", "/lib64", "/opt", "/srv", "/run", "/proc", "/sys", "/dev", "/mnt", "/media"})


def nft_table(root: str) -> str:
    """The nftables table berthd uses for *root* (the same rule as berth.api.wiring.nft_table)."""
    if root == DEFAULT_ROOT:
        return "berth"
    return "berth_" + hashlib.sha256(root.encode()).hexdigest()[:8]


def check_root(root: str) -> str:
    """The absolute, normalised data root; raises InvalidArgument for a root that must never be reset."""
    if not root or "\0" in root:
        raise InvalidArgument("--root must name the data root directory, e.g. /var/lib/berth")
    path = "/" + os.path.normpath(os.path.abspath(root)).lstrip("/")  # POSIX keeps a leading "//"
    if path in _SYSTEM_DIRS:
        raise InvalidArgument(f"refusing to reset {path}: it is a system directory, not a berth data root")
    return path


def looks_like_root(entries: Iterable[str]) -> bool:
    """Does a directory holding *entries* look like a berth data root (what berthd makes in one)?"""
    return bool(ROOT_MARKERS & set(entries))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def mentions(argv: Sequence[str], root: str) -> bool:
    """Does a command line name *root* or a path below it (as an argument, or after `=`, `:` or `,`)?

    A path that only starts with the same characters (/var/lib/berth2 for /var/lib/berth) does not count.
    """
    pattern = re.compile(r"(?:^|[=:,\s])" + re.escape(root.rstrip("/")) + r"(?:/|$|[,:\s])")
    return any(pattern.search(arg) for arg in argv)


def berthd_root(argv: Sequence[str]) -> str | None:
    """The data root a berthd command line serves (None when *argv* is not berthd's)."""
    head = [os.path.basename(a) for a in argv[:2]]
    is_module = len(argv) > 2 and argv[1] == "-m" and argv[2] == "berth.daemon"
    if "berthd" not in head and not is_module:
        return None
    root = DEFAULT_ROOT
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg == "--root" and i + 1 < len(args):
            root = args[i + 1]
        elif arg.startswith("--root="):
            root = arg.partition("=")[2]
    return os.path.normpath(root)


def container_ids(names: Iterable[str]) -> list[str]:
    """Container ids among directory entries: `<id>` (containers/, runc's state) or runsc's
    `<sandbox>_sandbox:<id>.state` and `.lock` files; anything else is ignored."""
    ids = {name.rpartition(":")[2].partition(".")[0] for name in names}
    return sorted(i for i in ids if _HEX64.fullmatch(i))


def unmount_order(points: Iterable[str], root: str) -> list[str]:
    """Mount points at or below *root*, deepest first (a mount stacked twice on one point is listed twice)."""
    under = [p for p in points if _under(p, root)]
    return sorted(under, key=lambda p: (p.rstrip("/").count("/"), p), reverse=True)


def valid_ifname(name: str) -> bool:
    return 0 < len(name) <= 15 and name not in (".", "..") and not (_IFNAME_BAD & set(name)) and name.isprintable()


def bridge_names(network_docs: Iterable[Mapping[str, Any]], given: str | None, root: str) -> list[str]:
    """The Linux bridges of the root's networks: each bridge network's (the default one's included),
    plus *given*; berthd's default bridge name for the default root when nothing else names one."""
    names: list[str] = []
    for doc in network_docs:
        try:
            net = NetworkRecord.from_doc(doc)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if net.driver == "bridge":
            names.append(bridgeplan.bridge_name(net))
    if given:
        names.append(given)
    if not names and root == DEFAULT_ROOT:
        names.append(DEFAULT_BRIDGE)
    out: list[str] = []
    for name in names:
        if valid_ifname(name) and name not in out:
            out.append(name)
    return out


def nft_families(listing: str, table: str) -> list[str]:
    """The families (ip, ip6, ...) in which `nft list tables` output has *table*."""
    out = []
    for line in listing.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table" and words[2] == table and words[1] not in out:
            out.append(words[1])
    return out


def is_port_to_remove(name: str, kind: str | None) -> bool:
    """A port of a berth bridge that reset deletes: a container's veth, a VM's tap, a pooled VM's tap."""
    return kind in ("veth", "tun") and name.startswith(("veth", "tap", "bp"))


def interface_names(ids: Iterable[str], network_ids: Iterable[str], socket_entries: Iterable[str]) -> list[str]:
    """The host interfaces the root's containers may have left: each container's veth (a process
    container) or tap (a VM) on each network, as berth names them, and each pooled VM's tap (its
    directory `p-<hex>` under the root's `s/`); taps outlive QEMU, so they are deleted by name."""
    names: list[str] = []
    nets = list(network_ids)
    for cid in ids:
        for nid in nets:
            veth = veth_name(cid, nid)
            names += [veth, "tap" + veth[len("veth"):]]
    for entry in socket_entries:
        if entry.startswith("p-") and re.fullmatch(r"[0-9a-f]{1,64}", entry[2:]):
            names.append("bp" + entry[2:][:12])
    return sorted(set(names))


@dataclass
class Outcome:
    """What a reset did (one line each, in order) and what it could not do."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        if not self.failed:
            return ""
        return ("berth system reset: could not remove everything:\n"
                + "\n".join(f"  - {line}" for line in self.failed))
