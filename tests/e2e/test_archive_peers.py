"""berth's image archives against real peers: skopeo reads what berth writes, and berth reads
what skopeo and umoci write.

Images are built here: tar layers with a couple of files (one gzip-compressed, one plain),
a config whose rootfs.diff_ids match, an OCI manifest, all in a real berth content store.
No daemon is involved: these are the formats alone.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from berth.content.local import LocalStore
from berth.image import ocilayout as ol
from berth.image.archiveextract import extract_archive
from berth.image.archiveread import read_archive
from berth.image.archiverefs import ArchiveImage, ArchiveRef, Compression
from berth.image.archivesave import SaveImage, iter_archive

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None,
                                reason="skopeo is not installed (apt-get install -y skopeo)")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def put_image(store: LocalStore, arch: str = "amd64") -> tuple[bytes, list[str]]:
    """Store a two-layer image for *arch*; return (manifest bytes, diff_ids)."""
    tars = [layer_tar({"etc/hello": b"hello from " + arch.encode() + b"\n", "etc/os-release": b"ID=berth\n"}),
            layer_tar({"usr/share/doc/readme": b"x" * 70_000})]
    blobs = [gzip.compress(tars[0], mtime=0), tars[1]]
    types = [ol.OCI_LAYER_GZIP, ol.OCI_LAYER]
    for blob in blobs:
        store.put(blob)
    diff_ids = [sha(t) for t in tars]
    config = json.dumps({"architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    store.put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": ol.OCI_MANIFEST,
        "config": {"mediaType": ol.OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": t, "digest": sha(b), "size": len(b)} for t, b in zip(types, blobs)],
    }).encode()
    store.put(manifest)
    return manifest, diff_ids


def skopeo(*args: str) -> str:
    cp = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, f"skopeo {' '.join(args)} exited {cp.returncode}: {cp.stderr}"
    return cp.stdout


def uncompressed_digest(path: Path, compression: Compression) -> str:
    data = path.read_bytes()
    if compression is Compression.GZIP:
        data = gzip.decompress(data)
    else:
        assert compression is Compression.NONE, compression
    return sha(data)


def load_dir(archive: Path, dest: Path) -> list[ArchiveRef]:
    with open(archive, "rb") as f:
        extract_archive(f, dest)
    return read_archive(dest)


def assert_layers_match(image: ArchiveImage, diff_ids: list[str]) -> None:
    assert list(image.diff_ids) == diff_ids
    assert [uncompressed_digest(layer.path, layer.compression) for layer in image.layers] == diff_ids


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, bytes, list[str]]:
    """A berth archive of one image named peer/app:1; returns (tar path, manifest, diff_ids)."""
    store = LocalStore(str(tmp_path / "store"))
    manifest, diff_ids = put_image(store)
    archive = tmp_path / "berth.tar"
    with open(archive, "wb") as f:
        for chunk in iter_archive([SaveImage.from_manifest(["peer/app:1"], manifest)], store.path):
            f.write(chunk)
    return archive, manifest, diff_ids


def test_skopeo_inspects_our_docker_archive(saved: tuple[Path, bytes, list[str]]) -> None:
    archive, _, diff_ids = saved
    info = json.loads(skopeo("inspect", f"docker-archive:{archive}:peer/app:1"))
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Layers"] == diff_ids   # skopeo's docker-archive source reports uncompressed layers
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{archive}"))
    assert config["rootfs"]["diff_ids"] == diff_ids


def test_skopeo_reads_our_oci_layout(saved: tuple[Path, bytes, list[str]], tmp_path: Path) -> None:
    archive, manifest, _ = saved
    layout = tmp_path / "layout"
    with open(archive, "rb") as f:
        extract_archive(f, layout)
    info = json.loads(skopeo("inspect", f"oci:{layout}:1"))   # ref.name is the tag, as Docker writes it
    assert info["Digest"] == sha(manifest)
    assert info["Layers"] == [d["digest"] for d in json.loads(manifest)["layers"]]
    assert json.loads(skopeo("inspect", "--raw", f"oci:{layout}:1")) == json.loads(manifest)


def test_skopeo_copy_oci_to_docker_archive_reads_back(saved: tuple[Path, bytes, list[str]],
                                                      tmp_path: Path) -> None:
    archive, _, diff_ids = saved
    layout = tmp_path / "layout"
    with open(archive, "rb") as f:
        extract_archive(f, layout)
    out = tmp_path / "skopeo.tar"
    skopeo("copy", f"oci:{layout}:1", f"docker-archive:{out}:peer/app:copied")
    (ref,) = load_dir(out, tmp_path / "back")
    assert ref.names == ("peer/app:copied",)
    (image,) = ref.images
    assert image.manifest is None   # skopeo writes the classic shape
    assert_layers_match(image, diff_ids)


def test_skopeo_copy_our_docker_archive_to_oci(saved: tuple[Path, bytes, list[str]], tmp_path: Path) -> None:
    archive, _, diff_ids = saved
    layout = tmp_path / "oci"
    skopeo("copy", f"docker-archive:{archive}:peer/app:1", f"oci:{layout}:copied")
    (ref,) = read_archive(layout)
    assert ref.names == () and ref.ref_names == ("copied",)
    assert_layers_match(ref.images[0], diff_ids)


def test_multi_platform_index_survives_skopeo(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "store"))
    amd, amd_ids = put_image(store, "amd64")
    arm, arm_ids = put_image(store, "arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": ol.OCI_INDEX, "manifests": [
        {"mediaType": ol.OCI_MANIFEST, "digest": sha(m), "size": len(m),
         "platform": {"architecture": a, "os": "linux"}} for m, a in ((amd, "amd64"), (arm, "arm64"))]}).encode()
    store.put(index)
    arm_doc = json.loads(arm)
    extra = [sha(arm), arm_doc["config"]["digest"], *(ld["digest"] for ld in arm_doc["layers"])]
    archive = tmp_path / "multi.tar"
    archive.write_bytes(b"".join(iter_archive(
        [SaveImage.from_manifest(["peer/multi:1"], amd, index=index, extra_blobs=extra)], store.path)))
    layout = tmp_path / "layout"
    with open(archive, "rb") as f:
        extract_archive(f, layout)
    assert json.loads(skopeo("inspect", "--raw", f"oci:{layout}:1")) == json.loads(index)
    arm_info = json.loads(skopeo("--override-arch", "arm64", "inspect", f"oci:{layout}:1"))
    assert arm_info["Architecture"] == "arm64"
    assert arm_info["Layers"] == [ld["digest"] for ld in arm_doc["layers"]]

    copy = tmp_path / "copy"
    skopeo("copy", "--all", f"oci:{layout}:1", f"oci:{copy}:again")
    (ref,) = read_archive(copy)
    # skopeo compresses the plain layers on the way, so manifests (and the index) change; the
    # platforms and the layers' content must not.
    assert ref.index is not None
    assert [m["platform"] for m in json.loads(ref.index)["manifests"]] == \
        [m["platform"] for m in json.loads(index)["manifests"]]
    assert ref.missing == ()
    by_arch = {i.platform["architecture"]: i for i in ref.images if i.platform}
    assert_layers_match(by_arch["amd64"], amd_ids)
    assert_layers_match(by_arch["arm64"], arm_ids)


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed (apt-get install -y umoci)")
def test_umoci_layout_loads(tmp_path: Path) -> None:
    layout = tmp_path / "umoci"
    hello = tmp_path / "hello.txt"
    hello.write_bytes(b"hello from umoci\n")
    for argv in (["init", "--layout", str(layout)], ["new", "--image", f"{layout}:t"],
                 ["insert", "--image", f"{layout}:t", str(hello), "/etc/hello"],
                 ["config", "--image", f"{layout}:t", "--config.cmd=/bin/sh"]):
        subprocess.run(["umoci", *argv], check=True, capture_output=True, timeout=60)
    archive = tmp_path / "umoci.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(archive), "."], check=True)
    (ref,) = load_dir(archive, tmp_path / "loaded")
    assert ref.names == () and ref.ref_names == ("t",)
    (image,) = ref.images
    assert image.platform is not None and image.platform["os"] == "linux"
    assert [layer.compression for layer in image.layers] == [Compression.GZIP]
    # umoci 0.4.7 (Debian 12) ends its layer tars right after the last file's data, without
    # padding or the end-of-archive blocks, so read the one member in stream mode and stop there.
    with tarfile.open(image.layers[0].path, "r|gz") as tar:
        first = tar.next()
        assert first is not None and first.name == "etc/hello"
        assert tar.extractfile(first).read() == b"hello from umoci\n"  # type: ignore[union-attr]
    assert_layers_match(image, list(image.diff_ids))
    layout_view = ol.read_layout(tmp_path / "loaded")
    for desc in layout_view.walk(layout_view.refs()[0].descriptor):
        layout_view.verify(desc["digest"], desc["size"])
