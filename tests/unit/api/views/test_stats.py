"""api.views.stats: Docker's StatsJSON from a typed sample (running, stopped, with a previous sample)."""

from __future__ import annotations

from berth import timefmt
from berth.api.views import stats as views
from berth.services.stats import BlkioEntry, CpuUsage, MemoryUsage, Sample

CPU = CpuUsage(total=500, per_cpu=(200, 300), system=10_000, online_cpus=2)
THROTTLING = {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
NO_PRECPU = {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0, "online_cpus": 0, "throttling_data": {}}
CPU_DOC = {"cpu_usage": {"total_usage": 500, "percpu_usage": [200, 300], "usage_in_kernelmode": 0,
                         "usage_in_usermode": 0},
           "system_cpu_usage": 10_000, "online_cpus": 2, "throttling_data": THROTTLING}


def test_a_running_container_first_sample() -> None:
    s = Sample(read="2024-01-01T00:00:01Z", name="/web", id="c1", pids=3,
               blkio=(BlkioEntry(8, 0, "read", 4096),), cpu=CPU,
               memory=MemoryUsage(usage=100, max_usage=200, stats={"cache": 5}, limit=1 << 30))
    assert views.sample(s) == {
        "read": "2024-01-01T00:00:01Z", "preread": timefmt.ZERO, "name": "/web", "id": "c1",
        "pids_stats": {"current": 3},
        "blkio_stats": {"io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "read", "value": 4096}]},
        "num_procs": 0, "storage_stats": {}, "cpu_stats": CPU_DOC, "precpu_stats": NO_PRECPU,
        "memory_stats": {"usage": 100, "max_usage": 200, "stats": {"cache": 5}, "limit": 1 << 30},
        "networks": {},
    }
    assert list(views.sample(s)) == ["read", "preread", "name", "id", "pids_stats", "blkio_stats", "num_procs",
                                     "storage_stats", "cpu_stats", "precpu_stats", "memory_stats", "networks"]


def test_a_stopped_container_reports_empty_sections() -> None:
    stopped = CpuUsage(total=0, per_cpu=(), system=0, online_cpus=4)
    doc = views.sample(Sample(read="t", name="/web", id="c1", pids=None, blkio=None, cpu=stopped, memory=None))
    assert doc["pids_stats"] == {} and doc["memory_stats"] == {}
    assert doc["blkio_stats"] == {"io_service_bytes_recursive": None}
    assert doc["cpu_stats"]["cpu_usage"]["percpu_usage"] == [] and doc["cpu_stats"]["online_cpus"] == 4


def test_the_previous_sample_is_precpu() -> None:
    s = Sample(read="t2", name="/web", id="c1", pids=1, blkio=(), cpu=CPU, memory=None,
               pre_read="t1", pre_cpu=CPU)
    doc = views.sample(s)
    assert doc["preread"] == "t1" and doc["precpu_stats"] == CPU_DOC
    assert doc["blkio_stats"] == {"io_service_bytes_recursive": []}
