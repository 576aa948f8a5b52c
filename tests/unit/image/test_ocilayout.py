"""Tests for berth.image.ocilayout: layouts written with LayoutWriter, read back, and broken on purpose."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest

from berth.errors import InvalidArgument, NotFound
from berth.image import ocilayout as ol
from berth.testing.tars import files_tar as layer_tar


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()




def add_image(w: ol.LayoutWriter, arch: str = "amd64", text: bytes = b"hi") -> tuple[ol.Blob, bytes]:
    """Write one image (config, one gzip layer, manifest); return the manifest blob and bytes."""
    tar = layer_tar({"etc/hello": text})
    layer = w.add_blob(gzip.compress(tar, mtime=0))
    config = json.dumps({"architecture": arch, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(tar)]}}).encode()
    cfg = w.add_blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": ol.OCI_MANIFEST,
        "config": cfg.descriptor(ol.OCI_CONFIG),
        "layers": [layer.descriptor(ol.OCI_LAYER_GZIP)],
    }).encode()
    return w.add_blob(manifest), manifest


@pytest.fixture
def layout_dir(tmp_path: Path) -> Path:
    """A layout with a single image named two ways and a two-platform index."""
    w = ol.LayoutWriter(tmp_path / "layout")
    man, _ = add_image(w)
    amd, _ = add_image(w, "amd64", b"amd")
    arm, _ = add_image(w, "arm64", b"arm")
    index = json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_INDEX, "manifests": [
        amd.descriptor(ol.OCI_MANIFEST, platform={"architecture": "amd64", "os": "linux"}),
        arm.descriptor(ol.OCI_MANIFEST, platform={"architecture": "arm64", "os": "linux"}),
    ]}).encode()
    idx = w.add_blob(index)
    w.set_index([
        man.descriptor(ol.OCI_MANIFEST, {ol.ANNOTATION_IMAGE_NAME: "docker.io/library/busybox:latest",
                                         ol.ANNOTATION_REF_NAME: "latest"}),
        man.descriptor(ol.OCI_MANIFEST, {ol.ANNOTATION_REF_NAME: "v1"}),
        idx.descriptor(ol.OCI_INDEX, {ol.ANNOTATION_REF_NAME: "example.com/multi:2"}),
        idx.descriptor(ol.OCI_INDEX),
    ])
    w.close()
    return tmp_path / "layout"


def test_written_layout_reads_back(layout_dir: Path) -> None:
    assert json.loads((layout_dir / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    layout = ol.read_layout(layout_dir)
    refs = layout.refs()
    assert [r.name for r in refs] == ["docker.io/library/busybox:latest", "v1", "example.com/multi:2", None]
    assert refs[0].digest == refs[1].digest
    assert refs[2].media_type == ol.OCI_INDEX
    assert layout.index["mediaType"] == ol.OCI_INDEX


def test_walk_visits_index_manifests_configs_layers_in_order(layout_dir: Path) -> None:
    layout = ol.read_layout(layout_dir)
    index_ref = layout.refs()[2]
    seen = list(layout.walk(index_ref.descriptor))
    types = [d["mediaType"] for d in seen]
    assert types == [ol.OCI_INDEX,
                     ol.OCI_MANIFEST, ol.OCI_CONFIG, ol.OCI_LAYER_GZIP,
                     ol.OCI_MANIFEST, ol.OCI_CONFIG, ol.OCI_LAYER_GZIP]
    for d in seen:  # every reachable blob is in the layout and intact
        layout.verify(d["digest"], d["size"])


def test_walk_nested_index_and_missing_children(tmp_path: Path) -> None:
    w = ol.LayoutWriter(tmp_path)
    man, _ = add_image(w)
    ghost = {"mediaType": ol.OCI_MANIFEST, "digest": sha(b"not here"), "size": 8,
             "platform": {"architecture": "s390x", "os": "linux"}}
    inner = w.add_blob(json.dumps({"schemaVersion": 2, "manifests": [man.descriptor(ol.OCI_MANIFEST), ghost]})
                       .encode())
    outer = w.add_blob(json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_INDEX,
                                   "manifests": [inner.descriptor(ol.OCI_INDEX)]}).encode())
    w.set_index([outer.descriptor(ol.OCI_INDEX)])
    w.close()
    layout = ol.read_layout(tmp_path)
    top = layout.refs()[0].descriptor
    with pytest.raises(NotFound, match="not in the layout"):
        list(layout.walk(top))
    digests = [d["digest"] for d in layout.walk(top, skip_missing=True)]
    assert digests[:3] == [outer.digest, inner.digest, man.digest]
    assert digests[-1] == ghost["digest"]  # yielded, not descended into
    assert len(digests) == 6


def test_blob_refuses_escapes_and_non_files(tmp_path: Path) -> None:
    w = ol.LayoutWriter(tmp_path / "l")
    w.set_index([])
    w.close()
    (tmp_path / "secret").write_bytes(b"s")
    blobs = tmp_path / "l" / "blobs" / "sha256"
    escape = sha(b"escape")
    os.symlink("../../../secret", blobs / escape.split(":")[1])
    directory = sha(b"dir")
    (blobs / directory.split(":")[1]).mkdir()
    layout = ol.read_layout(tmp_path / "l")
    with pytest.raises(InvalidArgument, match="outside the layout"):
        layout.blob(escape)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        layout.blob(directory)
    with pytest.raises(NotFound):
        layout.blob(sha(b"absent"))
    assert not layout.has(sha(b"absent"))
    for bad in ("sha256:abc", "md5:" + "0" * 32, "../../etc/passwd", "sha256:" + "A" * 64):
        with pytest.raises(InvalidArgument, match="not a digest"):
            layout.blob(bad)


def test_symlinked_blob_inside_layout_is_fine(tmp_path: Path) -> None:
    w = ol.LayoutWriter(tmp_path)
    blob = w.add_blob(b"content")
    w.close()
    (tmp_path / "elsewhere").write_bytes(b"other")
    os.symlink("../../elsewhere", tmp_path / "blobs" / "sha256" / sha(b"other").split(":")[1])
    layout = ol.read_layout(tmp_path)
    assert layout.verify(blob.digest, 7).read_bytes() == b"content"
    assert layout.verify(sha(b"other")).read_bytes() == b"other"


def test_corrupt_and_oversized_blobs(tmp_path: Path) -> None:
    w = ol.LayoutWriter(tmp_path)
    blob = w.add_blob(b'{"a": 1}')
    w.close()
    layout = ol.read_layout(tmp_path)
    desc = blob.descriptor("application/json")
    assert layout.read_json(desc)[1] == {"a": 1}
    with pytest.raises(InvalidArgument, match="descriptor says 99"):
        layout.read_blob(dict(desc, size=99))
    with pytest.raises(InvalidArgument, match="at most 4 bytes"):
        layout.read_blob(desc, limit=4)
    (tmp_path / "blobs" / "sha256" / blob.digest.split(":")[1]).write_bytes(b'{"a": 2}')
    with pytest.raises(InvalidArgument, match="corrupt"):
        layout.read_blob(desc)
    with pytest.raises(InvalidArgument, match="corrupt"):
        layout.verify(blob.digest)


def test_read_layout_refuses_what_is_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no oci-layout"):
        ol.read_layout(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(InvalidArgument, match="not supported"):
        ol.read_layout(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    with pytest.raises(InvalidArgument, match="no index.json"):
        ol.read_layout(tmp_path)
    (tmp_path / "index.json").write_text("[1, 2]")
    with pytest.raises(InvalidArgument, match="not a JSON object"):
        ol.read_layout(tmp_path)
    (tmp_path / "index.json").write_text('{"manifests": [{"digest": "sha256:xyz", "size": 1}]}')
    with pytest.raises(InvalidArgument, match="not a digest"):
        ol.read_layout(tmp_path)
    (tmp_path / "index.json").write_text('{"manifests": [{"digest": "%s", "size": -1}]}' % sha(b""))
    with pytest.raises(InvalidArgument, match="invalid size"):
        ol.read_layout(tmp_path)


def test_add_blob_file_checks_the_digest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x" * (3 << 20))
    w = ol.LayoutWriter(tmp_path / "l")
    with pytest.raises(InvalidArgument, match="hashes to"):
        w.add_blob_file(src, sha(b"something else"))
    assert os.listdir(tmp_path / "l" / "blobs" / "sha256") == []
    blob = w.add_blob_file(src, sha(src.read_bytes()))
    assert blob.size == 3 << 20
    assert w.add_blob_file(src, blob.digest) == blob  # a second time: kept, not rewritten
    with pytest.raises(NotFound):
        w.add_blob_file(tmp_path / "absent", sha(b"a"))


def test_media_type_of_falls_back_to_shape() -> None:
    assert ol.media_type_of({"manifests": []}) == ol.OCI_INDEX
    assert ol.media_type_of({"config": {}}) == ol.OCI_MANIFEST
    assert ol.media_type_of({}, {"mediaType": ol.DOCKER_LIST}) == ol.DOCKER_LIST
    assert ol.media_type_of({"mediaType": ol.DOCKER_MANIFEST}, {"mediaType": ol.OCI_INDEX}) == ol.DOCKER_MANIFEST


def test_manifest_parts_refuses_schema_1() -> None:
    with pytest.raises(InvalidArgument, match="schema 1"):
        ol.manifest_parts({"schemaVersion": 1, "fsLayers": []}, "m")
