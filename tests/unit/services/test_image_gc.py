"""Blob garbage collection on real files: what it reaches (every unreferenced blob, layer, stray ingest
file, idle partial download) and what it never takes (work in progress: leases, operations' marks)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from berth.content.local import LocalStore
from berth.metadata.db import Database
from berth.oci.image import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, parse_image_manifest, parse_manifest
from berth.services.distribution import Distribution
from berth.services.events import Events
from berth.services.imageremoval import PARTIAL_IDLE, ImageRemoval, Removal
from berth.services.images import Images
from berth.services.imageviews import ImageViews
from berth.services.layers import Layers, Leases
from berth.snapshot.overlay import Snapshots
from berth.testing.tars import files_tar


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Root:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LocalStore(str(root))
        self.db = Database(str(root / "db"))
        self.snaps = Snapshots(str(root))
        self.leases, self.layers, events = Leases(), Layers(self.store, self.snaps), Events()
        self.images = Images(self.db, self.store, self.layers, self.leases, events, lambda i: [])
        self.removal = ImageRemoval(self.images, ImageViews(self.images), self.db, self.store, self.layers,
                                    self.leases, events)

    def image(self, arch: str, files: dict[str, bytes]) -> tuple[bytes, str]:
        raw = files_tar(files)
        blob = gzip.compress(raw, mtime=0)
        layer = self.store.put(blob)
        config = json.dumps({"architecture": arch, "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [_sha(raw)]}}).encode()
        config_digest = self.store.put(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                               "layers": [{"mediaType": OCI_MANIFEST.replace("manifest.v1+json", "layer.v1.tar+gzip"),
                                           "digest": layer, "size": len(blob)}]}).encode()
        return manifest, _sha(manifest)

    def partial(self, data: bytes, age: float = 0.0) -> str:
        digest = _sha(data + b"-whole")  # the digest of a blob these bytes are the start of
        path = Path(self.store.partial_dir, digest[7:])
        path.write_bytes(data)
        if age:
            then = time.time() - age
            os.utime(path, (then, then))
        return digest


@pytest.fixture()
def r(tmp_path: Path) -> Root:
    return Root(tmp_path)


def test_removing_every_platform_of_an_index_by_id_takes_the_index_its_tag_and_every_blob(r: Root) -> None:
    amd, amd_digest = r.image("amd64", {"arch": b"amd64"})
    arm, arm_digest = r.image("arm64", {"arch": b"arm64"})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd_digest, "size": len(amd),
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": arm_digest, "size": len(arm),
         "platform": {"os": "linux", "architecture": "arm64"}}]}).encode()
    ids = {amd_digest: r.images.register(parse_image_manifest(amd)),
           arm_digest: r.images.register(parse_image_manifest(arm))}
    digest = r.images.register_index(parse_manifest(index), ids)
    r.images.set_tag("multi:latest", digest)
    first = r.removal.remove(ids[arm_digest], force=True)
    assert first == [Removal(deleted=ids[arm_digest])]  # a platform is left: the index stays
    assert r.images.index(digest) is not None and r.store.exists(digest)
    second = r.removal.remove(ids[amd_digest], force=True)
    assert Removal(untagged="multi:latest") in second and Removal(deleted=ids[amd_digest]) in second
    assert r.images.index(digest) is None and r.images.all_tags() == []
    assert r.store.digests() == [] and r.snaps.chains() == []


def test_what_an_operation_publishes_or_reuses_stays_until_it_ends(r: Root) -> None:
    old = r.store.put(b"garbage from before")
    with r.store.operation():
        fresh = r.store.put(b"a config no record names yet")
        assert r.store.reuse(old)  # found here, about to be referred to
        r.removal.collect()
        assert r.store.exists(fresh) and r.store.exists(old)
    r.removal.collect()  # the operation left them unreferenced: the next collection takes them
    assert r.store.digests() == []


def test_a_blob_published_while_a_collection_runs_is_not_deleted_by_it(r: Root) -> None:
    with r.store.collecting():
        digest = r.store.put(b"published mid-collection")
        assert r.store.delete_unmarked(digest) == 0
        assert r.store.exists(digest)
    assert r.store.delete_unmarked(digest) == len(b"published mid-collection")
    assert not r.store.exists(digest)


def test_a_snapshot_used_by_an_operation_stays(r: Root) -> None:
    manifest, _ = r.image("amd64", {"f": b"1"})
    image_id = r.images.register(parse_image_manifest(manifest))
    chain = r.images.chains(image_id)[0]
    r.db.delete_image(image_id)
    with r.store.operation():
        assert r.layers.has(chain)
        r.removal.collect()
        assert r.layers.has(chain)
    r.removal.collect()
    assert r.snaps.chains() == [] and r.store.digests() == []
    assert [n for n in os.listdir(r.snaps.root)] == []  # the renamed directory went too


def test_leased_blobs_and_partials_stay(r: Root) -> None:
    blob = r.store.put(b"leased")
    partial = r.partial(b"half", age=PARTIAL_IDLE + 60)
    with r.leases.lease([blob, partial]):
        r.removal.collect(drop_partials=True)
        assert r.store.exists(blob) and r.store.partials() == [partial]
    r.removal.collect(drop_partials=True)
    assert r.store.digests() == [] and r.store.partials() == []


def test_partials_go_when_idle_too_long_or_complete_and_prune_all_drops_every_idle_one(r: Root) -> None:
    fresh = r.partial(b"resumable")
    r.partial(b"abandoned", age=PARTIAL_IDLE + 60)
    done = r.store.put(b"whole blob")
    Path(r.store.partial_dir, done[7:]).write_bytes(b"whole")  # its download finished elsewhere
    assert r.store.drop_partial(done, PARTIAL_IDLE) == len(b"whole")
    r.removal.collect()
    assert r.store.partials() == [fresh]  # a retried pull resumes it
    r.removal.prune(all_=True)
    assert r.store.partials() == []


def test_a_partial_being_written_stays_even_for_prune_all(r: Root) -> None:
    digest = r.partial(b"downloading", age=PARTIAL_IDLE + 60)
    ingest = r.store.resume(digest)
    try:
        assert r.store.drop_partial(digest, 0.0) == 0
    finally:
        ingest.close()
    assert r.store.drop_partial(digest, 0.0) == len(b"downloading")


def test_stray_ingest_files_go_and_live_ones_stay(r: Root) -> None:
    live = r.store.ingest()
    live.write(b"being written")
    live.flush()
    Path(r.store.ingest_dir, "stray").write_bytes(b"left by a write nobody ended")
    r.removal.collect()
    assert os.listdir(r.store.ingest_dir) == [os.path.basename(live.path)]
    digest = live.commit()
    assert r.store.exists(digest) and os.listdir(r.store.ingest_dir) == []


def test_one_download_of_a_blob_at_a_time() -> None:
    dist = Distribution.__new__(Distribution)
    dist._downloads = {}
    inside: list[int] = []
    seen: list[int] = []

    async def one(n: int) -> None:
        async with dist._downloading("sha256:" + "a" * 64):
            inside.append(n)
            seen.append(len(inside))
            await asyncio.sleep(0)
            inside.remove(n)

    async def go() -> None:
        await asyncio.gather(*(one(n) for n in range(4)))
    asyncio.run(go())
    assert seen == [1, 1, 1, 1] and dist._downloads == {}


def test_builder_prune_deletes_the_step_images_only_the_cache_kept(r: Root) -> None:
    base_manifest, _ = r.image("amd64", {"base": b"1"})
    base = r.images.register(parse_image_manifest(base_manifest))
    r.images.set_tag("base:1", base)
    step_manifest, _ = r.image("amd64", {"step": b"2"})  # a step of a build that failed later
    step = r.images.register(parse_image_manifest(step_manifest))
    r.images.set_parent(step, base)
    r.db.build_cache_put("key-of-the-step", step)
    r.db.build_cache_put("key-of-the-base", base)
    cleared, freed = asyncio.run(r.removal.prune_build_cache())
    assert cleared == 2 and freed > 0
    assert not r.images.has(step) and r.images.has(base)  # the tagged one stays
    assert sorted(r.store.digests()) == sorted({base, r.images.record(base).manifest, *r.images.record(base).layers})
