"""Image archives: what `docker save` writes and `docker load` reads.

Strategy
--------
Loading is split in three steps so that no step both trusts and parses:

1. extract_archive() unpacks the uploaded tar into an empty directory. Only
   regular files, directories, symlinks and hard links are accepted; every
   name must stay inside the directory (no absolute names, no `..`), nothing
   is ever written through a symlink, and once everything is out each
   symlink must still resolve inside the directory. The rules are those of
   berth.image.archive.apply_layer, minus what an image archive never holds
   (devices, fifos, ownership, modes).
2. read_archive() reads the extracted directory. Every file it opens is
   resolved (symlinks included) and must be a regular file inside the
   directory; JSON files are capped in size and checked against their
   digests before they are parsed. Layer files are only located, never read:
   their digests are checked when the caller copies them into the content
   store (Ingest.commit(expected=layer.digest)).
3. The caller stores what read_archive() returned.

Three shapes of archive are read:

  (a) Docker's classic archive (Docker 1.10 to 24): manifest.json lists
      {"Config": "<hex>.json", "RepoTags": [...], "Layers": ["<id>/layer.tar", ...]};
      a layer shared by two images may be a symlink to another <id>/layer.tar.
      There is no manifest: ArchiveImage.manifest is None and the caller
      makes one from the layers once it has their digests. `repositories`
      (the pre-1.10 name list) is ignored: manifest.json's RepoTags say the same.
  (b) Docker 25+ archives: an OCI layout (oci-layout, index.json, blobs/)
      plus a manifest.json whose paths point into blobs/. Read as (c), then
      manifest.json's RepoTags are added to the ref holding the same config.
  (c) A plain OCI layout (skopeo's oci:, umoci, buildx's oci exporter). Names
      come from index.json's annotations (see berth.image.ocilayout); an
      entry naming an image index is kept whole, with every child manifest
      that the archive holds.

What read_archive() returns, and how to store it
------------------------------------------------
One ArchiveRef per distinct thing the archive names (an index.json target,
or a manifest.json image), with every name given to it:

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

Saving
------
iter_archive() streams the Docker 25+ shape, which Docker's loaders (the
classic one reads manifest.json, the containerd one index.json) and skopeo
read: oci-layout, index.json (one entry per
name, annotated io.containerd.image.name = the full name and
org.opencontainers.image.ref.name = the tag), manifest.json (one entry per
image: Config, RepoTags, Layers as blobs/sha256/<hex> paths), repositories,
then blobs/sha256/<hex> for every blob, each once, sorted. Layers go out as
berth stores them (gzip or not): the loaders sniff the compression. The
stream is deterministic (mtime 0, uid/gid 0, fixed order) and holds at most
about 2 MiB of file data in memory (pieces are regrouped to about 1 MiB).
"""

from __future__ import annotations

import enum
import errno
import hashlib
import json
import os
import posixpath
import re
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

from berth.errors import FailedPrecondition, InvalidArgument, NotFound
from berth.host import fstree
from berth.image import archive, fsexport, ocilayout
from berth.image.ocilayout import Descriptor
from berth.oci import reference

ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"
_BLOB_PATH = re.compile(r"blobs/(sha256)/([0-9a-f]{64})")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- #
# Values


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


# --------------------------------------------------------------------------- #
# Step 1: extraction


def _refuse(what: str) -> InvalidArgument:
    return InvalidArgument(f"docker load: archive refused: {what}")


def _clean(name: str, what: str) -> str:
    return archive.clean_name(name, what, refused="docker load: archive refused", inside="the archive")


