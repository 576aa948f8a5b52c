"""Images through a real registry with the real docker CLI: push, pull, login, resume, platforms, save/load.

Debian's docker-registry runs on 127.0.0.1 (plain, and TLS with htpasswd auth);
skopeo, a peer nobody here wrote, checks what berth pushes and seeds what it pulls.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from berth_e2e_conftest import active_cli, docker, is_dockerd, unique_name

from berth.testing.cutproxy import CutProxy
from berth.testing.registry import LocalRegistry
from berth.tools import bootstrap, layouttar

pytestmark = [pytest.mark.usefixtures("each_cli"),  # every test with both CLIs
              pytest.mark.skipif(shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
                                  reason="needs docker-registry and skopeo (the README's set-up installs them)")]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def secure_registry(tmp_path_factory: pytest.TempPathFactory):
    with LocalRegistry(tmp_path_factory.mktemp("secure"), tls=True, users={"alice": "s3cret"}) as reg:
        yield reg


@pytest.fixture(scope="module")
def bootbox(berthd, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A two-platform busybox (linux/amd64 + linux/arm64) made from Debian's packages, loaded as bootbox:latest."""
    out = tmp_path_factory.mktemp("bootbox")
    asyncio.run(bootstrap.build_busybox(out / "layout", name="docker.io/library/bootbox:latest"))
    layouttar.write_layout_tar(out / "layout", out / "bootbox.tar")
    assert "Loaded image: bootbox:latest" in docker(berthd, "load", "-i", str(out / "bootbox.tar"), timeout=120).stdout
    return "bootbox:latest"


def skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True, timeout=120).stdout


def docker_with(d, config_dir: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = dict(d.env, DOCKER_CONFIG=str(config_dir))
    return subprocess.run([active_cli(), *args], env=env, capture_output=True, text=True, timeout=120, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)


def test_push_then_pull_round_trip_checked_by_skopeo(berthd, image, registry):
    name = f"{registry.address}/rt/busybox:1"
    docker(berthd, "tag", image, name)
    out = docker(berthd, "push", name, timeout=120).stdout
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", out).group(1)
    seen = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{name}"))
    assert seen["Digest"] == digest and seen["Architecture"] == "amd64"
    docker(berthd, "rmi", name)
    pulled = docker(berthd, "pull", name, timeout=120)
    assert f"Digest: {digest}" in pulled.stdout and "Downloaded newer image" in pulled.stdout
    assert f"{registry.address}/rt/busybox@{digest}" in docker(berthd, "image", "inspect", "-f",
                                                               "{{json .RepoDigests}}", name).stdout
    assert docker(berthd, "run", "--rm", name, "echo", "pulled").stdout == "pulled\n"
    assert "Image is up to date" in docker(berthd, "pull", name, timeout=120).stdout
    again = docker(berthd, "push", name, timeout=120).stdout
    assert "Layer already exists" in again
    docker(berthd, "rmi", name)


@pytest.mark.usefixtures("each_cli")
def test_pull_all_tags(berthd, image, registry):
    repo = f"{registry.address}/alltags/{unique_name('busybox')}"
    for tag in ("1", "2", "three"):
        docker(berthd, "tag", image, f"{repo}:{tag}")
        docker(berthd, "push", "-q", f"{repo}:{tag}", timeout=120)
    docker(berthd, "rmi", f"{repo}:1", f"{repo}:2", f"{repo}:three")
    out = docker(berthd, "pull", "--all-tags", repo, timeout=120).stdout
    assert "Using default tag" not in out and out.count("Status: ") == 1, out
    assert f"Status: Downloaded newer image for {repo}\n" in out and out.endswith(f"\n{repo}\n"), out
    assert all(f"{tag}: Pulling from" in out for tag in ("1", "2", "three")), out
    listed = docker(berthd, "images", "--format", "{{.Tag}}", repo).stdout.split()
    assert sorted(listed) == ["1", "2", "three"]
    assert f"Status: Image is up to date for {repo}\n" in docker(berthd, "pull", "-a", repo, timeout=120).stdout
    cp = docker(berthd, "pull", "-a", f"{repo}:1", check=False)
    assert (cp.returncode, cp.stderr) == (1, "tag can't be used with --all-tags/-a\n")
    missing = docker(berthd, "pull", "-a", f"{registry.address}/alltags/nosuch", check=False, timeout=120)
    assert missing.returncode == 1 and "nosuch" in missing.stderr, missing.stderr
    docker(berthd, "rmi", f"{repo}:1", f"{repo}:2", f"{repo}:three")


@pytest.mark.usefixtures("each_cli")
def test_push_one_platform_of_a_multi_platform_image(berthd, bootbox, registry):
    name = f"{registry.address}/oneplat/{unique_name('bootbox')}:1"
    docker(berthd, "tag", bootbox, name)
    out = docker(berthd, "push", "--platform", "linux/arm64", name, timeout=120).stdout
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", out).group(1)
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}"))
    assert "manifests" not in raw and "layers" in raw  # one image's manifest, not the index
    seen = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{name}"))
    assert (seen["Digest"], seen["Architecture"]) == (digest, "arm64")
    cp = docker(berthd, "push", "--platform", "linux/s390x", name, check=False, timeout=120)
    assert cp.returncode == 1 and "linux/s390x" in cp.stderr, cp.stderr
    docker(berthd, "rmi", name)


