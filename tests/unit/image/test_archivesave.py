"""Tests for berth.image.archivesave: save -> extract -> read round trips through a real
content store, the Docker 25+ layout written, and what save refuses."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from berth_image_conftest import Img, load, put_image, sha

from berth.content.local import LocalStore
from berth.errors import InvalidArgument, NotFound
from berth.image import ocilayout as ol
from berth.image.archiverefs import Compression
from berth.image.archivesave import SaveImage, iter_archive
from berth.oci.reference import full_name
from berth.testing.tars import files_tar as layer_tar


def save(store: LocalStore, images: list[SaveImage], path: Path) -> Path:
    path.write_bytes(b"".join(iter_archive(images, store.path)))
    return path


# --------------------------------------------------------------------------- #
# Round trips


def test_save_then_load_gives_the_same_blobs_and_names(store: LocalStore, tmp_path: Path) -> None:
    img = put_image(store, [layer_tar({"etc/a": b"a"}), layer_tar({"etc/b": b"b" * 5000})], gz=(True, False))
    saved = SaveImage.from_manifest(["busybox:latest", "docker.io/library/busybox:1.36", "reg:5000/x/y:z"],
                                    img.manifest)
    refs = load(save(store, [saved], tmp_path / "a.tar"), tmp_path / "x")
    assert len(refs) == 1
    ref = refs[0]
    assert ref.names == ("busybox:latest", "busybox:1.36", "reg:5000/x/y:z")
    assert ref.ref_names == () and ref.indexes == () and ref.index is None and ref.missing == ()
    assert ref.target == img.digest
    (image,) = ref.images
    assert image.manifest is not None and image.manifest.data == img.manifest
    assert image.config == img.config and image.config_digest == sha(img.config)
    assert image.diff_ids == tuple(img.diff_ids)
    assert image.platform == {"architecture": "amd64", "os": "linux"}
    assert [layer.digest for layer in image.layers] == img.layers
    assert [layer.compression for layer in image.layers] == [Compression.GZIP, Compression.NONE]
    assert [layer.media_type for layer in image.layers] == [ol.OCI_LAYER_GZIP, ol.OCI_LAYER]
    for layer in image.layers:
        assert layer.path.read_bytes() == Path(store.path(layer.digest or "")).read_bytes()
        assert layer.size == layer.path.stat().st_size


def test_archive_layout_is_docker_25_shaped_and_deterministic(store: LocalStore, tmp_path: Path) -> None:
    shared = layer_tar({"bin/sh": b"#!"})
    one = put_image(store, [shared, layer_tar({"one": b"1"})])
    two = put_image(store, [shared, layer_tar({"two": b"2"})])
    images = [SaveImage.from_manifest(["one:latest"], one.manifest),
              SaveImage.from_manifest(["two:v2", "two:latest"], two.manifest),
              SaveImage.from_manifest(["one:latest"], one.manifest)]
    data = b"".join(iter_archive(images, store.path))
    assert data == b"".join(iter_archive(images, store.path))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        ms = tar.getmembers()
        names = [m.name for m in ms]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
    assert names[:6] == ["oci-layout", "index.json", "manifest.json", "repositories", "blobs", "blobs/sha256"]
    blobs = names[6:]
    assert blobs == sorted(set(blobs))                        # each once, sorted
    assert len(blobs) == 2 + 2 + 3                             # manifests, configs, layers (one shared)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in ms)
    assert [e["annotations"] for e in index["manifests"]] == [
        {ol.ANNOTATION_IMAGE_NAME: "docker.io/library/one:latest", ol.ANNOTATION_REF_NAME: "latest"},
        {ol.ANNOTATION_IMAGE_NAME: "docker.io/library/two:v2", ol.ANNOTATION_REF_NAME: "v2"},
        {ol.ANNOTATION_IMAGE_NAME: "docker.io/library/two:latest", ol.ANNOTATION_REF_NAME: "latest"},
    ]
    assert manifest == [
        {"Config": "blobs/sha256/" + sha(one.config)[7:], "RepoTags": ["one:latest"],
         "Layers": ["blobs/sha256/" + d[7:] for d in one.layers]},
        {"Config": "blobs/sha256/" + sha(two.config)[7:], "RepoTags": ["two:v2", "two:latest"],
         "Layers": ["blobs/sha256/" + d[7:] for d in two.layers]},
    ]
    assert repositories == {"one": {"latest": one.layers[-1][7:]},
                            "two": {"v2": two.layers[-1][7:], "latest": two.layers[-1][7:]}}


def test_untagged_save_has_an_unnamed_entry(store: LocalStore, tmp_path: Path) -> None:
    img = put_image(store, [layer_tar({"f": b"f"})])
    refs = load(save(store, [SaveImage.from_manifest([], img.manifest)], tmp_path / "a.tar"), tmp_path / "x")
    assert refs[0].names == () and refs[0].target == img.digest
    assert json.loads((tmp_path / "x" / "manifest.json").read_text())[0]["RepoTags"] is None


def test_big_layers_stream_in_bounded_pieces(store: LocalStore, tmp_path: Path) -> None:
    img = put_image(store, [layer_tar({"big": os.urandom(5 << 20)})], gz=(False,))
    chunks = list(iter_archive([SaveImage.from_manifest(["big:1"], img.manifest)], store.path))
    assert max(len(c) for c in chunks) <= 2 << 20
    (tmp_path / "a.tar").write_bytes(b"".join(chunks))
    (image,) = load(tmp_path / "a.tar", tmp_path / "x")[0].images
    assert sha(image.layers[0].path.read_bytes()) == img.layers[0]


def _index(store: LocalStore, *images: tuple[Img, str, dict[str, str] | None]) -> bytes:
    index = json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_INDEX, "manifests": [
        dict({"mediaType": ol.OCI_MANIFEST, "digest": i.digest, "size": len(i.manifest),
              "platform": {"architecture": arch, "os": "linux"}}, **({"annotations": ann} if ann else {}))
        for i, arch, ann in images]}).encode()
    store.put(index)
    return index


def test_multi_platform_ref_keeps_its_index(store: LocalStore, tmp_path: Path) -> None:
    amd = put_image(store, [layer_tar({"arch": b"amd64"})], "amd64")
    arm = put_image(store, [layer_tar({"arch": b"arm64"})], "arm64")
    index = _index(store, (amd, "amd64", None), (arm, "arm64", None))

    only_amd = SaveImage.from_manifest(["multi:1"], amd.manifest, index=index)
    (ref,) = load(save(store, [only_amd], tmp_path / "a.tar"), tmp_path / "a")
    assert ref.names == ("multi:1",) and ref.index == index and ref.target == sha(index)
    assert [i.manifest.digest for i in ref.images if i.manifest] == [amd.digest]
    assert [m["digest"] for m in ref.missing] == [arm.digest]
    assert ref.images[0].platform == {"architecture": "amd64", "os": "linux"}

    both = SaveImage.from_manifest(["multi:1"], amd.manifest, index=index,
                                   extra_blobs=[arm.digest, sha(arm.config), *arm.layers])
    (ref,) = load(save(store, [both], tmp_path / "b.tar"), tmp_path / "b")
    assert [i.platform["architecture"] for i in ref.images if i.platform] == ["amd64", "arm64"]
    assert ref.missing == ()
    # manifest.json still lists the platform that was saved, and its names joined the index's ref
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())[0]["RepoTags"] == ["multi:1"]


# --------------------------------------------------------------------------- #
# What save refuses, and the full names it writes


def test_save_refuses_missing_blobs_and_wrong_digests(store: LocalStore) -> None:
    img = put_image(store, [layer_tar({"f": b"f"})])
    with pytest.raises(InvalidArgument, match="not an image reference|invalid reference"):
        iter_archive([SaveImage.from_manifest(["Bad Name"], img.manifest)], store.path)
    with pytest.raises(InvalidArgument, match="do not hash"):
        SaveImage(("a:b",), img.manifest, sha(b"other"), sha(img.config), tuple(img.layers))
    store.delete(img.layers[0])
    with pytest.raises(NotFound, match=img.layers[0]):
        iter_archive([SaveImage.from_manifest(["a:b"], img.manifest)], store.path)  # at the call


@pytest.mark.parametrize("name, full", [
    ("busybox:latest", "docker.io/library/busybox:latest"),
    ("busybox", "docker.io/library/busybox:latest"),
    ("user/app:1", "docker.io/user/app:1"),
    ("localhost/app:1", "localhost/app:1"),
    ("reg.example.com:5000/a/b:c", "reg.example.com:5000/a/b:c"),
    ("reg:5000/x", "reg:5000/x:latest"),
])
def test_full_name(name: str, full: str) -> None:
    assert full_name(name) == full
