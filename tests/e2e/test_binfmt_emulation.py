"""Foreign-architecture programs through binfmt_misc, with the real kernel and Debian's qemu-user-static.

Each test runs Debian's arm64 busybox in a chroot directory that holds nothing
but that busybox: it can only work when the kernel's handler has the F flag
(the emulator opened at registration, outside the chroot). Needs root,
qemu-user-static, and apt access to Debian's archive (once: the .deb is cached).
Tests that plant other entries remove them and leave berth's own registered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from berth.host import binfmt
from berth.oci import platform as plat
from berth.tools import debarchive

ARM64 = plat.parse("linux/arm64")
ROOT = binfmt.BINFMT_DIR
CACHE = Path(os.environ.get("BERTH_BOOTSTRAP_CACHE", str(debarchive.DEFAULT_CACHE)))
QEMU = "/usr/bin/qemu-aarch64-static"

pytestmark = [
    pytest.mark.skipif(plat.host().architecture != "amd64", reason="the foreign platform here is arm64: needs an amd64 host"),
    pytest.mark.skipif(not Path(QEMU).exists(), reason="needs qemu-user-static (apt-get install qemu-user-static)"),
]


@pytest.fixture(scope="module")
def arm64_busybox() -> bytes:
    async def get() -> bytes:
        deb = await debarchive.fetch_deb("busybox-static", ARM64, CACHE)
        data, _ = await debarchive.read_deb_member(deb, "bin/busybox")
        return data

    return asyncio.run(get())


@pytest.fixture
def bare_root(tmp_path: Path, arm64_busybox: bytes) -> Path:
    """A directory with only an arm64 busybox and one applet link: no qemu, no libraries."""
    (tmp_path / "bin").mkdir()
    busybox = tmp_path / "bin" / "busybox"
    busybox.write_bytes(arm64_busybox)
    busybox.chmod(0o755)
    (tmp_path / "bin" / "echo").symlink_to("busybox")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bin", "busybox", "echo"]
    return tmp_path


def chroot(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, timeout=60)


def _remove(name: str) -> None:
    try:
        fd = os.open(ROOT / name, os.O_WRONLY)  # no O_CREAT: binfmt_misc refuses that with EACCES
    except FileNotFoundError:
        return
    try:
        os.write(fd, b"-1")
    finally:
        os.close(fd)


def _register(name: str, flags: str) -> None:
    (ROOT / "register").write_text(binfmt.register_line(name, "aarch64", QEMU, flags))


def _ours() -> list[binfmt.Entry]:
    return [e for e in binfmt.read_entries() if e.name in binfmt.our_names("aarch64")]


@pytest.fixture
def planted() -> Iterator[list[str]]:
    """Names of foreign test entries to remove afterwards; berth's own entry is restored."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            _remove(name)
        binfmt.ensure_emulator(ARM64)


def test_host_platform_needs_no_emulator() -> None:
    assert binfmt.ensure_emulator(plat.host()) is None
    assert binfmt.ensure_emulator(plat.parse("linux/386")) is None


def test_arm64_busybox_runs_in_a_root_without_qemu(bare_root: Path) -> None:
    interpreter = binfmt.ensure_emulator(ARM64)
    assert interpreter is not None and interpreter.exists()
    assert (ROOT / "register").exists()  # ensure_mounted did its job (or found it mounted)
    done = chroot(bare_root, "/bin/busybox", "uname", "-m")
    assert (done.returncode, done.stdout.strip()) == (0, "aarch64"), done.stderr
    handlers = [e for e in binfmt.read_entries()
                if e.enabled and binfmt.handles(e, binfmt.ELF_FORMATS["aarch64"])]
    assert handlers and all("F" in e.flags for e in handlers)


def test_argv0_reaches_the_program(bare_root: Path) -> None:
    binfmt.ensure_emulator(ARM64)
    # busybox picks its applet from argv[0]: "exec -a echo" only works when argv[0] survives.
    done = chroot(bare_root, "/bin/busybox", "sh", "-c", "exec -a echo /bin/busybox preserved")
    assert (done.returncode, done.stdout.strip()) == (0, "preserved"), done.stderr
    link = chroot(bare_root, "/bin/echo", "via", "link")
    assert link.stdout.strip() == "via link"


def test_repeated_and_concurrent_calls_register_once() -> None:
    _remove("berth-qemu-aarch64")
    _remove("berth-qemu-aarch64-2")
    results: list[Path | None] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(binfmt.ensure_emulator(ARM64))
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 8 and len(set(results)) == 1
    ours = _ours()
    assert len(ours) == 1 and ours[0].enabled and "F" in ours[0].flags
    assert binfmt.ensure_emulator(ARM64) == results[0]
    assert _ours() == ours


def test_an_entry_without_fix_binary_is_overtaken(bare_root: Path, planted: list[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    binfmt.ensure_emulator(ARM64)
    planted.append("berth-test-nofix-aarch64")
    _register("berth-test-nofix-aarch64", "P")
    # The newest entry wins: qemu is now looked up inside the chroot, where there is none.
    broken = chroot(bare_root, "/bin/busybox", "uname", "-m")
    assert broken.returncode != 0
    with caplog.at_level(logging.WARNING, logger="berth.host.binfmt"):
        binfmt.ensure_emulator(ARM64)
    fixed = chroot(bare_root, "/bin/busybox", "uname", "-m")
    assert (fixed.returncode, fixed.stdout.strip()) == (0, "aarch64"), fixed.stderr
    assert "berth-test-nofix-aarch64" in caplog.text and "update-binfmts --disable" in caplog.text
    assert (ROOT / "berth-test-nofix-aarch64").exists()  # not ours: left alone
    assert len(_ours()) == 1


def test_a_foreign_fix_binary_entry_is_used_as_is(bare_root: Path, planted: list[str]) -> None:
    _remove("berth-qemu-aarch64")
    _remove("berth-qemu-aarch64-2")
    planted.append("berth-test-fixed-aarch64")
    _register("berth-test-fixed-aarch64", "POF")
    assert binfmt.ensure_emulator(ARM64) == Path(QEMU)
    assert _ours() == []
    done = chroot(bare_root, "/bin/busybox", "uname", "-m")
    assert done.stdout.strip() == "aarch64", done.stderr