def test_pull_what_skopeo_seeded_for_each_platform(berthd, bootbox, registry, tmp_path):
    layout = tmp_path / "layout"
    asyncio.run(bootstrap.build_busybox(layout, name="docker.io/library/seeded:latest"))
    name = f"{registry.address}/seeded/busybox:multi"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{name}")
    docker(berthd, "pull", "--platform", "linux/arm64", name, timeout=120)
    assert docker(berthd, "run", "--rm", "--platform", "linux/arm64", name, "uname", "-m").stdout == "aarch64\n"
    docker(berthd, "pull", name, timeout=120)  # the host's platform, from the same index
    assert docker(berthd, "run", "--rm", name, "uname", "-m").stdout == "x86_64\n"
    cp = docker(berthd, "pull", "--platform", "linux/s390x", name, check=False, timeout=120)
    assert cp.returncode != 0 and "linux/s390x" in cp.stderr and "linux/arm64" in cp.stderr \
        and "--platform" in cp.stderr, cp.stderr
    docker(berthd, "rmi", name)


def test_multi_platform_image_runs_either_platform(berthd, bootbox):
    assert docker(berthd, "run", "--rm", "--platform", "linux/arm64", bootbox, "uname", "-m").stdout == "aarch64\n"
    assert docker(berthd, "run", "--rm", bootbox, "uname", "-m").stdout == "x86_64\n"
    fmt = "{{.Os}}/{{.Architecture}}"
    assert docker(berthd, "image", "inspect", "-f", fmt, bootbox).stdout.strip() == "linux/amd64"
    cp = docker(berthd, "run", "--rm", "--platform", "linux/s390x", bootbox, "true", check=False)
    assert cp.returncode == 125
    assert 'has no variant for linux/s390x' in cp.stderr and "linux/amd64, linux/arm64" in cp.stderr \
        and "--platform linux/" in cp.stderr, cp.stderr
    cid = docker(berthd, "create", "--platform", "linux/arm64", bootbox, "true").stdout.strip()
    arm_image = docker(berthd, "inspect", "-f", "{{.Image}}", cid).stdout.strip()
    docker(berthd, "rm", cid)
    dangling = docker(berthd, "images", "-q", "--filter", "dangling=true").stdout.split()
    assert arm_image[7:19] not in dangling  # the arm64 half is not a dangling image


