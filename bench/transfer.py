#!/usr/bin/env python3
"""The image-transfer benchmark: pull, push, save and load of one image, Debian's dockerd vs berthd,
side by side, with `skopeo copy` as a reference that does not unpack.

    .venv/bin/python bench/transfer.py [--runs 5] [--mib 200] [--layers 6] [--baseline CHECKOUT]
                                       [--engines docker,berth,skopeo] [--out BENCHMARKS.md]

Strategy: reuse bench/run.py's machinery (Engine, summaries, cleanup) and
bench/net.py's care for the host (each berthd gets a bridge name and a subnet
of its own, deleted by name at the end), and change only what moving images
needs:

- The image is made here, by neither engine: the busybox root file system of
  bench/run.py plus --layers layers of random (incompressible) bytes, --mib MiB
  in all, each layer one file /layerN/data. Its blobs are gzipped and pushed
  over HTTP to a Debian docker-registry on 127.0.0.1:<free port>, storage in a
  temporary directory, as a Docker schema 2 manifest. "MB/s" everywhere is the
  image's compressed size in that registry (layers + config, 10^6 bytes)
  divided by the median seconds.
- The registry must be reachable by every engine on loopback, and bench/run.py
  puts dockerd in a network namespace of its own (`unshare --net`), where
  127.0.0.1 is not the host's. Here dockerd runs in the host's namespace
  instead, with `--bridge none --iptables=false --ip-forward=false
  --ip-masq=false`: it then makes no bridge, no rule and no sysctl change.
  With `--bridge none` it deletes a link named docker0 at start (moby's
  removeDefaultBridgeInterface; nothing else), so the script refuses to start
  it when the host has one; berthd's bridges have other names. All engines
  and skopeo then reach the same registry at the same address, and loopback
  registries are insecure (plain HTTP) by default in Docker and in berth.
- Four operations, each timed as the wall clock of the client process (the
  docker CLI, or skopeo), engines interleaved (docker, berth, berth-baseline,
  skopeo, docker, ...), --runs runs each:
  1. pull: before each run every image is removed from the engine
     (`docker rmi`, then `docker image prune -a -f`, untimed; none may be
     left, and the daemon's data root must then hold less than the smallest
     random layer), so every run downloads and unpacks every layer. The
     registry's access log is read after each run: each layer must have been
     sent in full, or the sample is refused. skopeo copies to a new `dir:`
     each time.
  2. push: to a new, empty registry (new storage directory, new port) started
     for each run, and a new repository name, so no blob exists anywhere for
     an existence check or a cross-repository mount to skip. Afterwards the
     pushed image is read back from the registry's storage: same config (image
     id) and every layer decompressing to its diff id.
  3. save: `docker save -o FILE`; the archive's manifest.json must list every
     layer.
  4. load: `docker load -i FILE` of the engine's own archive, after removing
     every image (untimed).
  After the pulls and after the loads, a container on each engine prints the
  sha256 of every /layerN/data, which must be the bytes written here.
- Before each timed run the host's dirty pages are written out (`sync`,
  untimed), so one engine's writes are not paid for by the next.

Everything started (daemons, registries) is stopped and removed at the end,
also on Ctrl-C or SIGTERM. The results go between the transfer markers of
BENCHMARKS.md (bench/run.py keeps that section) and, raw, to
bench/results/transfer-<stamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import http.client
import importlib
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
# bench/run.py and bench/net.py are scripts, not typed packages: load them dynamically
# so their typing stays their business (mypy does not follow these imports).
base: Any = importlib.import_module("run")
net: Any = importlib.import_module("net")

REPO: Path = base.REPO
RESULTS: Path = base.RESULTS
BenchError: type[Exception] = base.BenchError
log: Callable[[str], None] = base.log
Engine = Any  # bench/run.py's Engine dataclass

BEGIN = "<!-- transfer benchmark: begin -->"
END = "<!-- transfer benchmark: end -->"

REGISTRY_BINARY = "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
REPOSITORY = "bench/transfer"  # the image's repository in the pull registry
TAG = "1"
OP_TIMEOUT = 900  # seconds for one pull, push, save or load
OPS = ("pull", "push", "save", "load")
ENGINE_ORDER = ("docker", "berth", "berth-baseline", "skopeo")

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# What a container from the image prints: one "HEX  /layerN/data" line per random layer.
CHECK = ["sh", "-c", "sha256sum /layer*/data"]


# --------------------------------------------------------------------------- pure parts


def layer_sizes(mib: int, layers: int) -> list[int]:
    """*mib* MiB split into *layers* sizes in bytes, as equal as whole bytes allow."""
    each, rest = divmod(mib << 20, layers)
    return [each + (1 if i < rest else 0) for i in range(layers)]


def parse_sums(output: str) -> dict[str, str]:
    """`sha256sum` lines ("HEX  PATH") as {PATH: HEX}."""
    sums = {}
    for line in output.splitlines():
        digest, _, path = line.strip().partition("  ")
        if len(digest) == 64 and path:
            sums[path] = digest
    return sums


# A line of the registry's access log (Apache combined format), for a blob.
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) /v2/\S+?/blobs/(?P<digest>sha256:[0-9a-f]{64})(?:\?\S*)? HTTP/[\d.]+" '
                     r"(?P<status>\d{3}) (?P<bytes>\d+|-)")


def blob_bytes_sent(access_log: str) -> dict[str, int]:
    """Bytes of each blob the registry sent in answers to GET (status 200 or 206), by digest."""
    sent: dict[str, int] = {}
    for m in _ACCESS.finditer(access_log):
        if m["method"] == "GET" and m["status"] in ("200", "206") and m["bytes"] != "-":
            sent[m["digest"]] = sent.get(m["digest"], 0) + int(m["bytes"])
    return sent


def missing_downloads(sent: dict[str, int], layers: Sequence[tuple[str, int]]) -> list[str]:
    """The layers (digest, size) of which *sent* shows fewer bytes than the layer has."""
    return [f"{d[7:19]} ({sent.get(d, 0)} of {size} bytes)" for d, size in layers if sent.get(d, 0) < size]


def sniff(head: bytes) -> str:
    """The compression of a layer blob from its first bytes: "gzip", "zstd" or "none"."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"


