"""The size of a container's utility VM, from the container's OCI resources.

Strategy: pure arithmetic. A memory limit becomes guest RAM (the limit plus
room for the guest kernel, rounded up to a step so nearby limits share one
template); a CPU limit becomes whole vCPUs (quota/period rounded up, or the
size of a cpuset), never more than the host has; 9p share counts are rounded
up to a power of two, again so templates are shared between similar containers.
"""

from __future__ import annotations

import math
from typing import Any

from berth.errors import InvalidArgument

DEFAULT_MEM_MIB = 256
GUEST_KERNEL_MIB = 96  # what the guest kernel and agent need beside the container's limit
MIN_MEM_MIB = 160
MEM_STEP_MIB = 64


def _resources(config: dict[str, Any]) -> dict[str, Any]:
    return dict((config.get("linux") or {}).get("resources") or {})


def memory_mib(config: dict[str, Any]) -> int:
    """Guest RAM for the container's memory limit (the default size without one)."""
    return guest_mib(int((_resources(config).get("memory") or {}).get("limit") or 0))


def guest_mib(limit: int) -> int:
    """Guest RAM for a memory limit of *limit* bytes (0: none)."""
    if limit <= 0:
        return DEFAULT_MEM_MIB
    want = max(MIN_MEM_MIB, math.ceil(limit / (1 << 20)) + GUEST_KERNEL_MIB)
    return math.ceil(want / MEM_STEP_MIB) * MEM_STEP_MIB


def cpuset_size(cpus: str) -> int:
    """How many CPUs a cpuset list such as "0-2,5" names (0 for an empty list)."""
    count = 0
    for part in filter(None, (p.strip() for p in cpus.split(","))):
        lo, _, hi = part.partition("-")
        try:
            count += (int(hi) - int(lo) + 1) if hi else 1
        except ValueError:
            raise InvalidArgument(f"invalid cpuset {cpus!r}: use a list like 0-2,5") from None
    return count


def vcpus(config: dict[str, Any], host_cpus: int) -> int:
    """vCPUs for the container's CPU limit: --cpus rounded up, or its cpuset's size; 1 by default."""
    cpu = _resources(config).get("cpu") or {}
    quota, period = int(cpu.get("quota") or 0), int(cpu.get("period") or 0)
    if quota > 0 and period > 0:
        n = math.ceil(quota / period)
    elif cpu.get("cpus"):
        n = cpuset_size(str(cpu["cpus"]))
    else:
        n = 1
    return max(1, min(n, max(1, host_cpus)))


def check_fits(mem_mib: int, host_mib: int) -> None:
    """Refuse a VM larger than the host's memory.

    Raises:
        InvalidArgument: it does not fit.
    """
    if host_mib and mem_mib > host_mib:
        raise InvalidArgument(
            f"a VM-isolated container with this memory limit needs a {mem_mib} MiB utility VM, but this host has "
            f"only {host_mib} MiB of memory: ask for less with --memory (the VM adds {GUEST_KERNEL_MIB} MiB "
            "for its kernel)")


def share_slots(n: int) -> int:
    """How many extra 9p devices a VM with *n* shares besides its root gets: 0, 1, 2, 4, 8, ..."""
    return 0 if n <= 0 else 1 << (n - 1).bit_length()
