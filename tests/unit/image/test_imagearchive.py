"""Tests for berth.image.imagearchive: save -> extract -> read round trips through a real
content store, hand-made archives of every shape, and malicious tars refused."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.content.local import LocalStore
from berth.errors import InvalidArgument, NotFound
from berth.image import ocilayout as ol
from berth.image.imagearchive import (
    ArchiveRef,
    Compression,
    SaveImage,
    extract_archive,
    iter_archive,
    read_archive,
)
from berth.oci.reference import full_name
from berth.testing.tars import files_tar as layer_tar


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


def save(store: LocalStore, images: list[SaveImage], path: Path) -> Path:
    path.write_bytes(b"".join(iter_archive(images, store.path)))
    return path


def load(archive: Path, dest: Path) -> list[ArchiveRef]:
    with open(archive, "rb") as f:
        extract_archive(f, dest)
    return read_archive(dest)


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


# --------------------------------------------------------------------------- #
# extract_archive: malicious tars


@dataclass
class E:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""


def tar_of(*entries: E, compress: bool = False) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.kind
            info.linkname = e.linkname
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            if e.kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            tar.addfile(info, io.BytesIO(e.data) if e.kind == tarfile.REGTYPE else None)
    data = buf.getvalue()
    return io.BytesIO(gzip.compress(data) if compress else data)


def sym(name: str, target: str) -> E:
    return E(name, tarfile.SYMTYPE, linkname=target)


def hard(name: str, target: str) -> E:
    return E(name, tarfile.LNKTYPE, linkname=target)


EVIL = {
    "dotdot": ([E("../evil", data=b"x")], "leaves the archive"),
    "dotdot-inside": ([E("a/../../evil", data=b"x")], "leaves the archive"),
    "absolute": ([E("/tmp/evil", data=b"x")], "absolute path"),
    "symlink-absolute": ([sym("l", "/etc")], "absolute path"),
    "symlink-dotdot": ([sym("d/l", "../../x")], "points outside"),
    "symlink-chain": ([sym("d/x", ".."), sym("d/c", "x/../..")], "resolves outside"),
    "write-through-symlink": ([E("sub", tarfile.DIRTYPE), sym("l", "sub"), E("l/f", data=b"x")], "a symlink"),
    "hardlink-dotdot": ([hard("h", "../sentinel")], "leaves the archive"),
    "hardlink-absolute": ([hard("h", "/etc/passwd")], "absolute path"),
    "hardlink-missing": ([hard("h", "nothing")], "not \\(yet\\) in the archive"),
    "hardlink-through-symlink": ([sym("l", "."), E("f", data=b"x"), hard("h", "l/f")], "a symlink"),
    "device": ([E("dev/null", tarfile.CHRTYPE)], "character device"),
    "fifo": ([E("p", tarfile.FIFOTYPE)], "fifo"),
    "dir-then-file": ([E("d", tarfile.DIRTYPE), E("d", data=b"x")], "both a directory and a file"),
}


@pytest.mark.parametrize("case", sorted(EVIL))
def test_malicious_archives_are_refused(tmp_path: Path, case: str) -> None:
    entries, message = EVIL[case]
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "sentinel").write_bytes(b"untouched")
    before = sorted(os.listdir(sandbox))
    with pytest.raises(InvalidArgument, match=message):
        extract_archive(tar_of(*entries), sandbox / "root")
    assert sorted(os.listdir(sandbox)) == sorted(before + ["root"])
    assert (sandbox / "sentinel").read_bytes() == b"untouched"
    assert not (tmp_path / "evil").exists()


def test_benign_links_and_compression_are_accepted(tmp_path: Path) -> None:
    stream = tar_of(E("a/f", data=b"data"), sym("b/l", "../a/f"), hard("c", "a/f"), sym("dot", "."),
                    E("a/f2", data=b"replaced-later"), E("a/f2", data=b"final"), compress=True)
    assert extract_archive(stream, tmp_path / "r") == 4 + 14 + 5
    assert (tmp_path / "r" / "b" / "l").read_bytes() == b"data"
    assert (tmp_path / "r" / "c").stat().st_ino == (tmp_path / "r" / "a" / "f").stat().st_ino
    assert (tmp_path / "r" / "a" / "f2").read_bytes() == b"final"


def test_not_a_tar_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        extract_archive(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"zstd is not read" * 100), tmp_path / "r")
