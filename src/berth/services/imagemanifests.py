"""The manifests of each listed image, as `GET /images/json?manifests=1` shows them (API 1.47).

Strategy: three steps, so that the file work runs in a worker thread and the
rest is pure or cheap.

1. `plan()` (on the event loop, like the listing itself: database records and
   the container table) says, for each listed image, which manifests it has:
   the children of the multi-platform index its tag names, in the index's
   order, or else its own manifest; and which blobs and documents to look at.
2. `gather()` (blocking: call it in a thread) stats those blobs for their sizes
   and reads the few small documents the summaries need (an index, for its
   descriptors and attestation annotations; a lone image's manifest and
   config, for the media type and platform), each bounded by DOCUMENT_LIMIT.
   No layer is read.
3. `summaries()` joins the plan and the facts into ManifestSummary values.

Sizes: Content is the bytes of the manifest, its config and its layers that
are in the content store; Total adds the unpacked size of the image's layers
when that image is here. A platform whose content is not here is listed with
Available false and no content.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from berth.content.local import LocalStore
from berth.errors import InvalidArgument, NotFound
from berth.services.imagerecords import ImageRecord, IndexRecord
from berth.services.images import Images
from berth.services.imageviews import ImageSummary

DOCUMENT_LIMIT = 4 << 20  # bytes: an index, manifest or config longer than this is not read
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REFERENCE_TYPE = "vnd.docker.reference.type"  # BuildKit's annotations on an attestation's descriptor
REFERENCE_DIGEST = "vnd.docker.reference.digest"


class Kind(enum.Enum):
    IMAGE = "image"
    ATTESTATION = "attestation"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Planned:
    """One manifest of a listed image, as the records know it."""

    digest: str  # the manifest's digest
    platform: dict[str, Any] | None  # the index descriptor's platform; None for an image's own manifest
    image: str = ""  # the local image (config digest) of this manifest, "" when it is not here
    layers: tuple[str, ...] = ()  # that image's layer blobs
    unpacked: int = 0  # that image's unpacked layers, in bytes
    containers: tuple[str, ...] = ()  # ids of the containers using that image


@dataclass(frozen=True, slots=True)
class PlannedImage:
    """A listed image and its manifests; *index* is the digest of the index they come from, if any."""

    image_id: str
    index: str
    manifests: tuple[Planned, ...]

    def blobs(self) -> list[str]:
        """The blobs whose sizes the summaries need."""
        out = []
        for m in self.manifests:
            out.append(m.digest)
            if m.image:
                out += [m.image, *m.layers]
        return out

    def documents(self) -> list[str]:
        """The documents the summaries read: the index, else the image's manifest and config."""
        if self.index:
            return [self.index]
        return [d for m in self.manifests for d in (m.digest, m.image) if d]


