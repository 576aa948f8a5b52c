"""Images as the API shows them: `docker images` rows, `image inspect`, `history`, rmi and prune
results, and what a registry has for a name (`GET /distribution/{name}/json`).

Strategy: pure functions of the typed values services.imageviews, services.imageremoval and
services.distribution return; Docker's field names live here only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from berth import timefmt
from berth.api.views import imagemanifests as manifest_views
from berth.oci import platform as platforms
from berth.services.distribution import RegistryImage
from berth.services.imagemanifests import ManifestSummary
from berth.services.imageremoval import PruneResult, Removal
from berth.services.imageviews import ImageDetails, ImageHistory, ImageSummary


def summary(item: ImageSummary, manifests: Sequence[ManifestSummary] | None = None) -> dict[str, Any]:
    """One row of GET /images/json (and of /system/df's Images); "Manifests" only when given (manifests=1)."""
    row = {
        "Id": item.id, "ParentId": item.parent, "RepoTags": list(item.repo_tags),
        "RepoDigests": list(item.repo_digests), "Created": item.created, "Size": item.size, "SharedSize": -1,
        "VirtualSize": item.size, "Labels": dict(item.labels), "Containers": item.containers,
    }
    if manifests is not None:
        row["Manifests"] = [manifest_views.manifest(m) for m in manifests]
    return row


def listing(items: Iterable[ImageSummary],
            manifests: Sequence[Sequence[ManifestSummary]] | None = None) -> list[dict[str, Any]]:
    """GET /images/json; *manifests*: each item's, in order (manifests=1)."""
    if manifests is None:
        return [summary(i) for i in items]
    return [summary(i, m) for i, m in zip(items, manifests, strict=True)]


def _strings(value: tuple[str, ...] | None) -> list[str] | None:
    return list(value) if value is not None else None


def _keys(value: tuple[str, ...] | None) -> dict[str, Any] | None:
    """A set of ports or volumes as Docker writes it: an object whose values are empty objects."""
    return {k: {} for k in value} if value is not None else None


def inspect(d: ImageDetails) -> dict[str, Any]:
    """GET /images/{name}/json."""
    cfg, record, body = d.config, d.record, d.config.runtime
    history = cfg.history
    config: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": body.user,
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": _strings(body.env), "Cmd": _strings(body.cmd), "Image": "",
        "Volumes": _keys(body.volumes), "WorkingDir": body.working_dir,
        "Entrypoint": _strings(body.entrypoint), "OnBuild": _strings(body.on_build),
        "Labels": dict(body.labels) if body.labels is not None else None, "ExposedPorts": _keys(body.exposed_ports),
        "StopSignal": body.stop_signal or None,
    }
    if body.healthcheck:
        config["Healthcheck"] = body.healthcheck
    if body.shell:
        config["Shell"] = list(body.shell)
    return {
        "Id": d.id, "RepoTags": list(d.repo_tags), "RepoDigests": list(d.repo_digests),
        "Parent": d.parent, "Comment": history[-1].comment if history else "",
        "Created": cfg.created or record.created, "DockerVersion": "",
        "Author": cfg.author,
        "Config": config,
        "Architecture": cfg.architecture or "amd64", "Os": cfg.os or "linux",
        "Variant": cfg.variant or None,
        "Size": record.size, "VirtualSize": record.size,
        "GraphDriver": {"Name": "overlay2", "Data": {"LowerDir": ":".join(d.layer_dirs)}},
        "RootFS": {"Type": "layers", "Layers": list(record.diff_ids)},
        "Metadata": {"LastTagTime": record.tagged or timefmt.ZERO},
        # Docker 26+ drops these at API 1.45, but docker-compose 1.29 (which speaks the daemon's newest
        # version) reads ContainerConfig.Volumes to recreate a container: kept, empty, at every version.
        "Container": "",
        "ContainerConfig": {k: "" if isinstance(v, str) else False if isinstance(v, bool) else None
                            for k, v in config.items()},
    }


def history(h: ImageHistory) -> list[dict[str, Any]]:
    """GET /images/{name}/history: newest first; only the newest entry names the image."""
    out = []
    for i, entry in enumerate(reversed(h.entries)):
        out.append({"Id": h.id if i == 0 else "<missing>", "Created": _epoch(entry.created),
                    "CreatedBy": entry.created_by, "Tags": list(h.tags) if i == 0 else None,
                    "Size": h.size if i == len(h.entries) - 1 else 0, "Comment": entry.comment})
    return out


def removed(items: Sequence[Removal]) -> list[dict[str, str]]:
    """DELETE /images/{name}, and prune's ImagesDeleted: {"Untagged": ref} or {"Deleted": id}, in order."""
    return [{"Untagged": r.untagged} if r.untagged else {"Deleted": r.deleted} for r in items]


def prune(result: PruneResult) -> dict[str, Any]:
    """POST /images/prune."""
    return {"ImagesDeleted": removed(result.removed) or None, "SpaceReclaimed": result.reclaimed}


def registry_image(found: RegistryImage) -> dict[str, Any]:
    """GET /distribution/{name}/json."""
    return {"Descriptor": {"mediaType": found.media_type, "digest": found.digest, "size": found.size},
            "Platforms": [platforms.to_dict(p) for p in found.platforms]}


def _epoch(iso: str) -> int:
    try:
        return timefmt.parse_ns(iso) // 1_000_000_000
    except ValueError:
        return 0