def test_login_tls_and_basic_auth(berthd, image, secure_registry, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    reg = secure_registry.address
    name = f"{reg}/private/busybox:1"
    docker(berthd, "tag", image, name)
    cp = docker_with(berthd, cfg, "push", name)
    assert cp.returncode != 0 and reg in cp.stderr and "login" in cp.stderr, cp.stderr
    bad = docker_with(berthd, cfg, "login", reg, "-u", "alice", "--password-stdin", input="wrong\n")
    assert bad.returncode != 0 and reg in bad.stderr, bad.stderr
    good = docker_with(berthd, cfg, "login", reg, "-u", "alice", "--password-stdin", input="s3cret\n")
    assert good.returncode == 0 and "Login Succeeded" in good.stdout, good.stderr
    assert docker_with(berthd, cfg, "push", name).returncode == 0
    docker(berthd, "rmi", name)
    assert docker_with(berthd, cfg, "pull", name).returncode == 0
    assert docker(berthd, "run", "--rm", name, "echo", "private").stdout == "private\n"
    docker(berthd, "rmi", name)


def test_unknown_registry_and_missing_tag_say_which(berthd, registry):
    cp = docker(berthd, "pull", "no-such-registry.invalid/x:1", check=False, timeout=120)
    assert cp.returncode != 0 and "no-such-registry.invalid" in cp.stderr, cp.stderr
    cp = docker(berthd, "pull", f"{registry.address}/nothing/here:1", check=False)
    assert cp.returncode != 0 and "not found" in cp.stderr, cp.stderr


def _big_image_tar(path: Path, size: int) -> None:
    data = os.urandom(size)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("blob.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_interrupted_pull_resumes_with_range(berthd, registry, tmp_path):
    _big_image_tar(tmp_path / "big.tar", 6 << 20)
    name = f"{registry.address}/big/blob:1"
    docker(berthd, "import", str(tmp_path / "big.tar"), name, timeout=120)
    docker(berthd, "push", name, timeout=120)
    docker(berthd, "rmi", name)
    host, port = registry.address.split(":")
    with CutProxy((host, int(port))) as proxy:
        via = f"127.0.0.1:{proxy.port}/big/blob:1"
        proxy.arm(2 << 20)
        docker(berthd, "pull", via, timeout=120)
        assert proxy.cuts == 1
        # The first attempt got 2 MiB before the cut; the second asked for the rest only.
        assert proxy.bytes_down < (6 << 20) + (2 << 20), proxy.bytes_down
    assert int(docker(berthd, "image", "inspect", "-f", "{{.Size}}", via).stdout) >= 6 << 20
    assert not list(Path(berthd.root, "partial").iterdir())
    docker(berthd, "rmi", via)


def _pushed_layer(berthd, registry, tmp_path: Path, name: str) -> tuple[str, Path]:
    """Push a one-layer image nothing else shares as *name*, drop it locally; its layer's digest and the
    file the registry serves it from (for a test to tamper with)."""
    _big_image_tar(tmp_path / "one.tar", 64 << 10)
    docker(berthd, "import", str(tmp_path / "one.tar"), name)
    docker(berthd, "push", name, timeout=120)
    docker(berthd, "rmi", name)
    layer = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}"))["layers"][0]["digest"]
    hexd = layer.split(":")[1]
    return layer, next(Path(registry.workdir).rglob(f"blobs/sha256/{hexd[:2]}/{hexd}/data"))


def test_blob_with_wrong_content_is_refused(berthd, registry, tmp_path):
    name = f"{registry.address}/corrupt/small:1"
    layer, data = _pushed_layer(berthd, registry, tmp_path, name)
    hexd = layer.split(":")[1]
    original = data.read_bytes()
    data.write_bytes(original[:1024] + bytes(b ^ 0xFF for b in original[1024:2048]) + original[2048:])
    try:
        before = docker(berthd, "images", "-q").stdout
        cp = docker(berthd, "pull", name, check=False, timeout=120)
        assert cp.returncode != 0 and layer in cp.stderr and "wrong content" in cp.stderr, cp.stderr
        assert docker(berthd, "images", "-q").stdout == before
        assert not Path(berthd.root, "blobs", "sha256", hexd).exists()
    finally:
        data.write_bytes(original)


def test_blob_longer_than_its_manifest_says_is_refused_as_it_arrives(berthd, registry, tmp_path):
    """A registry serving more of a blob than the manifest declares (an attack on the disk) is cut off at the
    declared size: the pull fails naming the blob, and neither the blob nor a partial download stays."""
    name = f"{registry.address}/hostile/long:1"
    layer, data = _pushed_layer(berthd, registry, tmp_path, name)
    hexd = layer.split(":")[1]
    original = data.read_bytes()
    data.write_bytes(original + b"\0" * (8 << 20))  # the registry now serves 8 MiB more than declared
    try:
        cp = docker(berthd, "pull", name, check=False, timeout=120)
        assert cp.returncode != 0 and layer in cp.stderr and "larger than" in cp.stderr, cp.stderr
        assert not Path(berthd.root, "blobs", "sha256", hexd).exists()
        assert not list(Path(berthd.root, "partial").iterdir())
    finally:
        data.write_bytes(original)


def _layer_tar(entries: list[tarfile.TarInfo], payload: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info in entries:
            if info.isreg():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _hostile(kind: str) -> bytes:
    if kind == "dotdot":
        return _layer_tar([tarfile.TarInfo("../../escape")])
    if kind == "absolute":
        return _layer_tar([tarfile.TarInfo("/etc/escape")])
    link = tarfile.TarInfo("link")
    if kind == "symlink":
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
        inner = tarfile.TarInfo("link/escape")
        return _layer_tar([link, inner])
    link.type, link.linkname = tarfile.LNKTYPE, "/etc/passwd"
    return _layer_tar([link])


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_malicious_layers_are_refused_on_load(berthd, tmp_path, kind):
    layer = gzip.compress(_hostile(kind), mtime=0)
    diff = "sha256:" + __import__("hashlib").sha256(gzip.decompress(layer)).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (("layer.tar", layer), ("config.json", config),
                           ("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": [f"evil-{kind}:1"],
                                                          "Layers": ["layer.tar"]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    before = docker(berthd, "images", "-aq").stdout
    cp = docker(berthd, "load", "-i", str(archive), check=False)
    assert cp.returncode != 0 and "refused" in cp.stderr, cp.stderr
    assert docker(berthd, "images", "-aq").stdout == before
    assert not Path("/etc/escape").exists() and not Path("/tmp/escape").exists()


def test_save_load_history_and_skopeo_reads_the_archive(berthd, image, tmp_path):
    if is_dockerd(berthd):
        pytest.skip("berth's archive")
    docker(berthd, "tag", image, "saved:1")
    docker(berthd, "tag", image, "saved:2")
    out = tmp_path / "saved.tar"
    docker(berthd, "save", "-o", str(out), "saved:1", "saved:2")
    seen = json.loads(skopeo("inspect", f"docker-archive:{out}:saved:1"))
    assert seen["Architecture"] == "amd64"
    docker(berthd, "rmi", "saved:1", "saved:2")
    loaded = docker(berthd, "load", "-i", str(out)).stdout
    assert "Loaded image: saved:1" in loaded and "Loaded image: saved:2" in loaded
    assert docker(berthd, "history", "saved:1").stdout.count("\n") >= 2
    docker(berthd, "rmi", "saved:1", "saved:2")


def test_commit_export_and_gc(berthd, image, names, tmp_path):
    name = names()
    docker(berthd, "run", "--name", name, image, "sh", "-c", "echo changed > /new; rm /etc/group")
    docker(berthd, "commit", "-c", "ENV FROM_COMMIT=1", name, "committed:1")
    out = docker(berthd, "run", "--rm", "committed:1", "sh", "-c",
                 "cat /new; test -e /etc/group || echo gone; echo $FROM_COMMIT").stdout
    assert out == "changed\ngone\n1\n"
    export = tmp_path / "fs.tar"
    docker(berthd, "export", "-o", str(export), name)
    with tarfile.open(export) as tar:
        members = set(tar.getnames())
    assert "new" in members and "bin/busybox" in members and "etc/group" not in members
    docker(berthd, "rm", name)
    blobs = set(os.listdir(Path(berthd.root, "blobs", "sha256")))
    docker(berthd, "rmi", "committed:1")
    after = set(os.listdir(Path(berthd.root, "blobs", "sha256")))
    assert len(after) < len(blobs)  # the commit's layer, config and manifest are gone
    assert docker(berthd, "run", "--rm", image, "true").returncode == 0  # the base image's blobs stay


def test_sdk_push_pull_save_load(berthd, client, image, registry):
    repo = f"{registry.address}/sdk/busybox"
    client.images.get(image).tag(repo, "1")
    events = list(client.images.push(repo, tag="1", stream=True, decode=True))
    assert any((e.get("aux") or {}).get("Digest", "").startswith("sha256:") for e in events), events
    client.images.remove(f"{repo}:1")
    pulled = client.images.pull(repo, tag="1")
    pulled.reload()
    assert f"{repo}:1" in pulled.tags and pulled.attrs["Os"] == "linux", (pulled.tags, docker(berthd, "images").stdout)
    data = b"".join(pulled.save(named=f"{repo}:1"))
    client.images.remove(f"{repo}:1")
    loaded = client.images.load(data)
    assert f"{repo}:1" in loaded[0].tags
    client.images.remove(f"{repo}:1")


def test_system_prune_and_df(berthd, image):
    docker(berthd, "tag", image, "prunable:1")
    df = docker(berthd, "system", "df").stdout
    assert "Images" in df and "Containers" in df
    docker(berthd, "rmi", "prunable:1")
    out = docker(berthd, "system", "prune", "-f").stdout
    assert "Total reclaimed space" in out
    assert docker(berthd, "image", "inspect", image).returncode == 0  # tagged images stay


@pytest.mark.parametrize("kind", ["dotdot", "symlink"])
def test_malicious_layers_are_refused_on_pull(berthd, registry, tmp_path, kind):
    from berth.image import ocilayout

    raw = _hostile(kind)
    writer = ocilayout.LayoutWriter(tmp_path / "layout")
    layer = writer.add_blob(gzip.compress(raw, mtime=0))
    config = writer.add_blob(json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + __import__("hashlib").sha256(raw).hexdigest()]},
    }).encode())
    manifest = writer.add_blob(json.dumps({
        "schemaVersion": 2, "mediaType": ocilayout.OCI_MANIFEST,
        "config": config.descriptor(ocilayout.OCI_CONFIG), "layers": [layer.descriptor(ocilayout.OCI_LAYER_GZIP)],
    }).encode())
    writer.set_index([manifest.descriptor(ocilayout.OCI_MANIFEST,
                                          annotations={"org.opencontainers.image.ref.name": "evil"})])
    writer.close()
    name = f"{registry.address}/evil/{kind}:1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}:evil", f"docker://{name}")
    before = docker(berthd, "images", "-aq").stdout
    cp = docker(berthd, "pull", name, check=False, timeout=120)
    assert cp.returncode != 0 and "refused" in (cp.stderr + cp.stdout), (cp.stdout, cp.stderr)
    assert docker(berthd, "images", "-aq").stdout == before
    assert not Path("/etc/escape").exists() and not Path("/tmp/escape").exists()
    assert not [p for p in Path(berthd.root, "snapshots").iterdir() if p.name.startswith(".tmp-")]
