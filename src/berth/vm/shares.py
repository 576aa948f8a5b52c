"""How a VM-isolated container's mounts reach its guest: 9p shares, staged files, guest tmpfs.

Strategy: pure planning. Directory binds become 9p shares of their own
(read-only ones exported read-only by QEMU); single files cannot be 9p
shares, so each is staged (hard-linked, or bind-mounted by the shim) into a
stage directory that is shared instead, and bind-mounted over its
destination inside the guest; tmpfs mounts are made by the guest. The
generated /etc files are copied into the root. Share tags are s0, s1, ... in
a fixed order, and `pad` rounds the count up (berth.vm.sizing.share_slots) so
similar containers clone the same template. `guest_script` is the busybox
shell the guest runs, after the root is mounted, to put everything in place.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.vm.sizing import share_slots

ETC_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
STAGE_ROOT = "/run/berth"  # in the guest's own root (tmpfs), outside the container's
NINEP_OPTIONS = "trans=virtio,version=9p2000.L,msize=262144,access=client"
TMPFS_OPTIONS = ("size=", "mode=", "nr_inodes=", "uid=", "gid=")
TMPFS_FLAGS = ("ro", "rw", "nosuid", "nodev", "noexec", "suid", "dev", "exec")


@dataclass(frozen=True, slots=True)
class DirShare:
    tag: str
    source: Path
    destination: str
    readonly: bool


@dataclass(frozen=True, slots=True)
class FileBind:
    stage_tag: str
    name: str  # the file's name inside its stage directory
    source: Path
    destination: str
    readonly: bool


@dataclass(frozen=True, slots=True)
class Tmpfs:
    destination: str
    options: str


@dataclass(frozen=True, slots=True)
class Plan:
    dirs: tuple[DirShare, ...] = ()
    files: tuple[FileBind, ...] = ()
    stages: tuple[tuple[str, bool], ...] = ()  # (tag, readonly) of each stage directory
    tmpfs: tuple[Tmpfs, ...] = ()
    copies: tuple[tuple[Path, str], ...] = ()  # (host file, destination) copied into the root
    skipped: tuple[str, ...] = ()  # why some mounts were left out

    @property
    def readonly_tags(self) -> frozenset[str]:
        return frozenset([d.tag for d in self.dirs if d.readonly] + [t for t, ro in self.stages if ro])

    def share_count(self) -> int:
        return len(self.dirs) + len(self.stages)


def plan(mounts: Sequence[Mapping[str, Any]], kind: Callable[[Path], str]) -> Plan:
    """Plan the OCI *mounts*; *kind(path)* says "dir", "file" or "missing" for a bind's source."""
    dirs: list[DirShare] = []
    files: list[tuple[Path, str, bool]] = []
    tmpfs: list[Tmpfs] = []
    copies: list[tuple[Path, str]] = []
    skipped: list[str] = []
    for m in mounts:
        dest = posixpath.normpath(str(m.get("destination", "")))
        options = [str(o) for o in m.get("options") or []]
        ro = "ro" in options
        if m.get("type") == "tmpfs":
            if not dest.startswith("/dev") and dest not in ("/proc", "/sys"):
                keep = [o for o in options if o in TMPFS_FLAGS or o.startswith(TMPFS_OPTIONS)]
                tmpfs.append(Tmpfs(dest, ",".join(keep)))
            continue
        if m.get("type") != "bind":
            continue
        src = Path(str(m.get("source", "")))
        what = kind(src)
        if what == "file" and dest in ETC_FILES:
            copies.append((src, dest))
        elif what == "dir":
            dirs.append(DirShare(f"s{len(dirs)}", src, dest, ro))
        elif what == "file":
            files.append((src, dest, ro))
        else:
            skipped.append(f"bind mount source {src} is neither a file nor a directory")
    stages: list[tuple[str, bool]] = []
    binds: list[FileBind] = []
    for readonly in (False, True):
        group = [f for f in files if f[2] == readonly]
        if not group:
            continue
        tag = f"s{len(dirs) + len(stages)}"
        stages.append((tag, readonly))
        binds += [FileBind(tag, str(i), src, dest, readonly) for i, (src, dest, _) in enumerate(group)]
    return Plan(tuple(dirs), tuple(binds), tuple(stages), tuple(tmpfs), tuple(copies), tuple(skipped))


