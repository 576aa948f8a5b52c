"""Shared helpers of the image archive tests (test_archiveread, test_archivesave): images put into a real
content store, and an archive loaded back. Test modules import them as ``from berth_image_conftest import ...``."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.content.local import LocalStore
from berth.image import ocilayout as ol
from berth.image.archiveextract import extract_archive
from berth.image.archiveread import read_archive
from berth.image.archiverefs import ArchiveRef


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Img:
    manifest: bytes
    config: bytes
    layers: list[str]       # blob digests
    diff_ids: list[str]

    @property
    def digest(self) -> str:
        return sha(self.manifest)


def put_image(store: LocalStore, layers: list[bytes], arch: str = "amd64", gz: tuple[bool, ...] = ()) -> Img:
    """Store an image whose layers are the given tars (gzip-compressed where *gz* says so)."""
    blobs, descs = [], []
    for i, tar in enumerate(layers):
        compressed = gz[i] if i < len(gz) else True
        blob = gzip.compress(tar, mtime=0) if compressed else tar
        blobs.append(store.put(blob))
        descs.append({"mediaType": ol.OCI_LAYER_GZIP if compressed else ol.OCI_LAYER,
                      "digest": blobs[-1], "size": len(blob)})
    diff_ids = [sha(t) for t in layers]
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    store.put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_MANIFEST,
                           "config": {"mediaType": ol.OCI_CONFIG, "digest": sha(config), "size": len(config)},
                           "layers": descs}).encode()
    store.put(manifest)
    return Img(manifest, config, blobs, diff_ids)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(str(tmp_path / "store"))


def load(archive: Path, dest: Path) -> list[ArchiveRef]:
    with open(archive, "rb") as f:
        extract_archive(f, dest)
    return read_archive(dest)


sys.modules.setdefault("berth_image_conftest", sys.modules[__name__])
