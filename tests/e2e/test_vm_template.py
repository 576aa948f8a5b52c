"""Template cloning under TCG: one template, clones each with its own 9p busybox root.

The artifacts come from the same cache as tests/e2e/test_vm_boot.py
($BERTH_TEST_VM_DIR, default /var/cache/berth-test-vm); the templates go to a
temporary directory and are removed at the end (their RAM files in /dev/shm too).
Everything runs once in a module fixture; the tests read the results. QEMU
tests must not run in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth.testing.rootfs import write_rootfs_tar
from berth.vm import clones, template, templatebuild, templatefiles, templatestore
from berth.vm.boot import UtilityVM
from berth.vm.prepare import Artifacts, missing_host_pieces, prepare

VM_DIR = Path(os.environ.get("BERTH_TEST_VM_DIR", "/var/cache/berth-test-vm"))
SCRIPT = ("uname -r; cat /whoami; date +%s; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo")

pytestmark = [
    pytest.mark.skipif(bool(missing_host_pieces(qemu=True)),
                       reason=f"VM isolation pieces missing: {', '.join(missing_host_pieces(qemu=True))}"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the 9p root is owned by root"),
    pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="templates keep their RAM on /dev/shm"),
    pytest.mark.timeout(600),
]


def _qemu_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "qemu-system-x86"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return -1


@pytest.fixture(scope="module")
def artifacts() -> Artifacts:
    return prepare(VM_DIR)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("tplroots")
    tar = write_rootfs_tar(base / "rootfs.tar")
    out = []
    for i in range(4):
        root = base / f"root{i}"
        root.mkdir()
        subprocess.run(["tar", "-xf", str(tar), "-C", str(root)], check=True)
        (root / "whoami").write_text(f"clone-{i}-of-{os.getpid()}\n")
        out.append(root)
    return out


async def _one(tpl: template.Template, root: Path, hold: asyncio.Event | None = None,
               arrived: asyncio.Queue[int] | None = None) -> dict[str, Any]:
    """Restore a clone, run the probe script in its root, note pid and PSS; wait for *hold* if given."""
    t0 = time.monotonic()
    async with UtilityVM.restore(tpl, shares={"rootfs": root}, timeout=60) as vm:
        t_restored = time.monotonic()
        code, out, err = await vm.run(["sh", "-c", SCRIPT], rootfs_tag="rootfs")
        t_cmd = time.monotonic()
        host_now = time.time()
        lines = out.decode().splitlines()
        got: dict[str, Any] = {"code": code, "err": err, "lines": lines, "host_now": host_now,
                               "qemu_pid": vm.qemu.pid, "release": vm.kernel_release,
                               "restore_s": t_restored - t0, "to_command_s": t_cmd - t0}
        got["status"] = (await vm.qmp("query-status"))["return"]
        second = time.monotonic()
        got["again"] = await vm.run(["cat", "/whoami"], rootfs_tag="rootfs")
        got["later_command_s"] = time.monotonic() - second
        if arrived is not None:
            arrived.put_nowait(vm.qemu.pid)
        if hold is not None:
            await hold.wait()
        await asyncio.sleep(1.0)  # idle
        got["pss_kib"] = _pss_kib(vm.qemu.pid)
    return got


@pytest.fixture(scope="module")
def results(artifacts: Artifacts, roots: list[Path],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    before = _qemu_pids()
    tdir = tmp_path_factory.mktemp("templates")

    async def scenario() -> dict[str, Any]:
        got: dict[str, Any] = {}
        t0 = time.monotonic()
        # two containers starting at once: one build
        a, b = await asyncio.gather(
            templatebuild.ensure_template(artifacts, tdir, mem_mib=256, share_tags=["rootfs"]),
            templatebuild.ensure_template(artifacts, tdir, mem_mib=256, share_tags=["rootfs"]))
        got["build_s"] = time.monotonic() - t0
        got["templates"] = (a, b)
        got["again"] = await templatebuild.ensure_template(artifacts, tdir, mem_mib=256, share_tags=("rootfs",))
        tpl = a
        got["sequential"] = [await _one(tpl, roots[0]), await _one(tpl, roots[1])]
        hold, arrived = asyncio.Event(), asyncio.Queue[int]()
        tasks = [asyncio.ensure_future(_one(tpl, r, hold, arrived)) for r in roots[2:4]]
        for _ in tasks:  # both restored and ran their commands, and now both are idle
            await asyncio.wait_for(arrived.get(), 120)
        got["both_running"] = len(_qemu_pids() - before)
        hold.set()
        got["parallel"] = await asyncio.gather(*tasks)

        # a template whose state is damaged: clone() rebuilds it once and succeeds
        tpl.state_file.write_bytes(b"not a migration stream")
        async with clones.clone(artifacts, tdir, shares={"rootfs": roots[0]}) as vm:
            got["rebuilt_run"] = await vm.run(["cat", "/whoami"], rootfs_tag="rootfs")
        got["rebuilt"] = templatestore.load_template(tdir, tpl.key)
        got["shm_before_cleanup"] = sorted(p.name for p in templatefiles.shm_dir(tdir).glob("*"))
        got["removed"] = templatestore.remove_all(tdir)
        got["shm_after_cleanup"] = templatefiles.shm_dir(tdir).exists()
        got["templates_left"] = sorted(p.name for p in (tdir / "templates").iterdir()
                                       if not p.name.endswith(".lock") and p.name != ".lock")
        return got

    try:
        got = asyncio.run(scenario())
    finally:
        with contextlib.suppress(Exception):
            templatestore.remove_all(tdir)
    got["after"] = _qemu_pids() - before
    yield got


def _clones(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [*results["sequential"], *results["parallel"]]


def test_template_built_once(results: dict[str, Any]) -> None:
    a, b = results["templates"]
    assert a.nonce == b.nonce == results["again"].nonce
    assert a.share_tags == ("rootfs",) and a.mem_mib == 256
    print(f"template build (boot + save): {results['build_s']:.2f}s")


def test_clones_run_the_guest_kernel_in_their_own_root(results: dict[str, Any], artifacts: Artifacts) -> None:
    for i, c in enumerate(_clones(results)):
        assert (c["code"], c["err"]) == (0, b""), c
        assert c["lines"][0] == artifacts.kernel_version == c["release"]
        assert c["lines"][1] == f"clone-{i}-of-{os.getpid()}"
        assert c["again"] == (0, f"clone-{i}-of-{os.getpid()}\n".encode(), b"")


def test_clones_answer_qmp(results: dict[str, Any]) -> None:
    for c in _clones(results):
        assert c["status"]["status"] == "running"


def test_clone_clocks_were_set(results: dict[str, Any]) -> None:
    for c in _clones(results):
        assert abs(int(c["lines"][2]) - c["host_now"]) <= 5, c["lines"]


def test_clone_rngs_were_reseeded(results: dict[str, Any]) -> None:
    draws = [c["lines"][3] for c in _clones(results)]
    assert all(len(d) == 32 for d in draws), draws
    assert len(set(draws)) == len(draws), draws


def test_two_clones_at_once(results: dict[str, Any]) -> None:
    assert results["both_running"] == 2
    a, b = results["parallel"]
    assert a["qemu_pid"] != b["qemu_pid"]


def test_damaged_template_is_rebuilt(results: dict[str, Any]) -> None:
    first = results["templates"][0]
    assert results["rebuilt_run"] == (0, f"clone-0-of-{os.getpid()}\n".encode(), b"")
    assert results["rebuilt"] is not None and results["rebuilt"].nonce != first.nonce
    assert len(results["shm_before_cleanup"]) == 1  # the damaged template's RAM file went with it


def test_nothing_left_behind(results: dict[str, Any]) -> None:
    assert results["after"] == set()
    for c in _clones(results):
        assert not Path(f"/proc/{c['qemu_pid']}").exists()
    assert results["shm_after_cleanup"] is False
    assert results["templates_left"] == []
    seq = ", ".join(f"{c['to_command_s']:.2f}s" for c in results["sequential"])
    par = ", ".join(f"{c['to_command_s']:.2f}s" for c in results["parallel"])
    restore = ", ".join(f"{c['restore_s']:.2f}s" for c in _clones(results))
    later = ", ".join(f"{c['later_command_s'] * 1000:.0f}ms" for c in _clones(results))
    pss = ", ".join(f"{c['pss_kib'] / 1024:.0f}" for c in _clones(results))
    print(f"\nrestore -> first command in own 9p root: sequential {seq}; two at once {par}"
          f"\nrestore -> agent answered (clock set, RNG reseeded): {restore}"
          f"\nlater command: {later}\nidle clone PSS (MiB; the last two ran side by side): {pss}")
