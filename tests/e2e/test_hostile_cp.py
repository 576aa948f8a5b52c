"""`docker cp` into and out of a running container that swaps a directory for a symlink (issue 10).

The container renames its /d away, puts a symlink to a host canary directory
(absolute, or relative with `..` up to it, or "/") in its place, removes it and
renames /d back, in a tight loop, while `docker cp` of a tar holding many files
in nested directories goes into /d again and again, and `docker cp` of /d/.
comes out. berth resolves every path inside the container and creates every
entry relative to a directory descriptor, so whatever the timing the host canary
directory keeps exactly its one file, no tar out of the container holds the
canary's bytes, no request ends in an internal error, and the daemon answers
/_ping within a second. Process isolation and the VM (--isolation hyperv).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Iterator

import docker as docker_sdk
import pytest
from berth_e2e_conftest import assert_responsive, docker, is_dockerd, wait_until

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's

CANARY_PREFIX = b"CANARY-HOST-BYTES-"
CANARY_TEXT = CANARY_PREFIX.decode() + uuid.uuid4().hex + "\n"
MODES = {"process": ["--isolation", "process"], "vm": ["--isolation", "hyperv"]}
# The container also makes a directory of the canary's name of its own, so that the link resolves
# (inside the container) to a directory and berth goes on extracting while it flips.
SWAP_LOOP = ("mkdir -p /d/sub {canary_dir} && echo mine > /d/sub/f && "
             "head -c 300 /dev/zero | tr '\\0' m > /d/canary && touch /ready && "
             "while true; do mv /d /d.x; ln -s {target} /d; rm /d; mv /d.x /d; done")
ROUNDS = 6


@pytest.fixture(autouse=True)
def berthd_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("berth's own hostile corpus")


@pytest.fixture
def canary() -> Iterator[Path]:
    """A host directory the container's symlink points at, holding one file."""
    d = Path(f"/tmp/berth-canary-{uuid.uuid4().hex[:10]}")
    d.mkdir()
    (d / "canary").write_text(CANARY_TEXT)
    yield d / "canary"
    shutil.rmtree(d, ignore_errors=True)


def check_canary(canary: Path) -> None:
    assert sorted(os.listdir(canary.parent)) == ["canary"], "something was written into the host canary directory"
    assert canary.read_text() == CANARY_TEXT, "the host canary was overwritten"
    assert canary.stat().st_mode & 0o7777 == 0o644 and canary.stat().st_uid == 0


