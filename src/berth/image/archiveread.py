"""`docker load`, step 2: an extracted image archive read into ArchiveRefs, every file checked first.

Strategy: image.archiveextract has unpacked the upload; this module trusts
the directory's shape but not its contents. Every file it opens is resolved
(symlinks included) and must be a regular file inside the directory; JSON
files are capped in size and checked against their digests before they are
parsed. Layer files are only located, never read: their digests are checked
when the caller copies them into the content store
(Ingest.commit(expected=layer.digest)). What comes back is described in
image.archiverefs. Three shapes of archive are read:

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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.errors import InvalidArgument, NotFound
from berth.image import ocilayout
from berth.image.archiverefs import (
    ArchiveImage,
    ArchiveLayer,
    ArchiveRef,
    JSONBlob,
    sniff_compression,
)
from berth.image.ocilayout import Descriptor
from berth.oci import reference

_BLOB_PATH = re.compile(r"blobs/(sha256)/([0-9a-f]{64})")


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


__all__ = ["normalise_name", "read_archive"]
