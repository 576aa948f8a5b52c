"""Container resource usage, as GET /containers/{id}/stats reports it.

Strategy: read the container's cgroup (v1: memory, cpuacct, pids, blkio under
/sys/fs/cgroup/<controller>/berth/<id>) and the host's /proc/stat; one sample
per second when streaming, each carrying the previous as `precpu_stats`, so
the docker CLI can compute CPU % exactly as it does for Docker.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, AsyncIterator

from berth import timefmt
from berth.services.records import Container

CGROUP = "/sys/fs/cgroup"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def _blkio(cid: str) -> list[dict[str, Any]]:
    out = []
    try:
        with open(f"{CGROUP}/blkio/berth/{cid}/blkio.throttle.io_service_bytes") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and ":" in parts[0]:
                    major, minor = parts[0].split(":")
                    out.append({"major": int(major), "minor": int(minor), "op": parts[1].lower(),
                                "value": int(parts[2])})
    except OSError:
        pass
    return out


def sample(c: Container) -> dict[str, Any]:
    cid = c.id
    memory = f"{CGROUP}/memory/berth/{cid}"
    cpu = f"{CGROUP}/cpuacct/berth/{cid}"
    running = c.running
    limit = _read_int(f"{memory}/memory.limit_in_bytes") if running else 0
    host_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    percpu = []
    try:
        with open(f"{cpu}/cpuacct.usage_percpu") as f:
            percpu = [int(x) for x in f.read().split()]
    except OSError:
        pass
    return {
        "read": timefmt.now(), "preread": timefmt.ZERO, "name": "/" + c.name, "id": cid,
        "pids_stats": {"current": _read_int(f"{CGROUP}/pids/berth/{cid}/pids.current")} if running else {},
        "blkio_stats": {"io_service_bytes_recursive": _blkio(cid) if running else None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {"total_usage": _read_int(f"{cpu}/cpuacct.usage"), "percpu_usage": percpu,
                          "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": _system_cpu_ns() if running else 0,
            "online_cpus": os.cpu_count() or 1, "throttling_data": {"periods": 0, "throttled_periods": 0,
                                                                     "throttled_time": 0}},
        "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0, "online_cpus": 0,
                         "throttling_data": {}},
        "memory_stats": {"usage": _read_int(f"{memory}/memory.usage_in_bytes"),
                         "max_usage": _read_int(f"{memory}/memory.max_usage_in_bytes"),
                         "stats": _read_kv(f"{memory}/memory.stat"),
                         "limit": min(limit, host_mem) if limit else host_mem} if running else {},
        "networks": {},
    }


async def stream(c: Container, follow: bool, one_shot: bool) -> AsyncIterator[bytes]:
    """JSON samples, one per second while *follow*; the first carries no precpu unless one_shot is false."""
    previous: dict[str, Any] | None = None
    if not follow and not one_shot and c.running:
        previous = sample(c)
        await asyncio.sleep(1)
    while True:
        current = sample(c)
        if previous is not None:
            current["precpu_stats"] = previous["cpu_stats"]
            current["preread"] = previous["read"]
        yield json.dumps(current).encode() + b"\n"
        if not follow or not c.running:
            return
        previous = current
        await asyncio.sleep(1)
