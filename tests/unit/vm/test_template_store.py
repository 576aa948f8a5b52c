"""Templates on disk without QEMU: build once, swap atomically, clean up, fall back.

`_current` (QEMU and TSC lookups) and `_build` (a real boot) are replaced by
fakes; /dev/shm by a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from berth.errors import Unavailable
from berth.vm import clones, template, templatebuild, templatefiles, templatestore
from berth.vm.boot import UtilityVM
from berth.vm.prepare import Artifacts

ART = Artifacts(Path("/c/vmlinux"), Path("/c/initramfs.cpio"), "6.1.0-56-amd64")
MEM = 4


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"builds": 0, "art_id": "a" * 16}
    monkeypatch.setattr(templatefiles, "SHM_ROOT", tmp_path / "shm")

    def current(artifacts: Artifacts, mem_mib: int, share_tags: Any,
                vcpus: int = 1, nic: bool = False) -> tuple[str, str, str, tuple[str, ...]]:
        tags = template.normalize_tags(share_tags)
        art_id = state["art_id"]
        return art_id, template.config_key(art_id, mem_mib=mem_mib, share_tags=tags, cmdline="x"), "x", tags

    async def build(artifacts: Artifacts, vm_dir: Path, *, key: str, art_id: str, cmdline: str,
                    mem_mib: int, tags: tuple[str, ...], timeout: float, vcpus: int = 1, nic: bool = False) -> template.Template:
        state["builds"] += 1
        await asyncio.sleep(0.2)  # long enough for a second caller to queue on the lock
        if state.get("fail_build"):
            raise Unavailable("the template VM did not boot")
        root = vm_dir / "templates"
        shm = templatefiles.shm_dir(vm_dir)
        shm.mkdir(parents=True, exist_ok=True)
        nonce = f"n{state['builds']}"
        ram = shm / f"{key}.{nonce}.ram"
        ram.write_bytes(b"\0" * (mem_mib << 20))
        tpl = template.Template(key=key, dir=root / key, vm_dir=vm_dir, artifacts=artifacts, artifacts_id=art_id,
                                mem_mib=mem_mib, share_tags=tags, cmdline=cmdline, kernel_release="r",
                                memory_file=ram, nonce=nonce, created=time.time())
        build = root / f".build-{key}"
        build.mkdir(parents=True)
        (build / "state").write_bytes(b"state")
        (build / "template.json").write_text(json.dumps(tpl.to_json()))
        old = root / f".old-{key}"
        with contextlib.suppress(FileNotFoundError):
            (root / key).rename(old)
        build.rename(root / key)
        if old.exists():
            templatestore.remove_template_dir(old)
        return tpl

    monkeypatch.setattr(templatebuild, "_current", current)
    monkeypatch.setattr(templatebuild, "_build", build)
    state["vm_dir"] = tmp_path / "vm"
    return state


def test_concurrent_callers_build_once(env: dict[str, Any]) -> None:
    async def both() -> list[template.Template]:
        return list(await asyncio.gather(*(templatebuild.ensure_template(ART, env["vm_dir"], mem_mib=MEM)
                                                for _ in range(3))))

    tpls = asyncio.run(both())
    assert env["builds"] == 1 and len({t.nonce for t in tpls}) == 1
    again = asyncio.run(templatebuild.ensure_template(ART, env["vm_dir"], mem_mib=MEM, share_tags=["rootfs"]))
    assert env["builds"] == 1 and again.nonce == tpls[0].nonce


def test_replace_rebuilds_once_and_drops_the_old_ram(env: dict[str, Any]) -> None:
    first = asyncio.run(templatebuild.ensure_template(ART, env["vm_dir"], mem_mib=MEM))

    async def two_replacers() -> list[template.Template]:
        return list(await asyncio.gather(
            templatebuild.ensure_template(ART, env["vm_dir"], mem_mib=MEM, replace=first),
            templatebuild.ensure_template(ART, env["vm_dir"], mem_mib=MEM, replace=first)))

    a, b = asyncio.run(two_replacers())
    assert env["builds"] == 2 and a.nonce == b.nonce != first.nonce
    assert not first.memory_file.exists() and a.memory_file.exists()


def test_incomplete_template_is_rebuilt(env: dict[str, Any]) -> None:
    first = asyncio.run(templatebuild.ensure_template(ART, env["vm_dir"], mem_mib=MEM))
    first.memory_file.unlink()
    second = asyncio.run(templatebuild.ensure_template(ART, env["vm_dir"], mem_mib=MEM))
    assert env["builds"] == 2 and second.complete()


def test_new_kernel_removes_old_templates(env: dict[str, Any]) -> None:
    vm_dir = env["vm_dir"]
    old = asyncio.run(templatebuild.ensure_template(ART, vm_dir, mem_mib=MEM))
    other = asyncio.run(templatebuild.ensure_template(ART, vm_dir, mem_mib=MEM, share_tags=["rootfs", "b0"]))
    assert old.dir.exists() and other.dir.exists()  # both current: kept
    env["art_id"] = "b" * 16
    new = asyncio.run(templatebuild.ensure_template(ART, vm_dir, mem_mib=MEM))
    assert not old.dir.exists() and not other.dir.exists()
    assert not old.memory_file.exists() and not other.memory_file.exists()
    assert sorted(p.name for p in templatefiles.shm_dir(vm_dir).iterdir()) == [new.memory_file.name]
    assert templatestore.remove_all(vm_dir)
    assert not new.dir.exists() and not templatefiles.shm_dir(vm_dir).exists()
    assert [p.name for p in (vm_dir / "templates").iterdir()] == [".lock"]


def test_cleanup_spares_builds_in_progress(env: dict[str, Any]) -> None:
    vm_dir = env["vm_dir"]
    root = vm_dir / "templates"
    shm = templatefiles.shm_dir(vm_dir)
    shm.mkdir(parents=True)
    busy, dead = "1" * 16, "2" * 16
    for key in (busy, dead):
        (root / f".build-{key}").mkdir(parents=True)
        (shm / f"{key}.x.ram").write_bytes(b"")
    (root / ("3" * 16)).mkdir()  # a template dir without a record: junk
    fd = os.open(root / f"{busy}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        removed = templatestore.remove_stale(vm_dir, "a" * 16)
    finally:
        os.close(fd)
    assert (root / f".build-{busy}").exists() and (shm / f"{busy}.x.ram").exists()
    assert not (root / f".build-{dead}").exists() and not (shm / f"{dead}.x.ram").exists()
    assert not (root / ("3" * 16)).exists()
    assert f".build-{dead}" in removed


class _FakeVM:
    def __init__(self, how: str) -> None:
        self.how = how


def _fake_restore(env: dict[str, Any], fail_times: int) -> Any:
    @contextlib.asynccontextmanager
    async def restore(tpl: template.Template, *, shares: Any, workdir: Any = None,
                      timeout: float = 60.0, readonly: Any = (), tap: Any = None) -> AsyncIterator[_FakeVM]:
        env["restores"] = env.get("restores", 0) + 1
        if env["restores"] <= fail_times:
            raise Unavailable("QEMU exited while loading the template")
        yield _FakeVM(f"clone of {tpl.nonce}")
    return restore


def _fake_boot(env: dict[str, Any]) -> Any:
    @contextlib.asynccontextmanager
    async def boot(artifacts: Artifacts, **kwargs: Any) -> AsyncIterator[_FakeVM]:
        env["boots"] = env.get("boots", 0) + 1
        yield _FakeVM("cold")
    return boot


async def _start(env: dict[str, Any]) -> str:
    async with clones.start_vm(ART, env["vm_dir"], shares={"rootfs": Path("/r")}, mem_mib=MEM) as vm:
        return str(vm.how)  # type: ignore[attr-defined]


def test_clone_rebuilds_a_failing_template_once(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(UtilityVM, "restore", _fake_restore(env, fail_times=1))
    assert asyncio.run(_start(env)) == "clone of n2"
    assert env["builds"] == 2 and env["restores"] == 2


def test_fallback_to_cold_boot(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(UtilityVM, "restore", _fake_restore(env, fail_times=99))
    monkeypatch.setattr(UtilityVM, "boot", _fake_boot(env))
    assert asyncio.run(_start(env)) == "cold"
    assert env["builds"] == 2 and env["restores"] == 2
    # the configuration is now marked broken: the next start goes straight to a cold boot
    assert asyncio.run(_start(env)) == "cold"
    assert env["builds"] == 2 and env["restores"] == 2 and env["boots"] == 2
    with pytest.raises(templatefiles.TemplateUnavailable, match="template restore failed"):
        asyncio.run(templatebuild.ensure_template(ART, env["vm_dir"], mem_mib=MEM))
    # ... for a while only
    monkeypatch.setattr(templatestore, "BROKEN_SECONDS", 0.0)
    assert asyncio.run(_start(env)) == "cold"  # a restore is tried again (and fails again here)
    assert env["restores"] == 4 and env["builds"] == 3


def test_failed_build_falls_back(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    env["fail_build"] = True
    monkeypatch.setattr(UtilityVM, "boot", _fake_boot(env))
    assert asyncio.run(_start(env)) == "cold"
    assert isinstance(templatefiles.TemplateUnavailable("x"), Unavailable)


def test_errors_inside_a_clone_are_not_swallowed(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(UtilityVM, "restore", _fake_restore(env, fail_times=0))
    monkeypatch.setattr(UtilityVM, "boot", _fake_boot(env))

    async def body() -> None:
        async with clones.start_vm(ART, env["vm_dir"], shares={"rootfs": Path("/r")}, mem_mib=MEM):
            raise templatefiles.TemplateUnavailable("raised by the caller")

    with pytest.raises(templatefiles.TemplateUnavailable, match="raised by the caller"):
        asyncio.run(body())
    assert "boots" not in env


def test_only_the_most_recently_used_are_kept(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    vm_dir = env["vm_dir"]
    monkeypatch.setattr(templatestore, "MAX_TEMPLATES", 2)
    a = asyncio.run(templatebuild.ensure_template(ART, vm_dir, mem_mib=MEM))
    b = asyncio.run(templatebuild.ensure_template(ART, vm_dir, mem_mib=MEM + 1))
    os.utime(b.dir, (1, 1))  # b: long unused
    asyncio.run(templatebuild.ensure_template(ART, vm_dir, mem_mib=MEM))  # a: used now
    c = asyncio.run(templatebuild.ensure_template(ART, vm_dir, mem_mib=MEM + 2, share_tags=["rootfs", "b0"]))
    assert a.dir.exists() and c.dir.exists() and not b.dir.exists() and not b.memory_file.exists()
