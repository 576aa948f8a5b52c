"""Image-side garbage: every blob goes once every image is gone; a pull outlives its client.

A real registry (Debian's docker-registry) serves what the daemon pulls; the
images are made by import, build, load, tag and pull (a multi-layer one and a
two-platform index among them), then removed with `docker rmi -f` and the
prunes, after which nothing may be left in the content store. A pull whose
docker CLI is killed mid-download must still end with the image tagged.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from berth_e2e_conftest import RUN_NET, assert_responsive, docker, popen_docker, wait_until

from berth.testing.registry import LocalRegistry
from berth.testing.slowproxy import SlowProxy
from berth.tools import bootstrap, layouttar

pytestmark = pytest.mark.skipif(shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
                                reason="needs docker-registry and skopeo (the README's set-up installs them)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def _random_layer_tar(path: Path, files: dict[str, int]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, size in files.items():
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(os.urandom(size)))


def _left(root: str, *dirs: str) -> list[str]:
    """Every file under root/<dir> for each dir, relative to root."""
    out = []
    for d in dirs:
        for base, _, files in os.walk(os.path.join(root, d)):
            out += [os.path.relpath(os.path.join(base, f), root) for f in files]
    return sorted(out)


def _all_images(d) -> list[str]:
    return docker(d, "images", "-a", "-q", "--no-trunc").stdout.split()


def _listed_images(d) -> list[str]:
    return docker(d, "images", "-q", "--no-trunc").stdout.split()


@pytest.mark.parametrize("how", ["rmi-all", "rmi-listed-then-builder-prune"])
def test_no_blob_is_left_once_every_image_is_removed(berthd_factory, rootfs_tar, registry, tmp_path, how):
    """rmi-all: `docker rmi -f $(docker images -aq)` alone; rmi-listed-then-builder-prune: the images
    `docker images` lists, then `docker builder prune -af` (the step images of a failed build go)."""
    d = berthd_factory()
    if d.kind != "berthd":
        pytest.skip("berth's content store")
    reg = registry.address
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    # a multi-layer image, built (and so with build-cache records), pushed, dropped and pulled back
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.bin").write_bytes(os.urandom(300 << 10))
    (ctx / "Dockerfile").write_text("FROM busybox:latest\nRUN echo one > /one\nCOPY data.bin /data.bin\n"
                                    "RUN echo two > /two\nLABEL garbage=test\n")
    docker(d, "build", "-t", "garbage/built:1", str(ctx), timeout=300)
    (ctx / "Dockerfile.fails").write_text("FROM busybox:latest\nRUN echo step > /step\nRUN exit 3\n")
    failed = docker(d, "build", "-f", str(ctx / "Dockerfile.fails"), "-t", "garbage/failed:1", str(ctx),
                    check=False, timeout=300)
    assert failed.returncode != 0
    docker(d, "tag", "garbage/built:1", f"{reg}/garbage/built:1")
    docker(d, "push", f"{reg}/garbage/built:1", timeout=120)
    docker(d, "rmi", f"{reg}/garbage/built:1")
    _random_layer_tar(tmp_path / "big.tar", {"big.bin": 2 << 20})
    docker(d, "import", str(tmp_path / "big.tar"), f"{reg}/garbage/big:1", timeout=120)
    docker(d, "push", f"{reg}/garbage/big:1", timeout=120)
    docker(d, "rmi", f"{reg}/garbage/big:1")
    docker(d, "pull", f"{reg}/garbage/big:1", timeout=120)
    docker(d, "pull", f"{reg}/garbage/built:1", timeout=120)
    # a two-platform index, seeded by skopeo, pulled for both platforms
    layout = tmp_path / "layout"
    asyncio.run(bootstrap.build_busybox(layout, name="docker.io/library/multi:latest"))
    subprocess.run(["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:latest",
                    f"docker://{reg}/garbage/multi:1"], check=True, capture_output=True, timeout=120)
    docker(d, "pull", "--platform", "linux/arm64", f"{reg}/garbage/multi:1", timeout=120)
    docker(d, "pull", f"{reg}/garbage/multi:1", timeout=120)
    # save and load: a one-platform archive and the two-platform one made by bootstrap
    docker(d, "save", "-o", str(tmp_path / "saved.tar"), "garbage/built:1", "busybox:latest", timeout=120)
    docker(d, "rmi", "-f", "garbage/built:1")
    docker(d, "load", "-i", str(tmp_path / "saved.tar"), timeout=120)
    layouttar.write_layout_tar(layout, tmp_path / "multi.tar")
    docker(d, "load", "-i", str(tmp_path / "multi.tar"), timeout=120)
    docker(d, "run", "--name", "garbage-commit", "busybox:latest", "sh", "-c", "echo c > /c")
    docker(d, "commit", "garbage-commit", "garbage/committed:1")
    docker(d, "container", "prune", "-f")
    assert _left(d.root, "blobs")  # there is something to collect

    listed = _all_images if how == "rmi-all" else _listed_images
    for _ in range(3):  # rmi -f of a parent can leave an untagged child for the next round
        ids = listed(d)
        if not ids:
            break
        docker(d, "rmi", "-f", *ids, check=False, timeout=120)
    assert listed(d) == []
    if how != "rmi-all":
        docker(d, "builder", "prune", "-af", timeout=120)
    # a multi-platform index none of whose platforms is left goes too, a failed build's steps with the cache
    assert _all_images(d) == []
    assert _left(d.root, "blobs", "ingest", "partial") == []
    assert os.listdir(os.path.join(d.root, "snapshots")) == []
    docker(d, "builder", "prune", "-af", timeout=120)
    docker(d, "image", "prune", "-af", timeout=120)
    assert _left(d.root, "blobs", "ingest", "partial") == []
    assert "multi" not in docker(d, "images", "-a", "--format", "{{.Repository}}").stdout
    assert_responsive(d)


def test_a_pull_whose_client_goes_away_ends_tagged(berthd_factory, rootfs_tar, registry, tmp_path):
    d = berthd_factory()
    reg = registry.address
    name = f"{reg}/garbage/slow:1"
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _random_layer_tar(ctx / "a.tar", {"a.bin": 6 << 20})
    _random_layer_tar(ctx / "b.tar", {"b.bin": 3 << 20})
    (ctx / "Dockerfile").write_text("FROM busybox:latest\nADD a.tar /\nADD b.tar /\n")
    docker(d, "build", "-t", name, str(ctx), timeout=300)
    docker(d, "push", name, timeout=120)
    docker(d, "rmi", "-f", name, "busybox:latest")
    docker(d, "builder", "prune", "-af")
    docker(d, "image", "prune", "-af")
    host, port = reg.split(":")
    with SlowProxy((host, int(port)), bytes_per_second=1 << 20) as proxy:  # ~9 s for the layers
        via = f"127.0.0.1:{proxy.port}/garbage/slow:1"
        cli = popen_docker(d, "pull", via)
        try:
            first = cli.stdout.readline()
            assert first, "the pull printed nothing"
        finally:
            cli.kill()
            cli.wait(10)
        wait_until(lambda: via in docker(d, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout, 120,
                   "the pull its client left to finish and tag the image")
        docker(d, "run", "--rm", via, "true", timeout=120)
        cp = docker(d, "run", "--rm", via, "sh", "-c", "test -s /a.bin && test -s /b.bin", check=False, timeout=120)
        assert cp.returncode == 0, cp.stderr
        assert not list(Path(d.root, "partial").iterdir())
        docker(d, "rmi", via)
        assert _left(d.root, "blobs", "ingest", "partial") == []

        # again, and a second pull of the same name while the first goes on alone: each blob is
        # downloaded by one of them at a time, both end well
        cli = popen_docker(d, "pull", via)
        try:
            assert cli.stdout.readline()
        finally:
            cli.kill()
            cli.wait(10)
        second = docker(d, "pull", via, timeout=180)
        assert f"Status: Downloaded newer image for {via}" in second.stdout or "up to date" in second.stdout
        docker(d, "run", "--rm", via, "sh", "-c", "test -s /a.bin && test -s /b.bin", timeout=120)

    def all_gone() -> bool:  # the detached pull may tag the image again just after an rmi: once more then
        docker(d, "rmi", via, check=False)
        docker(d, "image", "prune", "-af")
        return not _all_images(d) and _left(d.root, "blobs", "ingest", "partial") == []
    wait_until(all_gone, 60, "the detached pull to end and its image to be removed", interval=1)
    assert_responsive(d)


def test_the_daemon_start_collects_what_a_killed_daemon_left(berthd_factory, rootfs_tar):
    d = berthd_factory()
    if d.kind != "berthd":
        pytest.skip("berth's content store")
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    kept = _left(d.root, "blobs")
    d.kill9()
    # what a kill leaves: a blob stored by a pull or load not yet recorded, an ingest file mid-write,
    # a partial download abandoned two days ago, and one from a minute ago a retried pull resumes
    data = os.urandom(4096)
    stray = Path(d.root, "blobs", "sha256", hashlib.sha256(data).hexdigest())
    stray.write_bytes(data)
    Path(d.root, "ingest", "0" * 32).write_bytes(b"half written")
    old = Path(d.root, "partial", "1" * 64)
    old.write_bytes(b"abandoned")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    fresh = Path(d.root, "partial", "2" * 64)
    fresh.write_bytes(b"resumable")
    d.restart()
    assert _left(d.root, "blobs") == kept
    assert _left(d.root, "ingest", "partial") == ["partial/" + "2" * 64]
    assert "content store:" in d.log_path.read_text()  # the start's report says what it removed
    docker(d, "run", "--rm", *RUN_NET, "busybox:latest", "true")
    assert_responsive(d)


def test_a_daemon_stopped_under_a_detached_pull_ends_cleanly_and_the_pull_resumes(berthd_factory, rootfs_tar,
                                                                                  registry, tmp_path):
    d = berthd_factory()
    if d.kind != "berthd":
        pytest.skip("berth's partial downloads")
    reg = registry.address
    _random_layer_tar(tmp_path / "big.tar", {"big.bin": 8 << 20})
    docker(d, "import", str(tmp_path / "big.tar"), f"{reg}/garbage/stopped:1", timeout=120)
    docker(d, "push", f"{reg}/garbage/stopped:1", timeout=120)
    docker(d, "rmi", f"{reg}/garbage/stopped:1")
    host, port = reg.split(":")
    with SlowProxy((host, int(port)), bytes_per_second=1 << 20) as proxy:
        via = f"127.0.0.1:{proxy.port}/garbage/stopped:1"
        cli = popen_docker(d, "pull", via)
        try:
            assert cli.stdout.readline()
        finally:
            cli.kill()
            cli.wait(10)
        wait_until(lambda: any(p.stat().st_size for p in Path(d.root, "partial").iterdir()), 30,
                   "the detached pull to write part of the layer")
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30) == 0  # the detached pull is cancelled: the daemon ends cleanly
        assert list(Path(d.root, "partial").iterdir())  # what arrived stays, for the next pull
        d.restart()
        docker(d, "pull", via, timeout=120)
    assert not list(Path(d.root, "partial").iterdir())
    assert int(docker(d, "image", "inspect", "-f", "{{.Size}}", via).stdout) >= 8 << 20
    assert_responsive(d)
