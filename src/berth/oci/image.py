"""The OCI image model: descriptors, image manifests, indexes and image configs, parsed once.

Strategy: pure values made from the exact bytes that were received (a digest
covers the bytes, so each value keeps them): `parse_manifest` tells an index
(a manifest list, OCI's or Docker's) from an image manifest and checks the
fields berth relies on; `parse_config` reads the image config's platform,
layers (diff ids) and history (its runtime defaults and history entries are
typed by oci.imageconfig). Whoever receives an image (a pull, a load, a
commit) parses it here once and hands the typed values on; nobody below
reads the JSON again for these fields. Fields berth does not use stay in the
bytes, untouched. Malformed input raises `MalformedImage` (an
InvalidArgument) naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument, NotImplemented_
from berth.oci.imageconfig import HistoryEntry, RuntimeConfig

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"  # +gzip, +zstd for compressed layers
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


class MalformedImage(InvalidArgument):
    """A manifest, index or config that is not what the OCI image spec (or Docker's) says it must be."""


class SchemaOneManifest(NotImplemented_):
    """A Docker schema 1 manifest: deprecated by Docker, not read by berth (HTTP 501)."""


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a manifest or index points at: a blob by digest and size, with its media type."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None  # in an index: the child's os/architecture/variant
    annotations: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The descriptor as JSON has it (what berth.oci.platform's choose() reads)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """One platform's image: its config and its layers, in order (the bytes kept for the digest)."""

    raw: bytes
    digest: str
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """A multi-platform image: its children's manifests (the bytes kept for the digest)."""

    raw: bytes
    digest: str
    media_type: str
    manifests: tuple[Descriptor, ...]

    def descriptors(self) -> list[dict[str, Any]]:
        return [m.as_dict() for m in self.manifests]


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The fields of an image config berth runs and stores images by; the rest stays in `raw`."""

    raw: bytes
    digest: str
    doc: dict[str, Any]  # the whole config, as parsed (its `config` is the runtime defaults)
    diff_ids: tuple[str, ...]
    created: str

    @property
    def runtime(self) -> RuntimeConfig:
        """The defaults a container of the image runs with (the config's `config` object)."""
        return RuntimeConfig.from_doc(self.doc.get("config"))

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        entries = self.doc.get("history")
        return tuple(HistoryEntry.from_doc(h) for h in entries) if isinstance(entries, list) else ()

    @property
    def os(self) -> str:
        return str(self.doc.get("os") or "")

    @property
    def architecture(self) -> str:
        return str(self.doc.get("architecture") or "")

    @property
    def variant(self) -> str:
        return str(self.doc.get("variant") or "")

    @property
    def author(self) -> str:
        return str(self.doc.get("author") or "")


def digest_of(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise MalformedImage(f"{what} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedImage(f"{what} is not a JSON object")
    return doc


def _descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, dict) or not isinstance(value.get("digest"), str):
        raise MalformedImage(f"{what} has a descriptor without a digest")
    size = value.get("size") or 0
    platform = value.get("platform")
    annotations = value.get("annotations")
    return Descriptor(str(value.get("mediaType") or ""), value["digest"], size if isinstance(size, int) else 0,
                      dict(platform) if isinstance(platform, dict) else None,
                      {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {})


def is_index_doc(doc: dict[str, Any]) -> bool:
    """Is this manifest document an image index (a manifest list)?"""
    return doc.get("mediaType") in INDEX_TYPES or ("manifests" in doc and "layers" not in doc)


def parse_manifest(raw: bytes, *, digest: str = "", media_type: str = "",
                   what: str = "the image manifest") -> ImageManifest | ImageIndex:
    """An image manifest or an index from its bytes (*digest*: the one it was fetched by, else the sha256).

    Raises:
        MalformedImage: not a JSON object, or without the config and layers (manifest) or the
            manifests (index) it must have.
        SchemaOneManifest: a Docker schema 1 manifest.
    """
    return manifest_of(_object(raw, what), raw, digest=digest, media_type=media_type, what=what)


def manifest_of(doc: dict[str, Any], raw: bytes, *, digest: str = "", media_type: str = "",
                what: str = "the image manifest") -> ImageManifest | ImageIndex:
    """`parse_manifest` for bytes already decoded into *doc* (a registry client checks the JSON first)."""
    digest = digest or digest_of(raw)
    media = media_type or str(doc.get("mediaType") or "")
    if is_index_doc(doc):
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise MalformedImage(f"{what} is an index without a list of manifests")
        return ImageIndex(raw, digest, media or OCI_INDEX, tuple(_descriptor(c, what) for c in children))
    if doc.get("schemaVersion") == 1:
        raise SchemaOneManifest(f"{what} is a schema 1 manifest, which Docker deprecated: push it again with a "
                                "current client")
    layers = doc.get("layers")
    if "config" not in doc or not isinstance(layers, list):
        raise MalformedImage(f"{what} has no config or layers")
    return ImageManifest(raw, digest, media or OCI_MANIFEST, _descriptor(doc["config"], what),
                         tuple(_descriptor(layer, what) for layer in layers))


def parse_image_manifest(raw: bytes, *, digest: str = "", what: str = "the image manifest") -> ImageManifest:
    """Like `parse_manifest`, for bytes that must be one platform's manifest (not an index)."""
    parsed = parse_manifest(raw, digest=digest, what=what)
    if isinstance(parsed, ImageIndex):
        raise MalformedImage(f"{what} is an index, where one platform's manifest was expected")
    return parsed


def parse_config(raw: bytes, *, digest: str = "", what: str = "the image config") -> ImageConfig:
    """An image config from its bytes.

    Raises:
        MalformedImage: not a JSON object, or without rootfs.diff_ids.
    """
    doc = _object(raw, what)
    rootfs = doc.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise MalformedImage(f"{what} has no rootfs.diff_ids")
    return ImageConfig(raw, digest or digest_of(raw), doc, tuple(diff_ids), str(doc.get("created") or ""))
