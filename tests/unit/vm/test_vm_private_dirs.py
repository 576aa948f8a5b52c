"""Where VM templates, sockets and state live: root-only directories, checked level by level."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from berth.errors import FailedPrecondition
from berth.vm import boot, cmdline, templatefiles
from berth.vm.prepare import Artifacts


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def shm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path / "shm"
    base.mkdir()
    os.chmod(base, 0o1777)  # as /dev/shm
    monkeypatch.setattr(templatefiles, "SHM_ROOT", base / "berth-templates")
    return base


def test_ram_dir_is_made_root_only_at_every_level(shm: Path, tmp_path: Path) -> None:
    d = templatefiles.ram_dir(tmp_path / "vm")
    assert d.parent == shm / "berth-templates"
    assert _mode(shm / "berth-templates") == 0o700 and _mode(d) == 0o700


def test_ram_dir_tightens_a_wider_level(shm: Path, tmp_path: Path) -> None:
    (shm / "berth-templates").mkdir(mode=0o777)
    os.chmod(shm / "berth-templates", 0o777)
    templatefiles.ram_dir(tmp_path / "vm")
    assert _mode(shm / "berth-templates") == 0o700


def test_ram_dir_refuses_a_planted_symlink(shm: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    (shm / "berth-templates").symlink_to(elsewhere)
    with pytest.raises(FailedPrecondition):
        templatefiles.ram_dir(tmp_path / "vm")
    assert os.listdir(elsewhere) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_ram_dir_refuses_a_level_made_by_another_user(shm: Path, tmp_path: Path) -> None:
    planted = shm / "berth-templates"
    planted.mkdir()
    os.chown(planted, 65534, 65534)
    with pytest.raises(FailedPrecondition, match="owned by uid 65534"):
        templatefiles.ram_dir(tmp_path / "vm")


def test_ram_dir_refuses_a_world_writable_base_without_the_sticky_bit(shm: Path, tmp_path: Path) -> None:
    os.chmod(shm, 0o777)
    with pytest.raises(FailedPrecondition, match="sticky"):
        templatefiles.ram_dir(tmp_path / "vm")


def test_templates_dir_is_0700(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir(mode=0o755)
    os.chmod(tmp_path / "templates", 0o755)
    assert templatefiles.templates_dir(tmp_path) == tmp_path / "templates"
    assert _mode(tmp_path / "templates") == 0o700


def test_qemu_runs_sandboxed_without_spawn() -> None:
    art = Artifacts(Path("/k/vmlinux"), Path("/k/initramfs"), "6.1")
    argv = cmdline.qemu_argv(art, agent_socket=Path("/w/agent.sock"), shares={}, cmdline="console=ttyS0",
                             accelerator="tcg")
    policy = argv[argv.index("-sandbox") + 1].split(",")
    assert policy[0] == "on"
    assert {"obsolete=deny", "elevateprivileges=deny", "spawn=deny", "resourcecontrol=deny"} <= set(policy)


def test_private_workdir(tmp_path: Path) -> None:
    wd = tmp_path / "w"
    wd.mkdir()
    os.chmod(wd, 0o755)
    boot.private_workdir(wd)
    assert _mode(wd) == 0o700
