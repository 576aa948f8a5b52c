"""Container stats as the Engine API reports them (GET /containers/{id}/stats): one JSON object a sample.

Strategy: services.stats reads typed `Sample`s; this renders Docker's StatsJSON
in its field order. What berth does not measure (kernel/user mode CPU time,
throttling, storage, networks, num_procs) is reported as Docker reports it when
it does not know it: zeros and empty objects. The first sample of a stream has
no previous one: its `precpu_stats` are zero and `preread` is Go's zero time.
"""

from __future__ import annotations

from typing import Any

from berth.services.stats import CpuUsage, Sample


def sample(s: Sample) -> dict[str, Any]:
    """Docker's StatsJSON for *s*."""
    return {
        "read": s.read, "preread": s.pre_read, "name": s.name, "id": s.id,
        "pids_stats": {"current": s.pids} if s.pids is not None else {},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": b.major, "minor": b.minor, "op": b.op, "value": b.value} for b in s.blkio
        ] if s.blkio is not None else None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": _cpu(s.cpu),
        "precpu_stats": _cpu(s.pre_cpu) if s.pre_cpu is not None else _no_precpu(),
        "memory_stats": {"usage": s.memory.usage, "max_usage": s.memory.max_usage, "stats": dict(s.memory.stats),
                         "limit": s.memory.limit} if s.memory is not None else {},
        "networks": {},
    }


def _cpu(cpu: CpuUsage) -> dict[str, Any]:
    return {
        "cpu_usage": {"total_usage": cpu.total, "percpu_usage": list(cpu.per_cpu),
                      "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "system_cpu_usage": cpu.system,
        "online_cpus": cpu.online_cpus,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def _no_precpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0, "online_cpus": 0, "throttling_data": {}}
