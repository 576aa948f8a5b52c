"""Templates of utility VMs: what a template is -- the key of its configuration, and its record.

    key = config_key(artifacts_id(artifacts, qemu), mem_mib=256, share_tags=["rootfs"], cmdline=line)
    tpl = Template.from_json(json.loads((d / "template.json").read_text()), dir=d, vm_dir=vm_dir)

Strategy: a template is a VM booted to its waiting agent with guest RAM in a
file on /dev/shm mapped shared, then saved (device state only, ~150 KB) and
stopped; `UtilityVM.restore` maps that RAM file privately in each clone, so
clones share every page they do not write. A clone must have the template's
devices, so the configuration key is the identity of the kernel, the
initramfs and QEMU (path, inode, size, mtime), the kernel command line, the
memory size, the vCPUs, whether there is a network card and the sorted list of
9p share tags. The record (`<key>/template.json`) holds all of that and where
the RAM file is; `Template.pin` holds the files while a clone's QEMU opens them.
Where templates live is berth.vm.templatefiles, how they are built
berth.vm.templatebuild, how they are cleaned away berth.vm.templatestore, and
how containers get clones of them berth.vm.clones.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.errors import InvalidArgument, Unavailable
from berth.vm.prepare import Artifacts
from berth.vm.templatefiles import flock

FORMAT = 3  # bump when what a template holds or how clones start changes
_TAG = re.compile(r"[A-Za-z0-9_.-]{1,31}")


# ---- identity ----------------------------------------------------------------------------

def file_identity(path: Path) -> list[Any]:
    """What changes when a file is replaced: resolved path, inode, size, mtime."""
    real = Path(path).resolve()
    st = real.stat()
    return [str(real), st.st_ino, st.st_size, st.st_mtime_ns]


def artifacts_id(artifacts: Artifacts, qemu_binary: Path) -> str:
    """The identity of what a template's state depends on beyond its configuration."""
    doc = [FORMAT, file_identity(artifacts.vmlinux), file_identity(artifacts.initramfs),
           file_identity(qemu_binary), artifacts.kernel_version]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def normalize_tags(share_tags: Sequence[str]) -> tuple[str, ...]:
    tags = tuple(sorted(share_tags))
    if len(set(tags)) != len(tags) or not all(_TAG.fullmatch(t) for t in tags):
        raise InvalidArgument(f"invalid 9p share tags for a template: {list(share_tags)}")
    return tags


def config_key(art_id: str, *, mem_mib: int, share_tags: Sequence[str], cmdline: str, vcpus: int = 1,
               nic: bool = False) -> str:
    """The template key: artifacts identity + memory size + sorted share tags + command line + vCPUs + a NIC."""
    doc = [art_id, int(mem_mib), list(normalize_tags(share_tags)), cmdline, int(vcpus), bool(nic)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


# ---- the template --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Template:
    """A saved template VM; `UtilityVM.restore(template, ...)` starts clones of it."""

    key: str
    dir: Path
    vm_dir: Path
    artifacts: Artifacts
    artifacts_id: str
    mem_mib: int
    share_tags: tuple[str, ...]
    cmdline: str
    kernel_release: str
    memory_file: Path
    nonce: str
    created: float
    vcpus: int = 1
    nic: bool = False  # the VM has a virtio-net card (its tap is each clone's own)

    @property
    def state_file(self) -> Path:
        return self.dir / "state"

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "key": self.key, "artifacts_id": self.artifacts_id,
                "vmlinux": str(self.artifacts.vmlinux), "initramfs": str(self.artifacts.initramfs),
                "kernel_version": self.artifacts.kernel_version, "mem_mib": self.mem_mib,
                "share_tags": list(self.share_tags), "cmdline": self.cmdline,
                "kernel_release": self.kernel_release, "memory_file": str(self.memory_file),
                "nonce": self.nonce, "created": self.created, "vcpus": self.vcpus, "nic": self.nic}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], *, dir: Path, vm_dir: Path) -> Template:
        """Raises InvalidArgument when *doc* is not a template of this format."""
        try:
            if doc["format"] != FORMAT:
                raise InvalidArgument(f"template format {doc['format']!r}, want {FORMAT}")
            return cls(key=str(doc["key"]), dir=dir, vm_dir=vm_dir,
                       artifacts=Artifacts(Path(doc["vmlinux"]), Path(doc["initramfs"]),
                                           str(doc["kernel_version"])),
                       artifacts_id=str(doc["artifacts_id"]), mem_mib=int(doc["mem_mib"]),
                       share_tags=tuple(str(t) for t in doc["share_tags"]), cmdline=str(doc["cmdline"]),
                       kernel_release=str(doc["kernel_release"]), memory_file=Path(doc["memory_file"]),
                       nonce=str(doc["nonce"]), created=float(doc["created"]), vcpus=int(doc["vcpus"]),
                       nic=bool(doc["nic"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"bad template.json in {dir}: {exc!r}") from None

    def complete(self) -> bool:
        """Are the template's files there (RAM file of the right size, state)?"""
        try:
            return (self.memory_file.stat().st_size == self.mem_mib << 20
                    and self.state_file.stat().st_size > 0)
        except OSError:
            return False

    @contextlib.contextmanager
    def pin(self, state_copy: Path) -> Iterator[int]:
        """Copy the state to *state_copy* and yield an fd of the RAM file (closed after).

        Done under the templates' shared lock, so a concurrent rebuild or cleanup
        cannot remove the files between reading the template and QEMU opening them.

        Raises:
            Unavailable: the template's files are gone.
        """
        with flock(self.vm_dir / "templates" / ".lock", fcntl.LOCK_SH):
            try:
                fd = os.open(self.memory_file, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise Unavailable(f"the template's RAM file is gone: {exc}") from None
            try:
                try:
                    shutil.copyfile(self.state_file, state_copy)
                except OSError as exc:
                    raise Unavailable(f"the template's state file is gone: {exc}") from None
                yield fd
            finally:
                os.close(fd)
