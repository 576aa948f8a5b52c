"""Cold-boot a utility VM under TCG and run commands in a 9p-shared busybox root.

The artifacts (kernel, modules, agent, initramfs) are prepared into a cache
directory that persists across runs ($BERTH_TEST_VM_DIR, default
/var/cache/berth-test-vm), so a machine pays the download and build once.
One VM is booted for the whole module; QEMU tests must not run in parallel.
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth.testing.rootfs import write_rootfs_tar
from berth.vm.boot import UtilityVM
from berth.vm.prepare import Artifacts, missing_host_pieces, prepare

VM_DIR = Path(os.environ.get("BERTH_TEST_VM_DIR", "/var/cache/berth-test-vm"))

pytestmark = [
    pytest.mark.skipif(bool(missing_host_pieces(qemu=True)),
                       reason=f"VM isolation pieces missing: {', '.join(missing_host_pieces(qemu=True))}"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the 9p root is owned by root"),
    pytest.mark.timeout(300),
]


def _qemu_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "qemu-system-x86"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


@pytest.fixture(scope="module")
def artifacts() -> Artifacts:
    return prepare(VM_DIR)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("vmroot")
    tar = write_rootfs_tar(base / "rootfs.tar")
    root = base / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(tar), "-C", str(root)], check=True)
    return root


@pytest.fixture(scope="module")
def results(artifacts: Artifacts, rootfs: Path) -> Iterator[dict[str, Any]]:
    """Boot once, run every command the tests look at, shut down; then the tests read the results."""
    before = _qemu_pids()

    async def scenario() -> dict[str, Any]:
        got: dict[str, Any] = {}
        async with UtilityVM.boot(artifacts, shares={"rootfs": rootfs}, timeout=60) as vm:
            got["qemu_pid"] = vm.qemu.pid
            got["boot_seconds"] = vm.boot_seconds
            got["ready_release"] = vm.kernel_release
            got["uname"] = await vm.run(["uname", "-r"], rootfs_tag="rootfs")
            got["streams"] = await vm.run(["sh", "-c", "echo out; echo err >&2; exit 3"], rootfs_tag="rootfs")
            got["write"] = await vm.run(["sh", "-c", "echo written-in-guest > /tmp/from-guest"],
                                        rootfs_tag="rootfs")
            got["date"] = await vm.run(["date", "+%Y"], rootfs_tag="rootfs")
            got["cat_stdin"] = await vm.run(["cat"], rootfs_tag="rootfs", stdin=b"via stdin\n")
        return got

    got = asyncio.run(scenario())
    got["after"] = _qemu_pids() - before
    yield got


def test_guest_runs_its_own_kernel(results: dict[str, Any], artifacts: Artifacts) -> None:
    code, out, err = results["uname"]
    assert (code, err) == (0, b"")
    assert out.decode().strip() == artifacts.kernel_version == results["ready_release"]
    assert artifacts.kernel_version != platform.release()


def test_streams_and_exit_code(results: dict[str, Any]) -> None:
    assert results["streams"] == (3, b"out\n", b"err\n")
    assert results["cat_stdin"] == (0, b"via stdin\n", b"")


def test_guest_writes_reach_the_host(results: dict[str, Any], rootfs: Path) -> None:
    assert results["write"] == (0, b"", b"")
    assert (rootfs / "tmp" / "from-guest").read_text() == "written-in-guest\n"


def test_guest_clock_was_set(results: dict[str, Any]) -> None:
    code, out, _ = results["date"]
    assert code == 0 and int(out) == time.gmtime().tm_year


def test_no_qemu_left_behind(results: dict[str, Any]) -> None:
    assert results["after"] == set()
    assert not Path(f"/proc/{results['qemu_pid']}").exists()
    print(f"boot to agent READY: {results['boot_seconds']:.2f}s")
