"""Image removal: `rmi` (untag, delete, and the untagged parents above), `image prune`, and the GC.

Strategy: records go first (tags, then the image, then its unused parents),
bytes after: `collect` deletes every blob and unpacked layer that no image,
index or lease (work in progress, services.layers) refers to, so a daemon
killed between the two leaves garbage the next collection takes, never an
image with a part missing. What rmi and prune did comes back as typed
`Removal`s, in order (api.views.images renders Docker's JSON for them).
"""

from __future__ import annotations

import contextlib
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

    def remove(self, name: str, force: bool = False) -> list[Removal]:
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
            return self._remove_index_tag(by_ref, target, force)
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
        self.collect()
        return out

    def _remove_index_tag(self, ref: str, index_digest: str, force: bool) -> list[Removal]:
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
        self.collect()
        return out

    def _delete(self, image_id: str) -> list[Removal]:
        self._records.delete(image_id)
        self._events.publish("image", "delete", image_id, {"name": image_id})  # no labels: it is gone
        return [Removal(deleted=image_id)]

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
        """Remove unused images: dangling ones (no tag), or with *all_* every one no container uses.

        *filters* are `docker images`' (services.imageviews), `dangling` aside (the caller decides *all_* by it).
        """
        deleted: list[Removal] = []
        referenced = self._images.referenced_images() | (set() if all_ else self._db.build_cache_images() | set(self._images.children()))
        for image_id, record in self._records.items():
            if self._images.in_use(image_id) or (not all_ and image_id in referenced):
                continue
            if filters:
                item = self._views.summary(image_id, record, self._images.repo_tags(image_id))
                if not image_matches(item, {k: v for k, v in filters.items() if k != "dangling"}, self._images):
                    continue
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
        reclaimed = self.collect()
        self._events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return PruneResult(tuple(deleted), reclaimed)

    def collect(self) -> int:
        """Remove blobs and snapshots nothing refers to (no image, index, container or lease); bytes freed."""
        keep_blobs: set[str] = self._leases.held()
        keep_chains: set[str] = self._leases.held()
        for image_id, record in self._records.items():
            keep_blobs |= {image_id, record.manifest, *record.layers}
            keep_chains |= set(chain_ids(list(record.diff_ids)))
        for digest, idx in self._records.indexes():
            keep_blobs.add(digest)
            keep_blobs |= {c.manifest for c in idx.children if self._store.exists(c.manifest)}
        freed = 0
        for digest in self._store.digests():
            if digest not in keep_blobs:
                with contextlib.suppress(OSError):
                    freed += self._store.size(digest)
                self._store.delete(digest)
        for chain in self._layers.chains():
            if chain not in keep_chains:
                freed += self._layers.size(chain)
                self._layers.remove(chain)
        return freed
