"""Issue 10, "Host files and processes", "Crash consistency" and the smaller ones, end to end.

An unprivileged host user (uid/gid 65534, no groups) must reach nothing under
the data root: not list it, not run a setuid binary of an image layer by its
host path, not open a device node a container made. Containers whose user is
not root keep working (their root, a volume, a tmpfs). A VM container's
sockets and work directory are root-only and its QEMU runs under -sandbox;
--log-opt max-size holds for VM containers; `docker logs` of a 200 MB log
keeps the daemon's memory bounded; an import cut mid-body records nothing.
Each test ends with assert_responsive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from berth_e2e_conftest import (
    VM_DIR,
    assert_responsive,
    docker,
    is_dockerd,
    unique_name,
)

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
EMPTY = "sha256:" + hashlib.sha256(b"").hexdigest()


@pytest.fixture(autouse=True)
def berthd_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("berthd's own data root layout")


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    """Run *argv* as uid/gid 65534 with no groups (and, past setpriv's own exec, no capabilities)."""
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=30)


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def setuid_tar(path: Path) -> Path:
    """A root file system of one busybox, setuid root (04755), with sh linked to it."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755 if d == "bin" else 0o1777
            tar.addfile(info)
        info = tar.gettarinfo(busybox, "bin/busybox")
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o4755, 0, 0, "root", "root"
        with open(busybox, "rb") as f:
            tar.addfile(info, f)
        for name in ("sh", "mknod", "sleep", "id", "ls", "cat"):
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return path


@pytest.fixture
def open_path_to_root(berthd):
    """Let others traverse the test daemon's private temp dir (mkdtemp, 0700), so that only
    the data root's own modes stand between an unprivileged user and what is in it."""
    tmp = Path(berthd.tmp)
    before = mode(tmp)
    os.chmod(tmp, 0o711)
    try:
        yield Path(berthd.root)
    finally:
        os.chmod(tmp, before)


def test_unprivileged_user_reaches_nothing_under_the_data_root(berthd, names, tmp_path, open_path_to_root):
    root = open_path_to_root
    image = unique_name("suid")
    docker(berthd, "import", str(setuid_tar(tmp_path / "suid.tar")), image, timeout=120)
    try:
        diff_id = json.loads(docker(berthd, "image", "inspect", image).stdout)[0]["RootFS"]["Layers"][0]
        layer = root / "snapshots" / diff_id.split(":", 1)[1] / "fs"
        suid = layer / "bin" / "busybox"
        assert os.stat(suid).st_mode & stat.S_ISUID and os.stat(suid).st_uid == 0  # the attack is real
        name = names()
        docker(berthd, "run", "--name", name, image, "mknod", "/memdev", "c", "1", "3", timeout=120)
        cid = docker(berthd, "inspect", "-f", "{{.Id}}", name).stdout.strip()
        cdir = root / "containers" / cid
        device = cdir / "upper" / "memdev"
        assert stat.S_ISCHR(os.lstat(device).st_mode)

        # Modes: root-owned, nothing for others.
        assert os.stat(root).st_uid == 0 and mode(root) & 0o007 == 0, oct(mode(root))
        for sub in ("containers", "snapshots", "blobs", "tmp", "ingest", "partial", "s", "runtime"):
            assert mode(root / sub) == 0o700, (sub, oct(mode(root / sub)))
        assert mode(cdir) & 0o077 == 0, oct(mode(cdir))

        for argv in (["ls", str(root)], ["ls", str(root / "containers")], ["ls", str(layer)],
                     ["ls", str(cdir)], ["ls", str(root / "volumes" / "x")]):
            cp = as_nobody(*argv)
            assert cp.returncode != 0 and "Permission denied" in cp.stderr, (argv, cp.stdout, cp.stderr)
        # (exec'd by a shell running as nobody: setpriv itself resolves its command's path
        # while it still holds root's capabilities)
        cp = as_nobody("/bin/sh", "-c", '"$0" id -u', str(suid))
        assert cp.returncode != 0 and "Permission denied" in cp.stderr and cp.stdout.strip() == "", (cp.stdout,
                                                                                                     cp.stderr)
        cp = as_nobody("dd", f"if={device}", "of=/dev/null", "count=1")
        assert cp.returncode != 0 and "Permission denied" in cp.stderr, cp.stderr
        # As root, the same paths work: the denials above are the modes, not wrong paths.
        assert subprocess.run([str(suid), "id", "-u"], capture_output=True, text=True).stdout.strip() == "0"
    finally:
        docker(berthd, "rmi", "-f", image, check=False)
    assert_responsive(berthd)


