"""Volumes and a container's mounts as the API shows them (berth.api.views.volumes)."""

from __future__ import annotations

from berth.api.views import volumes as views
from berth.services.volumes import VolumePruneReport, VolumeRecord, VolumeUsage
from berth.wire.mountspec import ANONYMOUS_LABEL, Mount

VOLUME = VolumeRecord("data", "/r/volumes/data/_data", "2024-04-01T10:00:00Z", {"team": "a"},
                      {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
VOLUME_JSON = {"CreatedAt": "2024-04-01T10:00:00Z", "Driver": "local", "Labels": {"team": "a"},
               "Mountpoint": "/r/volumes/data/_data", "Name": "data",
               "Options": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}, "Scope": "local"}


def test_volume_keys_in_docker_order() -> None:
    assert list(views.volume(VOLUME).items()) == list(VOLUME_JSON.items())


def test_listing() -> None:
    anonymous = VolumeRecord("f" * 64, "/r/f/_data", "2024-04-01T10:00:00Z", {ANONYMOUS_LABEL: ""})
    out = views.listing([VOLUME, anonymous])
    assert out["Warnings"] == []
    assert [v["Name"] for v in out["Volumes"]] == ["data", "f" * 64]
    assert out["Volumes"][1]["Options"] == {} and out["Volumes"][1]["Labels"] == {ANONYMOUS_LABEL: ""}
    assert views.listing([]) == {"Volumes": [], "Warnings": []}


def test_usage() -> None:
    assert views.usage(VolumeUsage(VOLUME, 4096, 2)) == VOLUME_JSON | {"UsageData": {"Size": 4096, "RefCount": 2}}


def test_prune_report_lists_even_when_empty() -> None:
    assert views.prune_report(VolumePruneReport((), 0)) == {"VolumesDeleted": [], "SpaceReclaimed": 0}
    assert views.prune_report(VolumePruneReport(("a", "b"), 10)) == {"VolumesDeleted": ["a", "b"],
                                                                     "SpaceReclaimed": 10}


def test_mount_point_shapes() -> None:
    volume = Mount("volume", "/d", "/r/v1/_data", name="v1", driver="local", mode="z", copy_data=False)
    assert views.mount_point(volume) == {"Type": "volume", "Name": "v1", "Source": "/r/v1/_data",
                                         "Destination": "/d", "Driver": "local", "Mode": "z", "RW": True,
                                         "Propagation": ""}
    bind = Mount("bind", "/d", "/h", rw=False, propagation="rprivate", options=("rprivate",))
    assert views.mount_point(bind) == {"Type": "bind", "Source": "/h", "Destination": "/d", "Mode": "", "RW": False,
                                       "Propagation": "rprivate"}
    tmpfs = Mount("tmpfs", "/t", tmpfs_options="rw,noexec")
    assert views.mount_point(tmpfs) == {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": True,
                                        "Propagation": ""}
