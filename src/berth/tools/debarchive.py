"""Packages from Debian's archive: a package's .deb for a platform, fetched with apt, and the files in it.

    deb = await fetch_deb("busybox-static", plat.parse("linux/arm64"))
    data, mtime = await read_deb_member(deb, "bin/busybox")

Strategy: Debian's archive through apt works where Docker Hub does not. Each
architecture's .deb is fetched with apt-get download under a private apt state
(its own lists, cache, architecture and empty dpkg status, in the cache
directory), so the host's dpkg architectures and apt lists are never touched
and no dpkg lock is taken; a flock in the cache directory keeps two fetches
apart. A .deb once fetched is reused, so builds repeat and work offline once
the cache is filled. Files are read out of a .deb (dpkg-deb --fsys-tarfile,
then tarfile), never unpacked onto the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import logging
import os
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from berth.errors import CommandFailed, InvalidArgument, Unavailable
from berth.host import proc
from berth.oci import platform as plat

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("/var/cache/berth/bootstrap")

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
