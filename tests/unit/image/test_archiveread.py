"""Tests for berth.image.archiveread: hand-made archives of every shape, nested indexes and
annotations, and broken archives refused with the entry named."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from berth_image_conftest import load, put_image, sha

from berth.content.local import LocalStore
from berth.errors import InvalidArgument
from berth.image import ocilayout as ol
from berth.image.archiveread import read_archive
from berth.image.archiverefs import Compression
from berth.testing.tars import files_tar as layer_tar

# --------------------------------------------------------------------------- #
# OCI layouts: nested indexes, names from annotations


def test_nested_indexes_and_attestations(tmp_path: Path) -> None:
    w = ol.LayoutWriter(tmp_path / "x")
    tar = layer_tar({"f": b"f"})
    layer = w.add_blob(tar)
    config = w.add_blob(json.dumps({"architecture": "amd64", "os": "linux",
                                    "rootfs": {"type": "layers", "diff_ids": [sha(tar)]}}).encode())
    man = w.add_blob(json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_MANIFEST,
                                 "config": config.descriptor(ol.OCI_CONFIG),
                                 "layers": [layer.descriptor(ol.OCI_LAYER)]}).encode())
    att = man.descriptor(ol.OCI_MANIFEST, {"vnd.docker.reference.type": "attestation-manifest"},
                         {"architecture": "unknown", "os": "unknown"})
    sbom = {"mediaType": "application/vnd.example.sbom", "digest": sha(b"x"), "size": 1}
    inner = w.add_blob(json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_INDEX, "manifests": [
        man.descriptor(ol.OCI_MANIFEST, platform={"architecture": "amd64", "os": "linux"}), att, sbom]}).encode())
    outer = w.add_blob(json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_INDEX,
                                   "manifests": [inner.descriptor(ol.OCI_INDEX)]}).encode())
    w.set_index([outer.descriptor(ol.OCI_INDEX, {ol.ANNOTATION_REF_NAME: "ghcr.io/o/app:1"})])
    w.close()
    (ref,) = read_archive(tmp_path / "x")
    assert ref.names == ("ghcr.io/o/app:1",)
    assert [b.digest for b in ref.indexes] == [outer.digest, inner.digest]
    assert [i.is_attestation for i in ref.images] == [False, True]
    assert ref.missing == ()


def test_oci_names_from_annotations(tmp_path: Path) -> None:
    w = ol.LayoutWriter(tmp_path)
    man = w.add_blob(json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_MANIFEST, "config":
                                 w.add_blob(b'{"rootfs": {"diff_ids": []}}').descriptor(ol.OCI_CONFIG),
                                 "layers": []}).encode())
    d = man.descriptor(ol.OCI_MANIFEST)
    w.set_index([
        dict(d, annotations={ol.ANNOTATION_REF_NAME: "latest"}),
        dict(d, annotations={ol.ANNOTATION_REF_NAME: "example.com/a/b:c"}),
        dict(d, annotations={ol.ANNOTATION_IMAGE_NAME: "docker.io/user/app:2", ol.ANNOTATION_REF_NAME: "2"}),
        dict(d, annotations={ol.ANNOTATION_REF_NAME: "Not A:Reference"}),
    ])
    w.close()
    (ref,) = read_archive(tmp_path)
    assert ref.names == ("example.com/a/b:c", "user/app:2")
    assert ref.ref_names == ("latest", "Not A:Reference")
    assert ref.images[0].layers == ()


# --------------------------------------------------------------------------- #
# Other archive shapes


def _pack(files: dict[str, bytes | str], path: Path) -> Path:
    """A tar of *files*: bytes are regular files, "->target" strings are symlinks."""
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content[2:]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def test_classic_docker_archive(tmp_path: Path) -> None:
    base, top = layer_tar({"bin/sh": b"sh"}), layer_tar({"etc/x": b"x"})
    config = json.dumps({"architecture": "arm64", "variant": "v8", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(base), sha(top), sha(base)]}}).encode()
    cfg_name = sha(config)[7:] + ".json"
    files: dict[str, bytes | str] = {
        "aaa/VERSION": b"1.0", "aaa/json": b"{}", "aaa/layer.tar": base,
        "bbb/layer.tar": top,
        "ccc/layer.tar": "->../aaa/layer.tar",                 # a repeated layer, as Docker links it
        cfg_name: config,
        "manifest.json": json.dumps([{"Config": cfg_name, "RepoTags": ["me/app:1", "docker.io/library/app:2"],
                                      "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"]}]).encode(),
        "repositories": b'{"me/app": {"1": "ccc"}}',
    }
    (ref,) = load(_pack(files, tmp_path / "classic.tar"), tmp_path / "x")
    assert ref.names == ("me/app:1", "app:2") and ref.target is None and ref.indexes == ()
    (image,) = ref.images
    assert image.manifest is None and image.config == config
    assert image.platform == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert [sha(layer.path.read_bytes()) for layer in image.layers] == list(image.diff_ids)
    assert image.layers[0].path == image.layers[2].path
    assert all(layer.digest is None and layer.compression is Compression.NONE for layer in image.layers)


def test_docker_25_combined_archive_takes_names_from_manifest_json(store: LocalStore, tmp_path: Path) -> None:
    img = put_image(store, [layer_tar({"f": b"f"})])
    x = tmp_path / "x"
    w = ol.LayoutWriter(x)
    for digest in (img.digest, sha(img.config), *img.layers):
        w.add_blob_file(Path(store.path(digest)), digest)
    w.set_index([{"mediaType": ol.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest)}])
    w.close()
    (x / "manifest.json").write_text(json.dumps([{
        "Config": "blobs/sha256/" + sha(img.config)[7:], "RepoTags": ["named:here"],
        "Layers": ["blobs/sha256/" + d[7:] for d in img.layers]}]))
    (ref,) = read_archive(x)
    assert ref.names == ("named:here",) and ref.target == img.digest


def test_docker_25_0_0_manifest_without_layers_falls_back_to_manifest_json(store: LocalStore,
                                                                          tmp_path: Path) -> None:
    img = put_image(store, [layer_tar({"f": b"f"})], gz=(False,))
    x = tmp_path / "x"
    w = ol.LayoutWriter(x)
    cfg = w.add_blob(img.config)
    w.add_blob_file(Path(store.path(img.layers[0])), img.layers[0])
    stub = w.add_blob(json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_MANIFEST,
                                  "config": cfg.descriptor(ol.OCI_CONFIG), "layers": []}).encode())
    w.set_index([stub.descriptor(ol.OCI_MANIFEST, {ol.ANNOTATION_IMAGE_NAME: "docker.io/library/hello:latest",
                                                   ol.ANNOTATION_REF_NAME: "latest"})])
    w.close()
    with pytest.raises(InvalidArgument, match="1 layers|0 layers"):
        read_archive(x)   # no manifest.json yet: the stub alone cannot be loaded
    (x / "manifest.json").write_text(json.dumps([{"Config": "blobs/sha256/" + cfg.digest[7:],
                                                  "RepoTags": ["hello:latest"],
                                                  "Layers": ["blobs/sha256/" + img.layers[0][7:]]}]))
    (ref,) = read_archive(x)
    assert ref.names == ("hello:latest",) and ref.ref_names == ()
    (image,) = ref.images
    assert image.manifest is None and [layer.digest for layer in image.layers] == img.layers


# --------------------------------------------------------------------------- #
# Broken archives


def _classic(tmp_path: Path, manifest: object, extra: dict[str, bytes] | None = None) -> Path:
    root = tmp_path / "bad"
    root.mkdir()
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(b"x")]}}).encode()
    (root / "c.json").write_bytes(config)
    (root / "l").mkdir()
    (root / "l" / "layer.tar").write_bytes(b"x")
    for name, data in (extra or {}).items():
        (root / name).write_bytes(data)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.mark.parametrize("manifest, message", [
    ([{"Config": "c.json", "RepoTags": [], "Layers": ["l/missing.tar"]}],
     "manifest.json names layer l/missing.tar that is not in the archive"),
    ([{"Config": "c.json", "RepoTags": [], "Layers": []}], "1 diff_ids but the image has 0 layers"),
    ([{"Config": "../c.json", "Layers": ["l/layer.tar"]}], "not a path inside the archive"),
    ([{"Config": "/etc/passwd", "Layers": ["l/layer.tar"]}], "not a path inside the archive"),
    ([{"Config": "nope.json", "Layers": ["l/layer.tar"]}], "Config 'nope.json' is not in the archive"),
    ([{"Config": "c.json", "RepoTags": ["UPPER:case"], "Layers": ["l/layer.tar"]}], "not an image reference"),
    ([{"Config": "c.json", "RepoTags": "x:y", "Layers": ["l/layer.tar"]}], "RepoTags that is not a list"),
    ({"Config": "c.json"}, "not a list of images"),
    ([{"Config": "blobs/sha256/" + "0" * 64, "Layers": []}], "not in the archive"),
])
def test_classic_archive_errors_name_the_entry(tmp_path: Path, manifest: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        read_archive(_classic(tmp_path, manifest))


def test_layer_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    root = _classic(tmp_path, [{"Config": "c.json", "Layers": ["l2/layer.tar"]}])
    (tmp_path / "outside.tar").write_bytes(b"x")
    (root / "l2").mkdir()
    os.symlink("../../outside.tar", root / "l2" / "layer.tar")
    with pytest.raises(InvalidArgument, match="resolves outside the archive"):
        read_archive(root)


def test_not_an_image_archive(tmp_path: Path) -> None:
    (tmp_path / "repositories").write_text("{}")
    with pytest.raises(InvalidArgument, match="neither manifest.json nor an OCI index.json"):
        read_archive(tmp_path)


def test_oci_manifest_naming_a_missing_layer(store: LocalStore, tmp_path: Path) -> None:
    img = put_image(store, [layer_tar({"f": b"f"})])
    w = ol.LayoutWriter(tmp_path / "x")
    w.add_blob(img.manifest)
    w.add_blob(img.config)
    w.set_index([{"mediaType": ol.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest)}])
    w.close()
    with pytest.raises(InvalidArgument, match=f"names layer {img.layers[0]} that is not in the archive"):
        read_archive(tmp_path / "x")
