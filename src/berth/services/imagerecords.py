"""The image store's records: an image and a multi-platform index as the database keeps them, typed.

Strategy: each record is a frozen value; `ImageRecords` is the only code that
reads or writes the image and index tables, turning their JSON documents into
records and back (the same JSON older daemons wrote, so a data root carries
over; keys this version does not know are kept). Services change a record by
making a new one (`dataclasses.replace`) and putting it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from berth.metadata.db import Database


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image: its manifest and layers (blob digests), the layers' diff ids, and what the API shows."""

    manifest: str  # the manifest's digest (the image's id is its config's digest)
    layers: tuple[str, ...]  # layer blob digests, base first
    diff_ids: tuple[str, ...]  # the uncompressed layers' digests (the config's rootfs), base first
    size: int  # bytes of the unpacked layers
    created: str  # when the image was made (RFC 3339)
    repo_digests: tuple[str, ...] = ()  # name@digest of each registry copy
    tagged: str = ""  # when it was last tagged (inspect's Metadata.LastTagTime)
    parent: str = ""  # the image it was made from (a build step's base, a commit's image)
    extra: dict[str, Any] = field(default_factory=dict)  # stored keys this version does not know, kept


@dataclass(frozen=True, slots=True)
class IndexChild:
    """One platform of an index: its manifest, platform object, and its local image once pulled."""

    manifest: str
    platform: dict[str, Any]  # the index's OCI platform object, as the index gives it
    image: str = ""  # "" while this platform's content is not here


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """A multi-platform image: the index's children, in the index's order."""

    children: tuple[IndexChild, ...]
    created: str
    repo_digests: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def images(self) -> list[str]:
        """The local images of the platforms that are here (by the index's word: check they still are)."""
        return [c.image for c in self.children if c.image]


_IMAGE_KEYS = frozenset({"manifest", "layers", "diff_ids", "size", "created", "repo_digests", "tagged", "parent"})
_INDEX_KEYS = frozenset({"children", "created", "repo_digests"})


class ImageRecords:
    """The image and index tables of the metadata database, as typed records."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, image_id: str) -> ImageRecord | None:
        doc = self._db.get_image(image_id)
        return _image(doc) if doc is not None else None

    def put(self, image_id: str, record: ImageRecord) -> None:
        self._db.put_image(image_id, _image_doc(record))

    def items(self) -> list[tuple[str, ImageRecord]]:
        """(id, record) of every image."""
        return [(image_id, _image(doc)) for image_id, doc in self._db.images()]

    def delete(self, image_id: str) -> None:
        """Delete the image and the tags naming it."""
        self._db.delete_image(image_id)

    def index(self, digest: str) -> IndexRecord | None:
        doc = self._db.get_index(digest)
        return _index(doc) if doc is not None else None

    def put_index(self, digest: str, record: IndexRecord) -> None:
        self._db.put_index(digest, _index_doc(record))

    def indexes(self) -> list[tuple[str, IndexRecord]]:
        return [(digest, _index(doc)) for digest, doc in self._db.indexes()]

    def delete_index(self, digest: str) -> None:
        self._db.delete_index(digest)


def _image(doc: dict[str, Any]) -> ImageRecord:
    return ImageRecord(
        manifest=str(doc["manifest"]), layers=tuple(doc["layers"]), diff_ids=tuple(doc["diff_ids"]),
        size=int(doc["size"]), created=str(doc.get("created") or ""),
        repo_digests=tuple(doc.get("repo_digests") or ()), tagged=str(doc.get("tagged") or ""),
        parent=str(doc.get("parent") or ""), extra={k: v for k, v in doc.items() if k not in _IMAGE_KEYS})


def _image_doc(r: ImageRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {"manifest": r.manifest, "layers": list(r.layers), "diff_ids": list(r.diff_ids),
                           "size": r.size, "created": r.created}
    if r.repo_digests:
        doc["repo_digests"] = list(r.repo_digests)
    if r.tagged:
        doc["tagged"] = r.tagged
    if r.parent:
        doc["parent"] = r.parent
    return {**doc, **r.extra}


def _index(doc: dict[str, Any]) -> IndexRecord:
    children = tuple(IndexChild(str(c["manifest"]), dict(c.get("platform") or {}), str(c.get("image") or ""))
                     for c in doc.get("children") or ())
    return IndexRecord(children, str(doc.get("created") or ""), tuple(doc.get("repo_digests") or ()),
                       {k: v for k, v in doc.items() if k not in _INDEX_KEYS})


def _index_doc(r: IndexRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "children": [{"manifest": c.manifest, "platform": c.platform, "image": c.image or None} for c in r.children],
        "created": r.created}
    if r.repo_digests:
        doc["repo_digests"] = list(r.repo_digests)
    return {**doc, **r.extra}
