"""Bootstrap base images from Debian's archive, checked with skopeo and by running them.

Needs root, apt access to Debian's archive (the .debs are cached after the
first run), skopeo, and qemu-user-static for the arm64 image. The Debian image
(mmdebstrap, about a minute) runs only with BERTH_SLOW_TESTS=1.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from berth.host import binfmt
from berth.image import archive
from berth.tools import bootstrap, debarchive, layouttar, ocijson
from berth.oci import platform as plat

CACHE = Path(os.environ.get("BERTH_BOOTSTRAP_CACHE", str(debarchive.DEFAULT_CACHE)))
NAME = "docker.io/library/busybox:latest"


def skopeo(*args: str) -> str:
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is not installed: apt-get install -y skopeo", pytrace=False)
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"skopeo {' '.join(args)}: {done.stderr}"
    return done.stdout


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def read_json(layout: Path, digest: str) -> Any:
    return json.loads(blob(layout, digest).read_bytes())


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[ocijson.BuiltImage, ocijson.BuiltImage]:
    """The busybox image built twice, into two fresh directories, from the same cached .debs."""
    async def both() -> tuple[ocijson.BuiltImage, ocijson.BuiltImage]:
        first = await bootstrap.build_busybox(tmp_path_factory.mktemp("bb1"), cache_dir=CACHE)
        second = await bootstrap.build_busybox(tmp_path_factory.mktemp("bb2"), cache_dir=CACHE)
        return first, second

    return asyncio.run(both())


@pytest.fixture(scope="module")
def built(builds: tuple[ocijson.BuiltImage, ocijson.BuiltImage]) -> ocijson.BuiltImage:
    return builds[0]


def test_index_json_names_the_image(built: ocijson.BuiltImage) -> None:
    top = json.loads((built.layout / "index.json").read_bytes())
    assert json.loads((built.layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    [desc] = top["manifests"]
    assert desc["mediaType"] == ocijson.MEDIA_INDEX
    assert desc["annotations"] == {"io.containerd.image.name": NAME, "org.opencontainers.image.ref.name": "latest"}
    assert desc["digest"] == built.top.digest
    assert blob(built.layout, desc["digest"]).stat().st_size == desc["size"]


def test_skopeo_sees_an_index_with_both_platforms(built: ocijson.BuiltImage) -> None:
    raw = json.loads(skopeo("inspect", "--raw", f"oci:{built.layout}:latest"))
    assert raw["mediaType"] == ocijson.MEDIA_INDEX
    assert [m["platform"] for m in raw["manifests"]] == [
        {"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}]
    assert plat.available(raw["manifests"]) == [plat.parse("linux/amd64"), plat.parse("linux/arm64")]


@pytest.mark.parametrize("arch", ["arm64", "amd64"])
def test_skopeo_picks_each_platform(built: ocijson.BuiltImage, arch: str) -> None:
    info = json.loads(skopeo("inspect", "--override-arch", arch, "--override-os", "linux", f"oci:{built.layout}:latest"))
    assert (info["Architecture"], info["Os"]) == (arch, "linux")
    assert info["Env"] == [ocijson.PATH_ENV]


def test_skopeo_reports_a_platform_the_image_lacks(built: ocijson.BuiltImage) -> None:
    done = subprocess.run(["skopeo", "inspect", "--override-arch", "s390x", f"oci:{built.layout}:latest"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    raw = json.loads((blob(built.layout, built.top.digest)).read_bytes())
    msg = plat.mismatch_message("busybox:latest", plat.parse("linux/s390x"), plat.available(raw["manifests"]))
    assert "linux/amd64, linux/arm64" in msg


def test_configs_and_manifests(built: ocijson.BuiltImage) -> None:
    index = read_json(built.layout, built.top.digest)
    for desc in index["manifests"]:
        manifest = read_json(built.layout, desc["digest"])
        assert manifest["mediaType"] == ocijson.MEDIA_MANIFEST and manifest["schemaVersion"] == 2
        config = read_json(built.layout, manifest["config"]["digest"])
        assert plat.of_config(config) == plat.of_dict(desc["platform"])
        assert config["config"]["Cmd"] == ["sh"]
        [layer] = manifest["layers"]
        assert layer["mediaType"] == ocijson.MEDIA_LAYER
        with tarfile.open(blob(built.layout, layer["digest"])) as tar:
            names = tar.getnames()
        plain = gzip.decompress(blob(built.layout, layer["digest"]).read_bytes())
        assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(plain).hexdigest()]
        assert {"bin/busybox", "bin/sh", "etc/passwd", "etc/group", "tmp", "home/bob"} <= set(names)


def test_same_inputs_same_digests(builds: tuple[ocijson.BuiltImage, ocijson.BuiltImage]) -> None:
    first, second = builds
    assert first.top == second.top
    assert first.manifests == second.manifests
    assert (first.layout / "index.json").read_bytes() == (second.layout / "index.json").read_bytes()
    assert sorted(p.name for p in (first.layout / "blobs" / "sha256").iterdir()) == \
        sorted(p.name for p in (second.layout / "blobs" / "sha256").iterdir())


@pytest.mark.parametrize("arch, machine", [("amd64", "x86_64"), ("arm64", "aarch64")])
def test_each_root_file_system_runs(built: ocijson.BuiltImage, tmp_path: Path, arch: str, machine: str) -> None:
    wanted = plat.parse(f"linux/{arch}")
    binfmt.ensure_emulator(wanted)
    desc = plat.choose(wanted, read_json(built.layout, built.top.digest)["manifests"])
    assert desc is not None
    [layer] = read_json(built.layout, desc["digest"])["layers"]
    with open(blob(built.layout, layer["digest"]), "rb") as f:
        archive.apply_layer(f, str(tmp_path))
    script = "uname -m; id -un; id -u bob; stat -c %a /tmp; ls /usr/bin/env && echo ok"
    done = subprocess.run(["chroot", str(tmp_path), "/bin/sh", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [machine, "root", "1000", "1777", "/usr/bin/env", "ok"]


def test_layout_tar_loads_as_an_oci_archive(built: ocijson.BuiltImage, tmp_path: Path) -> None:
    one = layouttar.write_layout_tar(built.layout, tmp_path / "one.tar")
    two = b"".join(layouttar.layout_tar(built.layout))
    assert one.read_bytes() == two
    assert skopeo("inspect", "--raw", f"oci-archive:{one}:latest") == skopeo("inspect", "--raw", f"oci:{built.layout}:latest")
    with tarfile.open(one) as tar:
        names = tar.getnames()
        extracted = tar.extractfile("manifest.json")
        assert extracted is not None
        docker_manifest = json.loads(extracted.read())
    assert names[:3] == ["oci-layout", "index.json", "manifest.json"]
    [entry] = docker_manifest
    assert entry["RepoTags"] == ["busybox:latest"]
    assert f"blobs/sha256/{Path(entry['Config']).name}" in names


@pytest.mark.skipif(os.environ.get("BERTH_SLOW_TESTS") != "1", reason="slow (mmdebstrap): set BERTH_SLOW_TESTS=1")
def test_debian_image(tmp_path: Path) -> None:
    built = asyncio.run(bootstrap.build_debian(tmp_path / "debian", "bookworm", source_date_epoch=1700000000))
    assert built.name == "docker.io/library/debian:bookworm" and built.ref_name == "bookworm"
    info = json.loads(skopeo("inspect", f"oci:{built.layout}:bookworm"))
    assert (info["Os"], info["Architecture"]) == ("linux", plat.host().architecture)
    [layer] = read_json(built.layout, built.top.digest)["layers"]
    root = tmp_path / "rootfs"
    root.mkdir()
    with tarfile.open(blob(built.layout, layer["digest"])) as tar:
        devices = [m.name for m in tar if m.ischr() or m.isblk()]
    assert devices == []
    with open(blob(built.layout, layer["digest"]), "rb") as f:
        archive.apply_layer(f, str(root))
    done = subprocess.run(["chroot", str(root), "/bin/bash", "-c", "cat /etc/debian_version; wc -c < /etc/resolv.conf"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0].startswith("12.") and done.stdout.split()[1] == "0"
