"""Images: import, register (pull/load/commit), resolve by name and platform, list, inspect, tag, remove, GC.

Strategy: an image is an OCI manifest + config in the content store, its
layers unpacked once as snapshots (one directory per chain id, so images
share layers), and a row in the metadata database whose id is the config
digest (as Docker's image IDs are). A multi-platform image is an index kept
whole: the tag names the index, whose record lists each platform's manifest
and, once its content is here, its image; a name resolves to the image of
the platform asked for (the host's by default). Blobs and snapshots are
never deleted directly: `collect()` removes what no image, index or work in
progress (a lease) refers to. The API's JSON shapes are made here from the
records, so the API layer only routes.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, AsyncIterator, BinaryIO, Callable, cast

import zstandard

from berth import timefmt
from berth.builder.configedit import apply_changes
from berth.content.local import LocalStore
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.host import spool
from berth.image import archive
from berth.metadata.db import Database
from berth.oci import platform as platforms
from berth.oci import reference
from berth.services import patterns
from berth.services.events import Events
from berth.snapshot.overlay import Snapshots, chain_ids

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (MEDIA_INDEX, DOCKER_LIST)


def is_index(doc: dict[str, Any]) -> bool:
    """Is this manifest document an image index (a manifest list)?"""
    return doc.get("mediaType") in INDEX_TYPES or ("manifests" in doc and "layers" not in doc)

now_iso = timefmt.now


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it (the layer's diff ID)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner, self.hash = inner, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._inner.read(len(buf))
        self.hash.update(data)
        buf[: len(data)] = data
        return len(data)


IMPORT_WRITE = 1 << 20  # bytes of an import's body gathered before one write (in a thread)


_off_loop = spool.settled  # fn(*args) in a thread; a cancelled caller still waits for it (it owns files)


def _decompressed(f: BinaryIO) -> tuple[IO[bytes], str]:
    head = f.read(6)
    f.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=f)), MEDIA_LAYER + "+gzip"
    if head.startswith(b"BZh"):
        return bz2.BZ2File(f), MEDIA_LAYER + "+bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(f), MEDIA_LAYER + "+xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(f)), MEDIA_LAYER + "+zstd"
    return f, MEDIA_LAYER


def _sniffed(f: io.BufferedReader[Any]) -> IO[bytes]:
    """The decompressed view of a non-seekable stream, by its magic bytes (peeked, not consumed)."""
    head = f.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=f))
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(f))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(IO[bytes], lzma.LZMAFile(f))
    if head.startswith(b"BZh"):
        return cast(IO[bytes], bz2.BZ2File(f))
    return f


class Images:
    def __init__(self, db: Database, store: LocalStore, snaps: Snapshots, events: Events,
                 in_use: Callable[[str], list[str]]) -> None:
        self._db, self._store, self._snaps, self._events = db, store, snaps, events
        self._in_use = in_use  # image id -> ids of containers using it
        self._leases: Counter[str] = Counter()  # digests and chain ids that work in progress needs

    @contextlib.contextmanager
    def lease(self, items: Iterable[str]) -> Iterator[None]:
        """Keep *items* (blob digests, chain ids) from `collect()` while a pull, load or commit runs."""
        held = list(items)
        self._leases.update(held)
        try:
            yield
        finally:
            self._leases.subtract(held)
            self._leases += Counter()  # drop zero counts

    def hold(self, item: str) -> None:
        """Add one more item to the leases (released with `release`)."""
        self._leases[item] += 1

    def release(self, item: str) -> None:
        self._leases[item] -= 1
        self._leases += Counter()

    # import -------------------------------------------------------------
    async def import_tarball(self, body: AsyncIterator[bytes], repo: str, tag: str,
                             changes: list[str], message: str, platform: str = "") -> str:
        """Store the tarball streamed in *body* as a one-layer image; return its id.

        Nothing is recorded unless the whole body arrived (a body cut short raises
        from *body*: the ingest is dropped) and the layer unpacked completely;
        the layer blob and its snapshot are leased from `collect()` meanwhile,
        and a blob this import added is removed again when the import fails.
        File work runs in a thread, never on the event loop.
        """
        ref = None
        if repo:
            ref = reference.parse(f"{repo}:{tag}" if tag else repo)
        arch = "amd64"
        if platform:
            parts = platform.split("/")
            if parts[0] != "linux" or len(parts) < 2:
                raise InvalidArgument(f"import: unsupported platform {platform!r}: use linux/<arch>")
            arch = parts[1]
        config_body: dict[str, Any] = {}  # as docker import: the runtime adds PATH, not the image
        apply_changes(changes, config_body)
        ingest = await _off_loop(self._store.ingest)
        try:
            await spool.drain(body, ingest.write, batch=IMPORT_WRITE)  # written in a thread, batch by batch
            if ingest.size == 0:
                raise InvalidArgument("import: the request body is empty: send a tar archive of a root file system")
            added = not self._store.exists(ingest.digest())
            layer_digest = await _off_loop(ingest.commit)
        except BaseException:
            await _off_loop(ingest.abort)
            raise
        with self.lease([layer_digest]):
            try:
                size, diff_id, media = await _off_loop(self._unpack_single, layer_digest)
            except BaseException:
                if added and not any(layer_digest in doc["layers"] for _, doc in self._db.images()):
                    await _off_loop(self._store.delete, layer_digest)
                raise
            with self.lease([diff_id]):
                created = now_iso()
                config = {
                    "architecture": arch, "os": "linux", "created": created, "config": config_body,
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                    "history": [{"created": created, "created_by": "", "comment": message or "Imported from -"}],
                }
                config_raw = json.dumps(config, separators=(",", ":")).encode()
                config_digest = await _off_loop(self._store.put, config_raw)
                manifest = {
                    "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                    "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_raw)},
                    "layers": [{"mediaType": media, "digest": layer_digest, "size": self._store.size(layer_digest)}],
                }
                manifest_digest = await _off_loop(self._store.put,
                                                  json.dumps(manifest, separators=(",", ":")).encode())
                self._db.put_image(config_digest, {
                    "manifest": manifest_digest, "layers": [layer_digest], "diff_ids": [diff_id],
                    "size": size, "created": created,
                })
        if ref is not None:
            self._db.set_tag(str(ref), config_digest)
        self.event("import", config_digest, config_digest)
        return config_digest

    def _unpack_single(self, layer_digest: str) -> tuple[int, str, str]:
        """Unpack the layer blob into a fresh private directory, then publish it as its diff id's snapshot.

        The diff id is known only once the whole layer is read, so the directory is
        prepared under no name (never a chain id: a leftover of an interrupted import
        must not pass for an unpacked layer, whose diff id would then read as the
        empty digest) and published under the diff id, fsynced, or dropped when that
        snapshot exists already.
        """
        with open(self._store.path(layer_digest), "rb") as raw:
            stream, media = _decompressed(raw)
            hashing = _Hashing(stream)
            reader = io.BufferedReader(hashing, 1 << 20)
            tmp = self._snaps.prepare()
            try:
                directory = os.path.join(tmp, "fs")
                try:
                    size = archive.apply_layer(reader, directory)  # type: ignore[arg-type]
                    while reader.read(1 << 20):
                        pass
                except (EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
                    raise InvalidArgument(f"import: the archive is truncated or corrupt: {exc}") from exc
                with open(os.path.join(tmp, "size"), "w") as f:
                    f.write(str(size))
                diff_id = "sha256:" + hashing.hash.hexdigest()
                self._snaps.publish(tmp, diff_id)
            except BaseException:
                self._snaps.discard(tmp)
                raise
        return size, diff_id, media

    # registering images from manifests (pull, load, commit) --------------
    def register(self, manifest_raw: bytes, *, repo_digests: Sequence[str] = ()) -> str:
        """Record the image of *manifest_raw* (its config and layers already in the store); return its id.

        Layers are unpacked (each verified against the config's diff_ids) unless
        a snapshot of the same chain is here already.

        Raises:
            InvalidArgument: the manifest or config is malformed, or a layer is corrupt.
        """
        try:
            manifest = json.loads(manifest_raw)
            config_digest = manifest["config"]["digest"]
            layers = [str(layer["digest"]) for layer in manifest["layers"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"the image manifest is malformed: {exc!r}") from None
        manifest_digest = "sha256:" + hashlib.sha256(manifest_raw).hexdigest()
        if not self._store.exists(manifest_digest):
            self._store.put(manifest_raw, manifest_digest)
        try:
            config = json.loads(self._store.read(config_digest))
            diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"the image config {config_digest} is malformed: {exc!r}") from None
        if len(diff_ids) != len(layers):
            raise InvalidArgument(f"the image config lists {len(diff_ids)} layers but its manifest {len(layers)}")
        chains = chain_ids(diff_ids)
        with self.lease([manifest_digest, config_digest, *layers, *chains]):
            size = sum(self.unpack(layer, diff, chain) for layer, diff, chain in zip(layers, diff_ids, chains, strict=False))
            doc = self._db.get_image(config_digest) or {}
            doc.update({"manifest": manifest_digest, "layers": layers, "diff_ids": diff_ids, "size": size,
                        "created": config.get("created") or doc.get("created") or now_iso()})
            doc["repo_digests"] = sorted(set(doc.get("repo_digests", [])) | set(repo_digests))
            self._db.put_image(config_digest, doc)
        return config_digest

    def unpack(self, layer_digest: str, diff_id: str, chain: str) -> int:
        """Unpack a layer blob as the snapshot *chain* (once); return its unpacked size."""
        if self._snaps.exists(chain):
            try:
                with open(os.path.join(os.path.dirname(self._snaps.path(chain)), "size")) as f:
                    return int(f.read() or 0)
            except (OSError, ValueError):
                return 0

        def fill(directory: str) -> None:
            with open(self._store.path(layer_digest), "rb") as raw:
                stream, _ = _decompressed(raw)
                hashing = _Hashing(stream)
                reader = io.BufferedReader(hashing, 1 << 20)
                size = archive.apply_layer(reader, directory)  # type: ignore[arg-type]
                while reader.read(1 << 20):
                    pass
            got = "sha256:" + hashing.hash.hexdigest()
            if got != diff_id:
                raise InvalidArgument(f"layer {layer_digest} unpacks to {got}, but the image config says {diff_id}: "
                                      "the image is corrupt")
            with open(os.path.join(os.path.dirname(directory), "size"), "w") as f:
                f.write(str(size))

        try:
            self._snaps.commit(chain, fill)
        except FileNotFoundError as exc:
            raise NotFound(f"layer {layer_digest} is not in the content store") from exc
        except (EOFError, OSError, lzma.LZMAError, zstandard.ZstdError) as exc:
            raise InvalidArgument(f"layer {layer_digest} is truncated or corrupt: {exc}") from exc
        return self.unpack(layer_digest, diff_id, chain)

    def unpack_stream(self, stream: IO[bytes], diff_id: str) -> tuple[str, int]:
        """Unpack a layer read from *stream* (plain, gzip or zstd) into a prepared directory.

        The layer's content must hash to *diff_id*. Returns (prepared directory,
        unpacked size): the caller publishes it with `publish_layer` once the blob's
        own digest is verified, or drops it with `discard_layer`; until then it is
        invisible. Lets a pull unpack while it downloads.

        Raises:
            InvalidArgument: the layer is refused (hostile paths), corrupt or not what the config says.
        """
        tmp = self._snaps.prepare()
        try:
            source = io.BufferedReader(cast(io.RawIOBase, stream), 1 << 20)
            hashing = _Hashing(_sniffed(source))
            reader = io.BufferedReader(hashing, 1 << 20)
            try:
                size = archive.apply_layer(reader, os.path.join(tmp, "fs"))  # type: ignore[arg-type]
                while reader.read(1 << 20):
                    pass
            except (EOFError, lzma.LZMAError, zstandard.ZstdError, gzip.BadGzipFile) as exc:
                raise InvalidArgument(f"layer {diff_id} is truncated or corrupt: {exc}") from exc
            got = "sha256:" + hashing.hash.hexdigest()
            if got != diff_id:
                raise InvalidArgument(f"a layer unpacks to {got}, but the image config says {diff_id}: "
                                      "the image is corrupt")
            with open(os.path.join(tmp, "size"), "w") as f:
                f.write(str(size))
            return tmp, size
        except BaseException:
            self._snaps.discard(tmp)
            raise

    def publish_layer(self, tmp: str, chain: str) -> None:
        self._snaps.publish(tmp, chain)

    def discard_layer(self, tmp: str) -> None:
        self._snaps.discard(tmp)

    def has_layer(self, chain: str) -> bool:
        return self._snaps.exists(chain)

    def register_index(self, index_raw: bytes, images: dict[str, str]) -> str:
        """Record a multi-platform index; *images* maps child manifest digests to local image ids."""
        digest = "sha256:" + hashlib.sha256(index_raw).hexdigest()
        try:
            index = json.loads(index_raw)
            entries = [(str(m["digest"]), dict(m.get("platform") or {})) for m in index["manifests"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"the image index is malformed: {exc!r}") from None
        if not self._store.exists(digest):
            self._store.put(index_raw, digest)
        before = {c["manifest"]: c.get("image") for c in (self._db.get_index(digest) or {}).get("children", [])}
        children = [{"manifest": m, "platform": plat, "image": images.get(m) or before.get(m)} for m, plat in entries]
        self._db.put_index(digest, {"children": children, "created": now_iso()})
        return digest

    def set_tag(self, ref: str, target: str, repo_digest: str = "") -> None:
        """Point *ref* at an image id or index digest (a pull or load naming it)."""
        self._db.set_tag(ref, target)
        if repo_digest and self._db.get_image(target):
            doc = self.record(target)
            doc["repo_digests"] = sorted(set(doc.get("repo_digests", [])) | {repo_digest})
            self._db.put_image(target, doc)
        if repo_digest and (idx := self._db.get_index(target)) is not None:
            idx["repo_digests"] = sorted(set(idx.get("repo_digests", [])) | {repo_digest})
            self._db.put_index(target, idx)

    # lookup -------------------------------------------------------------
    def resolve(self, name: str, platform: str = "") -> str:
        """Image id for a reference, a full id or a unique id prefix, for *platform* (default: the host's).

        Raises:
            NotFound: no such image (or not for that platform: a pull would get it).
            InvalidArgument: the image is here but has no variant for the platform.
        """
        if not name:
            raise InvalidArgument("an image name is required")
        wanted = platforms.parse(platform) if platform else None
        target = self.target(name)
        if target is None:
            hexpart = name[7:] if name.startswith("sha256:") else name
            if hexpart and all(c in "0123456789abcdef" for c in hexpart):
                matches = [i for i, _ in self._db.images() if i[7:].startswith(hexpart)]
                if len(matches) == 1:
                    target = matches[0]
        if target is None:
            raise NotFound(f"No such image: {name}")
        index = self._db.get_index(target)
        if index is not None:
            return self._pick(name, index, wanted)
        if wanted is not None:
            have = platforms.of_config(self.config(target))
            if not platforms.matches(wanted, have):
                raise InvalidArgument(platforms.mismatch_message(name, wanted, [have]))
        return target

    def target(self, name: str) -> str | None:
        """What the reference *name* points at (image id or index digest), if it is a known tag."""
        try:
            return self._db.tag(str(reference.parse(name)))
        except InvalidArgument:
            return None

    def _pick(self, name: str, index: dict[str, Any], wanted: platforms.Platform | None) -> str:
        want = wanted or platforms.host()
        descriptors = [{"digest": c["manifest"], "platform": c["platform"]} for c in index["children"]]
        chosen = platforms.choose(want, descriptors)
        if chosen is None:
            raise InvalidArgument(platforms.mismatch_message(name, want, platforms.available(descriptors)))
        image = next(c.get("image") for c in index["children"] if c["manifest"] == chosen["digest"])
        if not image or self._db.get_image(image) is None:
            raise NotFound(f"No such image: {name} for {want} (its index lists it, but that platform's content "
                           f"is not here: docker pull --platform {want} {name})")
        return str(image)

    def _default_child(self, index: dict[str, Any]) -> str | None:
        """The image a multi-platform tag shows in listings: the host's, else the first one here."""
        present = [c for c in index["children"] if c.get("image") and self._db.get_image(c["image"])]
        if not present:
            return None
        chosen = platforms.choose(platforms.host(), [{"digest": c["manifest"], "platform": c["platform"]}
                                                     for c in present])
        pick = next((c for c in present if chosen and c["manifest"] == chosen["digest"]), present[0])
        return str(pick["image"])

    def _tag_map(self) -> dict[str, list[str]]:
        """image id -> the tags that show it (index tags show their default child)."""
        out: dict[str, list[str]] = {}
        for target, refs in self._db.tags().items():
            index = self._db.get_index(target)
            image = self._default_child(index) if index is not None else target
            if image:
                out.setdefault(image, []).extend(refs)
        return {k: sorted(v) for k, v in out.items()}

    def manifest_bytes(self, image_id: str) -> bytes:
        return self._store.read(self.record(image_id)["manifest"])

    def layer_dirs(self, image_id: str) -> list[str]:
        """The image's unpacked layers, top first (overlayfs lowerdir order)."""
        return [self._snaps.path(c) for c in reversed(self.chains(image_id))]

    def index(self, digest: str) -> dict[str, Any] | None:
        """The record of a multi-platform index, if *digest* names one."""
        return self._db.get_index(digest)

    def record(self, image_id: str) -> dict[str, Any]:
        doc = self._db.get_image(image_id)
        if doc is None:
            raise NotFound(f"No such image: {image_id}")
        return doc

    def config(self, image_id: str) -> dict[str, Any]:
        return json.loads(self._store.read(image_id))

    def chains(self, image_id: str) -> list[str]:
        return chain_ids(self.record(image_id)["diff_ids"])

    def repo_tags(self, image_id: str) -> list[str]:
        return self._tag_map().get(image_id, [])

    def repo_digests(self, image_id: str) -> list[str]:
        doc = self.record(image_id)
        out = set(doc.get("repo_digests", []))
        for _, idx in self._db.indexes():
            if any(c.get("image") == image_id for c in idx["children"]):
                out |= set(idx.get("repo_digests", []))
        return sorted(out)

    # API shapes ---------------------------------------------------------
    def summary(self, image_id: str, doc: dict[str, Any], tags: list[str],
                digests: list[str] | None = None) -> dict[str, Any]:
        cfg = self.config(image_id)
        return {
            "Id": image_id, "ParentId": self.parent(image_id, doc), "RepoTags": tags,
            "RepoDigests": self.repo_digests(image_id) if digests is None else digests,
            "Created": _epoch(doc["created"]), "Size": doc["size"], "SharedSize": -1,
            "VirtualSize": doc["size"], "Labels": (cfg.get("config") or {}).get("Labels") or {},
            "Containers": len(self._in_use(image_id)),
        }

    def listing(self, all_: bool = False, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        tags = self._tag_map()
        # Another platform of a tagged multi-platform image, or a build step's image (Docker's
        # "intermediate" images): not dangling, and shown only with --all.
        # So is an untagged image that is the parent of another (a build step's, a commit's base), as
        # Docker hides it.
        hidden = (self._referenced_images() | self._db.build_cache_images() | set(self._children())) - set(tags) \
            if not all_ else set()
        patterns = (filters or {}).get("reference") or []
        out = []
        for image_id, doc in self._db.images():
            if image_id in hidden:
                continue
            item = self.summary(image_id, doc, tags.get(image_id, []))
            if filters and not _image_matches(item, filters, self):
                continue
            if patterns:  # as Docker: only the names the reference filter matched (`images -q REF` once)
                item["RepoTags"] = [t for t in item["RepoTags"] if reference_matches(patterns, t)]
                item["RepoDigests"] = [t for t in item["RepoDigests"] if reference_matches(patterns, t)]
            out.append(item)
        out.sort(key=lambda i: i["Created"], reverse=True)
        return out

    def inspect(self, name: str) -> dict[str, Any]:
        image_id = self.resolve(name)
        doc = self.record(image_id)
        cfg = self.config(image_id)
        body = cfg.get("config") or {}
        return {
            "Id": image_id, "RepoTags": self.repo_tags(image_id), "RepoDigests": self.repo_digests(image_id),
            "Parent": self.parent(image_id, doc), "Comment": (cfg.get("history") or [{}])[-1].get("comment", ""),
            "Created": cfg.get("created", doc["created"]), "DockerVersion": "",
            "Author": cfg.get("author", ""),
            "Config": {"Hostname": "", "Domainname": "", "User": body.get("User", ""),
                       "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
                       "Tty": False, "OpenStdin": False, "StdinOnce": False,
                       "Env": body.get("Env"), "Cmd": body.get("Cmd"), "Image": "",
                       "Volumes": body.get("Volumes"), "WorkingDir": body.get("WorkingDir", ""),
                       "Entrypoint": body.get("Entrypoint"), "OnBuild": body.get("OnBuild"),
                       "Labels": body.get("Labels"), "ExposedPorts": body.get("ExposedPorts"),
                       "StopSignal": body.get("StopSignal"),
                       **{k: body[k] for k in ("Healthcheck", "Shell") if body.get(k)}},
            "Architecture": cfg.get("architecture", "amd64"), "Os": cfg.get("os", "linux"),
            "Variant": cfg.get("variant"),
            "Size": doc["size"], "VirtualSize": doc["size"],
            "GraphDriver": {"Name": "overlay2", "Data": {
                "LowerDir": ":".join(self._snaps.path(c) for c in reversed(self.chains(image_id)))}},
            "RootFS": {"Type": "layers", "Layers": doc["diff_ids"]},
            "Metadata": {"LastTagTime": doc.get("tagged", "0001-01-01T00:00:00Z")},
        }

    def history(self, name: str) -> list[dict[str, Any]]:
        image_id = self.resolve(name)
        cfg = self.config(image_id)
        out = []
        entries = cfg.get("history") or []
        for i, h in enumerate(reversed(entries)):
            out.append({"Id": image_id if i == 0 else "<missing>", "Created": _epoch(h.get("created", "")),
                        "CreatedBy": h.get("created_by", ""), "Tags": self.repo_tags(image_id) if i == 0 else None,
                        "Size": self.record(image_id)["size"] if i == len(entries) - 1 else 0,
                        "Comment": h.get("comment", "")})
        return out

    # tag / remove / prune / collect ------------------------------------
    def tag(self, name: str, repo: str, tag: str) -> None:
        image_id = self.resolve(name)
        if not repo:
            raise InvalidArgument("tag: repository name is required")
        ref = reference.parse(f"{repo}:{tag}" if tag else repo)
        target = self.target(name)
        if target is not None and self._db.get_index(target) is not None:  # a multi-platform image stays one
            self._db.set_tag(str(ref), target)
            self.event("tag", image_id, str(ref))
            return
        self._db.set_tag(str(ref), image_id)
        doc = self.record(image_id)
        doc["tagged"] = now_iso()
        self._db.put_image(image_id, doc)
        self.event("tag", image_id, str(ref))

    def remove(self, name: str, force: bool = False) -> list[dict[str, str]]:
        by_ref = None
        try:
            ref = str(reference.parse(name))
            if self._db.tag(ref):
                by_ref = ref
        except InvalidArgument:
            pass
        if by_ref and (target := self._db.tag(by_ref)) and self._db.get_index(target) is not None:
            return self._remove_index_tag(by_ref, target, force)
        image_id = self.resolve(name)
        tags = self.repo_tags(image_id)
        users = self._in_use(image_id)
        if by_ref and len(tags) > 1:
            self._db.remove_tag(by_ref)
            self.event("untag", image_id, by_ref)
            return [{"Untagged": by_ref}]
        if not by_ref and len(tags) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                           "image is referenced in multiple repositories")
        if users:
            if not force:
                what = f'repository reference "{name}"' if by_ref else image_id[7:19]
                raise Conflict(f"conflict: unable to remove {what} (must force) - container "
                               f"{users[0][:12]} is using its referenced image {image_id[7:19]}")
            for t in tags:
                self._db.remove_tag(t)
                self.event("untag", image_id, t)
            return [{"Untagged": t} for t in tags]
        out: list[dict[str, str]] = [{"Untagged": t} for t in tags]
        for t in tags:
            self._db.remove_tag(t)
            self.event("untag", image_id, t)
        parent = str(self.record(image_id).get("parent") or "")
        out += self._delete(image_id)
        out += self._delete_untagged_parents(image_id, parent)
        self.collect()
        return out

    def _remove_index_tag(self, ref: str, index_digest: str, force: bool) -> list[dict[str, str]]:
        index = self._db.get_index(index_digest) or {"children": []}
        children = [c["image"] for c in index["children"] if c.get("image") and self._db.get_image(c["image"])]
        others = [r for r, t in self._all_tags() if t == index_digest and r != ref]
        if not others and not force:
            for image in children:
                if users := self._in_use(image):
                    raise Conflict(f'conflict: unable to remove repository reference "{ref}" (must force) - '
                                   f"container {users[0][:12]} is using its referenced image {image[7:19]}")
        self._db.remove_tag(ref)
        self.event("untag", index_digest, ref)
        out: list[dict[str, str]] = [{"Untagged": ref}]
        if others:
            return out
        self._db.delete_index(index_digest)
        referenced = self._referenced_images()
        for image in children:
            if image not in referenced and not self._in_use(image):
                out += self._delete(image)
        self.collect()
        return out

    def _all_tags(self) -> list[tuple[str, str]]:
        return [(r, t) for t, refs in self._db.tags().items() for r in refs]

    def _referenced_images(self) -> set[str]:
        """Images a tag names directly or through an index."""
        out = set()
        for _, target in self._all_tags():
            index = self._db.get_index(target)
            out |= {c["image"] for c in index["children"] if c.get("image")} if index is not None else {target}
        return out

    def _delete(self, image_id: str) -> list[dict[str, str]]:
        self._db.delete_image(image_id)
        self._events.publish("image", "delete", image_id, {"name": image_id})  # no labels: it is gone
        return [{"Deleted": image_id}]

    def event(self, action: str, actor: str, name: str, image_id: str = "") -> None:
        """Publish an image event as Docker does: the image's labels as attributes, and `name`.

        *actor* is the event's id (an image id, or a reference for pull and push); the labels are
        those of *image_id* (default: *actor*) when its config is here.
        """
        attrs: dict[str, str] = {}
        source = image_id or actor
        if source.startswith("sha256:"):
            try:
                labels = (self.config(source).get("config") or {}).get("Labels") or {}
                attrs.update({str(k): str(v) for k, v in labels.items()})
            except (NotFound, OSError, ValueError, AttributeError):
                pass
        attrs["name"] = name
        self._events.publish("image", action, actor, attrs)

    # parents: the image a build step or a commit started from ------------
    def set_parent(self, image_id: str, parent: str | None) -> None:
        """Record that *image_id* was made from *parent* (a build step's base, a commit's image)."""
        doc = self._db.get_image(image_id)
        if doc is None or not parent or parent == image_id or doc.get("parent") == parent:
            return
        doc["parent"] = parent
        self._db.put_image(image_id, doc)

    def parent(self, image_id: str, doc: dict[str, Any] | None = None) -> str:
        """The image's parent if it is still here, else "" (inspect's Parent, the listing's ParentId)."""
        doc = doc if doc is not None else self._db.get_image(image_id) or {}
        parent = str(doc.get("parent") or "")
        return parent if parent and self._db.get_image(parent) is not None else ""

    def _children(self) -> dict[str, set[str]]:
        """parent id -> the ids of the images here made from it."""
        out: dict[str, set[str]] = {}
        for image_id, doc in self._db.images():
            if doc.get("parent"):
                out.setdefault(str(doc["parent"]), set()).add(image_id)
        return out

    def _delete_untagged_parents(self, image_id: str, parent: str) -> list[dict[str, str]]:
        """After *image_id* is deleted: its parent too, and so on up, while each is untagged, unused
        and the parent of nothing else (what `docker rmi` does unless --no-prune)."""
        out: list[dict[str, str]] = []
        seen = {image_id}
        while parent and parent not in seen:
            seen.add(parent)
            doc = self._db.get_image(parent)
            if doc is None or self.repo_tags(parent) or self._in_use(parent) or self._children().get(parent) \
                    or parent in self._referenced_images():
                break
            out += self._delete(parent)
            parent = str(doc.get("parent") or "")
        return out

    def prune(self, all_: bool = False, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Remove unused images: dangling ones (no tag), or with *all_* every one no container uses."""
        deleted: list[dict[str, str]] = []
        referenced = self._referenced_images() | (set() if all_ else self._db.build_cache_images() | set(self._children()))
        for image_id, _ in list(self._db.images()):
            if self._in_use(image_id) or (not all_ and image_id in referenced):
                continue
            if filters:
                item = self.summary(image_id, self.record(image_id), self.repo_tags(image_id))
                if not _image_matches(item, {k: v for k, v in filters.items() if k != "dangling"}, self):
                    continue
            for t in self.repo_tags(image_id):
                self._db.remove_tag(t)
                self.event("untag", image_id, t)
                deleted.append({"Untagged": t})
            deleted += self._delete(image_id)
        if all_:
            for digest, idx in list(self._db.indexes()):
                if not any(c.get("image") and self._db.get_image(c["image"]) for c in idx["children"]):
                    for ref, target in self._all_tags():
                        if target == digest:
                            self._db.remove_tag(ref)
                            deleted.append({"Untagged": ref})
                    self._db.delete_index(digest)
        reclaimed = self.collect()
        self._events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def collect(self) -> int:
        """Remove blobs and snapshots nothing refers to (no image, index, container or lease); bytes freed."""
        keep_blobs: set[str] = set(self._leases)
        keep_chains: set[str] = set(self._leases)
        for image_id, doc in self._db.images():
            keep_blobs |= {image_id, doc["manifest"], *doc["layers"]}
            keep_chains |= set(chain_ids(doc["diff_ids"]))
        for digest, idx in self._db.indexes():
            keep_blobs.add(digest)
            keep_blobs |= {c["manifest"] for c in idx["children"] if self._store.exists(c["manifest"])}
        freed = 0
        for digest in self._store.digests():
            if digest not in keep_blobs:
                with contextlib.suppress(OSError):
                    freed += self._store.size(digest)
                self._store.delete(digest)
        for chain in self._snaps.chains():
            if chain not in keep_chains:
                freed += self.unpack_size(chain)
                self._snaps.remove(chain)
        return freed

    def layers_size(self) -> int:
        """Bytes of every unpacked layer (each shared layer once): `docker system df`'s LayersSize."""
        return sum(self.unpack_size(c) for c in self._snaps.chains())

    def unpack_size(self, chain: str) -> int:
        try:
            with open(os.path.join(os.path.dirname(self._snaps.path(chain)), "size")) as f:
                return int(f.read() or 0)
        except (OSError, ValueError):
            return 0


def _epoch(iso: str) -> int:
    try:
        return timefmt.parse_ns(iso) // 1_000_000_000
    except ValueError:
        return 0


def reference_matches(patterns: list[str], name: str) -> bool:
    """Docker's `reference` filter: a pattern (Go's path.Match: `*` and `?` stop at `/`) matching the
    name (`busybox:latest`, `busybox@sha256:...`) or the name without its tag or digest (`busybox`)."""
    bare = name.split("@", 1)[0]
    if ":" in bare.rsplit("/", 1)[-1]:
        bare = bare.rsplit(":", 1)[0]
    return any((g := _glob(p)) is not None and (g.fullmatch(name) or g.fullmatch(bare)) for p in patterns)


def _glob(pattern: str) -> Any | None:
    """Go's path.Match pattern as a regular expression (a malformed class matches itself literally),
    compiled by RE2: however many stars a client sends, matching stays linear."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + "".join(
                "-" if c == "-" else re.escape(c) for c in body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return patterns.go_regex("".join(out))


def _image_matches(item: dict[str, Any], filters: dict[str, list[str]], images: Images) -> bool:
    for key, values in filters.items():
        if key == "dangling":
            dangling = not item["RepoTags"]
            if any((v in ("true", "1")) != dangling for v in values):
                return False
        elif key == "reference":
            if not any(reference_matches(values, t) for t in item["RepoTags"] + item["RepoDigests"]):
                return False
        elif key == "label":
            labels = item["Labels"]
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
        elif key in ("before", "since", "until"):  # as Docker: relative to another image, or to a time
            created = _created_ns(images.record(item["Id"]))
            for v in values:
                if key == "until":
                    try:
                        limit = timefmt.parse_since(v)
                    except ValueError:
                        raise InvalidArgument(f"invalid filter 'until={v[:64]}': use a time (unix seconds, RFC 3339) "
                                              "or a duration such as 10m") from None
                    if created > limit:
                        return False
                    continue
                other = _created_ns(images.record(images.resolve(v)))
                if (key == "before" and created >= other) or (key == "since" and created <= other):
                    return False
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def _created_ns(doc: dict[str, Any]) -> int:
    try:
        return timefmt.parse_ns(doc["created"])
    except (KeyError, ValueError):
        return 0
