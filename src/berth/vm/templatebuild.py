"""Building templates: one per configuration, booted, saved and published the first time it is needed.

    tpl = await ensure_template(artifacts, vm_dir, mem_mib=256, share_tags=("rootfs",))

Strategy: a template is built under its key's lock, so two callers at once
build one template: the second waits on the lock and then finds it. The VM
boots with its RAM in a new file under `ram_dir` (a new nonce each time) and
empty 9p shares it never mounts, saves its device state and stops; the build
directory gets the state, then template.json, and is renamed to `<key>` under
the templates' exclusive lock. A new template never overwrites a file a running
clone maps: the old RAM file is only unlinked (running clones keep the inode).
A failed build marks the configuration broken; each new template is followed by
a clean-up of what is stale (berth.vm.templatestore).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from berth.errors import BerthError
from berth.vm.boot import UtilityVM
from berth.vm.cmdline import host_tsc_khz, kernel_cmdline
from berth.vm.prepare import QEMU, Artifacts
from berth.vm.template import Template, artifacts_id, config_key, normalize_tags
from berth.vm.templatefiles import (
    TemplateUnavailable,
    aflock,
    flock,
    ram_dir,
    templates_dir,
)
from berth.vm.templatestore import (
    broken,
    load_template,
    mark_broken,
    remove_stale,
    remove_template_dir,
)

log = logging.getLogger(__name__)


def _current(artifacts: Artifacts, mem_mib: int, share_tags: Sequence[str],
             vcpus: int = 1, nic: bool = False) -> tuple[str, str, str, tuple[str, ...]]:
    """(artifacts id, key, kernel command line, sorted tags) for this configuration."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise TemplateUnavailable(f"{QEMU} is not installed")
    tags = normalize_tags(share_tags)
    cmdline = kernel_cmdline(host_tsc_khz(), vcpus=vcpus)
    art_id = artifacts_id(artifacts, Path(qemu))
    key = config_key(art_id, mem_mib=mem_mib, share_tags=tags, cmdline=cmdline, vcpus=vcpus, nic=nic)
    return art_id, key, cmdline, tags


async def ensure_template(artifacts: Artifacts, vm_dir: Path, *, mem_mib: int = 256,
                          share_tags: Sequence[str] = ("rootfs",), timeout: float = 120.0,
                          replace: Template | None = None, vcpus: int = 1, nic: bool = False) -> Template:
    """Return the template for this configuration, building it first if needed.

    *replace*: a template that failed to restore; it is rebuilt unless someone
    already replaced it. Two callers at once build one template: the second
    waits on the key's lock and then finds it.

    Raises:
        InvalidArgument: bad share tags.
        TemplateUnavailable: the configuration's clones failed recently, or the build failed.
    """
    vm_dir = Path(vm_dir)
    try:  # checked on every use (a few syscalls): a directory planted meanwhile is never used
        root = templates_dir(vm_dir)
        ram_dir(vm_dir)
    except (BerthError, OSError) as exc:
        raise TemplateUnavailable(f"the template directories are not usable: {exc}") from exc
    art_id, key, cmdline, tags = _current(artifacts, mem_mib, share_tags, vcpus, nic)

    def usable() -> Template | None:
        tpl = load_template(vm_dir, key)
        if tpl is None or not tpl.complete() or tpl.artifacts_id != art_id:
            return None
        if replace is not None and tpl.nonce == replace.nonce:
            return None
        return tpl

    if (reason := broken(root, key)) is not None:
        raise TemplateUnavailable(f"template restore failed recently, not retried for a while: {reason}")
    if (tpl := usable()) is not None:
        with contextlib.suppress(OSError):
            os.utime(tpl.dir)  # used: what remove_stale keeps
        return tpl
    async with aflock(root / f"{key}.lock", timeout=timeout + 60):
        if (tpl := usable()) is not None:
            return tpl  # built while we waited
        try:
            tpl = await _build(artifacts, vm_dir, key=key, art_id=art_id, cmdline=cmdline,
                               mem_mib=mem_mib, tags=tags, timeout=timeout, vcpus=vcpus, nic=nic)
        except (BerthError, OSError) as exc:
            mark_broken(root, key, art_id, f"build: {exc}")
            raise TemplateUnavailable(f"template build failed: {exc}") from exc
    removed = remove_stale(vm_dir, art_id)
    if removed:
        log.info("removed stale VM templates: %s", ", ".join(removed))
    return tpl


async def _build(artifacts: Artifacts, vm_dir: Path, *, key: str, art_id: str, cmdline: str,
                 mem_mib: int, tags: tuple[str, ...], timeout: float, vcpus: int = 1,
                 nic: bool = False) -> Template:
    """Boot, save, stop; publish `<vm_dir>/templates/<key>` atomically. Caller holds the key lock."""
    root = vm_dir / "templates"
    build = root / f".build-{key}"
    shm = ram_dir(vm_dir)
    shutil.rmtree(build, ignore_errors=True)  # a crashed build's leftovers
    build.mkdir(parents=True)
    nonce = secrets.token_hex(6)
    ram = shm / f"{key}.{nonce}.ram"
    empty = build / "empty"  # the template's 9p devices must exist; never mounted
    empty.mkdir()
    started = time.monotonic()
    try:
        async with UtilityVM.boot(artifacts, shares={t: empty for t in tags}, mem_mib=mem_mib,
                                  timeout=timeout, memory_file=ram, vcpus=vcpus,
                                  tap=f"btt{nonce[:8]}" if nic else None) as vm:  # QEMU's own, gone with it
            await vm.save_state(build / "state", timeout=timeout)
            release = vm.kernel_release
        empty.rmdir()
        tpl = Template(key=key, dir=root / key, vm_dir=vm_dir, artifacts=artifacts, artifacts_id=art_id,
                       mem_mib=mem_mib, share_tags=tags, cmdline=cmdline, kernel_release=release,
                       memory_file=ram, nonce=nonce, created=time.time(), vcpus=vcpus, nic=nic)
        (build / "template.json").write_text(json.dumps(tpl.to_json(), indent=2))
        with flock(root / ".lock", fcntl.LOCK_EX):
            old = root / f".old-{key}-{nonce}"
            with contextlib.suppress(FileNotFoundError):
                (root / key).rename(old)
            build.rename(root / key)
            if old.exists():
                remove_template_dir(old)  # running clones keep their (unlinked) RAM file
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        with contextlib.suppress(OSError):
            ram.unlink()
        raise
    log.info("built VM template %s (%d MiB, %d vCPU, shares %s) in %.1fs", key, mem_mib, vcpus,
             ",".join(tags), time.monotonic() - started)
    return tpl