def _clear(parent: int, name: str, rel: str) -> None:
    """Make room for a new non-directory entry *name* in *parent* (a later duplicate replaces the earlier)."""
    st = fstree.lstat_at(parent, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise _refuse(f"{rel!r} is both a directory and a file")
    os.unlink(name, dir_fd=parent)


def extract_archive(stream: BinaryIO, root: Path) -> int:
    """Unpack the image archive read from *stream* (tar; gzip, bzip2 or xz allowed) into *root*.

    Every entry is made by name in a descriptor of its parent directory, reached from
    *root*'s descriptor without following a symlink (berth.host.fstree).

    Returns:
        The bytes of file content written.
    Raises:
        InvalidArgument: not a tar, or an entry that is not a file, directory,
            symlink or hard link, or that would reach outside *root*. *root*
            then holds part of the archive: the caller removes it.
        FailedPrecondition: the disk filled up.
    """
    top = os.fspath(root)
    os.makedirs(top, exist_ok=True)
    total = 0
    root_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*")
        except tarfile.TarError as exc:
            raise InvalidArgument(f"docker load: the upload is not a tar archive (plain, gzip, bzip2 or xz): "
                                  f"{exc}") from exc
        with tar:
            try:
                for m in tar:
                    total += _extract_member(tar, m, root_fd)
            except tarfile.TarError as exc:
                raise InvalidArgument(f"docker load: the archive is not a valid tar: {exc}") from exc
        _check_symlinks(top, root_fd)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise FailedPrecondition(f"docker load: no space left on the device holding {top}; "
                                     "free some space and load again") from exc
        raise
    finally:
        os.close(root_fd)
    return total


def _extract_member(tar: tarfile.TarFile, m: tarfile.TarInfo, root_fd: int) -> int:
    rel = _clean(m.name, "entry")
    if not rel:
        return 0
    parent = archive.open_parents(root_fd, rel, refused="docker load: archive refused")
    try:
        return _make(tar, m, root_fd, parent, rel)
    finally:
        os.close(parent)


def _make(tar: tarfile.TarFile, m: tarfile.TarInfo, root_fd: int, parent: int, rel: str) -> int:
    """Make the entry *m* (named *rel*) by name in its *parent* directory's descriptor."""
    base = posixpath.basename(rel)
    if m.isdir():
        st = fstree.lstat_at(parent, base)
        if st is None:
            fstree.mkdir_at(parent, base, 0o755)
        elif not stat.S_ISDIR(st.st_mode):
            raise _refuse(f"{rel!r} is both a directory and a file")
        return 0
    if m.isreg():
        _clear(parent, base, rel)
        src = tar.extractfile(m)
        assert src is not None
        fd = fstree.create_file_at(parent, base)
        try:
            os.fchmod(fd, 0o644)
            return fstree.copy_stream(fd, src, _CHUNK)
        finally:
            os.close(fd)
    if m.issym():
        target = m.linkname
        if target.startswith("/"):
            raise _refuse(f"symlink {rel!r} points at the absolute path {target!r}")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if resolved == ".." or resolved.startswith("../"):
            raise _refuse(f"symlink {rel!r} -> {target!r} points outside the archive")
        _clear(parent, base, rel)
        fstree.symlink_at(parent, base, target)
        return 0
    if m.islnk():
        target_rel = _clean(m.linkname, "hard link target")
        target_parent = archive.open_parents(root_fd, target_rel, refused="docker load: archive refused")
        try:
            target_base = posixpath.basename(target_rel)
            st = fstree.lstat_at(target_parent, target_base)
            if st is None:
                raise _refuse(f"hard link {rel!r} names {m.linkname!r}, which is not (yet) in the archive")
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(f"hard link {rel!r} names {m.linkname!r}, which is not a regular file")
            _clear(parent, base, rel)
            fstree.link_at(target_parent, target_base, parent, base)
        finally:
            os.close(target_parent)
        return 0
    kind = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
            tarfile.FIFOTYPE: "a fifo"}.get(m.type, f"of tar type {m.type!r}")
    raise _refuse(f"{rel!r} is {kind}; an image archive holds only files, directories and links")


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip("/") + "/")


def _check_symlinks(root: str, root_fd: int) -> None:
    """Every symlink under *root*, followed to the end, must stay inside *root* (listed by descriptor;
    the tree is berth's own, just extracted)."""
    real_root = os.path.realpath(root)
    for entry in fstree.walk(root_fd):
        if not stat.S_ISLNK(entry.st.st_mode):
            continue
        path = os.path.join(root, entry.name)
        if not _inside(os.path.realpath(path), real_root):
            target = os.readlink(entry.base, dir_fd=entry.dir_fd)
            raise _refuse(f"symlink {entry.name!r} -> {target!r} resolves outside the archive")


# --------------------------------------------------------------------------- #
# Step 2: reading