def test_a_wider_data_root_is_tightened_at_start(berthd_factory):
    d = berthd_factory()
    root = Path(d.root)
    os.chmod(root, 0o755)
    os.chmod(root / "containers", 0o755)
    os.chmod(root / "snapshots", 0o777)
    d.kill9()
    d.restart()
    assert mode(root) == 0o710
    assert mode(root / "containers") == 0o700 and mode(root / "snapshots") == 0o700
    assert mode(root / "volumes") == 0o701
    assert_responsive(d)


def test_a_data_root_owned_by_someone_else_is_refused(berthd_factory, tmp_path):
    d = berthd_factory()
    d.kill9()
    os.chown(d.root, 65534, 65534)
    cp = subprocess.run([*d.argv()], capture_output=True, text=True, timeout=30)
    assert cp.returncode != 0 and "owned by uid 65534" in (cp.stderr + cp.stdout), cp.stderr[-2000:]
    os.chown(d.root, 0, 0)
    d.restart()
    assert_responsive(d)


@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_containers_with_a_non_root_user_still_work(berthd, image, names, runtime):
    if runtime == "runsc" and shutil.which("runsc") is None:
        pytest.skip("runsc is not installed")
    rt = ["--runtime", runtime]
    assert "bin" in docker(berthd, "run", "--rm", *rt, "-u", "1000", image, "ls", "/", timeout=120).stdout
    vol = unique_name("hhvol")
    docker(berthd, "volume", "create", vol)
    try:
        docker(berthd, "run", "--rm", *rt, "-v", f"{vol}:/data", image, "chown", "1000:1000", "/data", timeout=120)
        out = docker(berthd, "run", "--rm", *rt, "-u", "1000", "-v", f"{vol}:/data", "--tmpfs", "/scratch:mode=1777",
                     image, "sh", "-c", "echo v > /data/f && echo t > /scratch/f && cat /data/f /scratch/f && id -u",
                     timeout=120).stdout.split()
        assert out == ["v", "t", "1000"], out
    finally:
        docker(berthd, "volume", "rm", "-f", vol, check=False)
    assert_responsive(berthd)


# ---- VM containers ------------------------------------------------------------------------

vm = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 is not installed")


