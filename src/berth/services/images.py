"""Images: register (pull, load, commit, import), resolve by name and platform, tag, and their records.

Strategy: an image is an OCI manifest + config in the content store, its
layers unpacked once as snapshots (services.layers: one directory per chain
id, so images share layers), and a row in the metadata database whose id is
the config digest (as Docker's image IDs are). A multi-platform image is an
index kept whole: the tag names the index, whose record lists each
platform's manifest and, once its content is here, its image; a name
resolves to the image of the platform asked for (the host's by default).
The records are typed (services.imagerecords); the listings and their
filters are services.imageviews'; removal and the GC (which deletes what no
image, index or lease refers to) are services.imageremoval's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, AsyncIterator, Callable

from berth import timefmt
from berth.builder.configedit import apply_changes
from berth.content.local import LocalStore
from berth.errors import InvalidArgument, NotFound
from berth.host import spool
from berth.metadata.db import Database
from berth.oci import image as oci_image
from berth.oci import platform as platforms
from berth.oci import reference
from berth.oci.image import ImageConfig, ImageIndex, ImageManifest
from berth.services.events import Events
from berth.services.imagerecords import (
    ImageRecord,
    ImageRecords,
    IndexChild,
    IndexRecord,
)
from berth.services.layers import Layers, Leases
from berth.snapshot.overlay import chain_ids

now_iso = timefmt.now


IMPORT_WRITE = 1 << 20  # bytes of an import's body gathered before one write (in a thread)


_off_loop = spool.settled  # fn(*args) in a thread; a cancelled caller still waits for it (it owns files)


class Images:
    def __init__(self, db: Database, store: LocalStore, layers: Layers, leases: Leases, events: Events,
                 in_use: Callable[[str], list[str]]) -> None:
        self._db, self._store, self._layers, self._leases, self._events = db, store, layers, leases, events
        self._records = ImageRecords(db)
        self.in_use = in_use  # image id -> ids of containers using it

    # import -------------------------------------------------------------
    async def import_tarball(self, body: AsyncIterator[bytes], repo: str, tag: str,
                             changes: list[str], message: str, platform: str = "") -> str:
        """Store the tarball streamed in *body* as a one-layer image; return its id (an operation of
        the store: what it writes stays until it is recorded, content.local)."""
        with self._store.operation():
            return await self._import_tarball(body, repo, tag, changes, message, platform)

    async def _import_tarball(self, body: AsyncIterator[bytes], repo: str, tag: str,
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
        with self._leases.lease([layer_digest]):
            try:
                size, diff_id, media = await _off_loop(self._layers.unpack_single, layer_digest)
            except BaseException:
                if added and not any(layer_digest in r.layers for _, r in self._records.items()):
                    await _off_loop(self._store.delete, layer_digest)
                raise
            with self._leases.lease([diff_id]):
                created = now_iso()
                config = {
                    "architecture": arch, "os": "linux", "created": created, "config": config_body,
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                    "history": [{"created": created, "created_by": "", "comment": message or "Imported from -"}],
                }
                config_raw = json.dumps(config, separators=(",", ":")).encode()
                config_digest = await _off_loop(self._store.put, config_raw)
                manifest = {
                    "schemaVersion": 2, "mediaType": oci_image.OCI_MANIFEST,
                    "config": {"mediaType": oci_image.OCI_CONFIG, "digest": config_digest, "size": len(config_raw)},
                    "layers": [{"mediaType": media, "digest": layer_digest, "size": self._store.size(layer_digest)}],
                }
                manifest_digest = await _off_loop(self._store.put,
                                                  json.dumps(manifest, separators=(",", ":")).encode())
                self._records.put(config_digest, ImageRecord(manifest_digest, (layer_digest,), (diff_id,), size,
                                                             created))
        if ref is not None:
            self._db.set_tag(str(ref), config_digest)
        self.event("import", config_digest, config_digest)
        return config_digest

    # registering images from manifests (pull, load, commit) --------------
    def register(self, manifest: ImageManifest, *, config: ImageConfig | None = None,
                 repo_digests: Sequence[str] = ()) -> str:
        """Record the image of *manifest* (its config and layers already in the store); return its id.

        *config*: the manifest's config, when the caller parsed it already (a pull does).

        Layers are unpacked (each verified against the config's diff_ids) unless
        a snapshot of the same chain is here already.

        Raises:
            InvalidArgument: the config is malformed (oci.image.MalformedImage), or a layer is corrupt.
        """
        config_digest = manifest.config.digest
        layers = [d.digest for d in manifest.layers]
        manifest_digest = oci_image.digest_of(manifest.raw)
        with self._leases.lease([manifest_digest, config_digest, *layers]):  # before they are looked for
            return self._register(manifest, manifest_digest, config, config_digest, layers, repo_digests)

    def _register(self, manifest: ImageManifest, manifest_digest: str, config: ImageConfig | None,
                  config_digest: str, layers: list[str], repo_digests: Sequence[str]) -> str:
        if not self._store.reuse(manifest_digest):
            self._store.put(manifest.raw, manifest_digest)
        if config is None or config.digest != config_digest:
            config = oci_image.parse_config(self._store.read(config_digest), digest=config_digest,
                                            what=f"the image config {config_digest}")
        diff_ids = list(config.diff_ids)
        if len(diff_ids) != len(layers):
            raise InvalidArgument(f"the image config lists {len(diff_ids)} layers but its manifest {len(layers)}")
        chains = chain_ids(diff_ids)
        with self._leases.lease(chains):
            size = sum(self._layers.unpack(layer, diff, chain) for layer, diff, chain in zip(layers, diff_ids, chains, strict=False))
            old = self._records.get(config_digest)  # registered again (a pull of a new tag): keep what it had
            fresh = ImageRecord(manifest_digest, tuple(layers), tuple(diff_ids), size,
                                config.created or (old.created if old else "") or now_iso(),
                                tuple(sorted({*(old.repo_digests if old else ()), *repo_digests})))
            self._records.put(config_digest, fresh if old is None else replace(
                fresh, tagged=old.tagged, parent=old.parent, extra=old.extra))
        return config_digest

    def register_index(self, index: ImageIndex, images: dict[str, str]) -> str:
        """Record a multi-platform index; *images* maps child manifest digests to local image ids."""
        digest = oci_image.digest_of(index.raw)
        entries = [(d.digest, dict(d.platform or {})) for d in index.manifests]
        if not self._store.reuse(digest):
            self._store.put(index.raw, digest)
        old = self._records.index(digest)
        before = {c.manifest: c.image for c in old.children} if old is not None else {}
        children = tuple(IndexChild(m, plat, images.get(m) or before.get(m) or "") for m, plat in entries)
        self._records.put_index(digest, IndexRecord(children, now_iso()))
        return digest

    def set_tag(self, ref: str, target: str, repo_digest: str = "") -> None:
        """Point *ref* at an image id or index digest (a pull or load naming it)."""
        self._db.set_tag(ref, target)
        if repo_digest and (record := self._records.get(target)) is not None:
            self._records.put(target, replace(record, repo_digests=tuple(sorted({*record.repo_digests, repo_digest}))))
        if repo_digest and (idx := self._records.index(target)) is not None:
            self._records.put_index(target, replace(idx, repo_digests=tuple(sorted({*idx.repo_digests, repo_digest}))))

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
                matches = [i for i, _ in self._records.items() if i[7:].startswith(hexpart)]
                if len(matches) == 1:
                    target = matches[0]
        if target is None:
            raise NotFound(f"No such image: {name}")
        index = self._records.index(target)
        if index is not None:
            return self._pick(name, index, wanted)
        if wanted is not None:
            have = platforms.of_config(self.config(target).doc)
            if not platforms.matches(wanted, have):
                raise InvalidArgument(platforms.mismatch_message(name, wanted, [have]))
        return target

    def target(self, name: str) -> str | None:
        """What the reference *name* points at (image id or index digest), if it is a known tag."""
        try:
            return self._db.tag(str(reference.parse(name)))
        except InvalidArgument:
            return None

    def _pick(self, name: str, index: IndexRecord, wanted: platforms.Platform | None) -> str:
        want = wanted or platforms.host()
        descriptors = _descriptors(index.children)
        chosen = platforms.choose(want, descriptors)
        if chosen is None:
            raise InvalidArgument(platforms.mismatch_message(name, want, platforms.available(descriptors)))
        image = next(c.image for c in index.children if c.manifest == chosen["digest"])
        if not image or not self.has(image):
            raise NotFound(f"No such image: {name} for {want} (its index lists it, but that platform's content "
                           f"is not here: docker pull --platform {want} {name})")
        return image

    def _default_child(self, index: IndexRecord) -> str | None:
        """The image a multi-platform tag shows in listings: the host's, else the first one here."""
        present = [c for c in index.children if c.image and self.has(c.image)]
        if not present:
            return None
        chosen = platforms.choose(platforms.host(), _descriptors(present))
        pick = next((c for c in present if chosen and c.manifest == chosen["digest"]), present[0])
        return pick.image

    def tag_map(self) -> dict[str, list[str]]:
        """image id -> the tags that show it (index tags show their default child)."""
        out: dict[str, list[str]] = {}
        for target, refs in self._db.tags().items():
            index = self._records.index(target)
            image = self._default_child(index) if index is not None else target
            if image:
                out.setdefault(image, []).extend(refs)
        return {k: sorted(v) for k, v in out.items()}

    def manifest_bytes(self, image_id: str) -> bytes:
        return self._store.read(self.record(image_id).manifest)

    def layer_dirs(self, image_id: str) -> list[str]:
        """The image's unpacked layers, top first (overlayfs lowerdir order)."""
        return [self._layers.path(c) for c in reversed(self.chains(image_id))]

    def index(self, digest: str) -> IndexRecord | None:
        """The record of a multi-platform index, if *digest* names one."""
        return self._records.index(digest)

    def record(self, image_id: str) -> ImageRecord:
        """The image's record.

        Raises:
            NotFound: no image has this id.
        """
        record = self._records.get(image_id)
        if record is None:
            raise NotFound(f"No such image: {image_id}")
        return record

    def has(self, image_id: str) -> bool:
        return self._records.get(image_id) is not None

    def config(self, image_id: str) -> ImageConfig:
        """The image's config (its id is the config's digest).

        Raises:
            NotFound: the config is not in the store. MalformedImage: it is not an image config.
        """
        return oci_image.parse_config(self._store.read(image_id), digest=image_id,
                                      what=f"the image config {image_id}")

    def chains(self, image_id: str) -> list[str]:
        return chain_ids(list(self.record(image_id).diff_ids))

    def repo_tags(self, image_id: str) -> list[str]:
        return self.tag_map().get(image_id, [])

    def repo_digests(self, image_id: str) -> list[str]:
        out = set(self.record(image_id).repo_digests)
        for _, idx in self._records.indexes():
            if image_id in idx.images():
                out |= set(idx.repo_digests)
        return sorted(out)

    # tag / remove / prune / collect ------------------------------------
    def tag(self, name: str, repo: str, tag: str) -> None:
        image_id = self.resolve(name)
        if not repo:
            raise InvalidArgument("tag: repository name is required")
        ref = reference.parse(f"{repo}:{tag}" if tag else repo)
        target = self.target(name)
        if target is not None and self._records.index(target) is not None:  # a multi-platform image stays one
            self._db.set_tag(str(ref), target)
            self.event("tag", image_id, str(ref))
            return
        self._db.set_tag(str(ref), image_id)
        self._records.put(image_id, replace(self.record(image_id), tagged=now_iso()))
        self.event("tag", image_id, str(ref))

    def all_tags(self) -> list[tuple[str, str]]:
        return [(r, t) for t, refs in self._db.tags().items() for r in refs]

    def referenced_images(self) -> set[str]:
        """Images a tag names directly or through an index."""
        out = set()
        for _, target in self.all_tags():
            index = self._records.index(target)
            out |= set(index.images()) if index is not None else {target}
        return out

    def event(self, action: str, actor: str, name: str, image_id: str = "") -> None:
        """Publish an image event as Docker does: the image's labels as attributes, and `name`.

        *actor* is the event's id (an image id, or a reference for pull and push); the labels are
        those of *image_id* (default: *actor*) when its config is here.
        """
        attrs: dict[str, str] = {}
        source = image_id or actor
        if source.startswith("sha256:"):
            try:
                attrs.update(self.config(source).runtime.labels or {})
            except (NotFound, InvalidArgument, OSError, ValueError):
                pass
        attrs["name"] = name
        self._events.publish("image", action, actor, attrs)

    # parents: the image a build step or a commit started from ------------
    def set_parent(self, image_id: str, parent: str | None) -> None:
        """Record that *image_id* was made from *parent* (a build step's base, a commit's image)."""
        record = self._records.get(image_id)
        if record is None or not parent or parent == image_id or record.parent == parent:
            return
        self._records.put(image_id, replace(record, parent=parent))

    def parent(self, image_id: str, record: ImageRecord | None = None) -> str:
        """The image's parent if it is still here, else "" (inspect's Parent, the listing's ParentId)."""
        record = record if record is not None else self._records.get(image_id)
        parent = record.parent if record is not None else ""
        return parent if parent and self.has(parent) else ""

    def records(self) -> list[tuple[str, ImageRecord]]:
        """(id, record) of every image here."""
        return self._records.items()

    def build_cache_images(self) -> set[str]:
        """Images a build step made (Docker's intermediates): listed only with --all."""
        return set(self._db.build_cache_images())

    def children(self) -> dict[str, set[str]]:
        """parent id -> the ids of the images here made from it."""
        out: dict[str, set[str]] = {}
        for image_id, record in self._records.items():
            if record.parent:
                out.setdefault(record.parent, set()).add(image_id)
        return out


def _descriptors(children: Sequence[IndexChild]) -> list[dict[str, Any]]:
    """An index's children as berth.oci.platform's choose() reads descriptors."""
    return [{"digest": c.manifest, "platform": c.platform} for c in children]
