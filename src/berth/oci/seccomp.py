"""The default seccomp profile (the `linux.seccomp` section of config.json).

Strategy: a deny list, not Docker's allow list. Every syscall is allowed except
the ones Docker's default profile refuses an unprivileged container; those
fail with EPERM. A syscall that Docker unlocks with a capability is left
allowed when the container holds that capability (the kernel still checks the
capability itself). No argument filters: each rule is a plain name match, so
the profile means the same thing on every libseccomp version. Names the
installed libseccomp does not know are skipped by runc, so newer syscalls can
be listed safely. Pure: no I/O; the architecture is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from berth.errors import InvalidArgument
from berth.oci.capabilities import ALL, normalize

EPERM = 1

#: Syscalls refused to every unprivileged container, whatever its capabilities.
ALWAYS_BLOCKED: tuple[str, ...] = (
    "add_key",
    "create_module",
    "get_kernel_syms",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "nfsservctl",
    "query_module",
    "request_key",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)

#: Syscalls refused unless the container holds one of the listed capabilities.
BLOCKED_UNLESS: dict[str, frozenset[str]] = {
    # mount machinery and namespaces
    "mount": frozenset({"CAP_SYS_ADMIN"}),
    "umount": frozenset({"CAP_SYS_ADMIN"}),
    "umount2": frozenset({"CAP_SYS_ADMIN"}),
    "pivot_root": frozenset({"CAP_SYS_ADMIN"}),
    "fsopen": frozenset({"CAP_SYS_ADMIN"}),
    "fsconfig": frozenset({"CAP_SYS_ADMIN"}),
    "fsmount": frozenset({"CAP_SYS_ADMIN"}),
    "fspick": frozenset({"CAP_SYS_ADMIN"}),
    "move_mount": frozenset({"CAP_SYS_ADMIN"}),
    "open_tree": frozenset({"CAP_SYS_ADMIN"}),
    "mount_setattr": frozenset({"CAP_SYS_ADMIN"}),
    "unshare": frozenset({"CAP_SYS_ADMIN"}),
    "setns": frozenset({"CAP_SYS_ADMIN"}),
    "quotactl": frozenset({"CAP_SYS_ADMIN"}),
    "quotactl_fd": frozenset({"CAP_SYS_ADMIN"}),
    "lookup_dcookie": frozenset({"CAP_SYS_ADMIN"}),
    "name_to_handle_at": frozenset({"CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"}),
    "open_by_handle_at": frozenset({"CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"}),
    "bpf": frozenset({"CAP_SYS_ADMIN", "CAP_BPF"}),
    "perf_event_open": frozenset({"CAP_SYS_ADMIN", "CAP_PERFMON"}),
    # tracing other processes
    "ptrace": frozenset({"CAP_SYS_PTRACE"}),
    "process_vm_readv": frozenset({"CAP_SYS_PTRACE"}),
    "process_vm_writev": frozenset({"CAP_SYS_PTRACE"}),
    "kcmp": frozenset({"CAP_SYS_PTRACE"}),
    "pidfd_getfd": frozenset({"CAP_SYS_PTRACE"}),
    "process_madvise": frozenset({"CAP_SYS_PTRACE"}),
    # kernel modules
    "init_module": frozenset({"CAP_SYS_MODULE"}),
    "finit_module": frozenset({"CAP_SYS_MODULE"}),
    "delete_module": frozenset({"CAP_SYS_MODULE"}),
    # the clock
    "settimeofday": frozenset({"CAP_SYS_TIME"}),
    "stime": frozenset({"CAP_SYS_TIME"}),
    "clock_settime": frozenset({"CAP_SYS_TIME"}),
    "clock_settime64": frozenset({"CAP_SYS_TIME"}),
    # clock_adjtime is allowed, as in Docker's profile since 20.10: reading the clock's state is
    # harmless, and the kernel itself refuses changes without CAP_SYS_TIME.
    # misc
    "reboot": frozenset({"CAP_SYS_BOOT"}),
    "acct": frozenset({"CAP_SYS_PACCT"}),
    "iopl": frozenset({"CAP_SYS_RAWIO"}),
    "ioperm": frozenset({"CAP_SYS_RAWIO"}),
    "mbind": frozenset({"CAP_SYS_NICE"}),
    "get_mempolicy": frozenset({"CAP_SYS_NICE"}),
    "set_mempolicy": frozenset({"CAP_SYS_NICE"}),
    "set_mempolicy_home_node": frozenset({"CAP_SYS_NICE"}),
    "move_pages": frozenset({"CAP_SYS_NICE"}),
}

#: seccomp architectures per Go-style architecture name.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}
_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64"}


def blocked_syscalls(capabilities: Iterable[str]) -> list[str]:
    """Return the syscall names refused to a container holding *capabilities*.

    Args:
        capabilities: capability names in any form capabilities.normalize() accepts.

    Returns:
        Sorted syscall names.

    Raises:
        berth.errors.InvalidArgument: an unknown capability name.
    """
    held = {normalize(c) for c in capabilities} - {ALL}
    names = set(ALWAYS_BLOCKED)
    names.update(name for name, unlock in BLOCKED_UNLESS.items() if not unlock & held)
    return sorted(names)


def default_profile(capabilities: Iterable[str], arch: str = "amd64") -> dict[str, Any]:
    """Return the `linux.seccomp` section for an unprivileged container.

    Args:
        capabilities: the container's capabilities (as capabilities.effective returns).
        arch: "amd64" or "arm64" (also "x86_64", "aarch64"); the caller knows the host.

    Returns:
        A dict with defaultAction SCMP_ACT_ALLOW, the architectures, and one
        SCMP_ACT_ERRNO (EPERM) rule listing the blocked syscalls.

    Raises:
        berth.errors.InvalidArgument: an unsupported arch or unknown capability name.
    """
    key = _ARCH_ALIASES.get(arch, arch)
    if key not in ARCHITECTURES:
        raise InvalidArgument(f"unsupported seccomp architecture: {arch!r}")
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(ARCHITECTURES[key]),
        "syscalls": [
            {
                "names": blocked_syscalls(capabilities),
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
            }
        ],
    }