@vm
def test_vm_sockets_and_workdir_are_root_only_and_qemu_is_sandboxed(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--isolation", "hyperv", image, "sleep", "300", timeout=180)
    cid = docker(berthd, "inspect", "-f", "{{.Id}}", name).stdout.strip()
    root = Path(berthd.root)
    sockets = root / "s"
    assert mode(sockets) == 0o700
    for sock in (sockets / f"{cid[:16]}.vm", sockets / f"{cid[:16]}.attach"):
        assert stat.S_ISSOCK(os.lstat(sock).st_mode) and mode(sock) == 0o600, (sock, oct(mode(sock)))
    qemu = int((root / "containers" / cid / "pid").read_text())
    argv = Path(f"/proc/{qemu}/cmdline").read_bytes().split(b"\0")
    agent = next(a.decode() for a in argv if a.startswith(b"socket,id=agent,path="))
    work = Path(agent.split("path=", 1)[1]).parent  # <cid>.d, or the pooled VM's p-* it was handed out
    assert work.parent == sockets and work.name in (f"{cid[:16]}.d", *[p.name for p in sockets.glob("p-*")])
    assert mode(work) == 0o700
    assert mode(work / "qmp.sock") == 0o600, oct(mode(work / "qmp.sock"))
    for entry in work.iterdir():  # agent.sock, console.log, qemu.log, ...: nothing for others
        assert mode(entry) & 0o077 == 0, (entry.name, oct(mode(entry)))
    for pooled in sockets.glob("p-*"):  # the VMs waiting in the pool: their sockets and files as private
        assert mode(pooled) == 0o700
        for entry in pooled.iterdir():
            assert mode(entry) & 0o077 == 0, (pooled.name, entry.name, oct(mode(entry)))
    for d in (Path("/dev/shm/berth-templates"), Path(VM_DIR) / "templates"):
        if d.exists():
            st = os.lstat(d)
            assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and mode(d) == 0o700, (d, oct(mode(d)))
            for sub in d.iterdir():
                if sub.is_dir() and not sub.is_symlink():
                    assert mode(sub) & 0o077 == 0, (sub, oct(mode(sub)))
    assert b"-sandbox" in argv, argv
    policy = argv[argv.index(b"-sandbox") + 1].decode()
    assert policy.split(",")[0] == "on"
    assert {"obsolete=deny", "elevateprivileges=deny", "spawn=deny", "resourcecontrol=deny"} <= set(policy.split(","))
    # Under the sandbox, what a VM container does still works: exec, pause/resume, stop.
    assert docker(berthd, "exec", name, "echo", "in-vm", timeout=60).stdout.strip() == "in-vm"
    docker(berthd, "pause", name, timeout=60)
    docker(berthd, "unpause", name, timeout=60)
    assert docker(berthd, "exec", name, "id", "-u", timeout=60).stdout.strip() == "0"
    docker(berthd, "rm", "-f", name, timeout=60)
    assert_responsive(berthd)


@vm
def test_a_template_directory_planted_in_dev_shm_is_never_used(berthd, image):
    """/dev/shm is world-writable: a user who makes berth-templates first gets nothing from it."""
    shm = Path("/dev/shm/berth-templates")
    saved = Path(f"/dev/shm/.berth-templates-saved-{os.getpid()}")
    moved = shm.exists()
    if moved:
        shm.rename(saved)  # the machine's templates, put back after
    try:
        shm.mkdir()
        os.chmod(shm, 0o777)
        os.chown(shm, 65534, 65534)
        out = docker(berthd, "run", "--rm", "--isolation", "hyperv", image, "echo", "cold-booted", timeout=300)
        assert out.stdout.strip() == "cold-booted"
        assert list(shm.iterdir()) == [] and os.lstat(shm).st_uid == 65534
    finally:
        shutil.rmtree(shm, ignore_errors=True)
        if moved:
            saved.rename(shm)
    assert_responsive(berthd)


@vm
def test_vm_log_max_size_keeps_the_log_small(berthd, image, names):
    name = names()
    script = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done"
    docker(berthd, "run", "--name", name, "--isolation", "hyperv", "--log-opt", "max-size=1k", image,
           "sh", "-c", script, timeout=180)
    cid = docker(berthd, "inspect", "-f", "{{.Id}}", name).stdout.strip()
    log = Path(berthd.root) / "containers" / cid / "container.log"
    size = log.stat().st_size
    assert 0 < size <= 1024 + 200, size  # the limit, plus at most the record that did not fit
    out = docker(berthd, "logs", name).stdout.split()
    assert out and out[-1] == "line-399" and len(out) < 400, out[:3]
    assert_responsive(berthd)


@vm
def test_vm_logs_follow_across_rotations(berthd, image, names):
    name = names()
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); [ $((i % 10)) = 0 ] && sleep 0.05; done"
    docker(berthd, "create", "--name", name, "--isolation", "hyperv", "--log-opt", "max-size=1k", image,
           "sh", "-c", script)
    docker(berthd, "start", name, timeout=180)
    follow = subprocess.run(["docker", "logs", "-f", name], env=berthd.env, capture_output=True, text=True,
                            timeout=120)
    seen = [int(w.removeprefix("line-")) for w in follow.stdout.split() if w.startswith("line-")]
    assert seen and seen[-1] == 299, follow.stdout[-300:]
    assert seen == sorted(set(seen)), "lines repeated or out of order across rotations"
    assert_responsive(berthd)