def _resolve(root: Path, rel: object, what: str) -> Path:
    """The regular file *rel* names inside *root*, symlinks followed but kept inside."""
    if not isinstance(rel, str) or not rel:
        raise InvalidArgument(f"docker load: {what} is not a path: {rel!r}")
    if rel.startswith("/") or ".." in rel.split("/"):
        raise InvalidArgument(f"docker load: {what} {rel!r} is not a path inside the archive")
    real = os.path.realpath(root / rel)
    if not real.startswith(os.path.realpath(root).rstrip("/") + "/"):
        raise InvalidArgument(f"docker load: {what} {rel!r} resolves outside the archive")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise InvalidArgument(f"docker load: {what} {rel!r} is not in the archive") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgument(f"docker load: {what} {rel!r} is not a regular file")
    return Path(real)


def _read_capped(path: Path, what: str, limit: int = ocilayout.JSON_LIMIT) -> bytes:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"docker load: {what} is over {limit} bytes")
    return data


def _layer(path: Path, digest: str | None, media_type: str | None) -> ArchiveLayer:
    with open(path, "rb") as f:
        head = f.read(8)
        size = os.fstat(f.fileno()).st_size
    return ArchiveLayer(path=path, compression=sniff_compression(head), size=size, digest=digest,
                        media_type=media_type)


def _platform_from_config(config: dict[str, Any]) -> dict[str, Any] | None:
    if not isinstance(config.get("os"), str) or not isinstance(config.get("architecture"), str):
        return None
    platform: dict[str, Any] = {"architecture": config["architecture"], "os": config["os"]}
    for key in ("variant", "os.version"):
        if isinstance(config.get(key), str) and config[key]:
            platform[key] = config[key]
    return platform


def _check_config(config: bytes, layers: int, what: str, image_config: bool = True) -> dict[str, Any]:
    """Parse an image config and check it has one diff_id per layer; returns it ({} if not checked)."""
    if not image_config:
        return {}
    doc = ocilayout.parse_json_object(config, f"docker load: {what}")
    rootfs = doc.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise InvalidArgument(f"docker load: {what} has no rootfs.diff_ids list")
    if len(diff_ids) != layers:
        raise InvalidArgument(f"docker load: {what} lists {len(diff_ids)} diff_ids but the image has "
                              f"{layers} layers")
    return doc


def normalise_name(name: str, what: str) -> str:
    """A full reference as berth shows it ("docker.io/library/busybox:latest" -> "busybox:latest").

    Raises:
        InvalidArgument: not a valid reference (the message names *what*).
    """
    try:
        return str(reference.parse(name))
    except InvalidArgument as exc:
        raise InvalidArgument(f"docker load: {what} names {name!r}, which is not an image reference: {exc}") from exc


def _names_of(desc: Descriptor) -> tuple[list[str], list[str]]:
    """(names, bare ref names) from an index.json entry's annotations."""
    ann = desc.get("annotations") or {}
    full = ann.get(ocilayout.ANNOTATION_IMAGE_NAME)
    if full:
        return [normalise_name(full, f"index.json entry {desc['digest']}")], []
    ref = ann.get(ocilayout.ANNOTATION_REF_NAME)
    if not ref:
        return [], []
    # A tag cannot hold "/", ":" or "@": with any of them, the value is a full reference.
    if any(c in ref for c in "/:@"):
        try:
            return [str(reference.parse(ref))], []
        except InvalidArgument:
            return [], [ref]
    return [], [ref]


@dataclass
class _Building:
    """An ArchiveRef being assembled."""

    names: list[str]
    ref_names: list[str]
    indexes: list[JSONBlob]
    images: list[ArchiveImage]
    missing: list[Descriptor]

    def freeze(self) -> ArchiveRef:
        return ArchiveRef(names=tuple(dict.fromkeys(self.names)), ref_names=tuple(dict.fromkeys(self.ref_names)),
                          indexes=tuple(self.indexes), images=tuple(self.images), missing=tuple(self.missing))


