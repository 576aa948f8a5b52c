"""Linux capability names and Docker's rules for a container's capability set.

Strategy: capabilities are kept as canonical "CAP_NAME" strings. User input
("net_admin", "CAP_NET_ADMIN", "ALL") is normalised once, validated against the
kernel's full list, and combined with the default set the way Docker combines
--cap-add/--cap-drop. The result is ordered by capability number, so the same
input always yields the same config.json. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from berth.errors import FailedPrecondition, InvalidArgument

#: Every Linux capability, indexed by its number (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40).
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

#: Capability number by canonical name.
CAPABILITY_NUMBERS: dict[str, int] = {name: i for i, name in enumerate(ALL_CAPABILITIES)}

#: The set an unprivileged Docker container starts with.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

ALL = "ALL"


def normalize(name: str) -> str:
    """Return the canonical form of one capability name.

    Args:
        name: "net_admin", "CAP_NET_ADMIN", "Cap_Net_Admin" or "all" (any case).

    Returns:
        "CAP_NET_ADMIN"-style name, or "ALL".

    Raises:
        berth.errors.InvalidArgument: the name is not a Linux capability.
    """
    upper = name.strip().upper()
    if upper == ALL:
        return ALL
    canonical = upper if upper.startswith("CAP_") else "CAP_" + upper
    if canonical not in CAPABILITY_NUMBERS:
        raise InvalidArgument(f"unknown capability: {name!r}")
    return canonical


def bitmask(capabilities: Iterable[str]) -> int:
    """Return the kernel bitmask (as in /proc/<pid>/status CapEff) of *capabilities*.

    Args:
        capabilities: names in any form normalize() accepts (not "ALL").

    Returns:
        The OR of 1 << number for each capability.

    Raises:
        berth.errors.InvalidArgument: an unknown name, or "ALL".
    """
    mask = 0
    for name in capabilities:
        canonical = normalize(name)
        if canonical == ALL:
            raise InvalidArgument("ALL is not a single capability")
        mask |= 1 << CAPABILITY_NUMBERS[canonical]
    return mask


def from_bitmask(mask: int) -> list[str]:
    """Return the capability names set in a kernel bitmask.

    Args:
        mask: e.g. int(CapBnd_hex, 16) from /proc/self/status.

    Returns:
        Canonical names ordered by number; bits beyond CAP_CHECKPOINT_RESTORE are ignored.
    """
    return [name for i, name in enumerate(ALL_CAPABILITIES) if mask >> i & 1]


def effective(
    cap_add: Iterable[str],
    cap_drop: Iterable[str],
    privileged: bool,
    available: Iterable[str] | None = None,
) -> list[str]:
    """Return the container's capability set, following Docker's rules.

    Rules: a privileged container gets every capability (add/drop are ignored,
    but still validated). "ALL" in cap_add means every capability except those
    named in cap_drop. Otherwise "ALL" in cap_drop means only those in cap_add.
    Otherwise the default set minus cap_drop plus cap_add (add wins over drop
    when a name is in both).

    "Every capability" means every one in *available* when it is given: a
    runtime cannot grant a capability missing from its own bounding set (runc
    fails with "unable to apply caps"), so the caller passes the host's set.

    Args:
        cap_add: capability names to add; "CAP_" prefix optional, any case, or "ALL".
        cap_drop: capability names to drop; same forms.
        privileged: whether the container is privileged.
        available: the capabilities the runtime itself holds (its bounding
            set), or None to assume all of them.

    Returns:
        Canonical "CAP_*" names, ordered by capability number, without duplicates.

    Raises:
        berth.errors.InvalidArgument: a name that is not a Linux capability
            (the message names it).
        berth.errors.FailedPrecondition: the default set or cap_add names a
            capability outside *available*.
    """
    adds = {normalize(n) for n in cap_add}
    drops = {normalize(n) for n in cap_drop}
    every = set(ALL_CAPABILITIES)
    if available is not None:
        every &= {normalize(n) for n in available} - {ALL}
    if privileged:
        chosen = every
    elif ALL in adds:
        chosen = every - drops
    elif ALL in drops:
        chosen = adds - {ALL}
    else:
        chosen = (set(DEFAULT_CAPABILITIES) - drops) | adds
    missing = chosen - every
    if missing:
        names = ", ".join(sorted(missing, key=CAPABILITY_NUMBERS.__getitem__))
        raise FailedPrecondition(f"the host does not grant the capabilities {names}")
    return sorted(chosen, key=CAPABILITY_NUMBERS.__getitem__)
