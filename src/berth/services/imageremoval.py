"""Image removal: `rmi` (untag, delete, and the untagged parents above), `image prune`, and the GC.

Strategy: records go first (tags, then the image, then its unused parents,
then a multi-platform index none of whose platforms is left, with its tags),
bytes after: `collect` deletes every blob and unpacked layer that no image or
index record refers to, so a daemon killed between the two leaves garbage the
next collection (at the latest the one at start) takes, never an image with a
part missing. Work in progress is never collected from under it: what a pull,
load or commit leases (services.layers.Leases) or publishes during an
operation (content.local: marks) stays, each item checked and deleted under
the guards' locks. Ingest files no write owns go; a partial download stays
while a pull works on it and PARTIAL_IDLE seconds after its last byte, so a
retried pull resumes it (an `image prune -a` drops every idle one). The
collection is file work: `collect_async` runs it in a thread, one at a time.
What rmi and prune did comes back as typed `Removal`s, in order
(api.views.images renders Docker's JSON for them).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from berth.content.local import LocalStore
from berth.errors import Conflict, InvalidArgument
from berth.metadata.db import Database
from berth.oci import reference
from berth.services.events import Events
from berth.services.imagerecords import ImageRecords
from berth.services.images import Images
from berth.services.imageviews import ImageViews, image_matches
from berth.services.layers import Layers, Leases
from berth.snapshot.overlay import chain_ids

PARTIAL_IDLE = 24 * 3600.0  # seconds a partial download no pull works on is kept for a retry to resume


@dataclass(frozen=True, slots=True)
class Removal:
    """One thing rmi or prune did: a tag removed (`untagged`: the reference) or an image deleted (its id)."""

    untagged: str = ""
    deleted: str = ""


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What `image prune` removed, in order, and the bytes the collection freed."""

    removed: tuple[Removal, ...]
    reclaimed: int


