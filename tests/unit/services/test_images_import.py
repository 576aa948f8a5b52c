"""`docker import` on real files: what an interrupted or failed import leaves behind (nothing)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import AsyncIterator

import pytest

from berth.content.local import LocalStore
from berth.errors import InvalidArgument
from berth.metadata.db import Database
from berth.services.events import Events
from berth.services.images import Images
from berth.services.layers import Layers, Leases
from berth.snapshot.overlay import Snapshots
from berth.testing.tars import files_tar as _tar

EMPTY = "sha256:" + hashlib.sha256(b"").hexdigest()




TAR = _tar({"bin/hello": b"x" * 100_000, "etc/motd": b"hi\n"})
DIFF_ID = "sha256:" + hashlib.sha256(TAR).hexdigest()


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LocalStore(str(root))
        self.db = Database(str(root / "db"))
        self.snaps = Snapshots(str(root))
        self.images = Images(self.db, self.store, Layers(self.store, self.snaps), Leases(), Events(), lambda i: [])

    def import_(self, body: AsyncIterator[bytes], repo: str = "imported") -> str:
        return asyncio.run(self.images.import_tarball(body, repo, "latest", [], ""))


async def _chunks(data: bytes, size: int = 4096, fail_at: int | None = None) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        if fail_at is not None and i >= fail_at:
            raise ConnectionResetError("the client went away")  # what a body cut short raises
        yield data[i:i + size]


def test_import_records_the_layers_diff_id(tmp_path: Path) -> None:
    w = World(tmp_path)
    image_id = w.import_(_chunks(TAR))
    doc = w.db.get_image(image_id)
    assert doc is not None and doc["diff_ids"] == [DIFF_ID]
    assert (Path(w.snaps.path(DIFF_ID)) / "etc" / "motd").read_bytes() == b"hi\n"


def test_a_body_cut_short_records_nothing_and_the_next_import_works(tmp_path: Path) -> None:
    w = World(tmp_path)
    with pytest.raises(ConnectionResetError):
        w.import_(_chunks(TAR, fail_at=len(TAR) // 2))
    assert list(w.db.images()) == []
    assert w.store.digests() == [] and w.snaps.chains() == []
    assert os.listdir(w.store.ingest_dir) == []
    image_id = w.import_(_chunks(TAR))
    assert w.db.get_image(image_id)["diff_ids"] == [DIFF_ID]  # type: ignore[index]


def test_a_truncated_archive_is_refused_and_its_blob_dropped(tmp_path: Path) -> None:
    w = World(tmp_path)
    cut = TAR[:50_000]  # inside bin/hello's data
    with pytest.raises(InvalidArgument):
        w.import_(_chunks(cut))
    assert list(w.db.images()) == [] and w.store.digests() == [] and w.snaps.chains() == []
    assert [n for n in os.listdir(w.snaps.root)] == []


def test_a_leftover_of_an_interrupted_unpack_is_not_taken_for_the_layer(tmp_path: Path) -> None:
    # Before: the layer was unpacked under sha256(layer digest) and renamed to its diff id
    # after; a crash in between left that directory, the next import of the same tar skipped
    # the unpack (the "snapshot" existed), read nothing and recorded the empty digest.
    w = World(tmp_path)
    layer_digest = "sha256:" + hashlib.sha256(TAR).hexdigest()
    stale = Path(w.snaps.root) / hashlib.sha256(layer_digest.encode()).hexdigest() / "fs"
    stale.mkdir(parents=True)
    image_id = w.import_(_chunks(TAR))
    doc = w.db.get_image(image_id)
    assert doc is not None and doc["diff_ids"] == [DIFF_ID] and EMPTY not in doc["diff_ids"]
