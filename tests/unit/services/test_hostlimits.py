"""HostConfig knobs at create (refusals per isolation, Docker's warnings) and at start (devices, blkio)."""

from __future__ import annotations

import os
import stat

import pytest

from berth.errors import InvalidArgument
from berth.oci import hostresources as hr
from berth.oci.runtime_spec import ContainerSpec, Resources
from berth.services import containerconfig as cc
from berth.services import hostlimits
from berth.services.hostlimits import CgroupSupport
from berth.wire.containerspec import HostConfig

FULL = CgroupSupport(cpus="0-1", mems="0")


def host(**doc) -> HostConfig:
    return HostConfig.from_doc(doc)


def check(h: HostConfig, isolation: str = "process", runtime: str = "runc", network: str = "none",
          support: CgroupSupport = FULL) -> list[str]:
    return hostlimits.check_create(h, isolation, runtime, network, support)


def test_nothing_asked_nothing_said() -> None:
    # what the docker CLI sends when no flag is given
    h = host(ShmSize=0, OomScoreAdj=0, MemorySwappiness=-1, CgroupParent="", Devices=[], DeviceCgroupRules=None,
             Ulimits=None, BlkioWeight=0, KernelMemory=0, CpusetCpus="")
    for isolation, runtime in (("process", "runc"), ("process", "runsc"), ("hyperv", "runc")):
        assert check(h, isolation, runtime) == []


def test_refused_in_docker_words() -> None:
    with pytest.raises(InvalidArgument, match="invalid ulimit type: foo"):
        check(host(Ulimits=[{"Name": "foo", "Soft": 1, "Hard": 1}]))
    with pytest.raises(InvalidArgument, match="not allowed in host network namespace"):
        check(host(Sysctls={"net.ipv4.ip_forward": "1"}), network="host")
    with pytest.raises(InvalidArgument, match="Requested CPUs are not available - requested 2, available: 0-1"):
        check(host(CpusetCpus="2"))
    with pytest.raises(InvalidArgument, match="Minimum memory limit can not be less than memory reservation"):
        check(host(Memory=10 << 20, MemoryReservation=20 << 20))
    with pytest.raises(InvalidArgument, match="invalid CgroupParent"):
        check(host(CgroupParent="../../escape"))
    with pytest.raises(InvalidArgument, match="must be absolute"):
        check(host(Devices=[{"PathOnHost": "dev/null", "PathInContainer": "/dev/x", "CgroupPermissions": "rwm"}]))
    with pytest.raises(InvalidArgument, match="more than the 256"):
        check(host(DeviceCgroupRules=["c 1:3 rwm"] * 1000))
    with pytest.raises(InvalidArgument, match="an absolute Path"):
        check(host(BlkioDeviceReadBps=[{"Path": "/dev/vda\0x", "Rate": 1}]))  # never a ValueError (a 500)
    with pytest.raises(InvalidArgument, match="must be absolute"):
        check(host(Devices=[{"PathOnHost": "/dev/null\0", "PathInContainer": "/dev/x"}]))
    with pytest.raises(InvalidArgument, match="must be absolute"):
        check(host(Devices=[{"PathOnHost": "/dev/null", "PathInContainer": "/.."}]))
    with pytest.raises(InvalidArgument, match="invalid Rate"):
        check(host(BlkioDeviceReadBps=[{"Path": "/dev/vda", "Rate": -1}]))


