"""OCI image layouts: a directory holding `oci-layout`, `index.json` and `blobs/<alg>/<hex>`.

Strategy: reading trusts nothing in the directory. Every blob is found by its
digest alone, and the path it resolves to (symlinks included: a layout that
came out of a tar may use them) must be a regular file under the layout's
root. JSON blobs (indexes, manifests, configs) are read whole, so they are
capped in size, and their size and digest are checked against the descriptor
that named them before they are parsed. Layer blobs are never read here: the
caller verifies them while it copies them (`verify` is there when it wants to
check in place).

Descriptors are the plain JSON objects of the OCI image spec (`mediaType`,
`digest`, `size`, optional `platform`, `annotations`): they travel unchanged
from index.json into berth's store, so a typed copy would only lose fields.

Writing is the mirror image: `LayoutWriter` puts blobs under blobs/sha256/ as
they come (each hashed on the way in) and writes `oci-layout` and `index.json`
last, so a half-written layout has no index and reads as no layout at all.

Names: an index entry names its target with the annotation
`io.containerd.image.name` (a full reference, written by containerd and
Docker 25+) or `org.opencontainers.image.ref.name` (by the spec "a tag or a
fully qualified reference"; skopeo and umoci write whatever the user gave,
often a bare tag). `Ref.name` is the first of the two that is present.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from berth.errors import InvalidArgument, NotFound
from berth.host import fs

LAYOUT_VERSION = "1.0.0"

# Media types (OCI image spec, and Docker's schema 2 equivalents still found in layouts).
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

# Largest JSON blob read into memory. Registries may refuse manifests over
# 4 MiB (distribution spec); configs with a long history can be larger.
JSON_LIMIT = 8 << 20
# Deepest nesting of indexes followed by walk().
MAX_DEPTH = 8
_CHUNK = 1 << 20

_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")

Descriptor = dict[str, Any]


def check_digest(digest: object, what: str = "digest") -> str:
    """Return *digest* when it is `sha256:<64 hex>` or `sha512:<128 hex>`.

    Raises:
        InvalidArgument: anything else (the message names *what*).
    """
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidArgument(f"{what}: {digest!r} is not a digest (expected sha256:<64 lowercase hex digits>)")
    return digest


def media_type_of(document: dict[str, Any], descriptor: Descriptor | None = None) -> str:
    """The media type of a parsed manifest or index: its own field, else the descriptor's.

    Documents without either are told apart by shape: `manifests` makes an index.
    """
    mt = document.get("mediaType") or (descriptor or {}).get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


@dataclass(frozen=True, slots=True)
class Ref:
    """One entry of a layout's index.json."""

    name: str | None          # io.containerd.image.name, else org.opencontainers.image.ref.name
    descriptor: Descriptor    # the entry as written (mediaType, digest, size, annotations, ...)

    @property
    def digest(self) -> str:
        return str(self.descriptor["digest"])

    @property
    def media_type(self) -> str:
        return str(self.descriptor.get("mediaType", ""))


