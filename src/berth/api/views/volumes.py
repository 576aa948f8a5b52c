"""Volumes and a container's mounts as the API shows them: Volume, the list and prune answers,
`system df`'s volumes, and MountPoint.

Strategy: pure functions of services.volumes' typed values (and wire.mountspec's `Mount`),
each building one of Docker's JSON objects with its field names, in the order Docker's own
answers have them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from berth.services.volumes import VolumePruneReport, VolumeRecord, VolumeUsage
from berth.wire.mountspec import Mount


def volume(v: VolumeRecord) -> dict[str, Any]:
    """A volume (inspect, create, and each entry of the list)."""
    return {"CreatedAt": v.created_at, "Driver": v.driver, "Labels": dict(v.labels), "Mountpoint": v.mountpoint,
            "Name": v.name, "Options": dict(v.options), "Scope": v.scope}


def listing(volumes: Iterable[VolumeRecord]) -> dict[str, Any]:
    """GET /volumes (VolumeListResponse)."""
    return {"Volumes": [volume(v) for v in volumes], "Warnings": []}


def usage(u: VolumeUsage) -> dict[str, Any]:
    """A volume with its UsageData, as /system/df lists it."""
    return volume(u.volume) | {"UsageData": {"Size": u.size, "RefCount": u.ref_count}}


def prune_report(r: VolumePruneReport) -> dict[str, Any]:
    """POST /volumes/prune: VolumesDeleted is a list, even when empty."""
    return {"VolumesDeleted": list(r.deleted), "SpaceReclaimed": r.reclaimed}


def mount_point(m: Mount) -> dict[str, Any]:
    """A container's mount as inspect and the container list show it (MountPoint): Name and Driver
    for volumes only."""
    out: dict[str, Any] = {"Type": m.type, "Name": m.name, "Source": m.source, "Destination": m.destination,
                           "Driver": m.driver, "Mode": m.mode, "RW": m.rw, "Propagation": m.propagation}
    if m.type != "volume":
        del out["Name"], out["Driver"]
    return out
