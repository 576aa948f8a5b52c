"""Base images made without a registry: busybox and Debian, written as OCI image layouts.

Strategy: everything comes from Debian's archive through apt, which works
where Docker Hub does not. For busybox, each architecture's busybox-static .deb
is fetched with apt-get download under a private apt state (its own lists,
cache, architecture and empty dpkg status, in the cache directory), so the host's
dpkg architectures and apt lists are never touched and no dpkg lock is taken.
The busybox binary is read out of the .deb (dpkg-deb --fsys-tarfile, then
tarfile) and a one-layer root file system is written entry by entry, with the
users, groups and directories of berth.image.basefiles, root ownership and the
binary's own timestamp. Nothing depends on the clock or the machine: tar and
gzip headers are fixed, JSON is written with sorted keys, so the same .debs
give the same digests. Debian comes from mmdebstrap (minbase) as one layer.

The output directory is an OCI image layout (oci-layout, index.json,
blobs/sha256/...) whose index.json names the image with the annotations
containerd and skopeo read. `layout_tar` streams it as a tar for `docker load`.

    await build_busybox(Path("/var/lib/berth-bootstrap/busybox"))
    -> index.json -> image index (linux/amd64, linux/arm64) -> manifest -> config + layer
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import gzip
import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, AsyncIterator, Iterable, Iterator, Mapping, Protocol

from berth.errors import CommandFailed, FailedPrecondition, InvalidArgument, Unavailable
from berth.host import binfmt, fs, proc
from berth.image import basefiles
from berth.oci import platform as plat
from berth.oci import reference

log = logging.getLogger(__name__)

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_NAME = "io.containerd.image.name"
ANNOTATION_REF = "org.opencontainers.image.ref.name"

DEFAULT_CACHE = Path("/var/cache/berth/bootstrap")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GZIP_LEVEL = 6
_CHUNK = 1 << 20

# Debian's name for each platform's architecture (armel is ARMv5TE, so it serves v5 and v6).
_DEB_ARCH = {
    ("amd64", ""): "amd64", ("arm64", ""): "arm64", ("386", ""): "i386",
    ("arm", "v7"): "armhf", ("arm", "v6"): "armel", ("arm", "v5"): "armel",
    ("ppc64le", ""): "ppc64el", ("s390x", ""): "s390x", ("mips64le", ""): "mips64el",
    ("riscv64", ""): "riscv64",
}


def deb_arch(p: plat.Platform) -> str:
    """Debian's architecture name for *p* (arm64, armhf, ppc64el, ...).

    Raises:
        InvalidArgument: Debian has no port for *p*.
    """
    n = plat.normalize(p)
    arch = _DEB_ARCH.get((n.architecture, n.variant)) if n.os == "linux" else None
    if arch is None:
        known = ", ".join(str(plat.Platform("linux", a, v)) for a, v in _DEB_ARCH)
        raise InvalidArgument(f"Debian has no port for {n}: choose one of {known}")
    return arch


# --------------------------------------------------------------------------- #
# OCI values and their JSON (pure).


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size, optionally its plat."""

    media_type: str
    digest: str
    size: int
    platform: plat.Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            out["platform"] = plat.to_dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """An image written as an OCI layout: *top* is the descriptor index.json names it by."""

    layout: Path
    name: str                                   # docker.io/library/busybox:latest
    ref_name: str                               # latest
    top: Descriptor                             # an image index, or a single manifest
    manifests: tuple[Descriptor, ...] = ()


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no spaces: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_config(p: plat.Platform, diff_ids: list[str], *, created: int, cmd: list[str],
                 created_by: str) -> dict[str, Any]:
    """An OCI image config for a one-step image on *p*."""
    config: dict[str, Any] = {
        **plat.to_dict(plat.normalize(p)),
        "created": rfc3339(created),
        "config": {"Env": [PATH_ENV], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": rfc3339(created), "created_by": created_by}],
    }
    return config


def image_manifest(config: Descriptor, layers: list[Descriptor]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config.to_json(),
            "layers": [d.to_json() for d in layers]}


def image_index(manifests: Iterable[Descriptor]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [d.to_json() for d in manifests]}


def ref_name(name: str) -> str:
    """The tag of a full image name, for org.opencontainers.image.ref.name ("...busybox:latest" -> "latest").

    Raises:
        InvalidArgument: not a reference, or one without a tag.
    """
    tag = reference.parse(name, default_tag=None).tag
    if not tag:
        raise InvalidArgument(f"image name {name!r} has no tag: write it as repository:tag")
    return tag


# --------------------------------------------------------------------------- #
# The busybox root file system (pure).


def _entry(name: str, kind: bytes, mode: int, mtime: int, *, size: int = 0, owner: int = 0,
           link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, mtime
    info.uid = info.gid = owner
    info.uname = info.gname = "root" if owner == 0 else ""
    info.linkname = link
    return info


def busybox_layer(busybox: bytes, applets: list[str], *, mtime: int, version: str) -> bytes:
    """A deterministic, uncompressed layer tar: busybox, its applet links, users, groups, dirs.

    *applets* are the paths `busybox --list-full` prints (bin/sh, usr/bin/env, ...).
    """
    os_release = f'NAME="busybox"\nID=busybox\nVERSION_ID="{version}"\n'.encode()
    files = {"etc/passwd": basefiles.PASSWD.encode(), "etc/group": basefiles.GROUP.encode(),
             "etc/os-release": os_release}
    members: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for name, mode in basefiles.DIRS.items():
        owner = 1000 if name == "home/bob" else 0
        members[name] = (_entry(name, tarfile.DIRTYPE, mode, mtime, owner=owner), None)
    members["bin/busybox"] = (_entry("bin/busybox", tarfile.REGTYPE, 0o755, mtime, size=len(busybox)), busybox)
    for path in applets:
        path = path.strip().strip("/")
        if not path or path == "bin/busybox" or path in members:
            continue
        link = "../" * path.count("/") + "bin/busybox"
        members[path] = (_entry(path, tarfile.SYMTYPE, 0o777, mtime, link=link), None)
    for name, text in files.items():
        members[name] = (_entry(name, tarfile.REGTYPE, 0o644, mtime, size=len(text)), text)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info, content = members[name]
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


# --------------------------------------------------------------------------- #
# Writing the layout.


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _HashingSink:
    """A write-only file that hashes what passes through and forwards it (or drops it)."""

    def __init__(self, target: _Writable | None) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self._target = target

    def write(self, data: bytes) -> int:  # the buffer protocol objects gzip passes work too
        self.hash.update(data)
        self.size += len(data)
        if self._target is not None:
            self._target.write(data)
        return len(data)

    def flush(self) -> None:
        if self._target is not None:
            self._target.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Blobs:
    """blobs/sha256/ of a layout: content-addressed, written once, atomically."""

    def __init__(self, layout: Path) -> None:
        self.dir = layout / "blobs" / "sha256"
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, media_type: str) -> Descriptor:
        digest = hashlib.sha256(data).hexdigest()
        path = self.dir / digest
        if not (path.exists() and path.stat().st_size == len(data)):
            fs.atomic_write(str(path), data)
        return Descriptor(media_type, "sha256:" + digest, len(data))

    @contextlib.contextmanager
    def gzip_layer(self) -> Iterator[tuple[_HashingSink, list[Descriptor]]]:
        """Stream a tar in: yields (sink for the uncompressed tar, list that receives the blob descriptor)."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        done: list[Descriptor] = []
        try:
            with os.fdopen(fd, "wb") as raw:
                blob = _HashingSink(raw)
                with gzip.GzipFile(filename="", mode="wb", fileobj=blob,
                                   compresslevel=GZIP_LEVEL, mtime=0) as gz:
                    plain = _HashingSink(gz)
                    yield plain, done
                raw.flush()
                os.fsync(raw.fileno())
            os.chmod(tmp, 0o644)
            os.rename(tmp, self.dir / blob.hash.hexdigest())
            done.append(Descriptor(MEDIA_LAYER, blob.digest, blob.size))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _write_index_json(layout: Path, top: Descriptor) -> None:
    fs.atomic_write(str(layout / "oci-layout"), canonical_json({"imageLayoutVersion": "1.0.0"}))
    fs.atomic_write(str(layout / "index.json"), canonical_json(image_index([top])))


def _add_layer(blobs: _Blobs, tar_bytes: bytes) -> tuple[str, Descriptor]:
    compressed = gzip.compress(tar_bytes, compresslevel=GZIP_LEVEL, mtime=0)
    return "sha256:" + hashlib.sha256(tar_bytes).hexdigest(), blobs.put(compressed, MEDIA_LAYER)


def _one_manifest(blobs: _Blobs, p: plat.Platform, config: dict[str, Any],
                  layers: list[Descriptor]) -> Descriptor:
    config_desc = blobs.put(canonical_json(config), MEDIA_CONFIG)
    manifest = blobs.put(canonical_json(image_manifest(config_desc, layers)), MEDIA_MANIFEST)
    return Descriptor(MEDIA_MANIFEST, manifest.digest, manifest.size, plat.normalize(p))


# --------------------------------------------------------------------------- #
# Fetching from Debian's archive.


@contextlib.asynccontextmanager
async def _flocked(path: Path) -> AsyncIterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _apt_options(state: Path, arch: str) -> list[str]:
    """apt-get options for a private apt state that knows only *arch*."""
    settings = {
        "APT::Architecture": arch, "APT::Architectures": arch,
        "Dir::State::Lists": str(state / "lists"), "Dir::Cache": str(state / "cache"),
        "Dir::State::status": str(state / "status"), "APT::Sandbox::User": "root",
        "Acquire::Languages": "none", "Acquire::PDiffs": "false",
    }
    return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]


async def fetch_deb(package: str, p: plat.Platform, cache_dir: Path = DEFAULT_CACHE,
                    refresh: bool = False) -> Path:
    """The .deb of *package* for *p*'s Debian architecture, fetched once into *cache_dir*.

    A .deb already in the cache is reused unless *refresh*; that keeps builds
    repeatable and offline once the cache is filled.

    Raises:
        InvalidArgument: Debian has no port for *p*.
        Unavailable: apt could not fetch the package lists or the package.
    """
    arch = deb_arch(p)
    debs = cache_dir / "debs"
    pattern = f"{package}_*_{arch}.deb"
    async with _flocked(cache_dir / ".lock"):
        found = sorted(debs.glob(pattern))
        if found and not refresh:
            return found[-1]
        state = cache_dir / f"apt-{arch}"
        for sub in ("lists/partial", "cache/archives/partial"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        (state / "status").touch()
        options = _apt_options(state, arch)
        debs.mkdir(parents=True, exist_ok=True)
        try:
            await proc.run(["apt-get", "-q", *options, "update"], timeout=900)
            with tempfile.TemporaryDirectory(dir=debs, prefix=".get-") as tmp:
                await proc.run(["apt-get", "-q", *options, "download", package], timeout=900, cwd=tmp)
                fetched = sorted(Path(tmp).glob(pattern))
                if not fetched:
                    raise Unavailable(f"apt-get download {package} for {arch} left no {pattern}")
                for old in found:
                    old.unlink()
                target = debs / fetched[-1].name
                os.rename(fetched[-1], target)
        except CommandFailed as exc:
            raise Unavailable(
                f"could not fetch {package} for {arch} from Debian's archive ({exc}): check that the "
                "mirrors in /etc/apt/sources.list.d answer (apt-get update), or pass the .deb files "
                "yourself") from exc
        log.info("fetched %s", target)
        return target


async def read_deb_member(deb: Path, member: str) -> tuple[bytes, int]:
    """The bytes and mtime of *member* (e.g. "bin/busybox") in a .deb's data.

    Raises:
        InvalidArgument: the package has no such regular file.
        CommandFailed: dpkg-deb could not read the .deb.
    """
    result = await proc.run(["dpkg-deb", "--fsys-tarfile", str(deb)], timeout=300)
    with tarfile.open(fileobj=io.BytesIO(result.stdout), mode="r:") as tar:
        for info in tar:
            if info.name.removeprefix("./") == member.lstrip("/") and info.isfile():
                extracted = tar.extractfile(info)
                assert extracted is not None
                return extracted.read(), int(info.mtime)
    raise InvalidArgument(f"{deb.name} has no file {member}: is it the right package?")


async def deb_version(deb: Path) -> str:
    result = await proc.run(["dpkg-deb", "--field", str(deb), "Version"], timeout=60)
    return result.stdout.decode().strip()


async def _applets(binaries: dict[plat.Platform, bytes]) -> dict[plat.Platform, list[str]]:
    """`busybox --list-full` per platform: run natively, or under qemu-user when installed.

    A platform nothing can run borrows the list of one that ran (Debian builds
    busybox-static with one configuration for every architecture).
    """
    here = plat.host()
    lists: dict[plat.Platform, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="berth-busybox-") as tmp:
        for p, data in binaries.items():
            path = Path(tmp) / f"busybox-{deb_arch(p)}"
            path.write_bytes(data)
            path.chmod(0o755)
            argv = [str(path), "--list-full"]
            if not binfmt.runs_natively(p, here):
                qemu = Path(f"/usr/bin/qemu-{plat.qemu_user_name(p)}-static")
                if not qemu.exists():
                    continue
                argv = [str(qemu), *argv]
            out = await proc.run(argv, timeout=120)
            lists[p] = [line.strip() for line in out.stdout.decode().splitlines() if line.strip()]
    if not lists:
        raise FailedPrecondition("cannot list busybox's applets: none of the binaries runs here; "
                                 "apt-get install qemu-user-static, or include this host's platform")
    fallback = next(iter(lists.values()))
    return {p: lists.get(p, fallback) for p in binaries}


# --------------------------------------------------------------------------- #
# The images.


async def build_busybox(out_dir: Path, platforms: Iterable[str] = ("linux/amd64", "linux/arm64"), *,
                        cache_dir: Path = DEFAULT_CACHE, debs: Mapping[str, Path] | None = None,
                        name: str = "docker.io/library/busybox:latest") -> BuiltImage:
    """Write a multi-platform busybox image, from Debian's busybox-static, as an OCI layout in *out_dir*.

    *debs* maps a platform ("linux/arm64") to a busybox-static .deb to use instead
    of fetching one. Same .debs, same digests.

    Raises:
        InvalidArgument: a platform Debian has no port for, or a .deb without bin/busybox.
        Unavailable: Debian's archive could not be reached to fetch a .deb.
        FailedPrecondition: no busybox binary can be run here to list its applets.
    """
    ref = ref_name(name)
    wanted = [plat.parse(text) for text in platforms]
    if not wanted or len(set(wanted)) != len(wanted):
        raise InvalidArgument(f"build_busybox needs distinct platforms, got {list(platforms)}")
    given = {plat.parse(k): v for k, v in (debs or {}).items()}
    binaries: dict[plat.Platform, bytes] = {}
    stamps: dict[plat.Platform, tuple[int, str]] = {}
    for p in wanted:
        deb = given.get(p) or await fetch_deb("busybox-static", p, cache_dir)
        binaries[p], mtime = await read_deb_member(deb, "bin/busybox")
        stamps[p] = (mtime, await deb_version(deb))
    applets = await _applets(binaries)
    out_dir.mkdir(parents=True, exist_ok=True)
    blobs = _Blobs(out_dir)
    manifests = []
    for p in wanted:
        mtime, version = stamps[p]
        upstream = version.split(":", 1)[-1].split("-", 1)[0]
        diff_id, layer = _add_layer(blobs, busybox_layer(binaries[p], applets[p], mtime=mtime, version=upstream))
        config = image_config(p, [diff_id], created=mtime, cmd=["sh"],
                              created_by=f"berth bootstrap: busybox-static {version} ({deb_arch(p)}) from Debian")
        manifests.append(_one_manifest(blobs, p, config, [layer]))
    index = blobs.put(canonical_json(image_index(manifests)), MEDIA_INDEX)
    top = Descriptor(MEDIA_INDEX, index.digest, index.size,
                     annotations=((ANNOTATION_NAME, name), (ANNOTATION_REF, ref)))
    _write_index_json(out_dir, top)
    return BuiltImage(out_dir, name, ref, top, tuple(manifests))


def _filter_rootfs(src: IO[bytes], sink: _HashingSink) -> None:
    """Copy a root file system tar into *sink*: names without "./", no device nodes under dev/."""
    with tarfile.open(fileobj=src, mode="r|") as tar_in, \
            tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar_out:  # type: ignore[call-overload]
        for info in tar_in:
            name = info.name.removeprefix("./").rstrip("/")
            if not name or name == ".":
                continue
            if name.startswith("dev/"):
                continue  # the runtime provides /dev
            info.name = name
            if info.islnk():
                info.linkname = info.linkname.removeprefix("./")
            # A pax path/linkpath would win over the names just set.
            info.pax_headers = {k: v for k, v in info.pax_headers.items() if k not in ("path", "linkpath")}
            tar_out.addfile(info, tar_in.extractfile(info) if info.isreg() else None)


async def build_debian(out_dir: Path, suite: str = "bookworm", *, mirror: str | None = None,
                       source_date_epoch: int | None = None, name: str | None = None) -> BuiltImage:
    """Write a one-layer Debian *suite* image for this host's platform (mmdebstrap, minbase).

    With *source_date_epoch* the result is reproducible for the same archive content.
    Slow: it downloads and installs the essential packages (a minute or so).

    Raises:
        FailedPrecondition: mmdebstrap is not installed (apt-get install mmdebstrap).
        CommandFailed: mmdebstrap failed (its stderr tail says why).
    """
    here = plat.host()
    name = name or f"docker.io/library/debian:{suite}"
    ref = ref_name(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    blobs = _Blobs(out_dir)
    env = dict(os.environ)
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(source_date_epoch)
    # The runtime writes /etc/resolv.conf and /etc/hostname; the host's must not leak in.
    hook = 'for f in resolv.conf hostname; do : > "$1/etc/$f"; done'
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".mmdebstrap-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        argv = ["mmdebstrap", "--variant=minbase", "--format=tar", f"--architectures={deb_arch(here)}",
                f"--customize-hook={hook}", suite, str(tar_path)] + ([mirror] if mirror else [])
        try:
            await proc.run(argv, timeout=3600, env=env)
        except FailedPrecondition as exc:
            raise FailedPrecondition("building a Debian image needs mmdebstrap: apt-get install mmdebstrap") from exc
        created = source_date_epoch if source_date_epoch is not None else int(tar_path.stat().st_mtime)

        def convert() -> tuple[str, Descriptor]:
            with blobs.gzip_layer() as (plain, done), open(tar_path, "rb") as src:
                _filter_rootfs(src, plain)
            return plain.digest, done[0]

        diff_id, layer = await asyncio.to_thread(convert)
    config = image_config(here, [diff_id], created=created, cmd=["bash"],
                          created_by=f"berth bootstrap: mmdebstrap --variant=minbase {suite}")
    manifest = _one_manifest(blobs, here, config, [layer])
    top = Descriptor(MEDIA_MANIFEST, manifest.digest, manifest.size, manifest.platform,
                     annotations=((ANNOTATION_NAME, name), (ANNOTATION_REF, ref)))
    _write_index_json(out_dir, top)
    return BuiltImage(out_dir, name, ref, top, (manifest,))


# --------------------------------------------------------------------------- #
# Streaming the layout as a tar.


def docker_manifest(out_dir: Path, host_platform: plat.Platform | None = None) -> list[dict[str, Any]]:
    """The manifest.json `docker save` writes, for the images index.json names.

    Docker before 25 loads only this file; an image index contributes the
    manifest for *host_platform* (this host's by default), or nothing when it has none.
    """
    here = host_platform or plat.host()
    blob_dir = out_dir / "blobs" / "sha256"

    def read(digest: str) -> dict[str, Any]:
        algorithm, _, hexpart = digest.partition(":")
        if algorithm != "sha256" or not hexpart.isalnum():
            raise InvalidArgument(f"{out_dir}: unsupported digest {digest!r}")
        value: dict[str, Any] = json.loads((blob_dir / hexpart).read_bytes())
        return value

    out: list[dict[str, Any]] = []
    for desc in json.loads((out_dir / "index.json").read_bytes()).get("manifests", []):
        name = (desc.get("annotations") or {}).get(ANNOTATION_NAME)
        if not name:
            continue
        if desc.get("mediaType") == MEDIA_INDEX:
            desc = plat.choose(here, read(desc["digest"]).get("manifests", []))
            if desc is None:
                continue
        manifest = read(desc["digest"])
        out.append({
            "Config": "blobs/" + manifest["config"]["digest"].replace(":", "/"),
            "RepoTags": [str(reference.parse(name))],
            "Layers": ["blobs/" + layer["digest"].replace(":", "/") for layer in manifest["layers"]],
        })
    return out


def layout_tar(out_dir: Path, *, with_docker_manifest: bool = True) -> Iterator[bytes]:
    """Stream the OCI layout in *out_dir* as an uncompressed tar (for `docker load`).

    In order: oci-layout, index.json, manifest.json (see docker_manifest; left out
    when *with_docker_manifest* is false or it would be empty), then
    blobs/sha256/*, sorted, with root ownership and zero times: the same layout
    always gives the same bytes. Blobs are read in 1 MiB pieces, never whole.

    Raises:
        InvalidArgument: *out_dir* is not an OCI image layout.
    """
    def header(name: str, kind: bytes, mode: int, size: int = 0) -> bytes:
        info = _entry(name, kind, mode, 0, size=size)
        return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")

    def padding(size: int) -> bytes:
        return b"\0" * (-size % tarfile.BLOCKSIZE)

    for required in ("oci-layout", "index.json"):
        if not (out_dir / required).is_file():
            raise InvalidArgument(f"{out_dir} is not an OCI image layout (it has no {required})")
    small = {"oci-layout": (out_dir / "oci-layout").read_bytes(), "index.json": (out_dir / "index.json").read_bytes()}
    if with_docker_manifest:
        entries = docker_manifest(out_dir)
        if entries:
            small["manifest.json"] = canonical_json(entries)
    for name, data in small.items():
        yield header(name, tarfile.REGTYPE, 0o644, len(data)) + data + padding(len(data))
    yield header("blobs/", tarfile.DIRTYPE, 0o755)
    yield header("blobs/sha256/", tarfile.DIRTYPE, 0o755)
    blob_dir = out_dir / "blobs" / "sha256"
    blobs = sorted(p for p in blob_dir.iterdir() if not p.name.startswith(".")) if blob_dir.is_dir() else []
    for path in blobs:
        size = path.stat().st_size
        yield header(f"blobs/sha256/{path.name}", tarfile.REGTYPE, 0o644, size)
        sent = 0
        with open(path, "rb") as f:
            while sent < size:
                chunk = f.read(min(_CHUNK, size - sent))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
        if sent != size:
            raise InvalidArgument(f"{path} changed size while being read: leave the layout alone meanwhile")
        yield padding(size)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def write_layout_tar(out_dir: Path, target: Path) -> Path:
    """Write layout_tar(out_dir) to *target* (atomically) and return *target*."""
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as f:
        for chunk in layout_tar(out_dir):
            f.write(chunk)
    os.rename(tmp, target)
    return target