class Layout:
    """A read-only view of an OCI image layout directory. Build it with read_layout()."""

    def __init__(self, root: Path, index_bytes: bytes, index: dict[str, Any]) -> None:
        self.root = root
        self.index_bytes = index_bytes
        self.index = index
        self._real_root = os.path.realpath(root)

    # -- blobs --------------------------------------------------------------

    def blob(self, digest: str) -> Path:
        """The path of the blob *digest*, checked to be a regular file inside the layout.

        Raises:
            InvalidArgument: *digest* is malformed, or the blob resolves outside the layout
                or to something other than a regular file.
            NotFound: the layout has no such blob.
        """
        alg, hexpart = check_digest(digest).split(":", 1)
        path = self.root / "blobs" / alg / hexpart
        real = os.path.realpath(path)
        if not real.startswith(self._real_root.rstrip("/") + "/"):
            raise InvalidArgument(f"OCI layout: blob {digest} resolves outside the layout (a symlink to {real})")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise NotFound(f"OCI layout: blob {digest} is not in the layout "
                           f"(no blobs/{alg}/{hexpart}); the layout is incomplete") from None
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"OCI layout: blobs/{alg}/{hexpart} is not a regular file")
        return Path(real)

    def has(self, digest: str) -> bool:
        """True when the blob is present (and passes blob()'s checks)."""
        try:
            self.blob(digest)
        except NotFound:
            return False
        return True

    def verify(self, digest: str, size: int | None = None) -> Path:
        """Hash the blob and return its path when it matches *digest* (and *size*, if given).

        Raises:
            InvalidArgument: the content does not match.
            NotFound: no such blob.
        """
        path = self.blob(digest)
        alg = digest.split(":", 1)[0]
        h = hashlib.new(alg)
        n = 0
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                n += len(chunk)
        got = f"{alg}:{h.hexdigest()}"
        if got != digest:
            raise InvalidArgument(f"OCI layout: blob {digest} is corrupt: its content hashes to {got}")
        if size is not None and n != size:
            raise InvalidArgument(f"OCI layout: blob {digest} has {n} bytes, its descriptor says {size}")
        return path

    def read_blob(self, descriptor: Descriptor, limit: int = JSON_LIMIT) -> bytes:
        """Read a small blob whole, checking size (against *limit* and the descriptor) and digest.

        Raises:
            InvalidArgument: malformed descriptor, too big, wrong size or digest.
            NotFound: the blob is not in the layout.
        """
        digest = check_digest(descriptor.get("digest"), "OCI layout: descriptor digest")
        size = descriptor.get("size")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise InvalidArgument(f"OCI layout: descriptor of {digest} has an invalid size {size!r}")
        if isinstance(size, int) and size > limit:
            raise InvalidArgument(f"OCI layout: blob {digest} is {size} bytes; berth reads JSON blobs "
                                  f"of at most {limit} bytes")
        path = self.blob(digest)
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InvalidArgument(f"OCI layout: blob {digest} is over {limit} bytes; berth reads JSON "
                                  f"blobs of at most {limit} bytes")
        if size is not None and len(data) != size:
            raise InvalidArgument(f"OCI layout: blob {digest} has {len(data)} bytes, its descriptor says {size}")
        alg = digest.split(":", 1)[0]
        got = f"{alg}:{hashlib.new(alg, data).hexdigest()}"
        if got != digest:
            raise InvalidArgument(f"OCI layout: blob {digest} is corrupt: its content hashes to {got}")
        return data

    def read_json(self, descriptor: Descriptor) -> tuple[bytes, dict[str, Any]]:
        """read_blob() then parse as a JSON object; returns (bytes, parsed).

        Raises:
            InvalidArgument: as read_blob(), or the blob is not a JSON object.
        """
        data = self.read_blob(descriptor)
        return data, parse_json_object(data, f"OCI layout: blob {descriptor.get('digest')}")

    # -- the index ----------------------------------------------------------

    def refs(self) -> list[Ref]:
        """The top-level entries of index.json, in order, with their names."""
        out = []
        for desc in self.index.get("manifests", []):
            ann = desc.get("annotations") or {}
            name = ann.get(ANNOTATION_IMAGE_NAME) or ann.get(ANNOTATION_REF_NAME) or None
            out.append(Ref(name=name if isinstance(name, str) else None, descriptor=desc))
        return out

    def walk(self, descriptor: Descriptor, *, skip_missing: bool = False) -> Iterator[Descriptor]:
        """Yield *descriptor* and every descriptor reachable from it, parents first.

        An index yields its children (recursively, up to MAX_DEPTH levels of
        indexes); a manifest yields its config and then its layers. Config and
        layer blobs are not opened. With *skip_missing*, an index child whose
        blob is absent (a layout that holds only some platforms) is yielded but
        not descended into; otherwise that raises NotFound.

        Raises:
            InvalidArgument: a malformed or corrupt index or manifest, or nesting too deep.
            NotFound: a blob needed to descend is missing (see *skip_missing*).
        """
        yield from self._walk(descriptor, 0, skip_missing, set())

    def _walk(self, desc: Descriptor, depth: int, skip_missing: bool, seen: set[str]) -> Iterator[Descriptor]:
        check_descriptor(desc, "OCI layout")
        yield desc
        mt = desc.get("mediaType", "")
        if mt not in INDEX_TYPES and mt not in MANIFEST_TYPES:
            return
        digest = desc["digest"]
        if digest in seen:
            return
        seen.add(digest)
        if skip_missing and depth > 0 and not self.has(digest):
            return
        _, doc = self.read_json(desc)
        if media_type_of(doc, desc) in INDEX_TYPES:
            if depth >= MAX_DEPTH:
                raise InvalidArgument(f"OCI layout: indexes nested more than {MAX_DEPTH} deep at {digest}")
            for child in index_children(doc, f"OCI layout: index {digest}"):
                yield from self._walk(child, depth + 1, skip_missing, seen)
        else:
            config, layers = manifest_parts(doc, f"OCI layout: manifest {digest}")
            yield config
            yield from layers


