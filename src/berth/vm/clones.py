"""A VM for a container: a clone of its configuration's template when possible, else a cold boot.

    async with clones.start_vm(artifacts, vm_dir, shares={"rootfs": root}) as vm:
        await vm.run(["uname", "-r"], rootfs_tag="rootfs")

Strategy: `clone()` gets the configuration's template (berth.vm.templatebuild
builds it on first use) and restores it with the container's own shares. A
template that fails to restore is rebuilt once; if the rebuilt one fails too,
the configuration is marked broken and `TemplateUnavailable` (an `Unavailable`)
is raised *before* yielding. `start_vm()` catches exactly that and cold-boots
instead; an error raised after the VM was handed out is never taken for it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path

from berth.errors import CommandFailed, Unavailable
from berth.vm.boot import UtilityVM
from berth.vm.prepare import Artifacts
from berth.vm.template import Template
from berth.vm.templatebuild import ensure_template
from berth.vm.templatefiles import TemplateUnavailable
from berth.vm.templatestore import mark_broken

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def clone(artifacts: Artifacts, vm_dir: Path, *, shares: Mapping[str, Path], mem_mib: int = 256,
                workdir: Path | None = None, timeout: float = 60.0, vcpus: int = 1,
                readonly: Collection[str] = (), tap: str | None = None) -> AsyncIterator[UtilityVM]:
    """A clone of this configuration's template (built on first use), with its own *shares*.

    Raises (before yielding):
        TemplateUnavailable: no template could be built, or restoring failed even
            after rebuilding it once. The caller should cold-boot instead.
    """
    vm_dir = Path(vm_dir)
    async with contextlib.AsyncExitStack() as stack:
        vm: UtilityVM | None = None
        tpl: Template | None = None
        failure: BaseException | None = None
        for attempt in range(2):
            tpl = await ensure_template(artifacts, vm_dir, mem_mib=mem_mib, share_tags=tuple(shares),
                                        replace=tpl if attempt else None, vcpus=vcpus, nic=tap is not None)
            try:
                vm = await stack.enter_async_context(
                    UtilityVM.restore(tpl, shares=shares, workdir=workdir, timeout=timeout, readonly=readonly,
                                      tap=tap))
                break
            except (Unavailable, CommandFailed, OSError) as exc:
                failure = exc
                log.warning("restoring VM template %s failed (%s)%s", tpl.key, exc,
                            ": rebuilding it" if attempt == 0 else "")
        if vm is None:
            assert tpl is not None
            mark_broken(vm_dir / "templates", tpl.key, tpl.artifacts_id, f"restore: {failure}")
            raise TemplateUnavailable(f"template restore failed: {failure}") from failure
        yield vm


@contextlib.asynccontextmanager
async def start_vm(artifacts: Artifacts, vm_dir: Path, *, shares: Mapping[str, Path], mem_mib: int = 256,
                   workdir: Path | None = None, timeout: float = 60.0,
                   templates: bool = True, vcpus: int = 1,
                   readonly: Collection[str] = (), tap: str | None = None) -> AsyncIterator[UtilityVM]:
    """A VM for a container: a template clone when possible, else a cold boot."""
    if templates:
        entered = False
        try:
            async with clone(artifacts, vm_dir, shares=shares, mem_mib=mem_mib, workdir=workdir,
                             timeout=timeout, vcpus=vcpus, readonly=readonly, tap=tap) as vm:
                entered = True
                yield vm
            return
        except TemplateUnavailable as exc:
            if entered:
                raise
            log.warning("starting the VM by cold boot: %s", exc)
    async with UtilityVM.boot(artifacts, shares=shares, mem_mib=mem_mib, workdir=workdir,
                              timeout=timeout, vcpus=vcpus, readonly=readonly, tap=tap) as vm:
        yield vm
