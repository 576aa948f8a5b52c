"""Writing an OCI image layout: content-addressed blobs, gzip layers streamed in, index.json.

    blobs = Blobs(out_dir)
    diff_id, layer = add_layer(blobs, tar_bytes)
    write_index_json(out_dir, one_manifest(blobs, platform, config, [layer]))

Strategy: a blob is stored once, atomically, under blobs/sha256/ and the hex
digest of its own bytes. A large layer is streamed through gzip into a
temporary file while the uncompressed tar (its diff id) and the compressed
blob (its digest) are both hashed on the way through (`HashingSink`), and then
renamed into place. gzip runs with a fixed level, no file name and mtime 0, so
the same tar always gives the same blob.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from berth.host import fs
from berth.oci import platform as plat
from berth.tools.ocijson import (
    MEDIA_CONFIG,
    MEDIA_LAYER,
    MEDIA_MANIFEST,
    Descriptor,
    canonical_json,
    image_index,
    image_manifest,
)

GZIP_LEVEL = 6


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class HashingSink:
    """A write-only file that hashes what passes through and forwards it (or drops it)."""

    def __init__(self, target: _Writable | None) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self._target = target

    def write(self, data: bytes) -> int:  # the buffer protocol objects gzip passes work too
        self.hash.update(data)
        self.size += len(data)
        if self._target is not None:
            self._target.write(data)
        return len(data)

    def flush(self) -> None:
        if self._target is not None:
            self._target.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class Blobs:
    """blobs/sha256/ of a layout: content-addressed, written once, atomically."""

    def __init__(self, layout: Path) -> None:
        self.dir = layout / "blobs" / "sha256"
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, media_type: str) -> Descriptor:
        digest = hashlib.sha256(data).hexdigest()
        path = self.dir / digest
        if not (path.exists() and path.stat().st_size == len(data)):
            fs.atomic_write(str(path), data)
        return Descriptor(media_type, "sha256:" + digest, len(data))

    @contextlib.contextmanager
    def gzip_layer(self) -> Iterator[tuple[HashingSink, list[Descriptor]]]:
        """Stream a tar in: yields (sink for the uncompressed tar, list that receives the blob descriptor)."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        done: list[Descriptor] = []
        try:
            with os.fdopen(fd, "wb") as raw:
                blob = HashingSink(raw)
                with gzip.GzipFile(filename="", mode="wb", fileobj=blob,
                                   compresslevel=GZIP_LEVEL, mtime=0) as gz:
                    plain = HashingSink(gz)
                    yield plain, done
                raw.flush()
                os.fsync(raw.fileno())
            os.chmod(tmp, 0o644)
            os.rename(tmp, self.dir / blob.hash.hexdigest())
            done.append(Descriptor(MEDIA_LAYER, blob.digest, blob.size))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_index_json(layout: Path, top: Descriptor) -> None:
    """Write the layout's oci-layout and its index.json naming *top*."""
    fs.atomic_write(str(layout / "oci-layout"), canonical_json({"imageLayoutVersion": "1.0.0"}))
    fs.atomic_write(str(layout / "index.json"), canonical_json(image_index([top])))


def add_layer(blobs: Blobs, tar_bytes: bytes) -> tuple[str, Descriptor]:
    """Store *tar_bytes* gzipped as a layer blob: (its diff id, the blob's descriptor)."""
    compressed = gzip.compress(tar_bytes, compresslevel=GZIP_LEVEL, mtime=0)
    return "sha256:" + hashlib.sha256(tar_bytes).hexdigest(), blobs.put(compressed, MEDIA_LAYER)


def one_manifest(blobs: Blobs, p: plat.Platform, config: dict[str, Any],
                 layers: list[Descriptor]) -> Descriptor:
    """Store *config* and a manifest of it and *layers*; the manifest's descriptor, for platform *p*."""
    config_desc = blobs.put(canonical_json(config), MEDIA_CONFIG)
    manifest = blobs.put(canonical_json(image_manifest(config_desc, layers)), MEDIA_MANIFEST)
    return Descriptor(MEDIA_MANIFEST, manifest.digest, manifest.size, plat.normalize(p))
