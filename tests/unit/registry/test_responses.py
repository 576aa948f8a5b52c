"""A manifest from a registry is checked and parsed once, where it arrives (registry/responses.py)."""

from __future__ import annotations

import hashlib
import json

import pytest

from berth.oci import image as oci_image
from berth.registry.base import RegistryDataError
from berth.registry.responses import check_manifest

CONFIG = {"mediaType": oci_image.OCI_CONFIG, "digest": "sha256:" + "c" * 64, "size": 2}


def _raw(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def test_an_image_manifest_arrives_parsed() -> None:
    data = _raw({"schemaVersion": 2, "config": CONFIG, "layers": []})
    got = check_manifest(data, "application/vnd.oci.image.manifest.v1+json", "", "latest", "manifest x:latest")
    assert isinstance(got.image, oci_image.ImageManifest) and got.parsed() is got.image
    assert got.digest == "sha256:" + hashlib.sha256(data).hexdigest() == got.image.digest
    assert got.image.config.digest == CONFIG["digest"]


def test_an_index_media_type_comes_from_the_json_when_the_header_is_generic() -> None:
    got = check_manifest(_raw({"manifests": []}), "application/json", "", "v1", "manifest x:v1")
    assert got.media_type == oci_image.OCI_INDEX and isinstance(got.parsed(), oci_image.ImageIndex)


@pytest.mark.parametrize(("doc", "error", "words"), [
    ({"schemaVersion": 2, "layers": []}, RegistryDataError, "no config or layers"),  # an artifact, or broken
    ({"schemaVersion": 1, "fsLayers": []}, oci_image.SchemaOneManifest, "schema 1"),
])
def test_what_is_not_an_image_is_kept_with_its_reason(doc: dict, error: type, words: str) -> None:
    got = check_manifest(_raw(doc), "application/vnd.oci.image.manifest.v1+json", "", "latest", "manifest x")
    assert got.image is None and got.data == _raw(doc)  # still served as it came (distribution's describe)
    with pytest.raises(error, match=words):
        got.parsed()


def test_a_digest_that_does_not_match_is_refused() -> None:
    with pytest.raises(RegistryDataError, match="whose digest is"):
        check_manifest(_raw({"manifests": []}), "", "", "sha256:" + "0" * 64, "manifest x")
