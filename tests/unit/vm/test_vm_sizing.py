import pytest

from berth.errors import InvalidArgument
from berth.vm import sizing


def cfg(memory: int = 0, quota: int = 0, period: int = 0, cpus: str = "") -> dict:
    cpu = {k: v for k, v in (("quota", quota), ("period", period), ("cpus", cpus)) if v}
    return {"linux": {"resources": {"memory": {"limit": memory} if memory else {}, "cpu": cpu}}}


@pytest.mark.parametrize("limit_mib,want", [(0, 256), (6, 192), (64, 192), (100, 256), (512, 640), (1024, 1152)])
def test_memory_is_limit_plus_guest_rounded(limit_mib: int, want: int) -> None:
    assert sizing.memory_mib(cfg(memory=limit_mib << 20)) == want


def test_no_resources_at_all() -> None:
    assert sizing.memory_mib({}) == sizing.DEFAULT_MEM_MIB
    assert sizing.vcpus({}, 8) == 1


@pytest.mark.parametrize("quota,period,cpus,host,want", [
    (150000, 100000, "", 4, 2), (100000, 100000, "", 4, 1), (50000, 100000, "", 4, 1),
    (400000, 100000, "", 2, 2), (0, 0, "0-2,5", 8, 4), (0, 0, "1", 8, 1), (0, 0, "", 8, 1),
])
def test_vcpus(quota: int, period: int, cpus: str, host: int, want: int) -> None:
    assert sizing.vcpus(cfg(quota=quota, period=period, cpus=cpus), host) == want


def test_bad_cpuset() -> None:
    with pytest.raises(InvalidArgument, match="cpuset"):
        sizing.cpuset_size("a-b")


def test_fit() -> None:
    sizing.check_fits(1024, 24105)
    with pytest.raises(InvalidArgument, match="only 1024 MiB"):
        sizing.check_fits(4096, 1024)


@pytest.mark.parametrize("n,slots", [(0, 0), (1, 1), (2, 2), (3, 4), (4, 4), (5, 8)])
def test_share_slots(n: int, slots: int) -> None:
    assert sizing.share_slots(n) == slots
