"""The image store on real files: register from manifests, indexes and platforms, tags, prune, GC with leases."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from berth.content.local import LocalStore
from berth.errors import InvalidArgument, NotFound
from berth.metadata.db import Database
from berth.oci.image import OCI_CONFIG as MEDIA_CONFIG
from berth.oci.image import OCI_INDEX as MEDIA_INDEX
from berth.oci.image import OCI_MANIFEST as MEDIA_MANIFEST
from berth.oci.image import parse_image_manifest, parse_manifest
from berth.services.events import Events
from berth.services.imageremoval import ImageRemoval, Removal
from berth.services.images import Images
from berth.services.imageviews import ImageViews
from berth.services.layers import Layers, Leases
from berth.snapshot.overlay import Snapshots
from berth.testing.tars import files_tar as _layer


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()




class Store:
    def __init__(self, root: Path) -> None:
        self.store = LocalStore(str(root))
        self.db = Database(str(root / "db"))
        self.snaps = Snapshots(str(root))
        self.users: dict[str, list[str]] = {}
        self.leases, self.layers, events = Leases(), Layers(self.store, self.snaps), Events()
        self.images = Images(self.db, self.store, self.layers, self.leases, events, lambda i: self.users.get(i, []))
        self.views = ImageViews(self.images)
        self.removal = ImageRemoval(self.images, self.views, self.db, self.store, self.layers, self.leases, events)

    def image(self, arch: str, files: dict[str, bytes], *, gz: bool = True) -> tuple[bytes, str]:
        """Put an image's blobs in the store; return (manifest bytes, manifest digest)."""
        raw = _layer(files)
        blob = gzip.compress(raw, mtime=0) if gz else raw
        layer = self.store.put(blob)
        config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": [_sha(raw)]}}).encode()
        config_digest = self.store.put(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                               "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                           "digest": layer, "size": len(blob)}]}).encode()
        return manifest, _sha(manifest)


@pytest.fixture()
def s(tmp_path: Path) -> Store:
    return Store(tmp_path)


def test_register_unpacks_and_verifies(s: Store) -> None:
    manifest, _ = s.image("amd64", {"hello": b"world"})
    image_id = s.images.register(parse_image_manifest(manifest), repo_digests=["reg/x@sha256:" + "a" * 64])
    chain = s.images.chains(image_id)[0]
    assert Path(s.snaps.path(chain), "hello").read_bytes() == b"world"
    assert s.images.record(image_id).size == 5
    s.images.set_tag("reg/x:1", image_id)
    assert s.images.resolve("reg/x:1") == image_id
    assert s.views.inspect("reg/x:1").repo_digests == ("reg/x@sha256:" + "a" * 64,)


def test_a_layer_that_is_not_what_the_config_says_is_refused(s: Store) -> None:
    manifest, _ = s.image("amd64", {"a": b"1"})
    doc = json.loads(manifest)
    other = s.store.put(gzip.compress(_layer({"b": b"2"}), mtime=0))
    doc["layers"][0]["digest"] = other
    with pytest.raises(InvalidArgument, match="unpacks to"):
        s.images.register(parse_image_manifest(json.dumps(doc).encode()))
    assert s.snaps.chains() == []


def _index(s: Store) -> tuple[bytes, dict[str, str]]:
    amd, amd_digest = s.image("amd64", {"arch": b"amd64"})
    arm, arm_digest = s.image("arm64", {"arch": b"arm64"})
    index = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [
        {"mediaType": MEDIA_MANIFEST, "digest": amd_digest, "size": len(amd),
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": MEDIA_MANIFEST, "digest": arm_digest, "size": len(arm),
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}).encode()
    ids = {amd_digest: s.images.register(parse_image_manifest(amd)), arm_digest: s.images.register(parse_image_manifest(arm))}
    return index, ids


def test_an_index_resolves_per_platform(s: Store) -> None:
    index, ids = _index(s)
    digest = s.images.register_index(parse_manifest(index), ids)
    s.images.set_tag("multi:latest", digest)
    amd = s.images.resolve("multi")
    arm = s.images.resolve("multi", "linux/arm64")
    assert {amd, arm} == set(ids.values()) and amd != arm
    assert s.images.config(arm).architecture == "arm64"
    with pytest.raises(InvalidArgument, match="has no variant for linux/s390x.*linux/amd64, linux/arm64"):
        s.images.resolve("multi", "linux/s390x")
    listed = s.views.listing()
    assert [i.repo_tags for i in listed] == [("multi:latest",)]  # the arm64 half is not dangling
    assert len(s.views.listing(all_=True)) == 2


def test_a_platform_the_index_lists_but_is_not_here_is_not_found(s: Store) -> None:
    index, ids = _index(s)
    arm_digest = next(d for d, i in ids.items() if s.images.config(i).architecture == "arm64")
    digest = s.images.register_index(parse_manifest(index), {d: i for d, i in ids.items() if d != arm_digest})
    s.images.set_tag("half:1", digest)
    s.db.delete_image(ids[arm_digest])
    with pytest.raises(NotFound, match="docker pull --platform linux/arm64"):
        s.images.resolve("half:1", "linux/arm64")


def test_removing_an_index_tag_collects_everything(s: Store) -> None:
    index, ids = _index(s)
    s.images.set_tag("multi:latest", s.images.register_index(parse_manifest(index), ids))
    out = s.removal.remove("multi:latest")
    assert Removal(untagged="multi:latest") in out and sum(bool(o.deleted) for o in out) == 2
    assert s.store.digests() == [] and s.snaps.chains() == []


def test_a_single_image_must_match_an_explicit_platform(s: Store) -> None:
    manifest, _ = s.image("arm64", {"x": b"y"})
    image_id = s.images.register(parse_image_manifest(manifest))
    s.images.set_tag("armonly:1", image_id)
    assert s.images.resolve("armonly:1") == image_id  # no platform asked: any runs (emulated)
    with pytest.raises(InvalidArgument, match="available for linux/arm64"):
        s.images.resolve("armonly:1", "linux/amd64")


def test_prune_and_collect_respect_users_and_leases(s: Store) -> None:
    kept, _ = s.image("amd64", {"kept": b"1"})
    dangling, _ = s.image("amd64", {"dangling": b"2"})
    used, _ = s.image("amd64", {"used": b"3"})
    kept_id, dangling_id, used_id = (s.images.register(parse_image_manifest(m)) for m in (kept, dangling, used))
    s.images.set_tag("kept:1", kept_id)
    s.users[used_id] = ["c" * 64]
    stray = s.store.put(b"a blob nobody refers to")
    leased = s.store.put(b"a blob a pull is writing")
    with s.leases.lease([leased]):
        result = s.removal.prune()
        assert s.store.exists(leased)
    assert Removal(deleted=dangling_id) in result.removed and result.reclaimed > 0
    assert not s.store.exists(stray)
    assert s.images.record(kept_id) and s.images.record(used_id)
    result = s.removal.prune(all_=True)
    assert Removal(deleted=kept_id) in result.removed
    assert s.images.record(used_id)  # in use: never
    assert not s.store.exists(leased)  # the lease is over


def test_resumable_ingest_keeps_bytes_across_attempts(s: Store) -> None:
    data = b"x" * 100_000
    digest = _sha(data)
    first = s.store.resume(digest)
    first.write(data[:40_000])
    first.close()
    again = s.store.resume(digest)
    assert again.size == 40_000
    again.write(data[40_000:])
    assert again.commit(digest) == digest
    assert s.store.read(digest) == data and s.store.partials() == []