@pytest.mark.parametrize("doc", [
    {"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 1}]}, {"ShmSize": 1 << 20}, {"OomScoreAdj": 5},
    {"CpusetCpus": "0"}, {"MemorySwappiness": 5}, {"Devices": [{"PathOnHost": "/dev/null"}]},
])
def test_vm_refuses_each(doc) -> None:
    key = next(iter(doc))
    with pytest.raises(InvalidArgument, match=f"HostConfig.{key} is not applied in a VM-isolated container"):
        check(host(**doc), "hyperv")


@pytest.mark.parametrize(("doc", "refused"), [
    ({"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 1}], "ShmSize": 1 << 20, "OomScoreAdj": 5}, False),
    ({"Sysctls": {"kernel.shmmax": "1"}}, True), ({"CpusetCpus": "0"}, True), ({"MemorySwappiness": 5}, True),
    ({"Devices": [{"PathOnHost": "/dev/null"}]}, True), ({"CgroupParent": "/x"}, True),
    ({"BlkioDeviceWriteIOps": [{"Path": "/dev/vda", "Rate": 5}]}, True),
])
def test_runsc_applies_or_refuses(doc, refused) -> None:
    if refused:
        with pytest.raises(InvalidArgument, match=r"not applied under gVisor \(--runtime runsc\)"):
            check(host(**doc), runtime="runsc")
    else:
        assert check(host(**doc), runtime="runsc") == []


def test_warnings_where_the_host_lacks_the_knob() -> None:
    bare = CgroupSupport(blkio_weight=False, blkio_weight_device=False, memory_swappiness=False,
                         memory_reservation=False)
    h = host(BlkioWeight=300, BlkioWeightDevice=[{"Path": "/dev/vda", "Weight": 100}], MemorySwappiness=10,
             MemoryReservation=10 << 20, KernelMemory=10 << 20, KernelMemoryTCP=1 << 20)
    assert check(h, support=bare) == [
        hr.KERNEL_MEMORY_WARNING, hr.KERNEL_MEMORY_TCP_WARNING,
        "Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Reservation "
        "discarded.",
        "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory "
        "swappiness discarded.",
        "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.",
        "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.",
    ]
    got = hostlimits.resources(Resources(), h, bare)
    assert (got.memory_reservation, got.memory_swappiness, got.blkio) == (0, None, hr.BlockIO())
    with pytest.raises(InvalidArgument, match="does not support CPU real-time scheduler"):
        check(host(CpuRealtimePeriod=1000), support=CgroupSupport(cpu_realtime=False))


def test_resources_and_process() -> None:
    h = host(CpusetCpus="1", MemoryReservation=10 << 20, MemorySwappiness=7, BlkioWeight=200, CpuRealtimePeriod=1000,
             Ulimits=[{"Name": "nproc", "Soft": 5, "Hard": 5}], ShmSize=1 << 20, OomScoreAdj=-3,
             Sysctls={"kernel.sem": "1 2 3 4"})
    assert hostlimits.resources(Resources(memory=1 << 30), h, FULL) == Resources(
        memory=1 << 30, cpuset_cpus="1", cpuset_mems="", cpu_rt_period=1000, cpu_rt_runtime=0,
        memory_reservation=10 << 20, memory_swappiness=7, blkio=hr.BlockIO(weight=200))
    got = hostlimits.process(ContainerSpec(args=("sh",), rootfs="/r"), h, "none")
    assert (got.rlimits, got.shm_size, got.sysctl, got.oom_score_adj) == (
        (hr.Rlimit("RLIMIT_NPROC", 5, 5),), 1 << 20, (("kernel.sem", "1 2 3 4"),), -3)
    assert hostlimits.cgroups_path(h, "abc") == "/berth/abc"
    assert hostlimits.cgroups_path(host(CgroupParent="mine/sub/"), "abc") == "/mine/sub/abc"


def test_devices_by_host_path(tmp_path) -> None:
    null = os.stat("/dev/null")
    nodes, rules = hostlimits.devices(host(Devices=[{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                                                     "CgroupPermissions": "rw"}], DeviceCgroupRules=["b 7:* r"]))
    assert [(n.path, n.kind, n.major, n.minor, n.mode) for n in nodes] == [
        ("/dev/mynull", "c", os.major(null.st_rdev), os.minor(null.st_rdev), stat.S_IMODE(null.st_mode))]
    assert rules == (hr.DeviceRule("c", 1, 3, "rw"), hr.DeviceRule("b", 7, None, "r"))
    regular = tmp_path / "file"
    regular.write_text("x")
    for path, words in ((str(regular), "not a device node"), (str(tmp_path / "none"), "no such file")):
        with pytest.raises(InvalidArgument, match=words):
            hostlimits.devices(host(Devices=[{"PathOnHost": path}]))


def test_blkio_needs_a_block_device(tmp_path) -> None:
    with pytest.raises(InvalidArgument, match="is not a block device"):
        hostlimits.blkio(host(BlkioDeviceReadBps=[{"Path": "/dev/null", "Rate": 5}]), FULL, 0)
    block = next((f"/dev/{n}" for n in sorted(os.listdir("/sys/block"))
                  if os.path.exists(f"/dev/{n}") and stat.S_ISBLK(os.stat(f"/dev/{n}").st_mode)), None)
    if block is None:
        pytest.skip("no block device here")
    st = os.stat(block)
    got = hostlimits.blkio(host(BlkioDeviceReadBps=[{"Path": block, "Rate": 5}]), FULL, 300)
    assert got == hr.BlockIO(weight=300, read_bps=(hr.DeviceRate(os.major(st.st_rdev), os.minor(st.st_rdev), 5),))


def test_probe_reads_a_v1_tree(tmp_path) -> None:
    for name, text in (("cpuset/cpuset.cpus", "0-3\n"), ("cpuset/cpuset.mems", "0\n"),
                       ("blkio/blkio.throttle.read_bps_device", ""), ("memory/memory.swappiness", "60"),
                       ("memory/memory.soft_limit_in_bytes", "0")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    got = CgroupSupport.probe(str(tmp_path))
    assert got == CgroupSupport("0-3", "0", blkio_weight=False, blkio_weight_device=False, blkio_throttle=True,
                                memory_reservation=True, memory_swappiness=True, cpu_realtime=False)


def test_update() -> None:
    h = HostConfig(memory=100 << 20, runtime="runc")
    got = cc.updated_host(h, cc.ResourceUpdate(extra=(("CpusetCpus", "0"), ("MemoryReservation", 50 << 20))))
    assert got.extra == {"CpusetCpus": "0", "MemoryReservation": 50 << 20}
    with pytest.raises(InvalidArgument, match="Invalid value abc for cpuset cpus"):
        cc.updated_host(h, cc.ResourceUpdate(extra=(("CpusetCpus", "abc"),)))
    with pytest.raises(InvalidArgument, match="Minimum memory reservation allowed is 6MB"):
        cc.updated_host(h, cc.ResourceUpdate(extra=(("MemoryReservation", 1 << 20),)))
    with pytest.raises(InvalidArgument, match="not applied under gVisor"):
        cc.updated_host(HostConfig(runtime="runsc"), cc.ResourceUpdate(extra=(("CpusetCpus", "0"),)))


def test_update_request_carries_the_knobs() -> None:
    from berth.api.containerrequests import update_request
    got = update_request({"CpusetCpus": "0", "CpusetMems": "", "BlkioWeight": 300, "MemoryReservation": 0,
                          "PidsLimit": -1, "CpuRealtimeRuntime": 10})
    assert got.extra == (("CpusetCpus", "0"), ("BlkioWeight", 300), ("CpuRealtimeRuntime", 10))
    assert got.pids_limit == -1


def test_cgroupns() -> None:
    spec = ContainerSpec(args=("sh",), rootfs="/r")
    assert hostlimits.process(spec, host(CgroupnsMode="private"), "none").cgroup_ns
    assert not hostlimits.process(spec, host(CgroupnsMode="host"), "none").cgroup_ns
    assert check(host(CgroupnsMode="host"), "hyperv") == []
    with pytest.raises(InvalidArgument, match="invalid cgroup namespace mode: shared"):
        check(host(CgroupnsMode="shared"))
    with pytest.raises(InvalidArgument, match="HostConfig.CgroupnsMode is not applied under gVisor"):
        check(host(CgroupnsMode="private"), runtime="runsc")


def test_realtime_budget(tmp_path) -> None:
    (tmp_path / "cpu" / "berth").mkdir(parents=True)
    (tmp_path / "cpu" / "berth" / "cpu.rt_runtime_us").write_text("0\n")
    hostlimits.check_realtime_budget(host(CpuRealtimePeriod=1000), str(tmp_path))  # a period alone is fine
    with pytest.raises(InvalidArgument, match="parent cgroup /berth has a real-time budget of 0 microseconds"):
        hostlimits.check_realtime_budget(host(CpuRealtimeRuntime=1000), str(tmp_path))
    (tmp_path / "cpu" / "berth" / "cpu.rt_runtime_us").write_text("5000\n")
    hostlimits.check_realtime_budget(host(CpuRealtimeRuntime=1000), str(tmp_path))
    with pytest.raises(InvalidArgument, match="parent cgroup /mine has a real-time budget of 0"):
        hostlimits.check_realtime_budget(host(CpuRealtimeRuntime=1000, CgroupParent="mine"), str(tmp_path))


@pytest.mark.parametrize(("doc", "words"), [
    ({"UsernsMode": "container:x"}, "invalid USER mode: container:x"),
    ({"Cgroup": "container:x"}, "berth cannot join another container's cgroup"),
    ({"VolumeDriver": "flocker", "Binds": ["data:/data"]},
     'error looking up volume plugin flocker: plugin "flocker" not found'),
    ({"StorageOpt": {"size": "1G"}}, "--storage-opt is supported only for overlay over xfs"),
    ({"MaskedPaths": ["relative"]}, "not an absolute path"),
])
def test_other_fields_refused(doc, words) -> None:
    with pytest.raises(InvalidArgument, match=words):
        check(host(**doc))


def test_a_volume_driver_matters_only_for_a_volume() -> None:
    # as Docker (docker-py's test_create_with_volume_driver): kept at create when no volume needs it
    assert check(host(VolumeDriver="foo")) == []
    assert check(host(VolumeDriver="foo", Binds=["/host:/in"])) == []
    with pytest.raises(InvalidArgument, match="volume plugin foo"):
        check(host(VolumeDriver="foo", Mounts=[{"Type": "volume", "Source": "v", "Target": "/v"}]))


def test_other_fields_applied() -> None:
    assert check(host(UsernsMode="host", VolumeDriver="local", Annotations={"a": "1"}, MaskedPaths=[])) == []
    got = hostlimits.process(ContainerSpec(args=("sh",), rootfs="/r"), host(Annotations={"a": "1"}, MaskedPaths=[]),
                             "none")
    assert (got.annotations, got.masked_paths, got.readonly_paths) == ((("a", "1"),), (), None)
    with pytest.raises(InvalidArgument, match="HostConfig.MaskedPaths is not applied in a VM-isolated container"):
        check(host(MaskedPaths=[]), "hyperv")


def test_update_warns_like_create() -> None:
    assert hostlimits.update_warnings((("KernelMemory", 1 << 20),), FULL) == [hr.KERNEL_MEMORY_WARNING]
    assert hostlimits.update_warnings((("BlkioWeight", 300),), CgroupSupport(blkio_weight=False)) == [
        "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."]
    assert hostlimits.update_warnings((("CpusetCpus", "0"),), FULL) == []
