"""Big and broken uploads never stall the daemon's other clients.

berthd is one asyncio process: `docker load`, `docker import` and `docker build`
stream their request body to disk, and that disk work must run in worker
threads, not on the event loop. Each test sends a 200 MB body slowly over a raw
HTTP connection on the unix socket (in a thread) while the test's main thread
asks /_ping again and again: every answer must come within assert_responsive's
one second. Clients that go away mid-upload leave no spooled file behind.

A page cache absorbs 200 MB without blocking, so a write on the event loop
would go unnoticed on this machine's disk: the slow-disk tests give one daemon
a disk that really is slow. Its spool directories are an ext4 mounted `sync`
on a loop device, and the daemon sits in a blkio cgroup (v1) that allows a few
write operations a second on that device: every write(2) of a spool then takes
a good part of a second, which on the event loop would keep /_ping waiting
for longer than its one second.
Every test ends with assert_responsive and checks the daemon's scratch
directories are empty again.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from berth_e2e_conftest import (
    API_VERSION,
    TARGET,
    Daemon,
    _new_daemon,
    assert_responsive,
    docker,
    unique_name,
    wait_until,
)

pytestmark = pytest.mark.skipif(TARGET != "berthd", reason="berthd's own scratch directories")

MiB = 1 << 20
BIG = 200 * MiB
PACE = 0.01  # seconds between two MiB sent: a 200 MB upload takes a few seconds
SCRATCH = ("tmp", "build", "ingest")  # where load, build and import spool (under the data root)


def _member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


def _big_tar(extra: bytes = b"") -> tuple[int, Iterator[bytes]]:
    """A tar of *extra* (members) then one BIG file of zeros, as (length, chunks of at most 1 MiB)."""
    info = tarfile.TarInfo("junk.bin")
    info.size, info.mode, info.mtime = BIG, 0o644, 0
    head = extra + info.tobuf(format=tarfile.USTAR_FORMAT)
    tail = b"\0" * 1024  # BIG is a multiple of 512: no padding, then the two end blocks

    def chunks() -> Iterator[bytes]:
        yield head
        zeros = bytes(MiB)
        for _ in range(BIG // MiB):
            yield zeros
        yield tail
    return len(head) + BIG + len(tail), chunks()


def _connect(d: Daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(120)
    s.connect(d.sock)
    return s


def _head(method: str, path: str, length: int, content_type: str = "application/x-tar") -> bytes:
    return (f"{method} /v{API_VERSION}{path} HTTP/1.1\r\nHost: docker\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


def _response(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


class SlowUpload(threading.Thread):
    """Send one request with a big body, paced, in a thread; keep the response (or the error)."""

    def __init__(self, d: Daemon, method: str, path: str, length: int, chunks: Iterator[bytes],
                 stop_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self.d, self.method, self.path, self.length, self.chunks = d, method, path, length, chunks
        self.stop_after = stop_after  # bytes of body sent before the client goes away (None: all)
        self.status, self.body, self.error, self.sent = 0, b"", None, 0
        self.start()

    def run(self) -> None:
        try:
            with _connect(self.d) as s:
                s.sendall(_head(self.method, self.path, self.length))
                for chunk in self.chunks:
                    s.sendall(chunk)
                    self.sent += len(chunk)
                    if self.stop_after is not None and self.sent >= self.stop_after:
                        return  # the client goes away mid-body
                    time.sleep(PACE)
                self.status, self.body = _response(s)
        except BaseException as exc:  # reported by the test
            self.error = exc


def _ping_while(d: Daemon, upload: SlowUpload) -> int:
    """assert_responsive over and over until *upload* ends; return how many pings were answered."""
    pings = 0
    while upload.is_alive():
        assert_responsive(d)
        pings += 1
        time.sleep(0.05)
    upload.join()
    assert upload.error is None, f"the upload failed on the client side: {upload.error!r}"
    return pings


def _scratch_empty(d: Daemon) -> bool:
    return all(not os.listdir(Path(d.root) / name) for name in SCRATCH if (Path(d.root) / name).is_dir())


def _stream_messages(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_a_big_slow_load_never_stalls_ping(berthd: Daemon) -> None:
    length, chunks = _big_tar()
    upload = SlowUpload(berthd, "POST", "/images/load?quiet=1", length, chunks)
    assert _ping_while(berthd, upload) > 10
    # the whole body arrived and was read: the archive holds no image, said (as Docker) in a 200 stream
    assert upload.status == 200 and b"errorDetail" in upload.body, upload.body[:500]
    assert b"neither manifest.json nor an OCI index.json" in upload.body
    wait_until(lambda: _scratch_empty(berthd), 30, "the load's spool to be removed")
    assert_responsive(berthd)


def test_a_big_slow_import_never_stalls_ping(berthd: Daemon) -> None:
    repo = unique_name("bigimport")
    length, chunks = _big_tar()
    upload = SlowUpload(berthd, "POST", f"/images/create?fromSrc=-&repo={repo}&tag=latest", length, chunks)
    try:
        assert _ping_while(berthd, upload) > 10
        assert upload.status == 200, upload.body[:500]
        image_id = _stream_messages(upload.body)[-1]["status"]
        assert image_id.startswith("sha256:")
        out = docker(berthd, "image", "inspect", "--format", "{{.Id}} {{.Size}}", f"{repo}:latest").stdout.split()
        assert out[0] == image_id and int(out[1]) >= BIG
    finally:
        docker(berthd, "rmi", "-f", f"{repo}:latest", check=False)
    wait_until(lambda: _scratch_empty(berthd), 30, "the import's ingest to be gone")
    assert_responsive(berthd)


def test_a_big_slow_build_context_never_stalls_ping(berthd: Daemon) -> None:
    tag = unique_name("bigctx") + ":latest"
    length, chunks = _big_tar(_member("Dockerfile", b"FROM scratch\nLABEL berth.test=bigctx\n"))
    upload = SlowUpload(berthd, "POST", f"/build?t={tag}&rm=1", length, chunks)
    try:
        assert _ping_while(berthd, upload) > 10
        assert upload.status == 200, upload.body[:500]
        messages = _stream_messages(upload.body)
        assert not [m for m in messages if "error" in m], messages
        assert any("aux" in m for m in messages), messages
        labels = docker(berthd, "image", "inspect", "--format", "{{json .Config.Labels}}", tag).stdout
        assert json.loads(labels) == {"berth.test": "bigctx"}
    finally:
        docker(berthd, "rmi", "-f", tag, check=False)
    wait_until(lambda: _scratch_empty(berthd), 30, "the build's context to be removed")
    assert_responsive(berthd)


@pytest.mark.parametrize("path", ["/images/load", "/images/create?fromSrc=-&repo=berth-gone-away", "/build"])
def test_a_client_gone_mid_upload_leaves_no_spool(berthd: Daemon, path: str) -> None:
    before = docker(berthd, "images", "-q", "--no-trunc").stdout.split()
    length, chunks = _big_tar(_member("Dockerfile", b"FROM scratch\n"))
    upload = SlowUpload(berthd, "POST", path, length, chunks, stop_after=50 * MiB)
    _ping_while(berthd, upload)
    wait_until(lambda: _scratch_empty(berthd), 30, "the half-received upload to be removed")
    assert docker(berthd, "images", "-q", "--no-trunc").stdout.split() == before
    assert_responsive(berthd)


# --------------------------------------------------------------------------- #
# A slow disk

SLOW_IOPS = 5  # write operations a second allowed to the daemon on the slow device
SLOW_BODY = 6 * MiB
SLOW_DIRS = ("tmp", "build")  # load's and build's spool directories (import's ingest must share blobs' fs)


@pytest.fixture
def slow_daemon(_log_dir: Path, tmp_path: Path) -> Iterator[Daemon]:
    """A berthd whose load and build spool directories are on a sync-mounted, write-throttled disk."""
    image = tmp_path / "slow.img"
    with open(image, "wb") as f:
        f.truncate(128 * MiB)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()
    cgroup = Path("/sys/fs/cgroup/blkio") / f"berth-test-{tmp_path.name}"
    d = _new_daemon(TARGET, _log_dir)
    disk = Path(d.tmp) / "slowdisk"
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", loop], check=True, capture_output=True)
        disk.mkdir()
        subprocess.run(["mount", "-o", "sync", loop, str(disk)], check=True, capture_output=True)
        for name in SLOW_DIRS:
            (disk / name).mkdir()
            (Path(d.root) / name).mkdir(parents=True)
            subprocess.run(["mount", "--bind", str(disk / name), os.path.join(d.root, name)], check=True,
                           capture_output=True)
        d.start()
        rdev = os.stat(loop).st_rdev
        cgroup.mkdir()
        (cgroup / "blkio.throttle.write_iops_device").write_text(
            f"{os.major(rdev)}:{os.minor(rdev)} {SLOW_IOPS}\n")
        assert d.proc is not None
        (cgroup / "cgroup.procs").write_text(str(d.proc.pid))
        yield d
    finally:
        d.stop()  # unmounts everything under its tmp, the slow disk too
        subprocess.run(["losetup", "-d", loop], capture_output=True)
        if cgroup.is_dir():
            wait_until(lambda: not (cgroup / "cgroup.procs").read_text().strip(), 30, "the test cgroup to empty")
            cgroup.rmdir()


def _zeros(total: int) -> Iterator[bytes]:
    for _ in range(total // MiB):
        yield bytes(MiB)


def _slow_body(path: str) -> tuple[int, Iterator[bytes]]:
    """What makes the daemon write to the slow disk as the body arrives.

    A load is extracted as it arrives, so its body is a tar whose one member (zeros) is written out
    there, and refused at its end (no manifest); a build context is spooled whole first, so zeros
    do (a tar that ends at once, refused only once all of it is spooled).
    """
    if path == "/images/load":
        data = _member("junk.bin", bytes(SLOW_BODY - MiB)) + b"\0" * 1024
        return len(data), (data[i:i + MiB] for i in range(0, len(data), MiB))
    return SLOW_BODY, _zeros(SLOW_BODY)


@pytest.mark.parametrize("path, refusal", [
    ("/images/load", b"neither manifest.json nor an OCI index.json"),
    ("/build", b"Dockerfile"),
])
def test_an_upload_to_a_slow_disk_never_stalls_ping(slow_daemon: Daemon, path: str, refusal: bytes) -> None:
    d = slow_daemon
    length, chunks = _slow_body(path)
    upload = SlowUpload(d, "POST", path, length, chunks)
    assert _ping_while(d, upload) > 5
    assert upload.status == 400 or (upload.status == 200 and b"errorDetail" in upload.body), upload.body[:500]
    assert refusal in upload.body, upload.body[:500]
    wait_until(lambda: _scratch_empty(d), 60, "the spooled body to be removed")
    assert_responsive(d)