def read_layout(root: Path) -> Layout:
    """Open the OCI image layout at *root*: check `oci-layout`, load `index.json`.

    Raises:
        InvalidArgument: no oci-layout file, an unsupported layout version, or a malformed index.json.
    """
    root = Path(root)
    marker = _read_small(root, "oci-layout", 1 << 16)
    if marker is None:
        raise InvalidArgument(f"{root} is not an OCI image layout: it has no oci-layout file")
    version = parse_json_object(marker, "OCI layout: oci-layout").get("imageLayoutVersion")
    if version != LAYOUT_VERSION:
        raise InvalidArgument(f"OCI layout: imageLayoutVersion {version!r} is not supported "
                              f"(berth reads {LAYOUT_VERSION})")
    index_bytes = _read_small(root, "index.json", JSON_LIMIT)
    if index_bytes is None:
        raise InvalidArgument(f"OCI layout at {root} has no index.json")
    index = parse_json_object(index_bytes, "OCI layout: index.json")
    index_children(index, "OCI layout: index.json")  # validates every entry
    return Layout(root, index_bytes, index)


def _read_small(root: Path, name: str, limit: int) -> bytes | None:
    """Read root/name, a regular file that must resolve inside root; None when absent."""
    path = root / name
    real = os.path.realpath(path)
    if not real.startswith(os.path.realpath(root).rstrip("/") + "/"):
        raise InvalidArgument(f"OCI layout: {name} resolves outside the layout")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgument(f"OCI layout: {name} is not a regular file")
    with open(real, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"OCI layout: {name} is over {limit} bytes")
    return data


# --------------------------------------------------------------------------- #
# Pure checks of parsed documents


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse *data* as a JSON object.

    Raises:
        InvalidArgument: not JSON, or not an object (the message names *what*).
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    return doc


def check_descriptor(desc: object, what: str) -> Descriptor:
    """Check the fields of a descriptor that berth relies on; return it.

    Raises:
        InvalidArgument: not an object, or a bad digest, size or media type.
    """
    if not isinstance(desc, dict):
        raise InvalidArgument(f"{what}: a descriptor is not a JSON object")
    check_digest(desc.get("digest"), f"{what}: descriptor digest")
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"{what}: descriptor {desc.get('digest')} has an invalid size {size!r}")
    if not isinstance(desc.get("mediaType", ""), str):
        raise InvalidArgument(f"{what}: descriptor {desc.get('digest')} has a non-string mediaType")
    ann = desc.get("annotations")
    if ann is not None and not (isinstance(ann, dict) and all(isinstance(v, str) for v in ann.values())):
        raise InvalidArgument(f"{what}: descriptor {desc.get('digest')} has malformed annotations")
    return desc


def index_children(index: dict[str, Any], what: str) -> list[Descriptor]:
    """The checked `manifests` of an image index."""
    children = index.get("manifests")
    if children is None:
        return []
    if not isinstance(children, list):
        raise InvalidArgument(f"{what}: 'manifests' is not a list")
    return [check_descriptor(c, what) for c in children]


def manifest_parts(manifest: dict[str, Any], what: str) -> tuple[Descriptor, list[Descriptor]]:
    """The checked (config, layers) descriptors of an image manifest."""
    if manifest.get("schemaVersion") != 2:
        raise InvalidArgument(f"{what}: schemaVersion {manifest.get('schemaVersion')!r} is not 2 "
                              "(schema 1 manifests are not supported)")
    config = check_descriptor(manifest.get("config"), f"{what} config")
    layers = manifest.get("layers", [])
    if not isinstance(layers, list):
        raise InvalidArgument(f"{what}: 'layers' is not a list")
    return config, [check_descriptor(layer, f"{what} layer") for layer in layers]


