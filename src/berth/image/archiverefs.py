"""What a loaded image archive holds: its refs, their images and layers, and the JSON exactly as found.

Strategy: frozen values and nothing else, so that reading an archive
(image.archiveread) and storing what it read (services.imageio) share one
vocabulary and neither needs the other. There is one ArchiveRef per distinct
thing the archive names (an index.json target, or a manifest.json image),
with every name given to it:

  ArchiveRef
    names       full references, normalised as berth shows them ("busybox:latest")
    ref_names   bare org.opencontainers.image.ref.name values ("latest", "v1"):
                a tag without a repository, so not a name; the caller may
                combine them with a repository of its choosing or ignore them
    indexes     the image index the ref names (first) and any nested under it,
                as JSONBlob(digest, media_type, data); empty for a single image
    images      one ArchiveImage per image manifest present (for an index, its
                children that the archive holds, platform from the index entry)
    missing     descriptors of index children whose blobs are not in the
                archive (a single-platform export of a multi-platform image)

To store a multi-platform ref: put every JSONBlob of `indexes`, then for
each image its manifest bytes, config bytes and layer files (checked against
layer.digest while copying), and point the names at `indexes[0].digest`.
`missing` says which platforms cannot be run. A single-image ref points at
images[0].manifest.digest, or, for a classic archive, at a manifest the
caller makes.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.image.ocilayout import Descriptor

ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"


class Compression(enum.Enum):
    """How a layer file is compressed, sniffed from its first bytes."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


_MAGIC = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
)


def sniff_compression(head: bytes) -> Compression:
    """The compression whose magic number *head* starts with (NONE for a plain tar)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


@dataclass(frozen=True, slots=True)
class JSONBlob:
    """A manifest or index exactly as found in the archive (its digest is of these bytes)."""

    digest: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ArchiveLayer:
    """One layer file in the extracted archive."""

    path: Path                  # resolved; a regular file inside the archive directory
    compression: Compression    # sniffed from the file's first bytes
    size: int                   # bytes in the file
    digest: str | None          # the digest the archive claims for the file (OCI descriptor or
                                # blobs/ path), to verify while copying; None for <id>/layer.tar
    media_type: str | None      # from the manifest; None in classic archives


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """One image: config, layers in order, and (except in classic archives) its manifest."""

    config: bytes
    config_digest: str                   # sha256 of `config`
    layers: tuple[ArchiveLayer, ...]
    manifest: JSONBlob | None            # None in a classic docker-archive
    platform: dict[str, Any] | None      # the index entry's, else os/architecture/variant from the config
    annotations: dict[str, str] = field(default_factory=dict)   # of the index entry naming the manifest

    @property
    def diff_ids(self) -> tuple[str, ...]:
        """The config's rootfs.diff_ids (empty when the config is not an image config)."""
        try:
            ids = json.loads(self.config).get("rootfs", {}).get("diff_ids", [])
        except (ValueError, AttributeError):
            return ()
        return tuple(str(i) for i in ids) if isinstance(ids, list) else ()

    @property
    def is_attestation(self) -> bool:
        """True for BuildKit's attestation manifests (provenance, SBOM): not runnable images."""
        return self.annotations.get(ANNOTATION_REFERENCE_TYPE) == "attestation-manifest"


@dataclass(frozen=True, slots=True)
class ArchiveRef:
    """Something an archive names: one image, or an image index with its children."""

    names: tuple[str, ...]
    ref_names: tuple[str, ...]
    indexes: tuple[JSONBlob, ...]
    images: tuple[ArchiveImage, ...]
    missing: tuple[Descriptor, ...] = ()

    @property
    def index(self) -> bytes | None:
        """The bytes of the index the ref names, or None for a single image."""
        return self.indexes[0].data if self.indexes else None

    @property
    def target(self) -> str | None:
        """The digest the names point at (index or manifest); None for a classic archive's image."""
        if self.indexes:
            return self.indexes[0].digest
        return self.images[0].manifest.digest if self.images and self.images[0].manifest else None


__all__ = ["ANNOTATION_REFERENCE_TYPE", "ArchiveImage", "ArchiveLayer", "ArchiveRef", "Compression", "JSONBlob",
           "sniff_compression"]
