"""`docker save`: image archives streamed in the Docker 25+ shape, straight from the content store.

Strategy: one shape is written, the one every loader reads: Docker's
(the classic loader reads manifest.json, the containerd one index.json) and
skopeo's. It is oci-layout, index.json (one entry per name, annotated
io.containerd.image.name = the full name and org.opencontainers.image.ref.name
= the tag), manifest.json (one entry per image: Config, RepoTags, Layers as
blobs/sha256/<hex> paths), repositories, then blobs/sha256/<hex> for every
blob, each once, sorted. Layers go out as berth stores them (gzip or not):
the loaders sniff the compression. Everything that can fail (a bad name, a
blob missing from the store) fails at the call, before any byte is sent.
The stream is deterministic (mtime 0, uid/gid 0, fixed order) and holds at
most about 2 MiB of file data in memory (pieces are regrouped to about 1 MiB).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

from berth.errors import InvalidArgument, NotFound
from berth.image import fsexport, ocilayout
from berth.image.ocilayout import Descriptor
from berth.oci import reference


@dataclass(frozen=True, slots=True)
class SaveImage:
    """One image (or multi-platform ref) to save, as berth stores it.

    names: full references ("busybox:latest", "reg:5000/app:1"); empty to save by ID.
    manifest/manifest_digest: the image manifest whose config and layers manifest.json lists.
    config_digest, layer_digests: the blobs that manifest names, in order.
    index/index_digest: when the names point at an image index, that index; index.json
        then points at it, and manifest.json still lists `manifest` (the platform saved).
    extra_blobs: further blobs to include, e.g. other platforms' manifests, configs
        and layers that berth holds, or nested indexes.
    """

    names: tuple[str, ...]
    manifest: bytes
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]
    index: bytes | None = None
    index_digest: str | None = None
    extra_blobs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if "sha256:" + hashlib.sha256(self.manifest).hexdigest() != self.manifest_digest:
            raise InvalidArgument(f"docker save: manifest bytes do not hash to {self.manifest_digest}")
        if (self.index is None) != (self.index_digest is None):
            raise InvalidArgument("docker save: index and index_digest go together")
        if self.index is not None and "sha256:" + hashlib.sha256(self.index).hexdigest() != self.index_digest:
            raise InvalidArgument(f"docker save: index bytes do not hash to {self.index_digest}")

    @classmethod
    def from_manifest(cls, names: Sequence[str], manifest: bytes, index: bytes | None = None,
                      extra_blobs: Sequence[str] = ()) -> SaveImage:
        """Build a SaveImage, taking digests from the bytes and config/layers from the manifest.

        Raises:
            InvalidArgument: the manifest is not an image manifest.
        """
        doc = ocilayout.parse_json_object(manifest, "docker save: manifest")
        config, layers = ocilayout.manifest_parts(doc, "docker save: manifest")
        return cls(names=tuple(names), manifest=manifest,
                   manifest_digest="sha256:" + hashlib.sha256(manifest).hexdigest(),
                   config_digest=config["digest"], layer_digests=tuple(ld["digest"] for ld in layers),
                   index=index, index_digest=None if index is None else "sha256:" + hashlib.sha256(index).hexdigest(),
                   extra_blobs=tuple(extra_blobs))


def _blob_name(digest: str) -> str:
    alg, hexpart = digest.split(":", 1)
    return f"blobs/{alg}/{hexpart}"


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()


def _media_type(data: bytes, default: str) -> str:
    try:
        mt = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        return default
    return mt if isinstance(mt, str) and mt else default


def iter_archive(images: Sequence[SaveImage], blob_path: Callable[[str], Path | str]) -> Iterator[bytes]:
    """Stream a `docker save` archive (Docker 25+ shape) of *images*.

    Args:
        images: what to save; an image named twice, or shared blobs, go out once.
        blob_path: the file holding a blob, by digest (LocalStore.path).
    Returns:
        An iterator of bytes (pieces of about 1 MiB) that together form the tar.
    Raises:
        InvalidArgument: a name is not a valid reference (raised at the call).
        NotFound: a blob is missing from the store (raised at the call, before any byte is sent).
    """
    index_entries: list[Descriptor] = []
    seen_entries: set[tuple[str | None, str]] = set()
    manifest_json: dict[str, dict[str, Any]] = {}
    repositories: dict[str, dict[str, str]] = {}
    in_memory: dict[str, bytes] = {}
    on_disk: dict[str, tuple[str, int]] = {}

    def file_blob(digest: str) -> None:
        if digest in in_memory or digest in on_disk:
            return
        ocilayout.check_digest(digest, "docker save: blob digest")
        path = os.fspath(blob_path(digest))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFound(f"docker save: blob {digest} is missing from the content store; pull the "
                           "image again") from None
        on_disk[digest] = (path, st.st_size)

    for img in images:
        in_memory[img.manifest_digest] = img.manifest
        if img.index is not None and img.index_digest is not None:
            in_memory[img.index_digest] = img.index
            target = _media_type(img.index, ocilayout.OCI_INDEX), img.index_digest, len(img.index)
        else:
            target = _media_type(img.manifest, ocilayout.OCI_MANIFEST), img.manifest_digest, len(img.manifest)
        for digest in (img.config_digest, *img.layer_digests, *img.extra_blobs):
            if digest not in in_memory:
                file_blob(digest)
        tags: list[str] = []
        for name in img.names or (None,):
            key = (name, target[1])
            if key in seen_entries:
                continue
            seen_entries.add(key)
            desc: Descriptor = {"mediaType": target[0], "digest": target[1], "size": target[2]}
            if name is not None:
                ref = reference.parse(name)
                annotations = {ocilayout.ANNOTATION_IMAGE_NAME: reference.full_name(name)}
                if ref.tag:
                    annotations[ocilayout.ANNOTATION_REF_NAME] = ref.tag
                    tags.append(f"{ref.name}:{ref.tag}")
                    if img.layer_digests:
                        repositories.setdefault(ref.name, {})[ref.tag] = img.layer_digests[-1].split(":", 1)[1]
                desc["annotations"] = annotations
            index_entries.append(desc)
        entry = manifest_json.setdefault(img.config_digest, {
            "Config": _blob_name(img.config_digest), "RepoTags": [],
            "Layers": [_blob_name(d) for d in img.layer_digests]})
        entry["RepoTags"] += [t for t in tags if t not in entry["RepoTags"]]

    index = {"schemaVersion": 2, "mediaType": ocilayout.OCI_INDEX, "manifests": index_entries}
    manifests = [dict(e, RepoTags=e["RepoTags"] or None) for e in manifest_json.values()]

    def pieces() -> Iterator[bytes]:
        yield fsexport.member("oci-layout", ocilayout.layout_marker())
        yield fsexport.member("index.json", _json(index))
        yield fsexport.member("manifest.json", _json(manifests))
        if repositories:
            yield fsexport.member("repositories", _json(repositories))
        yield fsexport.directory_member("blobs")
        for alg in sorted({d.split(":", 1)[0] for d in (*in_memory, *on_disk)}):
            yield fsexport.directory_member(f"blobs/{alg}")
        for digest in sorted({*in_memory, *on_disk}):
            if digest in in_memory:
                yield fsexport.member(_blob_name(digest), in_memory[digest])
                continue
            path, size = on_disk[digest]
            yield from _file_blob(_blob_name(digest), path, size)
        yield fsexport.END_OF_ARCHIVE

    return fsexport.coalesce(pieces())


def _file_blob(name: str, path: str, size: int) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = ""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield from fsexport.file_member(info, fd)
    finally:
        os.close(fd)


def write_archive(images: Sequence[SaveImage], blob_path: Callable[[str], Path | str], out: BinaryIO) -> None:
    """iter_archive() into a file object (for tests and the CLI's `-o`)."""
    for chunk in iter_archive(images, blob_path):
        out.write(chunk)


__all__ = ["SaveImage", "iter_archive", "write_archive"]
