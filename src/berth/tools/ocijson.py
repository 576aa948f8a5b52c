"""The OCI documents of a bootstrapped image, as values and as JSON (pure).

    config = image_config(platform, [diff_id], created=mtime, cmd=["sh"], created_by="...")
    manifest = image_manifest(config_descriptor, [layer_descriptor])

Strategy: descriptors are frozen values that know their own JSON; an image's
config, manifest and index are plain dicts built from them, and
`canonical_json` turns any of these into bytes with sorted keys and no spaces,
so the same value always has the same digest. Times come from the inputs (a
package's timestamp), never from the clock. index.json names an image with the
annotations containerd (`io.containerd.image.name`) and skopeo
(`org.opencontainers.image.ref.name`) read.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.errors import InvalidArgument
from berth.oci import platform as plat
from berth.oci import reference

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_NAME = "io.containerd.image.name"
ANNOTATION_REF = "org.opencontainers.image.ref.name"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size, optionally its plat."""

    media_type: str
    digest: str
    size: int
    platform: plat.Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            out["platform"] = plat.to_dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """An image written as an OCI layout: *top* is the descriptor index.json names it by."""

    layout: Path
    name: str                                   # docker.io/library/busybox:latest
    ref_name: str                               # latest
    top: Descriptor                             # an image index, or a single manifest
    manifests: tuple[Descriptor, ...] = ()


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no spaces: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_config(p: plat.Platform, diff_ids: list[str], *, created: int, cmd: list[str],
                 created_by: str) -> dict[str, Any]:
    """An OCI image config for a one-step image on *p*."""
    config: dict[str, Any] = {
        **plat.to_dict(plat.normalize(p)),
        "created": rfc3339(created),
        "config": {"Env": [PATH_ENV], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": rfc3339(created), "created_by": created_by}],
    }
    return config


def image_manifest(config: Descriptor, layers: list[Descriptor]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config.to_json(),
            "layers": [d.to_json() for d in layers]}


def image_index(manifests: Iterable[Descriptor]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [d.to_json() for d in manifests]}


def ref_name(name: str) -> str:
    """The tag of a full image name, for org.opencontainers.image.ref.name ("...busybox:latest" -> "latest").

    Raises:
        InvalidArgument: not a reference, or one without a tag.
    """
    tag = reference.parse(name, default_tag=None).tag
    if not tag:
        raise InvalidArgument(f"image name {name!r} has no tag: write it as repository:tag")
    return tag