class ImageRemoval:
    def __init__(self, images: Images, views: ImageViews, db: Database, store: LocalStore, layers: Layers,
                 leases: Leases, events: Events) -> None:
        self._images, self._views, self._db, self._store = images, views, db, store
        self._records = ImageRecords(db)
        self._layers, self._leases, self._events = layers, leases, events
        self._collecting = threading.Lock()

    async def remove_async(self, name: str, force: bool = False) -> list[Removal]:
        """`remove`, its collection in a worker thread."""
        out = self.remove(name, force, collect=False)
        await self.collect_async()  # an index untagged for good leaves blobs even when no image goes
        return out

    async def prune_build_cache(self, before: float | None = None) -> tuple[int, int]:
        """`docker builder prune`: forget the build-cache records (those made before *before*, a Unix
        time, for `--filter until=`), delete the images only they kept (a build step's image no tag,
        container, kept image or remaining record needs), then collect; (records forgotten, bytes freed)."""
        cached = self._db.build_cache_images(before)
        cleared = self._db.build_cache_clear(before)
        cached -= self._db.build_cache_images()  # still named by a younger record
        while True:  # a step's image goes once the steps made from it went: up the chain, as rmi does
            referenced, parents = self._images.referenced_images(), self._images.children()
            gone = [i for i in cached if self._images.has(i) and i not in referenced and i not in parents
                    and not self._images.repo_tags(i) and not self._images.in_use(i)]
            if not gone:
                break
            for image_id in gone:
                self._delete(image_id)
        return cleared, await self.collect_async()

    async def prune_async(self, all_: bool = False, filters: dict[str, list[str]] | None = None) -> PruneResult:
        """`prune`, its collection in a worker thread."""
        deleted = self._prune_records(all_, filters)
        reclaimed = await self.collect_async(drop_partials=all_)
        self._events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return PruneResult(tuple(deleted), reclaimed)

    def remove(self, name: str, force: bool = False, collect: bool = True) -> list[Removal]:
        """`docker rmi`: untag *name*, and delete the image when no other tag names it.

        Raises:
            NotFound: no such image. Conflict: the image has other tags (without *force*), or a
                container uses it (without *force*: with it, only the tags go).
        """
        by_ref = None
        try:
            ref = str(reference.parse(name))
            if self._db.tag(ref):
                by_ref = ref
        except InvalidArgument:
            pass
        if by_ref and (target := self._db.tag(by_ref)) and self._records.index(target) is not None:
            return self._remove_index_tag(by_ref, target, force, collect)
        image_id = self._images.resolve(name)
        tags = self._images.repo_tags(image_id)
        users = self._images.in_use(image_id)
        if by_ref and len(tags) > 1:
            self._db.remove_tag(by_ref)
            self._images.event("untag", image_id, by_ref)
            return [Removal(untagged=by_ref)]
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
                self._images.event("untag", image_id, t)
            return [Removal(untagged=t) for t in tags]
        out = [Removal(untagged=t) for t in tags]
        for t in tags:
            self._db.remove_tag(t)
            self._images.event("untag", image_id, t)
        parent = self._images.record(image_id).parent
        out += self._delete(image_id)
        out += self._delete_untagged_parents(image_id, parent)
        if collect:
            self.collect()
        return out

    def _remove_index_tag(self, ref: str, index_digest: str, force: bool, collect: bool = True) -> list[Removal]:
        index = self._records.index(index_digest)
        children = [i for i in (index.images() if index is not None else []) if self._images.has(i)]
        others = [r for r, t in self._images.all_tags() if t == index_digest and r != ref]
        if not others and not force:
            for image in children:
                if users := self._images.in_use(image):
                    raise Conflict(f'conflict: unable to remove repository reference "{ref}" (must force) - '
                                   f"container {users[0][:12]} is using its referenced image {image[7:19]}")
        self._db.remove_tag(ref)
        self._images.event("untag", index_digest, ref)
        out = [Removal(untagged=ref)]
        if others:
            return out
        self._records.delete_index(index_digest)
        referenced = self._images.referenced_images()
        for image in children:
            if image not in referenced and not self._images.in_use(image):
                out += self._delete(image)
        if collect:
            self.collect()
        return out

    def _delete(self, image_id: str) -> list[Removal]:
        """Delete the image's record; then each index that listed it and has no platform left here
        goes too, with its tags (it would show nothing, and keep its blobs for ever)."""
        self._records.delete(image_id)
        self._events.publish("image", "delete", image_id, {"name": image_id})  # no labels: it is gone
        out = [Removal(deleted=image_id)]
        for digest, idx in self._records.indexes():
            if image_id in idx.images() and not any(self._images.has(i) for i in idx.images()):
                for ref, target in self._images.all_tags():
                    if target == digest:
                        self._db.remove_tag(ref)
                        self._images.event("untag", digest, ref)
                        out.append(Removal(untagged=ref))
                self._records.delete_index(digest)
        return out

    def _delete_untagged_parents(self, image_id: str, parent: str) -> list[Removal]:
        """After *image_id* is deleted: its parent too, and so on up, while each is untagged, unused
        and the parent of nothing else (what `docker rmi` does unless --no-prune)."""
        out: list[Removal] = []
        seen = {image_id}
        while parent and parent not in seen:
            seen.add(parent)
            record = self._records.get(parent)
            if record is None or self._images.repo_tags(parent) or self._images.in_use(parent) or self._images.children().get(parent) \
                    or parent in self._images.referenced_images():
                break
            out += self._delete(parent)
            parent = record.parent
        return out

    def prune(self, all_: bool = False, filters: dict[str, list[str]] | None = None) -> PruneResult:
        """Remove unused images: dangling ones (no tag), or with *all_* every one no container uses
        (and every idle partial download).

        *filters* are `docker images`' (services.imageviews), `dangling` aside (the caller decides *all_* by it).
        """
        deleted = self._prune_records(all_, filters)
        reclaimed = self.collect(drop_partials=all_)
        self._events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return PruneResult(tuple(deleted), reclaimed)

    def _prune_records(self, all_: bool, filters: dict[str, list[str]] | None) -> list[Removal]:
        deleted: list[Removal] = []
        referenced = self._images.referenced_images() | (set() if all_ else self._db.build_cache_images() | set(self._images.children()))
        for image_id, record in self._records.items():
            if self._images.in_use(image_id) or (not all_ and image_id in referenced):
                continue
            if filters:
                item = self._views.summary(image_id, record, self._images.repo_tags(image_id))
                if not image_matches(item, {k: v for k, v in filters.items() if k != "dangling"}, self._images):
                    continue
            if not self._images.has(image_id):
                continue  # gone with an index an earlier deletion emptied
            for t in self._images.repo_tags(image_id):
                self._db.remove_tag(t)
                self._images.event("untag", image_id, t)
                deleted.append(Removal(untagged=t))
            deleted += self._delete(image_id)
        if all_:
            for digest, idx in self._records.indexes():
                if not any(self._images.has(i) for i in idx.images()):
                    for ref, target in self._images.all_tags():
                        if target == digest:
                            self._db.remove_tag(ref)
                            deleted.append(Removal(untagged=ref))
                    self._records.delete_index(digest)
        return deleted

    async def collect_async(self, drop_partials: bool = False) -> int:
        """`collect` in a worker thread (it is file work); bytes freed."""
        return await asyncio.to_thread(self.collect, drop_partials)

    def collect(self, drop_partials: bool = False) -> int:
        """Remove blobs and snapshots no image or index record refers to and no work in progress
        holds, stray ingest files, and partial downloads idle for PARTIAL_IDLE (with *drop_partials*:
        every idle one); bytes freed. Blocking: call it in a worker thread (`collect_async`)."""
        with self._collecting, self._store.collecting():
            blobs, chains = self._store.digests(), self._layers.chains()  # listed before the records are read
            keep_blobs, keep_chains = self._referenced()
            freed = 0
            for digest in blobs:
                if digest not in keep_blobs:
                    with self._leases.locked() as held:  # checked and deleted with no lease taken between
                        if digest not in held:
                            freed += self._store.delete_unmarked(digest)
            for chain in chains:
                if chain not in keep_chains:
                    with self._leases.locked() as held:
                        if chain in held:
                            continue
                        size = self._layers.size(chain)
                        trash = self._layers.detach_unmarked(chain)
                    if trash is not None:
                        self._layers.discard(trash)  # out of sight already: removed outside the locks
                        freed += size
            freed += self._store.sweep_ingests()
            for digest in self._store.partials():
                with self._leases.locked() as held:  # a pull leases its blobs before it opens their partials
                    if digest not in held:
                        freed += self._store.drop_partial(digest, 0.0 if drop_partials else PARTIAL_IDLE)
            return freed

    def _referenced(self) -> tuple[set[str], set[str]]:
        """Blob digests and chain ids the image and index records refer to."""
        keep_blobs: set[str] = set()
        keep_chains: set[str] = set()
        for image_id, record in self._records.items():
            keep_blobs |= {image_id, record.manifest, *record.layers}
            keep_chains |= set(chain_ids(list(record.diff_ids)))
        for digest, idx in self._records.indexes():
            keep_blobs.add(digest)
            keep_blobs |= {c.manifest for c in idx.children if c.image and c.image in keep_blobs}
        return keep_blobs, keep_chains
