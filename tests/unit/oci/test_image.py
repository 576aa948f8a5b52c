"""The OCI image model: manifests, indexes and configs parsed once from their bytes, malformed ones refused."""

from __future__ import annotations

import json

import pytest

from berth.oci import image


def _raw(doc: object) -> bytes:
    return json.dumps(doc).encode()


LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "a" * 64, "size": 10}
CONFIG = {"mediaType": image.OCI_CONFIG, "digest": "sha256:" + "c" * 64, "size": 5}


def test_manifest_keeps_its_bytes_and_digest():
    raw = _raw({"schemaVersion": 2, "mediaType": image.OCI_MANIFEST, "config": CONFIG, "layers": [LAYER]})
    m = image.parse_manifest(raw)
    assert isinstance(m, image.ImageManifest)
    assert m.raw == raw and m.digest == image.digest_of(raw) and m.media_type == image.OCI_MANIFEST
    assert m.config.digest == CONFIG["digest"] and [d.digest for d in m.layers] == [LAYER["digest"]]
    assert image.parse_manifest(raw, digest="sha256:given").digest == "sha256:given"


@pytest.mark.parametrize("doc", [
    {"mediaType": image.OCI_INDEX, "manifests": []},
    {"mediaType": image.DOCKER_LIST, "manifests": [{"digest": "sha256:" + "b" * 64, "size": 1,
                                                    "platform": {"os": "linux", "architecture": "arm64"}}]},
    {"manifests": [], "schemaVersion": 2},  # no mediaType: told by its fields
])
def test_indexes(doc):
    idx = image.parse_manifest(_raw(doc))
    assert isinstance(idx, image.ImageIndex)
    assert [d.get("platform") for d in idx.descriptors()] == [m.get("platform") for m in doc["manifests"]]


@pytest.mark.parametrize(("raw", "words"), [
    (b"not json", "is not JSON"),
    (b"[1]", "not a JSON object"),
    (_raw({"schemaVersion": 2, "layers": []}), "no config or layers"),
    (_raw({"config": CONFIG, "layers": [{"size": 1}]}), "without a digest"),
    (_raw({"mediaType": image.OCI_INDEX, "manifests": "x"}), "without a list of manifests"),
])
def test_malformed_manifests_are_refused(raw, words):
    with pytest.raises(image.MalformedImage, match=words):
        image.parse_manifest(raw)


def test_schema_one_is_refused_by_name():
    with pytest.raises(image.SchemaOneManifest, match="schema 1 manifest, which Docker deprecated"):
        image.parse_manifest(_raw({"schemaVersion": 1, "fsLayers": []}), what="the manifest of a:1")
    assert issubclass(image.SchemaOneManifest, image.NotImplemented_)


def test_one_platform_manifest_expected():
    with pytest.raises(image.MalformedImage, match="is an index"):
        image.parse_image_manifest(_raw({"mediaType": image.OCI_INDEX, "manifests": []}))


def test_config():
    raw = _raw({"architecture": "arm64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "d" * 64]}})
    cfg = image.parse_config(raw)
    assert cfg.diff_ids == ("sha256:" + "d" * 64,) and cfg.created.startswith("2026")
    assert cfg.doc["architecture"] == "arm64" and cfg.digest == image.digest_of(raw)
    with pytest.raises(image.MalformedImage, match="rootfs.diff_ids"):
        image.parse_config(_raw({"rootfs": {"diff_ids": [1]}}))
    assert issubclass(image.MalformedImage, image.InvalidArgument)
