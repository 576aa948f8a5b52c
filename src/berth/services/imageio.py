"""Images in and out as files: `docker save`, `docker load`, and `docker commit` of a container's changes.

Strategy: the formats live in berth.image (archivesave, archiveextract, archiveread,
ocilayout, layerdiff);
this module moves bytes between them and the stores. A load is extracted
safely, as it arrives, into a private directory under the daemon's root
(services.unpacker.ThreadFeed: nothing spooled), read, and only then stored:
every blob is linked in from there once its digest is checked (LocalStore.adopt),
and the image records and tags are written last, so a bad archive leaves
nothing visible. Commit turns the container's overlay upper directory into
one layer (overlay whiteouts become OCI whiteouts) on top of its image.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from berth import timefmt
from berth.builder.configedit import apply_changes
from berth.content.local import LocalStore
from berth.errors import InvalidArgument, NotFound
from berth.host import fs, spool
from berth.image import archiveextract, archiveread, archiverefs, archivesave, layerdiff
from berth.oci import image as oci_image
from berth.oci import reference
from berth.oci.imageconfig import HistoryEntry, RuntimeConfig
from berth.oci.platform import Platform
from berth.services.events import Events
from berth.services.images import Images
from berth.services.layers import Layers, Leases
from berth.services.unpacker import ThreadFeed
from berth.snapshot.overlay import chain_ids

LAYER_GZIP = oci_image.OCI_LAYER + "+gzip"
UNPACK_THREADS = 2  # layers hashed, then unpacked, at once by a load (gunzip, sha256 and writes release the GIL)


class ImageIO:
    def __init__(self, images: Images, leases: Leases, store: LocalStore, events: Events, root: str,
                 layers: Layers | None = None) -> None:
        self._images, self._leases, self._store, self._events = images, leases, store, events
        self._layers = layers  # given: a load unpacks an image's layers UNPACK_THREADS at a time
        self._tmp = os.path.join(root, "tmp")
        os.makedirs(self._tmp, exist_ok=True)
        for stale in os.listdir(self._tmp):  # a load cut short by a crash
            fs.rmtree(os.path.join(self._tmp, stale))

    # save -------------------------------------------------------------------------
    def save(self, names: Sequence[str]) -> Iterator[bytes]:
        """The archive of *names* (tags or ids) as a stream; raises before the first byte on a bad name."""
        if not names:
            raise InvalidArgument("docker save: name at least one image")
        items = [self._save_item(n) for n in names]
        for name in dict.fromkeys(self._images.resolve(n) for n in names):  # as Docker: each image, by id
            self._images.event("save", name, name)
        return archivesave.iter_archive(items, self._store.path)

    def _save_item(self, name: str) -> archivesave.SaveImage:
        target = self._images.target(name)
        is_ref = target is not None
        if target is None:
            target = self._images.resolve(name)
        label = [str(reference.parse(name))] if is_ref else []
        index = self._images.index(target)
        if index is None:
            manifest = self._store.read(self._images.record(target).manifest)
            return archivesave.SaveImage.from_manifest(label, manifest)
        image_id = self._images.resolve(name)
        manifest = self._store.read(self._images.record(image_id).manifest)
        extra: list[str] = []
        for child in index.images():
            if child != image_id:
                try:
                    record = self._images.record(child)
                except NotFound:
                    continue
                extra += [record.manifest, child, *record.layers]
        return archivesave.SaveImage.from_manifest(label, manifest, index=self._store.read(target),
                                                   extra_blobs=extra)

    # load -------------------------------------------------------------------------
    async def load(self, body: AsyncIterator[bytes]) -> list[str]:
        """Store every image of the archive streamed in *body*; return Docker's "Loaded image" lines.

        An operation of the store: the blobs it links in stay until recorded (content.local)."""
        with self._store.operation():
            work = Path(await spool.settled(tempfile.mkdtemp, None, "load-", self._tmp))
            try:
                root = work / "x"
                await self._extract(body, root)
                return await asyncio.to_thread(self._load_extracted, root)
            finally:
                await spool.settled(fs.rmtree, str(work))

    def operation(self) -> contextlib.AbstractContextManager[None]:
        """Bracket work that stores blobs before an image refers to them (a build: content.local)."""
        return self._store.operation()

    async def _extract(self, body: AsyncIterator[bytes], root: Path) -> None:
        """Extract the archive in *body* into *root* as it arrives (a worker thread reads it: one pass,
        nothing spooled). The whole body is read even when the archive is refused early, so the
        client is answered after its upload, as when it was spooled first."""
        feed = ThreadFeed(lambda f: _extract_all(f, root))
        received = 0
        failed = False
        try:
            async for chunk in body:
                received += len(chunk)
                if not failed:
                    try:
                        await feed.feed(chunk)
                    except Exception:
                        failed = True  # raised again by finish(); read the rest of the body first
        except BaseException:
            await feed.abort()
            raise
        if received == 0:
            await feed.abort()
            raise InvalidArgument("docker load: the request body is empty: send an image archive "
                                  "(docker save's output or an OCI layout tar)")
        await feed.finish()

    def _load_extracted(self, root: Path) -> list[str]:
        refs = archiveread.read_archive(root)
        if not refs:
            raise InvalidArgument("docker load: the archive names no image")
        lines: list[str] = []
        for ref in refs:
            lines += self._store_ref(ref)
        return lines

    def _store_ref(self, ref: archiverefs.ArchiveRef) -> list[str]:
        ids: dict[str, str] = {}
        leased: list[str] = []
        try:
            for image in ref.images:
                if image.is_attestation:
                    continue
                manifest = self._store_image_blobs(image, leased)
                self._unpack_ahead(manifest, leased)
                image_id = self._images.register(oci_image.parse_image_manifest(manifest))
                ids["sha256:" + hashlib.sha256(manifest).hexdigest()] = image_id
            if not ids:
                raise InvalidArgument("docker load: the archive holds no runnable image for "
                                      f"{', '.join(ref.names) or 'its entry'}")
            target = next(iter(ids.values()))
            for blob in ref.indexes[1:]:  # nested indexes
                if not self._store.reuse(blob.digest):
                    self._store.put(blob.data, blob.digest)
            if ref.indexes:
                index = oci_image.parse_manifest(ref.indexes[0].data, what="the archive's index")
                if not isinstance(index, oci_image.ImageIndex):
                    raise InvalidArgument("docker load: the archive's index is an image manifest, not an index")
                target = self._images.register_index(index, ids)
        finally:
            for item in leased:
                self._leases.release(item)
        lines = []
        for image_id in dict.fromkeys(ids.values()):  # as Docker: one event per image loaded, by its id
            self._images.event("load", image_id, image_id)
        for name in ref.names:
            self._images.set_tag(name, target)
            lines.append(f"Loaded image: {name}")
        if not ref.names:
            lines += [f"Loaded image ID: {i}" for i in ids.values()]
        return lines

    def _store_image_blobs(self, image: archiverefs.ArchiveImage, leased: list[str]) -> bytes:
        """Copy the image's config and layers into the store (verified); return its manifest bytes."""
        if not self._store.reuse(image.config_digest):
            self._store.put(image.config, image.config_digest)
        self._hold(image.config_digest, leased)
        descriptors = []
        with ThreadPoolExecutor(UNPACK_THREADS, thread_name_prefix="adopt") as pool:  # sha256 releases the GIL
            jobs = [pool.submit(self._ingest_file, layer.path, layer.digest) for layer in image.layers]
            digests = [job.result() for job in jobs]  # the first error; the others finish first
        for layer, digest in zip(image.layers, digests, strict=True):
            self._hold(digest, leased)
            media = layer.media_type or (LAYER_GZIP if layer.compression.name == "GZIP" else oci_image.OCI_LAYER)
            descriptors.append({"mediaType": media, "digest": digest, "size": self._store.size(digest)})
        if image.manifest is not None:
            return image.manifest.data
        manifest = {"schemaVersion": 2, "mediaType": oci_image.OCI_MANIFEST,
                    "config": {"mediaType": oci_image.OCI_CONFIG, "digest": image.config_digest, "size": len(image.config)},
                    "layers": descriptors}
        return json.dumps(manifest, separators=(",", ":")).encode()

    def _unpack_ahead(self, manifest: bytes, leased: list[str]) -> None:
        """Unpack the image's layers in parallel before Images.register would, one by one (it then finds
        them unpacked). Layers are independent until mounted: each goes to its own directory. Anything
        wrong is left for register to say."""
        if self._layers is None:
            return
        try:
            parsed = oci_image.parse_image_manifest(manifest)
            config = oci_image.parse_config(self._store.read(parsed.config.digest), digest=parsed.config.digest)
        except (InvalidArgument, NotFound):
            return
        diff_ids = list(config.diff_ids)
        if len(diff_ids) != len(parsed.layers):
            return
        jobs = []
        for desc, diff_id, chain in zip(parsed.layers, diff_ids, chain_ids(diff_ids), strict=True):
            self._hold(chain, leased)
            if not self._layers.has(chain):
                jobs.append((desc.digest, diff_id, chain))
        if len(jobs) < 2:
            return
        with ThreadPoolExecutor(UNPACK_THREADS, thread_name_prefix="unpack") as pool:
            for job in [pool.submit(self._layers.unpack, *j) for j in jobs]:
                job.result()  # the first error; the others finish first (the pool is waited for)

    def _hold(self, item: str, leased: list[str]) -> None:
        self._leases.hold(item)
        leased.append(item)

    def _ingest_file(self, path: Path, expected: str | None) -> str:
        if expected and self._store.reuse(expected):
            return expected
        try:  # the extracted file becomes the blob: linked, not copied (it is berthd's own, under its root)
            return self._store.adopt(str(path), expected)
        except InvalidArgument as exc:
            raise InvalidArgument(f"docker load: layer {path.name} does not match its digest ({exc})") from None

    # commit -----------------------------------------------------------------------
    def layer_from_chunks(self, chunks: Iterator[bytes]) -> tuple[str, str]:
        """Store an uncompressed layer tar; return (blob digest, diff id) — the same for a plain tar.

        Call it inside an `operation()` that lasts until an image refers to the layer (`derive`)."""
        ingest = self._store.ingest()
        try:
            for chunk in chunks:
                ingest.write(chunk)
            digest = ingest.commit()
        except BaseException:
            ingest.abort()
            raise
        return digest, digest

    def derive(self, base_id: str | None, runtime: RuntimeConfig, *, layer: str | None, step: HistoryEntry,
               author: str = "", container: str = "", platform: Platform | None = None) -> str:
        """A new image: *base_id* (None: scratch, of *platform*) with the runtime defaults *runtime*, plus
        *layer* (an uncompressed layer blob already in the store) if given, and *step* as one more history
        entry (made now); return its id. *container*: the container it was committed from.

        Metadata-only steps (no layer) add an `empty_layer` history entry, as Docker does.
        """
        if base_id:
            base_config = self._images.config(base_id).doc
        else:
            plat = platform or Platform("linux", "amd64")
            base_config = {"architecture": plat.architecture or "amd64", "os": plat.os or "linux",
                           "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        base_layers: list[dict[str, Any]] = []
        diff_ids: list[str] = []
        if base_id:
            base = self._images.record(base_id)
            base_layers = [d.as_dict() for d in oci_image.parse_image_manifest(
                self._store.read(base.manifest), what="the base image's manifest").layers]
            diff_ids = list(base.diff_ids)
        leased = [layer] if layer else []
        with self._store.operation(), self._leases.lease(leased):
            created = timefmt.now()
            config = {k: v for k, v in base_config.items() if k not in ("container", "container_config")}
            config.update({"created": created, "config": runtime.to_doc()})
            if container:
                config["container"] = container
            if platform and platform.variant:
                config["variant"] = platform.variant
            if author:
                config["author"] = author
            layers = list(base_layers)
            if layer:
                diff_ids.append(layer)
                layers.append({"mediaType": oci_image.OCI_LAYER, "digest": layer, "size": self._store.size(layer)})
            entry = replace(step, created=created, empty_layer=not layer)
            config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
            config["history"] = [*(base_config.get("history") or []), entry.to_doc()]
            raw = json.dumps(config, separators=(",", ":")).encode()
            config_digest = self._store.put(raw)
            manifest = {"schemaVersion": 2, "mediaType": oci_image.OCI_MANIFEST,
                        "config": {"mediaType": oci_image.OCI_CONFIG, "digest": config_digest, "size": len(raw)},
                        "layers": layers}
            image_id = self._images.register(
                oci_image.parse_image_manifest(json.dumps(manifest, separators=(",", ":")).encode()))
            self._images.set_parent(image_id, base_id)  # inspect's Parent; hides untagged parents from listings
            return image_id

    def commit(self, image_id: str, upper: Path, container_config: RuntimeConfig, *, repo: str, tag: str,
               comment: str, author: str, changes: Sequence[str], container_id: str) -> str:
        """A new image: *image_id* plus the container's changes in *upper*; return its id.

        *container_config*: the container's config (with the request's overrides), whose
        command, environment, user, labels, ports, volumes and the like replace the image's;
        then the `--change` instructions *changes* apply.
        """
        ref = reference.parse(f"{repo}:{tag}" if tag else repo) if repo else None
        base = self._images.config(image_id).runtime
        with self._store.operation():
            layer, _ = self.layer_from_chunks(layerdiff.iter_layer_from_upper(upper))
            given = {name: getattr(container_config, name) for name in COMMITTED if getattr(container_config, name)}
            runtime = _with_changes(replace(base, **given), changes)
            step = HistoryEntry(created_by=" ".join(container_config.cmd or ()), comment=comment, author=author)
            new_id = self.derive(image_id, runtime, layer=layer, step=step, author=author, container=container_id)
        if ref is not None:
            self._images.set_tag(str(ref), new_id)
        return new_id  # the `commit` event is the container's (Containers.committed)


# what a commit takes from the container's config when it is set there (not empty)
COMMITTED = ("cmd", "entrypoint", "env", "working_dir", "user", "labels", "exposed_ports", "stop_signal", "volumes")


def _extract_all(f: IO[bytes], root: Path) -> None:
    """Extract the archive read from *f* into *root*, then read *f* to its end (a tar's padding)."""
    root.mkdir()
    archiveextract.extract_archive(f, root)  # type: ignore[arg-type]
    while f.read(1 << 20):
        pass


def _with_changes(runtime: RuntimeConfig, changes: Sequence[str]) -> RuntimeConfig:
    """*runtime* with `--change` instructions applied (berth.builder.configedit edits the JSON form)."""
    doc = runtime.to_doc()
    apply_changes(list(changes), doc)
    return RuntimeConfig.from_doc(doc)
