"""Unit tests for berth.oci.seccomp (the default deny-list profile)."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.oci.capabilities import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from berth.oci.seccomp import (
    ALWAYS_BLOCKED,
    BLOCKED_UNLESS,
    blocked_syscalls,
    default_profile,
)

DOCKER_BLOCKED = {
    "acct", "add_key", "bpf", "clock_settime", "create_module", "delete_module",
    "finit_module", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "move_mount",
    "fsopen", "fsmount", "fspick", "open_tree", "move_pages", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev",
    "ptrace", "query_module", "quotactl", "reboot", "request_key", "set_mempolicy", "setns",
    "settimeofday", "stime", "swapon", "swapoff", "sysfs", "_sysctl", "umount", "umount2", "unshare",
    "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
}


def _names(profile: dict) -> list[str]:
    (rule,) = profile["syscalls"]
    return rule["names"]


def test_shape() -> None:
    profile = default_profile(DEFAULT_CAPABILITIES)
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    (rule,) = profile["syscalls"]
    assert rule["action"] == "SCMP_ACT_ERRNO"
    assert rule["errnoRet"] == 1
    assert set(rule) == {"names", "action", "errnoRet"}  # no argument filters


def test_default_caps_block_dockers_list() -> None:
    names = set(_names(default_profile(DEFAULT_CAPABILITIES)))
    assert DOCKER_BLOCKED <= names
    assert "read" not in names and "clone" not in names and "chroot" not in names


def test_names_sorted_and_unique() -> None:
    names = _names(default_profile([]))
    assert names == sorted(set(names))


@pytest.mark.parametrize(
    ("cap", "unlocked"),
    [
        ("SYS_ADMIN", {"mount", "umount", "umount2", "unshare", "setns", "pivot_root", "fsopen",
                       "fsmount", "fspick", "move_mount", "open_tree", "quotactl", "name_to_handle_at",
                       "open_by_handle_at"}),
        ("SYS_PTRACE", {"ptrace", "process_vm_readv", "process_vm_writev", "kcmp"}),
        ("SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
        ("SYS_TIME", {"settimeofday", "stime", "clock_settime"}),
        ("SYS_BOOT", {"reboot"}),
        ("SYS_PACCT", {"acct"}),
        ("SYS_RAWIO", {"iopl", "ioperm"}),
        ("SYS_NICE", {"mbind", "get_mempolicy", "set_mempolicy", "move_pages"}),
    ],
)
def test_capability_unlocks(cap: str, unlocked: set[str]) -> None:
    base = set(blocked_syscalls(DEFAULT_CAPABILITIES))
    assert unlocked <= base
    granted = set(blocked_syscalls([*DEFAULT_CAPABILITIES, cap]))
    assert not unlocked & granted
    # nothing else changes
    assert base - granted == {n for n, caps in BLOCKED_UNLESS.items() if f"CAP_{cap}" in caps}


def test_capability_names_accept_any_form() -> None:
    assert blocked_syscalls(["sys_admin"]) == blocked_syscalls(["CAP_SYS_ADMIN"])


def test_always_blocked_even_with_every_capability() -> None:
    assert blocked_syscalls(ALL_CAPABILITIES) == sorted(ALWAYS_BLOCKED)
    assert {"keyctl", "add_key", "request_key", "kexec_load", "swapon"} <= set(ALWAYS_BLOCKED)


def test_arm64_and_aliases() -> None:
    assert default_profile([], "arm64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert default_profile([], "aarch64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert default_profile([], "x86_64") == default_profile([], "amd64")


def test_unknown_arch_and_capability() -> None:
    with pytest.raises(InvalidArgument, match="riscv"):
        default_profile([], "riscv64")
    with pytest.raises(InvalidArgument, match="WIZARD"):
        default_profile(["WIZARD"])