# ---- logs -------------------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_logs_of_a_200mb_log_keep_the_daemon_memory_bounded(berthd, image, names):
    name = names()
    docker(berthd, "run", "--name", name, image, "true", timeout=120)
    cid = docker(berthd, "inspect", "-f", "{{.Id}}", name).stdout.strip()
    log = Path(berthd.root) / "containers" / cid / "container.log"
    stamp = "2026-01-02T03:04:05.000000000+00:00"
    line = f"{stamp} stdout F " + "x" * 1000
    block = "".join(f"{line[:-8]}{i:08d}\n" for i in range(1000)).encode()
    with open(log, "wb") as f:
        for _ in range(200 * 1024 * 1024 // len(block) + 1):
            f.write(block)
        f.write(f"{stamp} stdout F the last line\n".encode())
    assert log.stat().st_size > 200 * 1024 * 1024

    pid = berthd.proc.pid
    base = rss_kib(pid)
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with subprocess.Popen(["docker", "logs", name], env=berthd.env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL) as p:
            assert p.stdout is not None
            total, tail = 0, b""
            while chunk := p.stdout.read(1 << 20):
                total += len(chunk)
                tail = (tail + chunk)[-64:]
            assert p.wait(300) == 0
        assert total > 200 * 1000 * 1000 and tail.endswith(b"the last line\n"), (total, tail)
        # --tail reads the end only
        out = docker(berthd, "logs", "--tail", "3", name, timeout=60).stdout.splitlines()
        assert len(out) == 3 and out[-1] == "the last line" and out[0].endswith("00000998"), out
    finally:
        done.set()
        sampler.join()
        log.write_bytes(b"")
    grew_mib = (peak - base) / 1024
    print(f"daemon RSS {base / 1024:.0f} MiB -> peak {peak / 1024:.0f} MiB while streaming the log")
    assert grew_mib < 64, f"the daemon's RSS grew by {grew_mib:.0f} MiB while streaming a 200 MB log"
    assert_responsive(berthd)


# ---- import ------------------------------------------------------------------------------------

def _post_cut(sock_path: str, path: str, headers: dict[str, str], body: bytes) -> None:
    """Send the request head and *body*, then hang up without sending the rest."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    head = f"POST {path} HTTP/1.1\r\nHost: docker\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s.sendall(head.encode() + b"\r\n" + body)
    time.sleep(0.3)
    s.close()


def test_an_import_cut_mid_body_records_nothing(berthd, tmp_path, rootfs_tar):
    root = Path(berthd.root)
    data = Path(rootfs_tar).read_bytes()
    repo = unique_name("cut")
    blobs_before = set(os.listdir(root / "blobs" / "sha256"))
    snaps_before = set(os.listdir(root / "snapshots"))
    half = data[:len(data) // 2]
    _post_cut(berthd.sock, f"/v1.47/images/create?fromSrc=-&repo={repo}&tag=x",
              {"Content-Type": "application/x-tar", "Content-Length": str(len(data))}, half)
    chunked = f"{len(half):x}\r\n".encode() + half + b"\r\n"
    _post_cut(berthd.sock, f"/v1.47/images/create?fromSrc=-&repo={repo}&tag=y",
              {"Content-Type": "application/x-tar", "Transfer-Encoding": "chunked"}, chunked)
    time.sleep(1)
    assert repo not in docker(berthd, "images", "--format", "{{.Repository}}").stdout
    assert set(os.listdir(root / "blobs" / "sha256")) <= blobs_before
    assert {n for n in os.listdir(root / "snapshots") if not n.startswith(".")} <= snaps_before
    assert os.listdir(root / "ingest") == []
    # The whole tar then imports, with its real diff id.
    docker(berthd, "import", str(rootfs_tar), f"{repo}:ok", timeout=120)
    layers = json.loads(docker(berthd, "image", "inspect", f"{repo}:ok").stdout)[0]["RootFS"]["Layers"]
    assert layers == ["sha256:" + hashlib.sha256(data).hexdigest()] and EMPTY not in layers
    docker(berthd, "rmi", f"{repo}:ok", check=False)
    assert_responsive(berthd)
