from __future__ import annotations

from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.vm import cmdline
from berth.vm.prepare import Artifacts

ART = Artifacts(Path("/c/vmlinux"), Path("/c/initramfs.cpio"), "6.1.0-56-amd64")


def test_parse_cpu_khz() -> None:
    assert cmdline.parse_cpu_khz("processor\t: 0\ncpu MHz\t\t: 2596.124\ncache size\t: 1 KB\n") == 2596124
    assert cmdline.parse_cpu_khz("no such line\n") is None


def test_kernel_cmdline_has_tsc_and_lpj() -> None:
    line = cmdline.kernel_cmdline(2596124).split()
    assert "tsc_early_khz=2596124" in line and f"lpj={2596124 * 4}" in line
    assert "console=ttyS0" in line and "acpi=off" not in line
    assert cmdline.kernel_cmdline(1000, "debug").endswith(" debug")


def test_kernel_cmdline_keeps_an_idle_guest_quiet() -> None:
    line = cmdline.kernel_cmdline(2596124).split()
    assert {"sysctl.vm.compaction_proactiveness=0", "sysctl.vm.stat_interval=10", "psi=0"} <= set(line)
    assert line.count("psi=0") == 1


def test_qemu_argv() -> None:
    argv = cmdline.qemu_argv(ART, agent_socket=Path("/w/agent.sock"), shares={"rootfs": Path("/r")},
                             cmdline="x", console_log=None)
    joined = " ".join(argv)
    assert argv[:9] == ["qemu-system-x86_64", "-M", "microvm,pit=off", "-cpu", "max", "-accel", "tcg", "-m", "256"]
    assert "-kernel /c/vmlinux -initrd /c/initramfs.cpio -append x" in joined
    assert "socket,id=agent,path=/w/agent.sock" in argv
    assert "virtserialport,bus=vser0.0,chardev=agent,name=berth.agent" in argv
    assert "local,id=fs0,path=/r,security_model=none" in argv
    assert "virtio-9p-device,fsdev=fs0,mount_tag=rootfs" in argv
    assert "-serial" not in argv and "-enable-kvm" not in argv


def test_template_and_clone_argv_differ_only_in_memory_mapping_and_incoming() -> None:
    def argv(shared: bool, incoming: bool) -> list[str]:
        return cmdline.qemu_argv(ART, agent_socket=Path("/w/agent.sock"), shares={"rootfs": Path("/r")},
                                 cmdline="x", console_log=Path("/w/console.log"), accelerator="tcg",
                                 memory_file=Path("/t/ram"), memory_shared=shared, incoming=incoming)
    template, clone = argv(True, False), argv(False, True)
    assert [a.replace("share=off", "share=on") for a in clone] == template + ["-incoming", "defer"]
    assert template[2] == clone[2] == cmdline.MACHINE


def test_qemu_argv_refuses_bad_shares() -> None:
    with pytest.raises(InvalidArgument):
        cmdline.qemu_argv(ART, agent_socket=Path("/s"), shares={"bad tag": Path("/r")}, cmdline="x")
    with pytest.raises(InvalidArgument):
        cmdline.qemu_argv(ART, agent_socket=Path("/s"), shares={"t": Path("/a,b")}, cmdline="x")
