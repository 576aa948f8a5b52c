"""Base images made without a registry: busybox and Debian, written as OCI image layouts.

Strategy: everything comes from Debian's archive through apt, which works
where Docker Hub does not (berth.tools.debarchive). For busybox, each
architecture's busybox-static .deb is fetched, the busybox binary is read out
of it, and a one-layer root file system is written entry by entry
(berth.tools.busyboxlayer), with the users, groups and directories of
berth.image.basefiles, root ownership and the binary's own timestamp. Nothing
depends on the clock or the machine: tar and gzip headers are fixed, JSON is
written with sorted keys, so the same .debs give the same digests. Debian
comes from mmdebstrap (minbase) as one layer.

The output directory is an OCI image layout (oci-layout, index.json,
blobs/sha256/..., written by berth.tools.layoutblobs) whose index.json names
the image with the annotations containerd and skopeo read.
`berth.tools.layouttar` streams it as a tar for `docker load`.

    await build_busybox(Path("/var/lib/berth-bootstrap/busybox"))
    -> index.json -> image index (linux/amd64, linux/arm64) -> manifest -> config + layer
"""

from __future__ import annotations

import asyncio
import os
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from berth.errors import FailedPrecondition, InvalidArgument
from berth.host import binfmt, proc
from berth.oci import platform as plat
from berth.tools.busyboxlayer import busybox_layer
from berth.tools.debarchive import (
    DEFAULT_CACHE,
    deb_arch,
    deb_version,
    fetch_deb,
    read_deb_member,
)
from berth.tools.layoutblobs import (
    Blobs,
    HashingSink,
    add_layer,
    one_manifest,
    write_index_json,
)
from berth.tools.ocijson import (
    ANNOTATION_NAME,
    ANNOTATION_REF,
    MEDIA_INDEX,
    MEDIA_MANIFEST,
    BuiltImage,
    Descriptor,
    canonical_json,
    image_config,
    image_index,
    ref_name,
)


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
    blobs = Blobs(out_dir)
    manifests = []
    for p in wanted:
        mtime, version = stamps[p]
        upstream = version.split(":", 1)[-1].split("-", 1)[0]
        diff_id, layer = add_layer(blobs, busybox_layer(binaries[p], applets[p], mtime=mtime, version=upstream))
        config = image_config(p, [diff_id], created=mtime, cmd=["sh"],
                              created_by=f"berth bootstrap: busybox-static {version} ({deb_arch(p)}) from Debian")
        manifests.append(one_manifest(blobs, p, config, [layer]))
    index = blobs.put(canonical_json(image_index(manifests)), MEDIA_INDEX)
    top = Descriptor(MEDIA_INDEX, index.digest, index.size,
                     annotations=((ANNOTATION_NAME, name), (ANNOTATION_REF, ref)))
    write_index_json(out_dir, top)
    return BuiltImage(out_dir, name, ref, top, tuple(manifests))


def _filter_rootfs(src: IO[bytes], sink: HashingSink) -> None:
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
    blobs = Blobs(out_dir)
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
    manifest = one_manifest(blobs, here, config, [layer])
    top = Descriptor(MEDIA_MANIFEST, manifest.digest, manifest.size, manifest.platform,
                     annotations=((ANNOTATION_NAME, name), (ANNOTATION_REF, ref)))
    write_index_json(out_dir, top)
    return BuiltImage(out_dir, name, ref, top, (manifest,))
