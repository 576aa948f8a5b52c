"""An OCI image layout streamed as one tar, for `docker load`, with the manifest.json older Dockers need.

    write_layout_tar(out_dir, Path("busybox.tar"))

Strategy: the tar is a stream of chunks (blobs read 1 MiB at a time, never
whole) with root ownership, zero times and the blobs in sorted order, so the
same layout always gives the same bytes. Docker before 25 loads only
manifest.json, so one is derived from index.json (`docker_manifest`): an image
index contributes the manifest for this host's platform.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from berth.errors import InvalidArgument
from berth.oci import platform as plat
from berth.oci import reference
from berth.tools.ocijson import ANNOTATION_NAME, MEDIA_INDEX, canonical_json
from berth.tools.tarentry import tar_entry

_CHUNK = 1 << 20


def docker_manifest(out_dir: Path, host_platform: plat.Platform | None = None) -> list[dict[str, Any]]:
    """The manifest.json `docker save` writes, for the images index.json names.

    Docker before 25 loads only this file; an image index contributes the
    manifest for *host_platform* (this host's by default), or nothing when it has none.
    """
    here = host_platform or plat.host()
    blob_dir = out_dir / "blobs" / "sha256"

    def read(digest: str) -> dict[str, Any]:
        algorithm, _, hexpart = digest.partition(":")
        if algorithm != "sha256" or not hexpart.isalnum():
            raise InvalidArgument(f"{out_dir}: unsupported digest {digest!r}")
        value: dict[str, Any] = json.loads((blob_dir / hexpart).read_bytes())
        return value

    out: list[dict[str, Any]] = []
    for desc in json.loads((out_dir / "index.json").read_bytes()).get("manifests", []):
        name = (desc.get("annotations") or {}).get(ANNOTATION_NAME)
        if not name:
            continue
        if desc.get("mediaType") == MEDIA_INDEX:
            desc = plat.choose(here, read(desc["digest"]).get("manifests", []))
            if desc is None:
                continue
        manifest = read(desc["digest"])
        out.append({
            "Config": "blobs/" + manifest["config"]["digest"].replace(":", "/"),
            "RepoTags": [str(reference.parse(name))],
            "Layers": ["blobs/" + layer["digest"].replace(":", "/") for layer in manifest["layers"]],
        })
    return out


def layout_tar(out_dir: Path, *, with_docker_manifest: bool = True) -> Iterator[bytes]:
    """Stream the OCI layout in *out_dir* as an uncompressed tar (for `docker load`).

    In order: oci-layout, index.json, manifest.json (see docker_manifest; left out
    when *with_docker_manifest* is false or it would be empty), then
    blobs/sha256/*, sorted, with root ownership and zero times: the same layout
    always gives the same bytes. Blobs are read in 1 MiB pieces, never whole.

    Raises:
        InvalidArgument: *out_dir* is not an OCI image layout.
    """
    def header(name: str, kind: bytes, mode: int, size: int = 0) -> bytes:
        info = tar_entry(name, kind, mode, 0, size=size)
        return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")

    def padding(size: int) -> bytes:
        return b"\0" * (-size % tarfile.BLOCKSIZE)

    for required in ("oci-layout", "index.json"):
        if not (out_dir / required).is_file():
            raise InvalidArgument(f"{out_dir} is not an OCI image layout (it has no {required})")
    small = {"oci-layout": (out_dir / "oci-layout").read_bytes(), "index.json": (out_dir / "index.json").read_bytes()}
    if with_docker_manifest:
        entries = docker_manifest(out_dir)
        if entries:
            small["manifest.json"] = canonical_json(entries)
    for name, data in small.items():
        yield header(name, tarfile.REGTYPE, 0o644, len(data)) + data + padding(len(data))
    yield header("blobs/", tarfile.DIRTYPE, 0o755)
    yield header("blobs/sha256/", tarfile.DIRTYPE, 0o755)
    blob_dir = out_dir / "blobs" / "sha256"
    blobs = sorted(p for p in blob_dir.iterdir() if not p.name.startswith(".")) if blob_dir.is_dir() else []
    for path in blobs:
        size = path.stat().st_size
        yield header(f"blobs/sha256/{path.name}", tarfile.REGTYPE, 0o644, size)
        sent = 0
        with open(path, "rb") as f:
            while sent < size:
                chunk = f.read(min(_CHUNK, size - sent))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
        if sent != size:
            raise InvalidArgument(f"{path} changed size while being read: leave the layout alone meanwhile")
        yield padding(size)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def write_layout_tar(out_dir: Path, target: Path) -> Path:
    """Write layout_tar(out_dir) to *target* (atomically) and return *target*."""
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as f:
        for chunk in layout_tar(out_dir):
            f.write(chunk)
    os.rename(tmp, target)
    return target
