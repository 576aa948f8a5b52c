"""The manifests GET /images/json?manifests=1 shows per image: an index's children in order (one
here, one not, an attestation), a single-platform image's own manifest, sizes from the blobs present,
containers per platform, and the JSON the API writes. Real files in a tmp dir."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from berth.api.views import images as views
from berth.content.local import LocalStore
from berth.metadata.db import Database
from berth.oci import image as oci_image
from berth.oci.image import OCI_CONFIG, OCI_MANIFEST
from berth.services import imagemanifests
from berth.services.events import Events
from berth.services.imagemanifests import Kind
from berth.services.images import Images
from berth.services.imageviews import ImageViews
from berth.services.layers import Layers, Leases
from berth.snapshot.overlay import Snapshots
from berth.testing.tars import files_tar

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class Store:
    def __init__(self, root: Path) -> None:
        self.store = LocalStore(str(root))
        self.db = Database(str(root / "db"))
        self.users: dict[str, list[str]] = {}
        self.images = Images(self.db, self.store, Layers(self.store, Snapshots(str(root))), Leases(), Events(),
                             lambda i: self.users.get(i, []))
        self.views = ImageViews(self.images)

    def manifest(self, arch: str, content: bytes) -> tuple[bytes, bytes, bytes]:
        """(manifest, config, layer blob) of a one-layer image for linux/*arch*, not stored."""
        raw = files_tar({"file": content})
        blob = gzip.compress(raw, mtime=0)
        config = json.dumps({"architecture": arch, "os": "linux", "created": "2024-01-02T03:04:05Z",
                             "rootfs": {"type": "layers",
                                        "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                           "digest": _digest(blob), "size": len(blob)}]}).encode()
        return manifest, config, blob

    def register(self, manifest: bytes, config: bytes, blob: bytes) -> str:
        self.store.put(config)
        self.store.put(blob)
        return self.images.register(oci_image.parse_image_manifest(manifest))

    def listed(self, all_: bool = False) -> list[dict]:
        items = self.views.listing(all_)
        return views.listing(items, asyncio.run(imagemanifests.for_listing(self.images, self.store, items)))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture()
def s(tmp_path: Path) -> Store:
    return Store(tmp_path)


def _multi(s: Store) -> dict:
    """multi:1, an index of linux/amd64 (here), linux/arm64 (not here) and an attestation for amd64."""
    amd = s.manifest("amd64", b"amd")
    arm = s.manifest("arm64", b"arm")
    amd_id = s.register(*amd)
    attestation = b'{"schemaVersion":2}'
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": _digest(amd[0]), "size": len(amd[0]),
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": _digest(arm[0]), "size": len(arm[0]),
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": OCI_MANIFEST, "digest": _digest(attestation), "size": len(attestation),
         "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                         "vnd.docker.reference.digest": _digest(amd[0])}}]}).encode()
    parsed = oci_image.parse_manifest(index)
    assert isinstance(parsed, oci_image.ImageIndex)
    target = s.images.register_index(parsed, {_digest(amd[0]): amd_id})
    s.images.set_tag("multi:1", target)
    return {"amd": amd, "arm": arm, "amd_id": amd_id, "attestation": attestation}


def test_an_index_lists_each_child_in_order_with_what_is_here(s: Store) -> None:
    m = _multi(s)
    s.users[m["amd_id"]] = ["c1", "c2"]
    [row] = s.listed()
    assert row["RepoTags"] == ["multi:1"] and row["Id"] == m["amd_id"]
    amd, arm, att = row["Manifests"]
    manifest, config, blob = m["amd"]
    content = len(manifest) + len(config) + len(blob)
    unpacked = s.images.record(m["amd_id"]).size
    assert amd == {
        "ID": _digest(manifest), "Available": True, "Kind": "image",
        "Descriptor": {"mediaType": OCI_MANIFEST, "digest": _digest(manifest), "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"}},
        "Size": {"Total": content + unpacked, "Content": content},
        "ImageData": {"Platform": {"architecture": "amd64", "os": "linux"}, "Containers": ["c1", "c2"],
                      "Size": {"Unpacked": unpacked}}}
    assert unpacked > 0
    assert arm["ID"] == _digest(m["arm"][0]) and arm["Available"] is False and arm["Kind"] == "image"
    assert arm["Size"] == {"Total": 0, "Content": 0}
    assert arm["ImageData"] == {"Platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                                "Containers": [], "Size": {"Unpacked": 0}}
    assert att["Kind"] == "attestation" and att["Available"] is False and "ImageData" not in att
    assert att["AttestationData"] == {"For": _digest(manifest)}
    assert att["Descriptor"]["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"


def test_a_single_platform_image_lists_its_own_manifest(s: Store) -> None:
    manifest, config, blob = s.manifest("arm64", b"solo")
    image = s.register(manifest, config, blob)
    s.images.set_tag("solo:1", image)
    [row] = s.listed()
    [only] = row["Manifests"]
    assert only["ID"] == _digest(manifest) == s.images.record(image).manifest
    assert only["Descriptor"] == {"mediaType": OCI_MANIFEST, "digest": _digest(manifest), "size": len(manifest)}
    assert only["Available"] is True and only["Kind"] == "image"
    assert only["ImageData"]["Platform"] == {"architecture": "arm64", "os": "linux"}
    assert only["Size"]["Content"] == len(manifest) + len(config) + len(blob)


def test_an_untagged_platform_listed_with_all_shows_only_itself(s: Store) -> None:
    m = _multi(s)
    arm_id = s.register(*m["arm"])  # now here too, but the tag shows the host's (amd64)
    rows = {r["Id"]: r for r in s.listed(all_=True)}
    assert len(rows[m["amd_id"]]["Manifests"]) == 3
    assert rows[m["amd_id"]]["Manifests"][1]["Available"] is False  # the index record knows only amd64's image
    [own] = rows[arm_id]["Manifests"]
    assert own["ID"] == _digest(m["arm"][0]) and own["ImageData"]["Platform"]["architecture"] == "arm64"


def test_a_missing_blob_counts_nothing_and_a_huge_document_is_not_read(s: Store, monkeypatch) -> None:
    manifest, config, blob = s.manifest("amd64", b"gone")
    image = s.register(manifest, config, blob)
    s.images.set_tag("gone:1", image)
    s.store.delete(s.images.record(image).layers[0])
    monkeypatch.setattr(imagemanifests, "DOCUMENT_LIMIT", 16)  # the manifest and config are longer
    [row] = s.listed()
    [only] = row["Manifests"]
    assert only["Size"]["Content"] == len(manifest) + len(config)
    assert only["Descriptor"]["mediaType"] == OCI_MANIFEST  # the default, unread
    assert only["ImageData"]["Platform"] == {"architecture": "", "os": ""}


def test_without_manifests_the_rows_have_no_manifests_key(s: Store) -> None:
    _multi(s)
    assert all("Manifests" not in r for r in views.listing(s.views.listing()))


def test_kind_rules() -> None:
    k = imagemanifests._kind
    assert k(None, {}) is Kind.IMAGE
    assert k({"os": "linux", "architecture": "amd64"}, {}) is Kind.IMAGE
    assert k({"os": "unknown", "architecture": "unknown"}, {}) is Kind.ATTESTATION
    assert k({"os": "linux", "architecture": "amd64"},
             {"vnd.docker.reference.type": "attestation-manifest"}) is Kind.ATTESTATION
    assert k({}, {}) is Kind.UNKNOWN


def test_hostile_index_values_do_not_break_the_summary() -> None:
    planned = imagemanifests.PlannedImage("sha256:x", "sha256:idx", (
        imagemanifests.Planned("sha256:a", {"os": "linux", "architecture": "amd64"}),))
    facts = imagemanifests.Facts({}, {"sha256:idx": {"manifests": [
        {"digest": "sha256:a", "size": "big", "mediaType": 7, "annotations": {"k": 1, "ok": "v"}}, "junk", 3]}})
    [m] = imagemanifests.summaries(planned, facts)
    assert (m.size, m.media_type, m.annotations) == (0, OCI_MANIFEST, {"ok": "v"})