def shares(p: Plan, root: Path, stage_dir: Callable[[str], Path], empty: Path) -> dict[str, Path]:
    """Every 9p share of the VM: the root, each planned share, then empty ones up to the slot count."""
    out = {"rootfs": root}
    out.update({d.tag: d.source for d in p.dirs})
    out.update({tag: stage_dir(tag) for tag, _ in p.stages})
    for i in range(p.share_count(), share_slots(p.share_count())):
        out[f"s{i}"] = empty
    return out


def premount_script(tags: Sequence[str]) -> str:
    """What a pooled VM runs while it waits: each share mounted in STAGE_ROOT/TAG, so a hand-out
    only binds (the 9p handshakes are done; the host binds the container's directories later, and
    9p without a cache looks each path up on the host when it is used)."""
    q = shlex.quote
    lines = ["set -e"]
    for tag in tags:
        lines += [f"mkdir -p {q(f'{STAGE_ROOT}/{tag}')}",
                  f"mount -t 9p -o {NINEP_OPTIONS} {q(tag)} {q(f'{STAGE_ROOT}/{tag}')}"]
    return "\n".join(lines) + "\n"


def _depth(dest: str) -> int:
    return len([c for c in dest.split("/") if c])


def guest_script(p: Plan, root: str, *, subdir: bool = False) -> str:
    """The busybox sh script that mounts the plan under the container's *root* in the guest.

    *subdir*: a pooled VM's shares (berth.vm.pool), already mounted in STAGE_ROOT/TAG
    (`premount_script`), whose content is their subdirectory m.
    """
    q = shlex.quote
    lines = ["set -e"]
    inner = "/m" if subdir else ""
    for tag, _ in p.stages:
        if not subdir:
            lines += [f"mkdir -p {q(f'{STAGE_ROOT}/{tag}')}",
                      f"mount -t 9p -o {NINEP_OPTIONS} {q(tag)} {q(f'{STAGE_ROOT}/{tag}')}"]
    steps: list[tuple[int, int, list[str]]] = []
    for i, d in enumerate(p.dirs):
        target = q(root + d.destination)
        if subdir:
            cmds = [f"mkdir -p {target}", f"mount --bind {q(f'{STAGE_ROOT}/{d.tag}/m')} {target}"]
        else:
            cmds = [f"mkdir -p {target}", f"mount -t 9p -o {NINEP_OPTIONS} {q(d.tag)} {target}"]
        steps.append((_depth(d.destination), i, cmds))
    for i, f in enumerate(p.files):
        target = q(root + f.destination)
        cmds = [f"mkdir -p {q(posixpath.dirname(root + f.destination))}",
                f"[ -e {target} ] || touch {target}",
                f"mount --bind {q(f'{STAGE_ROOT}/{f.stage_tag}{inner}/{f.name}')} {target}"]
        if f.readonly:
            cmds.append(f"mount -o remount,bind,ro {target}")
        steps.append((_depth(f.destination), 1000 + i, cmds))
    for i, t in enumerate(p.tmpfs):
        target = q(root + t.destination)
        opts = f"-o {q(t.options)} " if t.options else ""
        steps.append((_depth(t.destination), 2000 + i, [f"mkdir -p {target}", f"mount -t tmpfs {opts}tmpfs {target}"]))
    for _, _, cmds in sorted(steps, key=lambda s: (s[0], s[1])):
        lines += cmds
    return "\n".join(lines) + "\n"