# --------------------------------------------------------------------------- #
# Writing


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob written into a layout."""

    digest: str
    size: int

    def descriptor(self, media_type: str, annotations: dict[str, str] | None = None,
                   platform: dict[str, Any] | None = None) -> Descriptor:
        """An OCI descriptor for this blob."""
        desc: Descriptor = {"mediaType": media_type, "digest": self.digest, "size": self.size}
        if platform:
            desc["platform"] = platform
        if annotations:
            desc["annotations"] = dict(annotations)
        return desc


@dataclass
class LayoutWriter:
    """Write an OCI image layout at *root*: blobs first, then set_index(), then close().

    Example:
        w = LayoutWriter(Path(d))
        cfg = w.add_blob(config_bytes)
        ...
        w.set_index([man.descriptor(OCI_MANIFEST, {ANNOTATION_REF_NAME: "latest"})])
        w.close()
    """

    root: Path
    _index: list[Descriptor] = field(default_factory=list)
    _index_annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        alg, hexpart = check_digest(digest).split(":", 1)
        return self.root / "blobs" / alg / hexpart

    def add_blob(self, data: bytes) -> Blob:
        """Store *data* as a sha256 blob (once: an existing blob is kept)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            fs.atomic_write(str(path), data)
        return Blob(digest, len(data))

    def add_blob_file(self, source: Path, digest: str) -> Blob:
        """Copy the file *source* in as blob *digest*, checking its content on the way.

        Raises:
            InvalidArgument: the file's content does not hash to *digest*.
            NotFound: *source* does not exist.
        """
        path = self._path(digest)
        alg = digest.split(":", 1)[0]
        if path.exists():
            return Blob(digest, path.stat().st_size)
        tmp = path.with_name(".tmp-" + path.name)
        h = hashlib.new(alg)
        size = 0
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            got = f"{alg}:{h.hexdigest()}"
            if got != digest:
                raise InvalidArgument(f"OCI layout: {source} was to be blob {digest} but hashes to {got}")
            os.rename(tmp, path)
        except FileNotFoundError as exc:
            raise NotFound(f"OCI layout: no file {source} to store as blob {digest}") from exc
        finally:
            if tmp.exists():
                tmp.unlink()
        return Blob(digest, size)

    def set_index(self, descriptors: Sequence[Descriptor], annotations: dict[str, str] | None = None) -> None:
        """The entries of index.json (written by close()), in order."""
        self._index = [check_descriptor(dict(d), "OCI layout writer") for d in descriptors]
        self._index_annotations = dict(annotations or {})

    def index_bytes(self) -> bytes:
        """The index.json close() writes."""
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self._index}
        if self._index_annotations:
            index["annotations"] = self._index_annotations
        return json.dumps(index, separators=(",", ":")).encode()

    def close(self) -> None:
        """Write index.json, then oci-layout: the layout is complete once both exist."""
        fs.atomic_write(str(self.root / "index.json"), self.index_bytes())
        fs.atomic_write(str(self.root / "oci-layout"), layout_marker())


def layout_marker() -> bytes:
    """The content of an `oci-layout` file."""
    return json.dumps({"imageLayoutVersion": LAYOUT_VERSION}, separators=(",", ":")).encode()


__all__ = [
    "ANNOTATION_IMAGE_NAME", "ANNOTATION_REF_NAME", "Blob", "DOCKER_CONFIG", "DOCKER_LAYER_GZIP",
    "DOCKER_LIST", "DOCKER_MANIFEST", "Descriptor", "IMAGE_CONFIG_TYPES", "INDEX_TYPES", "JSON_LIMIT",
    "LAYOUT_VERSION", "Layout", "LayoutWriter", "MANIFEST_TYPES", "OCI_CONFIG", "OCI_INDEX", "OCI_LAYER",
    "OCI_LAYER_GZIP", "OCI_LAYER_ZSTD", "OCI_MANIFEST", "Ref", "check_descriptor", "check_digest",
    "index_children", "layout_marker", "manifest_parts", "media_type_of", "parse_json_object", "read_layout",
]