def read_archive(root: Path) -> list[ArchiveRef]:
    """Read the image archive extracted at *root* (see the module docstring for shapes and result).

    Raises:
        InvalidArgument: not an image archive, or a file or entry in it is
            missing, malformed or inconsistent (the message names it).
    """
    root = Path(root)
    has_manifest = (root / "manifest.json").exists() or (root / "manifest.json").is_symlink()
    # An index.json without oci-layout is an OCI layout missing its marker (read_layout says so),
    # unless manifest.json is there: then it is a classic archive with a stray file.
    has_layout = (root / "oci-layout").exists() or ((root / "index.json").exists() and not has_manifest)
    if not has_layout and not has_manifest:
        what = " (Docker before 1.10 wrote only `repositories`; not supported)" \
            if (root / "repositories").exists() else ""
        raise InvalidArgument("docker load: the archive has neither manifest.json nor an OCI index.json: "
                              f"not an image archive{what}")
    refs: list[_Building] = []
    stubs: dict[str, _Building] = {}
    if has_layout:
        refs, stubs = _read_oci(ocilayout.read_layout(root), stubs_allowed=has_manifest)
    if has_manifest:
        _merge_manifest_json(root, refs, stubs)
    if stubs:
        raise InvalidArgument(f"docker load: index.json names an image (config {next(iter(stubs))}) whose "
                              "manifest lists no layers, and manifest.json does not list it either")
    return [r.freeze() for r in refs]


class _NoLayers(InvalidArgument):
    """A manifest with no layers for a config with diff_ids: what Docker 25.0.0's `docker save` wrote."""

    def __init__(self, config_digest: str, message: str) -> None:
        super().__init__(message)
        self.config_digest = config_digest


def _read_oci(layout: ocilayout.Layout, stubs_allowed: bool) -> tuple[list[_Building], dict[str, _Building]]:
    """The refs of index.json, grouped by target; plus, by config digest, the names of entries
    whose manifest lists no layers (Docker 25.0.0), left for manifest.json to supply (when *stubs_allowed*)."""
    by_target: dict[str, _Building] = {}
    stubs: dict[str, _Building] = {}
    for ref in layout.refs():
        desc = ref.descriptor
        names, ref_names = _names_of(desc)
        building = by_target.get(ref.digest)
        if building is None:
            building = _Building([], [], [], [], [])
            try:
                _read_target(layout, desc, building, 0)
            except _NoLayers as exc:
                if not stubs_allowed:
                    raise
                building = stubs.setdefault(exc.config_digest, _Building([], [], [], [], []))
            else:
                by_target[ref.digest] = building
        building.names += names
        building.ref_names += ref_names
    return list(by_target.values()), stubs


def _read_target(layout: ocilayout.Layout, desc: Descriptor, out: _Building, depth: int) -> None:
    where = f"index.json entry {desc['digest']}" if depth == 0 else f"index child {desc['digest']}"
    try:
        data, doc = layout.read_json(desc)
    except NotFound:
        raise InvalidArgument(f"docker load: {where} is not in the archive") from None
    mt = ocilayout.media_type_of(doc, desc)
    if mt in ocilayout.INDEX_TYPES:
        if depth >= ocilayout.MAX_DEPTH:
            raise InvalidArgument(f"docker load: image indexes nested more than {ocilayout.MAX_DEPTH} deep")
        out.indexes.append(JSONBlob(desc["digest"], mt, data))
        for child in ocilayout.index_children(doc, f"docker load: index {desc['digest']}"):
            cmt = child.get("mediaType", "")
            if cmt not in ocilayout.INDEX_TYPES and cmt not in ocilayout.MANIFEST_TYPES:
                continue  # an artifact: kept in the index bytes, not an image
            if not layout.has(child["digest"]):
                out.missing.append(child)
            else:
                _read_target(layout, child, out, depth + 1)
    elif mt in ocilayout.MANIFEST_TYPES:
        try:
            out.images.append(_read_oci_image(layout, desc, JSONBlob(desc["digest"], mt, data), doc))
        except _NoLayers as exc:
            if depth == 0:
                raise
            raise InvalidArgument(str(exc)) from None
    else:
        raise InvalidArgument(f"docker load: {where} has media type {mt!r}, which is neither an image "
                              "manifest nor an image index")