def replace_section(text: str, section: str) -> str:
    """*text* with this benchmark's marked section replaced by (or, without one, appended as) *section*."""
    replaced: str = net.replace_section(text, section, BEGIN, END)
    return replaced


# --------------------------------------------------------------------------- the image


@dataclass(frozen=True)
class Layer:
    """One layer blob as written here."""

    path: Path  # the gzipped tar
    digest: str  # of the gzipped tar
    size: int
    diff_id: str  # of the tar


@dataclass(frozen=True)
class SourceImage:
    """The benchmark's image: its blobs and what a container from it must print."""

    layers: tuple[Layer, ...]
    config: bytes
    manifest: bytes
    data_sums: dict[str, str]  # "/layerN/data" -> sha256 hex

    @property
    def config_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.config).hexdigest()

    @property
    def compressed_bytes(self) -> int:
        """What the registry stores for it: the layers and the config (the manifest is not counted)."""
        return sum(layer.size for layer in self.layers) + len(self.config)


class _HashingWriter:
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


class _RandomReader:
    """*size* random bytes to read, hashed as they are read."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = os.urandom(n)
        self.hash.update(data)
        self.left -= n
        return data


def gzip_layer(raw: Path, out: Path) -> Layer:
    """Gzip the tar *raw* into *out* (then delete *raw*); the layer it makes."""
    diff = hashlib.sha256()
    with open(raw, "rb") as src, open(out, "wb") as dst:
        hashing = _HashingWriter(dst)
        # level 1: the payload is random, no level makes it smaller, and this is the fastest
        with gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=hashing, mtime=0) as gz:  # type: ignore[arg-type]
            while chunk := src.read(1 << 20):
                diff.update(chunk)
                gz.write(chunk)
    raw.unlink()
    return Layer(out, "sha256:" + hashing.hash.hexdigest(), hashing.size, "sha256:" + diff.hexdigest())


def random_layer_tar(out: Path, index: int, size: int) -> str:
    """A tar of /layerINDEX/data, *size* random bytes, into *out*; the data's sha256 hex."""
    stamp = 1_700_000_000

    def entry(name: str, kind: bytes, mode: int, length: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.mtime = kind, mode, length, stamp
        info.uname = info.gname = "root"
        return info

    data = _RandomReader(size)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(entry(f"layer{index}", tarfile.DIRTYPE, 0o755))
        tar.addfile(entry(f"layer{index}/data", tarfile.REGTYPE, 0o644, size), data)  # type: ignore[arg-type]
    return data.hash.hexdigest()


def go_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def make_image(directory: Path, busybox_tar: Path, sizes: Sequence[int]) -> SourceImage:
    """Write the image's layers into *directory*: busybox, then one random layer per size."""
    directory.mkdir(parents=True, exist_ok=True)
    layers = [gzip_layer(busybox_tar, directory / "layer0.tar.gz")]
    sums: dict[str, str] = {}
    for i, size in enumerate(sizes, start=1):
        raw = directory / f"layer{i}.tar"
        sums[f"/layer{i}/data"] = random_layer_tar(raw, i, size)
        layers.append(gzip_layer(raw, directory / f"layer{i}.tar.gz"))
    created = "2024-01-01T00:00:00Z"
    config = json.dumps({
        "architecture": go_arch(), "os": "linux", "created": created,
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": created, "created_by": "bench/transfer.py: busybox"}]
        + [{"created": created, "created_by": f"bench/transfer.py: /layer{i}/data, {size} random bytes"}
           for i, size in enumerate(sizes, start=1)],
    }, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_V2,
        "config": {"mediaType": CONFIG_V1, "size": len(config),
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
        "layers": [{"mediaType": LAYER_GZIP, "size": layer.size, "digest": layer.digest} for layer in layers],
    }, indent=3).encode()
    return SourceImage(tuple(layers), config, manifest, sums)


# --------------------------------------------------------------------------- the registry


@dataclass
class Registry:
    """A docker-registry on 127.0.0.1, everything of it (config, storage, log) in *directory*."""

    directory: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_offset: int = 0  # how much of the log read_log has returned

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.directory / "storage"

    @property
    def logfile(self) -> Path:
        return self.directory / "registry.log"

    def read_log(self) -> str:
        """What the registry logged since the last call."""
        try:
            with open(self.logfile, "rb") as f:
                f.seek(self.log_offset)
                data = f.read()
        except OSError:
            return ""
        self.log_offset += len(data)
        return data.decode(errors="replace")


def start_registry(parent: Path, rng: random.Random, registries: list[Registry]) -> Registry:
    """Start a registry with empty storage in a new directory below *parent*; wait until /v2/ answers."""
    reg = Registry(Path(tempfile.mkdtemp(prefix="reg-", dir=parent)), net.free_port(rng))
    registries.append(reg)  # stopped and removed whatever happens next
    reg.storage.mkdir()
    config = {
        "version": "0.1",
        # warn: no line per request from the application log; the access log (stdout) has them
        "log": {"level": "warn", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(reg.storage)},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": reg.address, "secret": secrets.token_hex(16)},
        "health": {"storagedriver": {"enabled": False}},
    }
    (reg.directory / "config.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(reg.logfile, "wb") as lf:
        reg.proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(reg.directory / "config.yml")],
                                    stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if reg.proc.poll() is not None:
            raise BenchError(f"docker-registry exited with {reg.proc.returncode} at start: "
                             f"{base.tail(reg.logfile, 10)}")
        try:
            status, _, _ = http_request(reg.address, "GET", "/v2/")
            if status == 200:
                reg.read_log()  # the probes are not a pull
                return reg
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(f"docker-registry did not answer on {reg.address} within 30 s: {base.tail(reg.logfile, 10)}")


def stop_registry(reg: Registry) -> None:
    """Stop the registry and delete its directory, storage included."""
    proc, reg.proc = reg.proc, None
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    shutil.rmtree(reg.directory, ignore_errors=True)


def http_request(address: str, method: str, path: str, body: bytes | IO[bytes] | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=300, blocksize=1 << 20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def upload_blob(address: str, repo: str, digest: str, size: int, source: Path | bytes) -> None:
    """Push one blob: POST an upload, then PUT all of it with its digest (a monolithic upload)."""
    status, headers, body = http_request(address, "POST", f"/v2/{repo}/blobs/uploads/")
    if status != 202 or "location" not in headers:
        raise BenchError(f"registry {address}: starting an upload answered {status}: {body[:300]!r}")
    url = urllib.parse.urlsplit(urllib.parse.urljoin(f"http://{address}/", headers["location"]))
    query = (url.query + "&" if url.query else "") + "digest=" + urllib.parse.quote(digest)
    put_headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    if isinstance(source, Path):
        with open(source, "rb") as f:
            status, _, body = http_request(address, "PUT", f"{url.path}?{query}", f, put_headers)
    else:
        status, _, body = http_request(address, "PUT", f"{url.path}?{query}", source, put_headers)
    if status != 201:
        raise BenchError(f"registry {address}: uploading {digest[:19]} answered {status}: {body[:300]!r}")


def push_source(reg: Registry, image: SourceImage) -> str:
    """Push *image* to *reg* as REPOSITORY:TAG; the manifest's digest."""
    for layer in image.layers:
        upload_blob(reg.address, REPOSITORY, layer.digest, layer.size, layer.path)
    upload_blob(reg.address, REPOSITORY, image.config_digest, len(image.config), image.config)
    status, headers, body = http_request(reg.address, "PUT", f"/v2/{REPOSITORY}/manifests/{TAG}", image.manifest,
                                         {"Content-Type": MANIFEST_V2})
    if status != 201:
        raise BenchError(f"registry {reg.address}: putting the manifest answered {status}: {body[:300]!r}")
    reg.read_log()  # the upload is not a pull
    return headers.get("docker-content-digest", "")


def check_pushed(reg: Registry, repo: str, image: SourceImage) -> tuple[str, dict[str, Any]]:
    """Read what was pushed to *repo*:TAG back from the registry's storage.

    Returns why it is not *image* ("" if it is: the same config, and as many layers, each
    decompressing to its diff id) and what was found (media types, sizes).
    """
    v2 = reg.storage / "docker" / "registry" / "v2"

    def blob(digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        return v2 / "blobs" / algo / hexd[:2] / hexd / "data"

    link = v2 / "repositories" / repo / "_manifests" / "tags" / TAG / "current" / "link"
    try:
        manifest = json.loads(blob(link.read_text().strip()).read_bytes())
    except (OSError, ValueError) as e:
        return f"no readable manifest for {repo}:{TAG} in the registry ({e})", {}
    found: dict[str, Any] = {"media_type": manifest.get("mediaType", ""),
                             "layers": [{k: x.get(k) for k in ("mediaType", "size", "digest")}
                                        for x in manifest.get("layers", [])]}
    # the same blobs as the source: uploaded as pulled, not compressed again
    found["source_blobs"] = [x.get("digest") for x in manifest.get("layers", [])] == \
        [layer.digest for layer in image.layers]
    found["compressed_bytes"] = sum(x.get("size", 0) for x in manifest.get("layers", [])) + \
        manifest.get("config", {}).get("size", 0)
    if manifest.get("config", {}).get("digest") != image.config_digest:
        return (f"pushed config {manifest.get('config', {}).get('digest')}, not the image's "
                f"{image.config_digest}"), found
    layers = manifest.get("layers", [])
    if len(layers) != len(image.layers):
        return f"pushed {len(layers)} layers, the image has {len(image.layers)}", found
    for i, (desc, want) in enumerate(zip(layers, image.layers, strict=True)):
        got = diff_id_of(blob(desc["digest"]))
        if got != want.diff_id:
            return f"layer {i} ({desc['digest'][:19]}) unpacks to {got[:19]}, not {want.diff_id[:19]}", found
    return "", found


def diff_id_of(path: Path) -> str:
    """The sha256 of a layer blob's tar, decompressed as its first bytes say."""
    import zstandard  # berth's dependency, in the venv

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as raw:
            kind = sniff(raw.read(4))
            raw.seek(0)
            stream: Any = gzip.GzipFile(fileobj=raw) if kind == "gzip" else \
                zstandard.ZstdDecompressor().stream_reader(raw) if kind == "zstd" else raw
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, zstandard.ZstdError) as e:
        return f"unreadable ({e})"
    return "sha256:" + digest.hexdigest()


# --------------------------------------------------------------------------- engines


def start_docker_host_net(workdir: Path, logdir: Path, env: dict[str, str], launched: list[Engine]) -> Engine:
    """Debian's dockerd in the host's network namespace, with no bridge, rule or sysctl of its own.

    Raises:
        BenchError: the host has a docker0, which dockerd --bridge none would delete; or dockerd did not start.
    """
    if Path("/sys/class/net/docker0").exists():
        raise BenchError("docker: the host has a link named docker0, which dockerd started with --bridge none "
                         "deletes; not starting it (remove docker0 or free the name)")
    d = workdir
    eng = base.Engine("docker", d, d / "docker.sock", logdir / "dockerd.log", env)
    launched.append(eng)  # cleaned up whatever happens next
    (d / "daemon.json").write_text("{}\n")  # and not /etc/docker/daemon.json, if there is one
    argv = [base.DOCKERD, "--bridge", "none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
            "--config-file", str(d / "daemon.json"), "--data-root", f"{d}/root", "--exec-root", f"{d}/exec",
            "--pidfile", f"{d}/pid", "-H", f"unix://{d}/docker.sock"]
    with open(eng.logfile, "wb") as lf:
        eng.launcher = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
    eng.started = True
    eng.wait_ping(60)
    eng.daemon_pids = base.descendants(base.snapshot(), {eng.launcher.pid})
    log(f"dockerd up in the host's network namespace (--bridge none, no iptables, no ip_forward): "
        f"pid {eng.launcher.pid}")
    return eng


@dataclass
class Participant:
    """One column of the comparison: an engine driven by the docker CLI, or skopeo (engine None)."""

    name: str
    engine: Engine | None
    label: str  # as the tables print it


def pulled_ref(reg: Registry) -> str:
    return f"{reg.address}/{REPOSITORY}:{TAG}"


def clear_images(eng: Engine) -> None:
    """Remove every image from *eng* (untimed): `docker rmi`, then `docker image prune -a -f`.

    Raises:
        BenchError: an image is still listed afterwards.
    """
    ids = sorted(set(eng.docker(["images", "-aq"], timeout=60).stdout.split()))
    if ids:
        eng.docker(["rmi", "-f", *ids], timeout=300, check=False)
    eng.docker(["image", "prune", "-a", "-f"], timeout=300, check=False)
    left = eng.docker(["images", "-a", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"], timeout=60).stdout.split("\n")
    left = [x for x in left if x.strip()]
    if left:
        raise BenchError(f"{eng.name}: images remain after `docker rmi` and `docker image prune -a -f`: {left}")


def disk_usage(top: Path) -> int:
    """Bytes allocated to the files below *top* (as du counts them), on *top*'s file system only."""
    try:
        dev = top.lstat().st_dev
    except OSError:
        return 0
    total = 0
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if st.st_dev == dev:
                total += st.st_blocks * 512
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == dev]
    return total


def verify_content(eng: Engine, ref: str, want: dict[str, str]) -> tuple[bool, str]:
    """Run CHECK in a container of *ref*; whether it printed the sums *want*, and what it printed."""
    cp = eng.docker(["run", "--rm", "--network", "none", ref, *CHECK], timeout=300, check=False)
    ok = cp.returncode == 0 and parse_sums(cp.stdout) == want
    return ok, (cp.stdout + cp.stderr).strip()[:1500]


def archive_layers(path: Path) -> tuple[int, str]:
    """How many layers the first image of a `docker save` archive's manifest.json lists (-1: none
    found), and how its last layer is stored ("gzip", "zstd", "none"; "?" if unreadable)."""
    try:
        with tarfile.open(path, "r:") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                return -1, "?"
            doc = json.loads(member.read())
            if not isinstance(doc, list) or not doc or not doc[0].get("Layers"):
                return -1, "?"
            layers = doc[0]["Layers"]
            last = tar.extractfile(layers[-1])
            return len(layers), sniff(last.read(4)) if last is not None else "?"
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return -1, "?"


def file_system(path: Path) -> str:
    """"TYPE on DEVICE (mounted at POINT)" for the mount *path* lies on, from /proc/self/mounts."""
    best = ("", "?", "?")
    for line in base.read("/proc/self/mounts").splitlines():
        dev, point, kind = (line.split() + ["", "", ""])[:3]
        point = point.encode().decode("unicode_escape")
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, kind, dev)
    return f"{best[1]} on {best[2]} (mounted at {best[0] or '?'})"


def run_client(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a client (skopeo) with no stdin; its output captured."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"`{' '.join(argv[:3])} ...` timed out after {timeout} s") from e


# --------------------------------------------------------------------------- the operations


@dataclass
class Bench:
    """What every operation needs: the image, the registries, where files go, the results."""

    image: SourceImage
    pull_reg: Registry
    scratch: Path
    logdir: Path
    env: dict[str, str]
    rng: random.Random
    registries: list[Registry]
    errors: dict[str, str]
    kept_outputs: set[str] = field(default_factory=set)
    push_found: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    archive_bytes: dict[str, int] = field(default_factory=dict)
    archive_layers: dict[str, str] = field(default_factory=dict)  # how the layers are stored: gzip, none, ...
    root_after_clear: dict[str, list[int]] = field(default_factory=dict)  # bytes left in the data root

    @property
    def ref(self) -> str:
        return pulled_ref(self.pull_reg)

    def keep_output(self, op: str, who: str, argv: Sequence[str], cp: subprocess.CompletedProcess[str]) -> None:
        """Keep the first output of each operation and participant in the log directory."""
        key = f"{op}-{who}"
        if key in self.kept_outputs:
            return
        self.kept_outputs.add(key)
        (self.logdir / f"{key}.txt").write_text(f"$ {' '.join(argv)}\n--- stdout\n{cp.stdout}\n"
                                                f"--- stderr\n{cp.stderr}\n")

    def timed(self, op: str, p: Participant, argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Sync, then run one client command and time it; BenchError if it failed."""
        os.sync()
        t0 = time.perf_counter()
        if p.engine is not None:
            cp = p.engine.docker(argv, timeout=OP_TIMEOUT, check=False)
            shown = ["docker", *argv]
        else:
            cp = run_client([SKOPEO, *argv], self.env, OP_TIMEOUT)
            shown = ["skopeo", *argv]
        secs = time.perf_counter() - t0
        self.keep_output(op, p.name, shown, cp)
        if cp.returncode != 0:
            if p.engine is not None:
                raise BenchError(p.engine.failure(argv, cp))
            raise BenchError(f"skopeo: `{' '.join(shown)}` exited {cp.returncode}: "
                             f"{(cp.stderr or cp.stdout).strip()[:2000]}")
        return secs, cp

    def check_downloads(self, p: Participant) -> None:
        """Every layer must have left the pull registry in full since the last look at its log."""
        want = [(layer.digest, layer.size) for layer in self.image.layers]
        sent: dict[str, int] = {}
        deadline = time.monotonic() + 3  # the access log line is written as the answer ends
        while True:
            for digest, n in blob_bytes_sent(self.pull_reg.read_log()).items():
                sent[digest] = sent.get(digest, 0) + n
            missing = missing_downloads(sent, want)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if missing:
            raise BenchError(f"{p.name}: the pull did not download every layer from the registry (its access log "
                             f"shows, for {', '.join(missing)}): a layer was kept from before, so the sample "
                             "would not measure a full pull")

    def clear(self, p: Participant) -> None:
        """Remove every image from the engine (untimed); then no layer of the image may stay in its data root."""
        assert p.engine is not None
        clear_images(p.engine)
        left = disk_usage(p.engine.workdir / "root")
        self.root_after_clear.setdefault(p.name, []).append(left)
        smallest = min(layer.size for layer in self.image.layers[1:])
        if left > smallest:
            raise BenchError(f"{p.name}: after `docker rmi` and `docker image prune -a -f` its data root still "
                             f"holds {left / 1e6:.1f} MB, more than the smallest random layer "
                             f"({smallest / 1e6:.1f} MB): a layer stayed")

    # -- pull

    def skopeo_dir(self, i: int) -> Path:
        return self.scratch / f"skopeo-pull-{i}"

    def pull(self, p: Participant, i: int) -> float:
        if p.engine is None:
            if i > 0:
                shutil.rmtree(self.skopeo_dir(i - 1), ignore_errors=True)
            dest = self.skopeo_dir(i)
            self.pull_reg.read_log()
            secs, _ = self.timed("pull", p, ["copy", "--insecure-policy", "--src-tls-verify=false",
                                             f"docker://{self.ref}", f"dir:{dest}"])
        else:
            self.clear(p)
            self.pull_reg.read_log()
            secs, cp = self.timed("pull", p, ["pull", self.ref])
            if "Downloaded newer image" not in cp.stdout:
                raise BenchError(f"{p.name}: `docker pull` did not report `Downloaded newer image`:\n"
                                 f"{cp.stdout.strip()[-800:]}")
        self.check_downloads(p)
        return secs

    def verify_skopeo_dir(self, i: int) -> tuple[bool, str]:
        """The last skopeo pull's directory: every layer file present with its digest."""
        d = self.skopeo_dir(i)
        for layer in self.image.layers:
            path = d / layer.digest.partition(":")[2]
            try:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            except OSError as e:
                return False, f"{path}: {e}"
            if "sha256:" + h.hexdigest() != layer.digest:
                return False, f"{path.name}: content has sha256 {h.hexdigest()[:12]}"
        return True, f"{len(self.image.layers)} layer files, digests right"

    # -- push

    def push(self, p: Participant, i: int, last_pull: int) -> float:
        for reg in [r for r in self.registries if r is not self.pull_reg]:
            stop_registry(reg)  # the previous run's: every push starts from an empty registry
            self.registries.remove(reg)
        reg = start_registry(self.scratch, self.rng, self.registries)
        repo = f"bench/push-{p.name}-{i + 1}"
        target = f"{reg.address}/{repo}:{TAG}"
        if p.engine is None:
            secs, _ = self.timed("push", p, ["copy", "--insecure-policy", "--dest-tls-verify=false",
                                             f"dir:{self.skopeo_dir(last_pull)}", f"docker://{target}"])
        else:
            p.engine.docker(["tag", self.ref, target], timeout=60)
            try:
                secs, _ = self.timed("push", p, ["push", target])
            finally:
                p.engine.docker(["rmi", target], timeout=120, check=False)  # the tag only
        why, found = check_pushed(reg, repo, self.image)
        self.push_found.setdefault(p.name, []).append(found)
        if why:
            raise BenchError(f"{p.name}: pushed {target}, but {why}")
        return secs

    # -- save and load

    def archive(self, p: Participant) -> Path:
        return self.scratch / f"save-{p.name}.tar"

    def save(self, p: Participant, i: int) -> float:
        assert p.engine is not None
        out = self.archive(p)
        out.unlink(missing_ok=True)
        secs, _ = self.timed("save", p, ["save", "-o", str(out), self.ref])
        n, stored = archive_layers(out)
        if n != len(self.image.layers):
            raise BenchError(f"{p.name}: `docker save` wrote {out.name}, whose manifest.json lists "
                             f"{'no image' if n < 0 else f'{n} layers'}, not {len(self.image.layers)}")
        self.archive_bytes[p.name] = out.stat().st_size
        self.archive_layers[p.name] = stored
        return secs

    def load(self, p: Participant, i: int) -> float:
        assert p.engine is not None
        self.clear(p)
        secs, cp = self.timed("load", p, ["load", "-i", str(self.archive(p))])
        if "Loaded image" not in cp.stdout:
            raise BenchError(f"{p.name}: `docker load` did not report `Loaded image`: {cp.stdout.strip()[:500]}")
        p.engine.docker(["image", "inspect", "-f", "{{.Id}}", self.ref], timeout=60)
        return secs


def interleaved(participants: Sequence[Participant], once: Callable[[Participant, int], float], runs: int,
                op: str, mb: float, errors: dict[str, str]) -> dict[str, list[float]]:
    """Run each participant in turn, *runs* times each; one that fails drops out of this operation."""
    live = list(participants)
    samples: dict[str, list[float]] = {p.name: [] for p in live}
    for i in range(runs):
        for p in list(live):
            try:
                secs = once(p, i)
                samples[p.name].append(secs)
                log(f"{op} [{p.name}] {i + 1}/{runs}: {secs:.2f} s ({mb / secs:.0f} MB/s)")
            except BenchError as e:
                errors[f"{p.name}: {op}"] = str(e)
                log(f"FAILED: {e}")
                live.remove(p)
    return {n: s for n, s in samples.items() if s}


def summary(samples: list[float], mb: float) -> dict[str, Any]:
    out: dict[str, Any] = base.summarize(samples)
    out["median_s"] = out["median_ms"] / 1000
    out["mb_s"] = mb / out["median_s"]
    return out


# --------------------------------------------------------------------------- report


def _s(r: dict[str, Any] | None, key: str) -> str:
    return "—" if not r else f"{r[key] / 1000:.2f} s"


def _mbs(r: dict[str, Any] | None) -> str:
    return "—" if not r else f"{r['mb_s']:.0f}"


def render(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md section, markers included."""
    m, cfg, img = res["machine"], res["config"], res.get("image") or {}
    labels = res.get("labels") or {}
    baseline = res.get("baseline")
    L = [BEGIN, "## Image transfer: berth vs Docker (pull, push, save, load)\n",
         "Generated by `bench/transfer.py` (bench/run.py keeps this section when it rewrites the file); "
         "do not edit by hand. Rerun to refresh.\n"]
    L.append(f"- Date: {res['date']}; CPU: {m['nproc']} × {m['cpu']}; memory {m['mem_total_mib']} MiB; "
             f"kernel {m['kernel']}; client: {m['docker_cli']}")
    L.append(f"- Docker: {res['versions'].get('docker', 'not started')}; dockerd in the host's network namespace "
             "with `--bridge none --iptables=false --ip-forward=false --ip-masq=false`, its defaults otherwise "
             "(3 concurrent downloads, 5 concurrent uploads)")
    L.append(f"- berth: {res['versions'].get('berth', 'not started')}; default bridge `{cfg.get('berth_bridge', '?')}` "
             f"{cfg.get('berth_bip', '?')} (unused: the checks run with `--network none`)")
    if baseline:
        L.append(f"- berth at {baseline}: {res['versions'].get('berth-baseline', 'not started')} "
                 f"(`bench/baseline.sh {baseline}`), bridge `{cfg.get('baseline_bridge', '?')}` "
                 f"{cfg.get('baseline_bip', '?')}")
    L.append(f"- Reference: {res['versions'].get('skopeo', 'not run')}; registry: "
             f"{res['versions'].get('registry', '?')}")
    L.append(f"- Load average at start / end: {m['loadavg_start']} / {res.get('loadavg_end', '?')}\n")

    mb = img.get("compressed_bytes", 0) / 1e6
    sizes = cfg.get("layer_bytes", [])
    L.append("### How it was measured\n")
    L.append(f"One image, made by the script and pushed over HTTP to a Debian docker-registry on 127.0.0.1 "
             f"(storage in a temporary directory): busybox plus {len(sizes)} layers of random, incompressible "
             f"bytes ({cfg.get('mib', '?')} MiB in all; each layer one file `/layerN/data` of "
             f"{', '.join(f'{s / 1048576:.2f}' for s in sizes)} MiB), gzipped, as a Docker schema 2 manifest: "
             f"{len(img.get('layers', []))} layers, **{mb:.1f} MB compressed** (layers + config, 10^6 bytes). "
             "MB/s below is that size divided by the median time, for every operation, so the columns compare "
             "directly.\n")
    L.append("**How each engine reached the registry.** bench/run.py's dockerd lives in a network namespace of its own, "
             "where 127.0.0.1 is not the host's; here dockerd runs in the host's namespace instead, with no "
             "bridge, no iptables rules, no ip_forward or masquerade change (the script refuses to start it if the "
             "host has a link named docker0, which dockerd deletes when started with `--bridge none`). So dockerd, "
             "berthd and skopeo all reached the registry at the same `127.0.0.1:PORT`, over the host's loopback, "
             "as plain HTTP: loopback registries are insecure by default in Docker and in berth, and skopeo was "
             "told `--src-tls-verify=false` / `--dest-tls-verify=false`.\n")
    L.append(f"Each figure is the wall clock of the client process (the docker CLI, or skopeo), start to exit; "
             f"{res['runs']} runs each, engines interleaved ({', '.join(labels.get(n, n) for n in res.get('order', []))}, "
             "then again); `sync` (untimed) before every run. "
             "Ratios are of median times, same run: below 1 is faster than Docker.\n")
    L.append("- **pull**: `docker pull 127.0.0.1:PORT/bench/transfer:1`. Before each run every image is removed "
             "from that engine (`docker rmi`, then `docker image prune -a -f`, untimed; nothing may stay listed and "
             "the daemon's data root must then hold less than the smallest random layer), "
             "and after it the registry's access log must show every layer sent in full, so each sample is a full "
             "download and unpack. skopeo: `skopeo copy docker://… dir:NEW_DIR` (downloads and checks digests, "
             "does not unpack).")
    L.append("- **push**: `docker push 127.0.0.1:PORT2/bench/push-ENGINE-N:1` of the pulled image, to a **new, "
             "empty registry (new storage directory and port) started for each run**, and a new repository name, "
             "so no blob exists anywhere: no existence check (Docker's HEAD per digest and repository) or "
             "cross-repository mount can skip an upload. Docker compresses the layers again as it pushes; "
             "skopeo pushes the compressed blobs of its `dir:` copy as they are.")
    L.append("- **save**: `docker save -o FILE 127.0.0.1:PORT/bench/transfer:1` to a new file in /tmp "
             f"({cfg.get('tmp_fs', '?')}; the daemons' data roots are there too). "
             "**load**: `docker load -i FILE` of the engine's own archive, after removing every image (untimed).")
    L.append("- Checks: the pushed image is read back from the registry's storage after every push (the same config, "
             "i.e. image id, and every layer decompressing to its diff id); every saved archive's manifest.json "
             "must list every layer; after the pulls and after the loads a container on each engine "
             "(`docker run --rm --network none IMAGE sh -c 'sha256sum /layer*/data'`) must print the sha256 of "
             "the bytes written: " + (", ".join(f"{k} {'right' if v['ok'] else 'WRONG'}"
                                              for k, v in sorted(res.get('verified', {}).items())) or "none ran")
             + ".\n")

    names = res.get("order", [])
    for op in OPS:
        t = res["timings"].get(op, {})
        if not t and not any(k.endswith(f": {op}") for k in res["errors"]):
            continue
        L.append(f"### {op}\n")
        head = "| engine | runs | median | p10 | p90 | MB/s | ÷ Docker |"
        rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        if baseline:
            head += f" berth now ÷ berth at {baseline} |"
            rule += " ---: |"
        L.append(head)
        L.append(rule)
        d = t.get("docker")
        for name in names:
            if op in ("save", "load") and name == "skopeo":
                continue
            r = t.get(name)
            ratio = f"{r['median_ms'] / d['median_ms']:.2f}" if d and r and name != "docker" else ""
            row = (f"| {labels.get(name, name)} | {r['n'] if r else 0} | {_s(r, 'median_ms')} | {_s(r, 'p10_ms')} | "
                   f"{_s(r, 'p90_ms')} | {_mbs(r)} | {ratio} |")
            if baseline:
                b = t.get("berth-baseline")
                row += f" {r['median_ms'] / b['median_ms']:.2f} |" if name == "berth" and r and b else " |"
            L.append(row)
        if op == "push" and res.get("push_found"):
            what = []
            for n, found in res["push_found"].items():
                if found:
                    how = "the blobs it pulled, as they were" if found[-1].get("source_blobs") else \
                        "layers it compressed again"
                    what.append(f"{labels.get(n, n)} {how} ({found[-1].get('compressed_bytes', 0) / 1e6:.1f} MB)")
            L.append("\nWhat each push uploaded (layers + config): " + "; ".join(what) + ".")
        if op == "save" and res.get("archive_bytes"):
            stored = res.get("archive_layers", {})
            L.append("\nArchives: " + "; ".join(
                f"{labels.get(n, n)} {v / 1e6:.1f} MB, layers "
                + {"gzip": "gzipped", "none": "uncompressed"}.get(stored.get(n, "?"), stored.get(n, "?"))
                for n, v in res["archive_bytes"].items()) + ".")
        L.append("")
    if baseline:
        L.append(f"### Against berth at {baseline}\n")
        for op in OPS:
            t = res["timings"].get(op, {})
            now, then = t.get("berth"), t.get("berth-baseline")
            if now and then:
                change = now["median_ms"] / then["median_ms"] - 1
                L.append(f"- {op}: {then['median_ms'] / 1000:.2f} s then, {now['median_ms'] / 1000:.2f} s now "
                         f"(medians), {change:+.1%}: "
                         + ("within" if change <= 0.05 else "more than") + " the +5 % bench/run.py allows "
                         f"(p10–p90 now {now['p10_ms'] / 1000:.2f}–{now['p90_ms'] / 1000:.2f} s, then "
                         f"{then['p10_ms'] / 1000:.2f}–{then['p90_ms'] / 1000:.2f} s"
                         + ("; the ranges overlap, so the difference is within this run's spread"
                            if now["p10_ms"] <= then["p90_ms"] and then["p10_ms"] <= now["p90_ms"] else "")
                         + ").")
            else:
                L.append(f"- {op}: not measured for both in this run.")
        L.append("")
    if res["errors"]:
        L.append("### Failures in this run\n")
        for what, msg in res["errors"].items():
            L.append(f"- **{what}**:\n\n  ```\n  " + msg.replace("\n", "\n  ") + "\n  ```")
        L.append("")
    L.append("### How to reproduce\n")
    L.append("As root, with what bench/run.py needs (Debian's `docker.io`, `runc`, `conmon`, the docker CLI), "
             "`nft` for berthd, and Debian's `docker-registry` and `skopeo`, from the repository root:\n")
    base_arg = f" --baseline \"$(bash bench/baseline.sh {baseline})\"" if baseline else ""
    L.append(f"```\n.venv/bin/python bench/transfer.py --runs {res['runs']} --mib {cfg.get('mib')} "
             f"--layers {len(sizes)}{base_arg}\n```\n")
    raw = res.get("raw")
    L.append("Raw durations, the image's digests and each engine's first output of each operation are kept in "
             "`bench/results/` (git-ignored)" + (f"; this section was written from `{raw}`." if raw else "."))
    L.append(END)
    return "\n".join(L)


def write_section(out: Path, section: str) -> None:
    text = out.read_text() if out.exists() else ""
    out.write_text(replace_section(text, section))


# --------------------------------------------------------------------------- main


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@dataclass
class Started:
    """Everything this run started or made on the host, to stop and remove at the end."""

    engines: list[Engine] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    registries: list[Registry] = field(default_factory=list)
    berth_objects: list[Any] = field(default_factory=list)  # bench/net.py's BerthObjects, one per berthd


def start_engines(args: argparse.Namespace, res: dict[str, Any], started: Started, logdir: Path,
                  env: dict[str, str], rng: random.Random) -> list[Participant]:
    """Start the daemons asked for (and skopeo's stand-in); the participants that came up, in ENGINE_ORDER."""
    from berth.api.wiring import nft_table  # the venv's berth

    errors: dict[str, str] = res["errors"]
    want = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in want if e not in ("docker", "berth", "skopeo")]
    if unknown:
        raise BenchError(f"unknown engine(s) {unknown}: --engines takes docker, berth and skopeo")
    if args.baseline:
        want.append("berth-baseline")
    berths = [n for n in want if n.startswith("berth")]
    subnets = net.free_subnets(net.host_networks(), max(len(berths), 1), rng)
    out: list[Participant] = []
    for name in [n for n in ENGINE_ORDER if n in want]:
        if name == "skopeo":
            cp = run_client([SKOPEO, "--version"], env, 30)
            res["versions"]["skopeo"] = cp.stdout.strip() or "skopeo (version unknown)"
            out.append(Participant("skopeo", None, "skopeo (no unpack)"))
            continue
        d = Path(tempfile.mkdtemp(prefix=f"bt{name[0]}-", dir="/tmp"))
        started.dirs.append(d)
        try:
            if name == "docker":
                eng = start_docker_host_net(d, logdir, env, started.engines)
                label = "docker"
            else:
                sub = subnets[berths.index(name)]
                bridge = f"btb{rng.randrange(16 ** 6):06x}"  # 9 characters, under IFNAMSIZ
                bip = f"{next(sub.hosts())}/{sub.prefixlen}"
                key = "berth" if name == "berth" else "baseline"
                res["config"].update({f"{key}_bridge": bridge, f"{key}_bip": bip})
                started.berth_objects.append(net.BerthObjects([bridge], nft_table(f"{d}/root")))
                berthd = base.BERTHD if name == "berth" else args.baseline / ".venv" / "bin" / "berthd"
                eng = base.start_berth(d, logdir, env, started.engines, name, ("--bridge", bridge, "--bip", bip),
                                       berthd=berthd)
                label = "berth" if name == "berth" else f"berth at {res['baseline']}"
            res["versions"][name] = base.engine_version(eng)
            if name == "berth":
                res["versions"][name] += base.source_state()
            out.append(Participant(name, eng, label))
        except BenchError as e:
            errors[f"{name}: start"] = str(e)
            log(f"FAILED {name}: {e}")
    return out


def measure(args: argparse.Namespace, res: dict[str, Any], started: Started, scratch: Path, logdir: Path,
            env: dict[str, str]) -> None:
    from berth.testing.rootfs import write_rootfs_tar  # the venv's berth

    errors: dict[str, str] = res["errors"]
    rng = random.Random()
    participants = start_engines(args, res, started, logdir, env, rng)
    res["order"] = [p.name for p in participants]
    res["labels"] = {p.name: p.label for p in participants}

    sizes = layer_sizes(args.mib, args.layers)
    res["config"].update(layer_bytes=sizes, tmp_fs=file_system(scratch))
    t0 = time.perf_counter()
    image = make_image(scratch / "image", write_rootfs_tar(scratch / "busybox.tar"), sizes)
    res["image"] = {"layers": [{"digest": x.digest, "size": x.size, "diff_id": x.diff_id} for x in image.layers],
                    "config_digest": image.config_digest, "compressed_bytes": image.compressed_bytes,
                    "data_sha256": image.data_sums}
    pull_reg = start_registry(scratch, rng, started.registries)
    res["image"]["manifest_digest"] = push_source(pull_reg, image)
    mb = image.compressed_bytes / 1e6
    log(f"image {pull_reg.address}/{REPOSITORY}:{TAG}: {len(image.layers)} layers, {mb:.1f} MB compressed, "
        f"made and pushed in {time.perf_counter() - t0:.1f} s")

    bench = Bench(image, pull_reg, scratch, logdir, env, rng, started.registries, errors)
    engines = [p for p in participants if p.engine is not None]
    skopeo = [p for p in participants if p.engine is None]

    def content_check(when: str, among: Iterable[Participant]) -> None:
        for p in among:
            assert p.engine is not None
            ok, printed = verify_content(p.engine, bench.ref, image.data_sums)
            res["verified"][f"{p.name} after {when}"] = {"ok": ok, "printed": printed}
            if not ok:
                errors[f"{p.name}: content after {when}"] = (
                    f"`docker run --rm --network none {bench.ref} {' '.join(CHECK)}` printed:\n{printed}\n"
                    f"expected: {json.dumps(image.data_sums)}")
            log(f"{p.name}: content after {when} {'right' if ok else 'WRONG: ' + printed[:300]}")

    def timings(op: str, samples: dict[str, list[float]]) -> None:
        res["timings"][op] = {n: summary(s, mb) for n, s in samples.items()}
        for n, r in res["timings"][op].items():
            log(f"{op} [{n}]: median {r['median_s']:.2f} s, {r['mb_s']:.0f} MB/s (n={r['n']})")

    timings("pull", interleaved(participants, bench.pull, args.runs, "pull", mb, errors))
    have_image = [p for p in engines if p.name in res["timings"]["pull"]]
    content_check("pull", have_image)
    for p in skopeo:
        if p.name in res["timings"]["pull"]:
            ok, what = bench.verify_skopeo_dir(res["timings"]["pull"][p.name]["n"] - 1)
            res["verified"]["skopeo after pull"] = {"ok": ok, "printed": what}
            if not ok:
                errors["skopeo: pulled directory"] = what

    last = res["timings"]["pull"].get("skopeo", {}).get("n", 0) - 1

    def push_once(p: Participant, i: int) -> float:
        return bench.push(p, i, last)

    pushers = have_image + [p for p in skopeo if last >= 0]
    timings("push", interleaved([p for p in participants if p in pushers], push_once, args.runs, "push", mb, errors))
    res["pushed_bytes"] = {n: found[-1].get("compressed_bytes", 0) for n, found in bench.push_found.items() if found}
    res["push_found"] = bench.push_found
    res["root_bytes_after_clear"] = bench.root_after_clear

    timings("save", interleaved(have_image, bench.save, args.runs, "save", mb, errors))
    res["archive_bytes"] = bench.archive_bytes
    res["archive_layers"] = bench.archive_layers
    savers = [p for p in have_image if p.name in res["timings"]["save"]]
    timings("load", interleaved(savers, bench.load, args.runs, "load", mb, errors))
    content_check("load", [p for p in savers if p.name in res["timings"]["load"]])
    res["root_bytes_after_clear"] = bench.root_after_clear


def main() -> int:
    ap = argparse.ArgumentParser(description="docker vs berthd image transfer benchmark (pull, push, save, load)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per engine and operation (default 5)")
    ap.add_argument("--mib", type=int, default=200, help="MiB of random bytes in the image's layers (default 200)")
    ap.add_argument("--layers", type=int, default=6, help="random layers on top of busybox (default 6)")
    ap.add_argument("--engines", default="docker,berth,skopeo", help="comma list, default docker,berth,skopeo")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                    help="also measure the berthd of an earlier checkout (made by bench/baseline.sh REF), "
                         "interleaved with the rest: the regression check")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--from-json", type=Path, help="only rewrite the section of --out from an earlier run's JSON")
    args = ap.parse_args()
    if args.from_json:
        write_section(args.out, render(json.loads(args.from_json.read_text())))
        return 0
    if os.geteuid() != 0:
        print("run as root (dockerd, runc and berthd's bridge need it)", file=sys.stderr)
        return 2
    if args.runs < 1 or args.mib < 1 or args.layers < 1:
        print("--runs, --mib and --layers must be at least 1", file=sys.stderr)
        return 2
    if args.baseline and not (args.baseline / ".venv" / "bin" / "berthd").exists():
        print(f"--baseline {args.baseline}: no .venv/bin/berthd there (make it with bench/baseline.sh REF)",
              file=sys.stderr)
        return 2
    for tool in (REGISTRY_BINARY, SKOPEO):
        if not os.access(tool, os.X_OK):
            print(f"{tool} is missing: apt-get install -y docker-registry skopeo", file=sys.stderr)
            return 2

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background

    session = base.new_session("transfer", "btx-")
    stamp, logdir, scratch = session.stamp, session.logdir, session.scratch
    env = {**session.env, "TMPDIR": str(scratch)}
    started = Started(dirs=[scratch])

    res: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "runs": args.runs,
        "machine": base.machine_info(), "versions": {}, "config": {"mib": args.mib, "layers": args.layers},
        "timings": {}, "verified": {}, "errors": {}}
    if args.baseline:
        ref = args.baseline / "REF"
        res["baseline"] = ref.read_text().strip() if ref.exists() else str(args.baseline)
    reg_version = subprocess.run([REGISTRY_BINARY, "--version"], capture_output=True, text=True).stdout.split()
    res["versions"]["registry"] = f"docker-registry {reg_version[-1] if reg_version else '?'} (Debian)"
    interrupted = False
    try:
        measure(args, res, started, scratch, logdir, env)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up")
    except Exception:  # keep cleanup and the record of what broke
        res["errors"]["bench"] = traceback.format_exc()
        log(res["errors"]["bench"])
    finally:
        res["loadavg_end"] = base.read("/proc/loadavg").strip()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
        try:
            for reg in started.registries:
                if reg.logfile.exists():  # the pull registry's access log is the evidence of full downloads
                    shutil.copy(reg.logfile, logdir / f"registry-{reg.port}.log")
                stop_registry(reg)
            base.cleanup(started.engines, started.dirs)
            for objects in started.berth_objects:
                net.delete_berth_objects(objects)
        finally:
            signal.signal(signal.SIGINT, old)
    if interrupted:
        return 130
    res["logs"] = str(logdir.relative_to(REPO))
    raw = RESULTS / f"transfer-{stamp}.json"
    res["raw"] = str(raw.relative_to(REPO))
    raw.write_text(json.dumps(res, indent=2, default=lambda o: asdict(o)) + "\n")
    write_section(args.out, render(res))
    log(f"wrote {args.out} and {raw}")
    if res["errors"]:
        log("errors:\n" + "\n".join(f"  {k}: {v.splitlines()[0] if v else ''}" for k, v in res["errors"].items()))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
