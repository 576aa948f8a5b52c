"""Hostile file trees against berthd, through the real docker CLI (issue 10, "one root-confined file-tree module").

Images whose /etc/hosts, /etc/hostname, /etc/resolv.conf, /etc/passwd or /etc/group
is a symlink (absolute to a host canary, relative with `..` up to it), a FIFO, a
device or a directory, run in every isolation mode that applies (process, runsc,
vm); a VM guest that plants such symlinks between two starts; export and commit
while the container swaps a directory for a symlink in a loop. Each case checks
that the host canary is neither changed nor leaked, that a container which cannot
be created fails with a clear message and exit 125, and that the daemon still
answers /_ping within a second.
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

import pytest
from berth_e2e_conftest import (
    assert_responsive,
    docker,
    is_dockerd,
    unique_name,
    wait_until,
)

CANARY_UID = "4242"
CANARY_TEXT = f"nobody:x:{CANARY_UID}:{CANARY_UID}:CANARY-LEAKED:/canary:/bin/sh\n"

MODES = {
    "process": ["--isolation", "process"],
    "runsc": ["--runtime", "runsc"],
    "vm": ["--isolation", "hyperv"],
}


@pytest.fixture(autouse=True)
def berthd_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("berth's own hostile corpus")


@pytest.fixture(scope="module")
def canary() -> Iterator[Path]:
    """A host file a hostile image points at: /tmp/berth-canary-XXXX/canary (passwd- and group-shaped)."""
    d = Path(f"/tmp/berth-canary-{uuid.uuid4().hex[:10]}")
    d.mkdir()
    f = d / "canary"
    f.write_text(CANARY_TEXT)
    yield f
    shutil.rmtree(d, ignore_errors=True)


def check_canary(canary: Path) -> None:
    assert canary.read_text() == CANARY_TEXT, "the host canary was overwritten"
    assert sorted(os.listdir(canary.parent)) == ["canary"], "something was written beside the host canary"


def mode_args(d, mode: str) -> list[str]:
    if mode == "runsc":
        runtimes = docker(d, "info", "--format", "{{json .Runtimes}}").stdout
        if "runsc" not in runtimes:
            pytest.skip("no runsc runtime")
    if mode == "vm" and shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    return MODES[mode]


def link_target(kind: str, canary: Path, etc_name: str) -> str | None:
    """What /etc/<etc_name> becomes in the hostile image (None: a non-link member, see hostile_tar)."""
    if kind == "abs":
        return str(canary)
    if kind == "rel":
        return "../" * 8 + str(canary).lstrip("/")
    if kind == "fifo":
        return "/fifo"
    if kind == "devzero":
        return "/dev/zero"
    if kind == "dir":
        return "/"
    if kind == "huge":
        return "HUGE"
    raise AssertionError(kind)


def hostile_tar(rootfs_tar: Path, out: Path, replace: dict[str, str]) -> Path:
    """The busybox rootfs with each /etc/<name> in *replace* a symlink to its value (plus /fifo and /dev/zero)."""
    with tarfile.open(rootfs_tar) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            if m.name.removeprefix("./") in [f"etc/{n}" for n in replace]:
                continue
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        fifo = tarfile.TarInfo("fifo")
        fifo.type, fifo.mode = tarfile.FIFOTYPE, 0o644
        dst.addfile(fifo)
        dev = tarfile.TarInfo("dev")
        dev.type, dev.mode = tarfile.DIRTYPE, 0o755
        dst.addfile(dev)
        zero = tarfile.TarInfo("dev/zero")
        zero.type, zero.mode, zero.devmajor, zero.devminor = tarfile.CHRTYPE, 0o666, 1, 5
        dst.addfile(zero)
        for name, target in replace.items():
            if target == "HUGE":  # a regular file one byte over the lookup's 4 MiB bound
                body = (b"#" * 1023 + b"\n") * 4096 + b"\n"
                big = tarfile.TarInfo(f"etc/{name}")
                big.size, big.mode = len(body), 0o644
                dst.addfile(big, io.BytesIO(body))
                continue
            link = tarfile.TarInfo(f"etc/{name}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, target, 0o777
            dst.addfile(link)
    return out


_IMAGES: dict[tuple[str, str], str] = {}


def hostile_image(d, rootfs_tar: Path, tmp: Path, canary: Path, etc_name: str, kind: str) -> str:
    key = (etc_name, kind)
    if key not in _IMAGES:
        ref = f"hostile-{etc_name.replace('.', '-')}-{kind}:{uuid.uuid4().hex[:6]}"
        tar = hostile_tar(rootfs_tar, tmp / f"{etc_name}-{kind}.tar", {etc_name: link_target(kind, canary, etc_name)})
        docker(d, "import", str(tar), ref, timeout=120)
        _IMAGES[key] = ref
    return _IMAGES[key]


@pytest.fixture(scope="module")
def tmp_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def no_leak(cp: subprocess.CompletedProcess) -> None:
    assert "CANARY-LEAKED" not in cp.stdout + cp.stderr
    assert CANARY_UID not in cp.stdout, "the container got the host canary's uid"


def no_traceback(cp: subprocess.CompletedProcess) -> None:
    assert "internal error" not in cp.stderr and "Traceback" not in cp.stderr, cp.stderr


# --------------------------------------------------------------------------- #
# /etc/passwd and /etc/group: user lookup for run


USER_CASES = [
    # (file, kind, expected exit, what stderr says)
    ("passwd", "abs", 125, "unable to find user nobody: no matching entries in passwd file"),
    ("passwd", "rel", 125, "unable to find user nobody: no matching entries in passwd file"),
    ("passwd", "fifo", 125, "unable to find user nobody: /etc/passwd is not a regular file (a FIFO)"),
    ("passwd", "devzero", 125, "unable to find user nobody: /etc/passwd is not a regular file (a character device)"),
    ("passwd", "dir", 125, "unable to find user nobody: /etc/passwd is not a regular file (a directory)"),
    ("group", "fifo", 125, "unable to find user nobody: /etc/group is not a regular file (a FIFO)"),
    ("group", "devzero", 125, "unable to find user nobody: /etc/group is not a regular file (a character device)"),
    ("group", "abs", 0, ""),
    ("passwd", "huge", 125, "unable to find user nobody: /etc/passwd is larger than 4194304 bytes"),
]


@pytest.mark.parametrize("mode", ["process", "runsc", "vm"])
@pytest.mark.parametrize("etc_name, kind, code, message", USER_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in USER_CASES])
def test_user_lookup_in_hostile_image(berthd, rootfs_tar, tmp_images, canary, mode, etc_name, kind, code, message):
    args = mode_args(berthd, mode)
    ref = hostile_image(berthd, rootfs_tar, tmp_images, canary, etc_name, kind)
    cp = docker(berthd, "run", "--rm", *args, "-u", "nobody", ref, "id", check=False, timeout=180)
    assert cp.returncode == code, (cp.returncode, cp.stdout, cp.stderr)
    assert message in cp.stderr
    if code == 0:
        assert cp.stdout.startswith("uid=65534(nobody)"), cp.stdout
        assert "4242" not in cp.stdout
    no_leak(cp)
    no_traceback(cp)
    check_canary(canary)
    assert_responsive(berthd)


DEFAULT_USER_CASES = [("fifo", 125), ("devzero", 125), ("abs", 0)]


@pytest.mark.parametrize("mode", ["process", "vm"])
@pytest.mark.parametrize("kind, code", DEFAULT_USER_CASES, ids=[c[0] for c in DEFAULT_USER_CASES])
def test_default_user_with_hostile_passwd(berthd, rootfs_tar, tmp_images, canary, mode, kind, code):
    """No user asked for: a passwd that is not a regular file is still refused, at once (runc would read
    it in the container and block on a FIFO); a link out of the root is simply absent: root, not the canary."""
    args = mode_args(berthd, mode)
    ref = hostile_image(berthd, rootfs_tar, tmp_images, canary, "passwd", kind)
    cp = docker(berthd, "run", "--rm", *args, ref, "id", check=False, timeout=180)
    assert cp.returncode == code, (cp.stdout, cp.stderr)
    if code:
        assert "unable to find user root: /etc/passwd is not a regular file" in cp.stderr
    else:
        assert cp.stdout.startswith("uid=0(root) gid=0(root)") or cp.stdout.startswith("uid=0 gid=0"), cp.stdout
    no_leak(cp)
    no_traceback(cp)
    check_canary(canary)
    assert_responsive(berthd)


EXEC_CASES = [
    ("ln -s /fifo /etc/passwd", "/etc/passwd is not a regular file (a FIFO)"),
    ("ln -s /dev/zero /etc/passwd", "/etc/passwd is not a regular file (a character device)"),
    ("ln -s /proc/self/mem /etc/passwd", ""),             # missing inside the root on the host side
    ("ln -s / /etc/passwd", "/etc/passwd is not a regular file (a directory)"),
]


@pytest.mark.parametrize("mode", ["process", "vm"])
@pytest.mark.parametrize("plant, message", EXEC_CASES, ids=["fifo", "devzero", "proc-link", "dir"])
def test_exec_user_lookup_after_the_container_plants_a_file(berthd, rootfs_tar, tmp_images, canary, names, mode,
                                                            plant, message):
    """`docker exec -u nobody` into a running container that replaced its own /etc/passwd: a clear error, no hang.

    The image has a FIFO at /fifo and a /dev/zero device node (a VM guest cannot mknod through 9p)."""
    args = mode_args(berthd, mode)
    ref = hostile_image(berthd, rootfs_tar, tmp_images, canary, "hosts", "abs")
    name = names()
    docker(berthd, "run", "-d", "--name", name, *args, ref, "sh", "-c",
           f"rm /etc/passwd && {plant} && echo planted && exec sleep 300", timeout=180)
    planted = lambda: docker(berthd, "logs", name, check=False)  # noqa: E731
    try:
        wait_until(lambda: "planted" in planted().stdout, 60, "the container to plant its file")
    except BaseException:
        logs = planted()
        state = docker(berthd, "inspect", "-f", "{{json .State}}", name, check=False).stdout
        pytest.fail(f"not planted: {logs.stdout!r} {logs.stderr!r} {state}")
    cp = docker(berthd, "exec", "-u", "nobody", name, "id", check=False, timeout=60)
    assert cp.returncode != 0
    out = cp.stdout + cp.stderr
    assert f"unable to find user nobody: {message or 'no matching entries in passwd file'}" in out, out
    no_leak(cp)
    assert_responsive(berthd)
    def still_serves() -> bool:  # the container is still reachable: refused again, or root
        cp = docker(berthd, "exec", "-u", "0", name, "id", "-u", check=False, timeout=60)
        return "unable to find user" in cp.stdout + cp.stderr or cp.stdout.strip() == "0"
    # VM: a few tries, for a known race outside this test's subject (berth.vm.execclient sends
    # stdin EOF to a monitor that may have closed already: BrokenPipeError).
    wait_until(still_serves, 30 if mode == "vm" else 1, "the container to answer an exec again")
    check_canary(canary)
    assert_responsive(berthd)


# --------------------------------------------------------------------------- #
# /etc/hosts, /etc/hostname, /etc/resolv.conf: the generated files


ETC_KINDS = ["abs", "rel", "fifo", "devzero", "dir"]
ETC_CASES = [(n, k, m) for n in ("hosts", "hostname", "resolv.conf") for k in ETC_KINDS
             for m in ("process", "runsc", "vm")
             if m != "vm" or k in ("abs", "rel", "dir") or n == "hosts"]


@pytest.mark.parametrize("etc_name, kind, mode", ETC_CASES, ids=[f"{n}-{k}-{m}" for n, k, m in ETC_CASES])
def test_generated_etc_file_over_hostile_link(berthd, rootfs_tar, tmp_images, canary, etc_name, kind, mode):
    args = mode_args(berthd, mode)
    ref = hostile_image(berthd, rootfs_tar, tmp_images, canary, etc_name, kind)
    cp = docker(berthd, "run", "--rm", *args, "--hostname", "hostilebox", ref, "cat", f"/etc/{etc_name}",
                check=False, timeout=180)
    if kind in ("abs", "rel"):  # contained: the link resolves inside the root, berth's file is what is seen
        assert cp.returncode == 0, (cp.stdout, cp.stderr)
        expect = {"hosts": "localhost", "hostname": "hostilebox", "resolv.conf": ""}[etc_name]
        assert expect in cp.stdout
    else:  # refused at once, saying why (a runtime would block on the FIFO or fail on the rest)
        what = {"fifo": "a FIFO", "devzero": "a character device", "dir": "a directory"}[kind]
        assert cp.returncode == 125, (cp.stdout, cp.stderr)
        assert (f"cannot set up /etc/{etc_name} in the container: /etc/{etc_name} is not a regular file "
                f"({what})") in cp.stderr
    no_leak(cp)
    no_traceback(cp)
    check_canary(canary)
    assert_responsive(berthd)


# --------------------------------------------------------------------------- #
# A VM guest plants symlinks between two starts


@pytest.mark.parametrize("etc_name", ["hosts", "hostname", "resolv.conf"])
@pytest.mark.parametrize("kind", ["abs", "rel"])
def test_vm_guest_plants_symlink_between_starts(berthd, image, canary, names, etc_name, kind):
    args = mode_args(berthd, "vm")
    target = link_target(kind, canary, etc_name)
    name = names()
    script = (f"if [ -e /planted ]; then ls -l /etc/{etc_name}; cat /etc/{etc_name}; "
              f"else rm -f /etc/{etc_name} && ln -s {target} /etc/{etc_name} && touch /planted; fi")
    # First start: the guest (root in its VM) replaces the file with a symlink to the host canary.
    docker(berthd, "run", "--name", name, *args, "--hostname", "guestbox", image, "sh", "-c", script, timeout=180)
    check_canary(canary)
    # Second start: the shim writes the file again, inside the root, replacing the link.
    cp = docker(berthd, "start", "-a", name, check=False, timeout=180)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("-"), cp.stdout  # a regular file again, not a link
    expect = {"hosts": "localhost", "hostname": "guestbox", "resolv.conf": ""}[etc_name]
    assert expect in cp.stdout
    no_leak(cp)
    check_canary(canary)
    assert_responsive(berthd)


# --------------------------------------------------------------------------- #
# Export and commit of a live container swapping a directory for a symlink


SWAP_LOOP = ("mkdir -p /d/sub && echo mine > /d/sub/f && touch /ready && "
             "while true; do mv /d /d.x; ln -s {target} /d; rm /d; mv /d.x /d; done")


def tar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for m in tar:
            body = tar.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            yield m.name, body


def assert_no_host_files(data: bytes, canary: Path) -> None:
    for name, body in tar_members(data):
        assert canary.parent.name not in name, f"host path {name} in the tar"
        assert b"CANARY-LEAKED" not in body, f"host canary content in {name}"
        assert not name.startswith(("d/proc/", "d/sys/", "d/etc/", "d/usr/", "d/tmp/")), name


def start_swapper(d, names, image, mode: str, target: str) -> str:
    name = names()
    docker(d, "run", "-d", "--name", name, *mode_args(d, mode), image, "sh", "-c",
           SWAP_LOOP.format(target=target), timeout=180)
    wait_until(lambda: docker(d, "exec", name, "test", "-e", "/ready", check=False).returncode == 0, 60,
               "the swap loop to start")
    return name


@pytest.mark.parametrize("mode", ["process", "vm"])
@pytest.mark.parametrize("target", ["/", "CANARY"])
def test_export_while_swapping(berthd, image, canary, names, tmp_path, mode, target):
    target = str(canary.parent) if target == "CANARY" else target
    name = start_swapper(berthd, names, image, mode, target)
    for i in range(4):
        out = tmp_path / f"export-{i}.tar"
        docker(berthd, "export", "-o", str(out), name, timeout=180)
        assert_no_host_files(out.read_bytes(), canary)
        assert_responsive(berthd)
    check_canary(canary)


@pytest.mark.parametrize("mode", ["process", "vm"])
def test_commit_without_pause_while_swapping(berthd, image, canary, names, tmp_path, mode):
    name = start_swapper(berthd, names, image, mode, str(canary.parent))
    ref = unique_name("swapped") + ":latest"
    try:
        for _ in range(3):
            docker(berthd, "commit", "--pause=false", name, ref, timeout=180)
            out = tmp_path / "saved.tar"
            docker(berthd, "save", "-o", str(out), ref, timeout=180)
            with tarfile.open(out) as saved:
                for m in saved.getmembers():
                    if m.isreg() and (m.name.endswith(".tar") or m.name.startswith("blobs/")):
                        blob = saved.extractfile(m).read()  # type: ignore[union-attr]
                        try:
                            assert_no_host_files(blob, canary)
                        except tarfile.TarError:
                            continue  # a config or manifest blob
            assert_responsive(berthd)
    finally:
        docker(berthd, "rmi", "-f", ref, check=False)
    check_canary(canary)