def _read_oci_image(layout: ocilayout.Layout, desc: Descriptor, manifest: JSONBlob,
                    doc: dict[str, Any]) -> ArchiveImage:
    what = f"manifest {manifest.digest}"
    config_desc, layer_descs = ocilayout.manifest_parts(doc, f"docker load: {what}")
    try:
        config = layout.read_blob(config_desc)
    except NotFound:
        raise InvalidArgument(f"docker load: {what} names config {config_desc['digest']} that is not in "
                              "the archive") from None
    layers = []
    for ld in layer_descs:
        try:
            path = layout.blob(ld["digest"])
        except NotFound:
            raise InvalidArgument(f"docker load: {what} names layer {ld['digest']} that is not in the "
                                  "archive") from None
        layer = _layer(path, ld["digest"], ld.get("mediaType"))
        if layer.size != ld["size"]:
            raise InvalidArgument(f"docker load: layer {ld['digest']} has {layer.size} bytes; {what} says "
                                  f"{ld['size']}")
        layers.append(layer)
    image_config = config_desc.get("mediaType") in ocilayout.IMAGE_CONFIG_TYPES
    try:
        parsed = _check_config(config, len(layers), f"config {config_desc['digest']}", image_config)
    except InvalidArgument as exc:
        if layers:
            raise
        raise _NoLayers(config_desc["digest"], str(exc)) from None
    platform = desc.get("platform") if isinstance(desc.get("platform"), dict) else None
    return ArchiveImage(config=config, config_digest=config_desc["digest"], layers=tuple(layers),
                        manifest=manifest, platform=platform or _platform_from_config(parsed),
                        annotations=dict(desc.get("annotations") or {}))


def _merge_manifest_json(root: Path, refs: list[_Building], stubs: dict[str, _Building]) -> None:
    """Add manifest.json's images: as names of an OCI ref with the same config, else as classic images
    (taking the names of *stubs*, the index.json entries read_archive could not use, by config)."""
    data = _read_capped(_resolve(root, "manifest.json", "file"), "manifest.json")
    try:
        entries = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"docker load: manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise InvalidArgument("docker load: manifest.json is not a list of images")
    by_config = {img.config_digest: r for r in refs for img in r.images}
    for config_digest in [d for d in stubs if d in by_config]:
        stub = stubs.pop(config_digest)
        by_config[config_digest].names += stub.names
        by_config[config_digest].ref_names += stub.ref_names
    for i, entry in enumerate(entries):
        what = f"manifest.json entry {i}"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"docker load: {what} is not an object")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InvalidArgument(f"docker load: {what} has a RepoTags that is not a list of names")
        names = [normalise_name(t, what) for t in tags]
        config_path = _resolve(root, entry.get("Config"), f"{what} Config")
        config = _read_capped(config_path, f"{what} Config")
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        claimed = _BLOB_PATH.fullmatch(str(entry.get("Config")))
        if claimed and f"{claimed[1]}:{claimed[2]}" != config_digest:
            raise InvalidArgument(f"docker load: {what} Config {entry['Config']} hashes to {config_digest}")
        known = by_config.get(config_digest)
        if known is not None:
            known.names += names
            continue
        layer_paths = entry.get("Layers") or []
        if not isinstance(layer_paths, list):
            raise InvalidArgument(f"docker load: {what} has a Layers that is not a list")
        layers = []
        for rel in layer_paths:
            if isinstance(rel, str) and not _exists_inside(root, rel):
                raise InvalidArgument(f"docker load: manifest.json names layer {rel} that is not in the archive")
            m = _BLOB_PATH.fullmatch(rel) if isinstance(rel, str) else None
            layers.append(_layer(_resolve(root, rel, f"{what} layer"), f"{m[1]}:{m[2]}" if m else None, None))
        parsed = _check_config(config, len(layers), f"{what} Config {entry['Config']}")
        image = ArchiveImage(config=config, config_digest=config_digest, layers=tuple(layers), manifest=None,
                             platform=_platform_from_config(parsed))
        building = _Building(names, [], [], [image], [])
        unused = stubs.pop(config_digest, None)
        if unused is not None:
            building.names = unused.names + names
            building.ref_names = unused.ref_names
        refs.append(building)
        by_config[config_digest] = building


def _exists_inside(root: Path, rel: str) -> bool:
    return not rel.startswith("/") and ".." not in rel.split("/") and os.path.lexists(root / rel)


# --------------------------------------------------------------------------- #
# Saving


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


__all__ = [
    "ArchiveImage", "ArchiveLayer", "ArchiveRef", "Compression", "JSONBlob", "SaveImage", "extract_archive",
    "iter_archive", "normalise_name", "read_archive", "sniff_compression", "write_archive",
]