@dataclass(frozen=True, slots=True)
class Facts:
    """What gather() found in the content store: sizes of the blobs present, and the documents read."""

    sizes: Mapping[str, int] = field(default_factory=dict)
    documents: Mapping[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ManifestSummary:
    """One manifest of an image (the API's ImageManifestSummary)."""

    id: str  # the manifest's digest
    media_type: str
    size: int  # of the manifest itself
    descriptor_platform: dict[str, Any] | None
    annotations: dict[str, str]
    available: bool
    content: int
    total: int
    kind: Kind
    platform: dict[str, Any] = field(default_factory=dict)  # Kind.IMAGE only
    containers: tuple[str, ...] = ()  # Kind.IMAGE only
    unpacked: int = 0  # Kind.IMAGE only
    attests: str = ""  # Kind.ATTESTATION only: the manifest it is about


class Source:
    """What plan() reads: the image and index records, and who uses an image (services.images' view)."""

    def __init__(self, record: Callable[[str], ImageRecord | None], index: Callable[[str], IndexRecord | None],
                 in_use: Callable[[str], Sequence[str]]) -> None:
        self.record, self.index, self.in_use = record, index, in_use


def plan(source: Source, listed: Iterable[tuple[str, Sequence[str]]],
         tags: Iterable[tuple[str, str]]) -> list[PlannedImage]:
    """What each listed image's manifests are.

    Args:
        source: the records.
        listed: (image id, the tags the listing shows for it) of each listed image.
        tags: (reference, target) of every tag; a target is an image id or an index digest.

    An image shown by the tag of a multi-platform index gets the index's children;
    any other image (an untagged platform of an index listed with --all, a
    single-platform image) gets its own manifest.
    """
    indexes: dict[str, tuple[str, IndexRecord]] = {}  # tag -> (index digest, index)
    for ref, target in tags:
        idx = source.index(target)
        if idx is not None:
            indexes[ref] = (target, idx)
    out = []
    for image_id, shown in listed:
        found = None
        for ref in shown:
            hit = indexes.get(ref)
            if hit is not None and image_id in hit[1].images():
                found = hit
                break
        if found is not None:
            digest, idx = found
            out.append(PlannedImage(image_id, digest, tuple(
                _planned(source, c.manifest, c.platform, c.image) for c in idx.children)))
            continue
        record = source.record(image_id)
        if record is None:  # gone since the listing read it
            out.append(PlannedImage(image_id, "", ()))
            continue
        out.append(PlannedImage(image_id, "", (_planned(source, record.manifest, None, image_id, record),)))
    return out


def _planned(source: Source, manifest: str, platform: dict[str, Any] | None, image: str,
             record: ImageRecord | None = None) -> Planned:
    record = record if record is not None or not image else source.record(image)
    if record is None:
        return Planned(manifest, platform)
    return Planned(manifest, platform, image, record.layers, record.size, tuple(source.in_use(image)))


def gather(store: LocalStore, planned: Iterable[PlannedImage]) -> Facts:
    """Sizes of the blobs and the documents the summaries of *planned* need. Blocking: run it in a thread."""
    sizes: dict[str, int] = {}
    documents: dict[str, dict[str, Any]] = {}
    for item in planned:
        for digest in (*item.blobs(), *item.documents()):
            if digest not in sizes:
                try:
                    sizes[digest] = store.size(digest)
                except (NotFound, InvalidArgument):
                    pass
        for digest in item.documents():
            if digest not in documents and 0 < sizes.get(digest, DOCUMENT_LIMIT + 1) <= DOCUMENT_LIMIT:
                doc = _document(store, digest)
                if doc is not None:
                    documents[digest] = doc
    return Facts(sizes, documents)


def _document(store: LocalStore, digest: str) -> dict[str, Any] | None:
    """The JSON object in blob *digest*, if it is one and no longer than DOCUMENT_LIMIT."""
    try:
        fd = os.open(store.path(digest), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (OSError, InvalidArgument):
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            raw = f.read(DOCUMENT_LIMIT + 1)
    except OSError:
        return None
    if len(raw) > DOCUMENT_LIMIT:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def summaries(item: PlannedImage, facts: Facts) -> list[ManifestSummary]:
    """The manifests of one planned image, in order."""
    descriptors = _descriptors(facts.documents.get(item.index)) if item.index else {}
    return [_summary(m, descriptors.get(m.digest, {}), facts) for m in item.manifests]


def _descriptors(index: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The index's descriptors by digest (the first one of each digest)."""
    out: dict[str, dict[str, Any]] = {}
    manifests = (index or {}).get("manifests")
    for desc in manifests if isinstance(manifests, list) else ():
        if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
            out.setdefault(desc["digest"], desc)
    return out


def _summary(m: Planned, desc: dict[str, Any], facts: Facts) -> ManifestSummary:
    sizes = facts.sizes
    annotations = _strings(desc.get("annotations"))
    platform = m.platform
    kind = _kind(platform, annotations)
    own = facts.documents.get(m.digest) if platform is None else None  # a lone image's manifest
    media_type = _text(desc.get("mediaType")) or _text((own or {}).get("mediaType")) or OCI_MANIFEST
    given = desc.get("size")
    size = given if isinstance(given, int) and not isinstance(given, bool) else sizes.get(m.digest, 0)
    content = sum(sizes.get(d, 0) for d in dict.fromkeys((m.digest, *((m.image, *m.layers) if m.image else ()))))
    if kind is Kind.ATTESTATION:
        return ManifestSummary(m.digest, media_type, size, platform, annotations, m.digest in sizes, content,
                               content, kind, attests=annotations.get(REFERENCE_DIGEST, ""))
    if kind is Kind.UNKNOWN:
        return ManifestSummary(m.digest, media_type, size, platform, annotations, m.digest in sizes, content,
                               content, kind)
    here = bool(m.image)
    if platform is not None:
        shown = _platform(platform)
    else:
        shown = _platform(facts.documents.get(m.image) or {})
    unpacked = m.unpacked if here else 0
    return ManifestSummary(m.digest, media_type, size, platform, annotations, here, content, content + unpacked,
                           kind, shown, m.containers, unpacked)


def _kind(platform: dict[str, Any] | None, annotations: Mapping[str, str]) -> Kind:
    if annotations.get(REFERENCE_TYPE) == "attestation-manifest":
        return Kind.ATTESTATION
    if platform is None:  # an image's own manifest
        return Kind.IMAGE
    if platform.get("os") == "unknown" or platform.get("architecture") == "unknown":  # BuildKit's attestations
        return Kind.ATTESTATION
    return Kind.IMAGE if platform.get("architecture") and platform.get("os") else Kind.UNKNOWN


async def for_listing(images: Images, store: LocalStore,
                      listed: Sequence[ImageSummary]) -> list[list[ManifestSummary]]:
    """The manifests of each listed image, in the listing's order (the file work in a thread)."""
    source = Source(lambda i: images.record(i) if images.has(i) else None, images.index, images.in_use)
    planned = plan(source, [(i.id, i.repo_tags) for i in listed], images.all_tags())
    facts = await asyncio.to_thread(gather, store, planned)
    return [summaries(p, facts) for p in planned]


def _platform(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The OCI platform of an index descriptor's platform object or an image config (strings only)."""
    out: dict[str, Any] = {"architecture": _text(doc.get("architecture")), "os": _text(doc.get("os"))}
    for key in ("os.version", "variant"):
        if _text(doc.get(key)):
            out[key] = _text(doc.get(key))
    features = doc.get("os.features")
    if isinstance(features, list) and features:
        out["os.features"] = [str(f) for f in features if isinstance(f, str)]
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> dict[str, str]:
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(value, dict) else {}