def many_files_tar() -> bytes:
    """300 files at the top (each a chance to land while /d is the symlink), then 120 in nested
    directories, a symlink and a hard link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for k in range(300):
            loose = tarfile.TarInfo(f"loose{k}")
            loose.size, loose.mode = 5, 0o666
            tar.addfile(loose, io.BytesIO(b"loose"))
        for i in range(6):
            top = tarfile.TarInfo(f"t{i}")
            top.type, top.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(top)
            for j in range(20):
                body = f"payload {i}/{j}\n".encode()
                info = tarfile.TarInfo(f"t{i}/f{j}")
                info.size, info.mode, info.uid = len(body), 0o4755, 4242
                tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("t0/link")
        link.type, link.linkname = tarfile.SYMTYPE, "f0"
        tar.addfile(link)
        hard = tarfile.TarInfo("t0/hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "t0/f1"
        tar.addfile(hard)
    return buf.getvalue()


def mode_args(mode: str) -> list[str]:
    if mode == "vm" and shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    return MODES[mode]


def link_text(kind: str, canary: Path) -> str:
    return {"abs": str(canary.parent), "rel": "../" * 8 + str(canary.parent).lstrip("/"), "root": "/"}[kind]


def start_swapper(d, names, image, mode: str, target: str, canary: Path) -> str:
    name = names()
    docker(d, "run", "-d", "--name", name, *mode_args(mode), image, "sh", "-c",
           SWAP_LOOP.format(target=target, canary_dir=canary.parent), timeout=180)
    wait_until(lambda: docker(d, "exec", name, "test", "-e", "/ready", check=False).returncode == 0, 120,
               "the swap loop to start")
    return name


def no_internal_error(cp: subprocess.CompletedProcess) -> None:
    text = cp.stderr if isinstance(cp.stderr, str) else cp.stderr.decode(errors="replace")
    assert "internal error" not in text.lower() and "Traceback" not in text, text


def api_error(exc: docker_sdk.errors.APIError) -> None:
    """A refusal the racing container caused is fine; an internal error is not."""
    assert exc.status_code in (400, 404, 409), (exc.status_code, str(exc))
    assert "Traceback" not in str(exc) and "internal error" not in str(exc).lower(), str(exc)


@pytest.mark.parametrize("mode", ["process", "vm"])
@pytest.mark.parametrize("kind", ["abs", "rel", "root"])
def test_cp_into_a_directory_swapped_for_a_symlink(berthd, client, image, names, canary, mode, kind):
    name = start_swapper(berthd, names, image, mode, link_text(kind, canary), canary)
    payload = many_files_tar()
    box = client.containers.get(name)
    for _ in range(ROUNDS):
        # The CLI first stats /d (and refuses a symlink to a missing directory) ...
        cp = subprocess.run(["docker", "cp", "-", f"{name}:/d"], env=berthd.env, input=payload,
                            capture_output=True, timeout=180)
        no_internal_error(cp)
        # ... the API extracts whatever /d is when the request arrives, and while it changes.
        for _ in range(4):
            try:
                box.put_archive("/d", payload)
            except docker_sdk.errors.APIError as exc:
                api_error(exc)
        check_canary(canary)
        assert_responsive(berthd)
    docker(berthd, "rm", "-f", name, timeout=120)
    check_canary(canary)
    assert_responsive(berthd)


@pytest.mark.parametrize("mode", ["process", "vm"])
@pytest.mark.parametrize("kind", ["abs", "root"])
def test_cp_out_of_a_directory_swapped_for_a_symlink(berthd, client, image, names, canary, mode, kind):
    name = start_swapper(berthd, names, image, mode, link_text(kind, canary), canary)
    box = client.containers.get(name)
    # /d/canary is a file of the container's own (300 bytes) with the name of the host's canary file.
    for source in ("/d/.", "/d/canary", "/d/sub/f", "/d", "/d/"):
        for _ in range(ROUNDS):
            try:
                chunks, _stat = box.get_archive(source)
                data = b"".join(chunks)
            except docker_sdk.errors.APIError as exc:
                api_error(exc)
                continue
            assert CANARY_PREFIX not in data, f"host canary bytes in the tar of {source}"
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                for m in tar:
                    # The container has an empty directory of the canary directory's name; the host's holds "canary".
                    assert not m.name.endswith(f"{canary.parent.name}/canary"), f"host file {m.name} in the tar"
            assert_responsive(berthd)
        cp = subprocess.run(["docker", "cp", f"{name}:{source}", "-"], env=berthd.env,
                            capture_output=True, timeout=180)
        no_internal_error(cp)
        assert CANARY_PREFIX not in cp.stdout, f"host canary bytes in the tar of {source}"
    check_canary(canary)
    assert_responsive(berthd)


def test_cp_into_a_container_a_tar_with_escaping_names(berthd, image, names, canary):
    """The plain attack, no race: absolute names, `..` and a symlink member then a file below it."""
    name = names()
    docker(berthd, "run", "-d", "--name", name, *mode_args("process"), image, "sleep", "600", timeout=180)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        link = tarfile.TarInfo("esc")
        link.type, link.linkname = tarfile.SYMTYPE, str(canary.parent)
        tar.addfile(link)
        for n in ("esc/planted", f"{canary.parent}/planted-abs"):
            info = tarfile.TarInfo(n)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    cp = subprocess.run(["docker", "cp", "-", f"{name}:/tmp"], env=berthd.env, input=buf.getvalue(),
                        capture_output=True, timeout=120)
    no_internal_error(cp)
    check_canary(canary)
    # Both files are inside the container: below the link, resolved in the container's root.
    out = docker(berthd, "exec", name, "sh", "-c", f"cat {canary.parent}/planted /tmp{canary.parent}/planted-abs",
                 check=False)
    assert out.stdout.count("bad") == 2, (cp.stderr, out.stdout, out.stderr)
    assert_responsive(berthd)
