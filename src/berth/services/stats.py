"""Container resource usage, as GET /containers/{id}/stats reports it.

Strategy: read the container's cgroup (v1: memory, cpuacct, pids, blkio under
/sys/fs/cgroup/<controller>/berth/<id>) and the host's /proc/stat into a typed
`Sample`; one sample per second when streaming, each carrying the previous
one's CPU figures and time, so the docker CLI can compute CPU % exactly as it
does for Docker. Docker's JSON for a sample is api.views.stats'.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from dataclasses import dataclass
from typing import AsyncIterator

from berth import timefmt
from berth.services.records import Container

CGROUP = "/sys/fs/cgroup"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU time used: the container's (total and per CPU, ns) and the host's (system, ns)."""

    total: int
    per_cpu: tuple[int, ...]
    system: int
    online_cpus: int


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    """The memory cgroup's figures (bytes); *limit* is the host's memory when the cgroup sets none lower."""

    usage: int
    max_usage: int
    stats: dict[str, int]
    limit: int


@dataclass(frozen=True, slots=True)
class BlkioEntry:
    """One line of blkio.throttle.io_service_bytes: bytes moved for an operation on a device."""

    major: int
    minor: int
    op: str
    value: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a container's usage. For a container that is not running, *pids*, *blkio*
    and *memory* are None (Docker reports them empty). *previous*: the CPU figures and time of the
    sample before (None for the first one, or a one-shot reading)."""

    read: str
    name: str
    id: str
    pids: int | None
    blkio: tuple[BlkioEntry, ...] | None
    cpu: CpuUsage
    memory: MemoryUsage | None
    pre_read: str = timefmt.ZERO
    pre_cpu: CpuUsage | None = None


def _read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _read_kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if value.strip().lstrip("-").isdigit():
                    out[key] = int(value)
    except OSError:
        pass
    return out


def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * 1_000_000_000 // CLOCK_TICKS


def _blkio(cid: str) -> tuple[BlkioEntry, ...]:
    out = []
    try:
        with open(f"{CGROUP}/blkio/berth/{cid}/blkio.throttle.io_service_bytes") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and ":" in parts[0]:
                    major, minor = parts[0].split(":")
                    out.append(BlkioEntry(int(major), int(minor), parts[1].lower(), int(parts[2])))
    except OSError:
        pass
    return tuple(out)


def sample(c: Container) -> Sample:
    """The container's usage now (it reads the cgroup's files)."""
    cid = c.id
    memory = f"{CGROUP}/memory/berth/{cid}"
    cpu = f"{CGROUP}/cpuacct/berth/{cid}"
    running = c.running
    limit = _read_int(f"{memory}/memory.limit_in_bytes") if running else 0
    host_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    percpu: list[int] = []
    try:
        with open(f"{cpu}/cpuacct.usage_percpu") as f:
            percpu = [int(x) for x in f.read().split()]
    except OSError:
        pass
    return Sample(
        read=timefmt.now(), name="/" + c.name, id=cid,
        pids=_read_int(f"{CGROUP}/pids/berth/{cid}/pids.current") if running else None,
        blkio=_blkio(cid) if running else None,
        cpu=CpuUsage(total=_read_int(f"{cpu}/cpuacct.usage"), per_cpu=tuple(percpu),
                     system=_system_cpu_ns() if running else 0, online_cpus=os.cpu_count() or 1),
        memory=MemoryUsage(usage=_read_int(f"{memory}/memory.usage_in_bytes"),
                           max_usage=_read_int(f"{memory}/memory.max_usage_in_bytes"),
                           stats=_read_kv(f"{memory}/memory.stat"),
                           limit=min(limit, host_mem) if limit else host_mem) if running else None,
    )


async def stream(c: Container, follow: bool, one_shot: bool) -> AsyncIterator[Sample]:
    """Samples, one per second while *follow*; the first carries no previous one unless one_shot is false
    (then it is taken a second after a first reading)."""
    previous: Sample | None = None
    if not follow and not one_shot and c.running:
        previous = sample(c)
        await asyncio.sleep(1)
    while True:
        current = sample(c)
        if previous is not None:
            current = dataclasses.replace(current, pre_read=previous.read, pre_cpu=previous.cpu)
        yield current
        if not follow or not c.running:
            return
        previous = current
        await asyncio.sleep(1)
