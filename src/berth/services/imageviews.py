"""What the image listings show: `docker images` (with -a and its filters), `image inspect` and `history`.

Strategy: read-only values made from the image records, the configs in the
content store and the tags (services.images); nothing here changes a record.
Which images a listing holds (the hidden intermediates, the filters, the
names a reference filter matched) is decided here; Docker's JSON for them is
api.views.images'. `summary` and `image_matches` also serve `image prune`'s
filters (services.imageremoval).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from berth import timefmt
from berth.errors import InvalidArgument
from berth.oci.image import ImageConfig
from berth.oci.imageconfig import HistoryEntry
from berth.services.imagerecords import ImageRecord
from berth.services.images import Images
from berth.services.patterns import reference_matches


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """One image as `docker images` lists it."""

    id: str
    parent: str  # "" when it has none here
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    created: int  # Unix seconds
    size: int
    labels: dict[str, str]
    containers: int  # how many containers use it


@dataclass(frozen=True, slots=True)
class ImageDetails:
    """One image as `image inspect` shows it: its record, its config, its names and where its layers are."""

    id: str
    record: ImageRecord
    config: ImageConfig
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    parent: str
    layer_dirs: tuple[str, ...]  # unpacked layers, top first


@dataclass(frozen=True, slots=True)
class ImageHistory:
    """An image's history entries (oldest first), with what `docker history` shows beside them."""

    id: str
    tags: tuple[str, ...]
    size: int
    entries: tuple[HistoryEntry, ...]


class ImageViews:
    def __init__(self, images: Images) -> None:
        self._images = images

    def summary(self, image_id: str, record: ImageRecord, tags: Sequence[str],
                digests: Sequence[str] | None = None) -> ImageSummary:
        labels = self._images.config(image_id).runtime.labels or {}
        return ImageSummary(
            image_id, self._images.parent(image_id, record), tuple(tags),
            tuple(self._images.repo_digests(image_id) if digests is None else digests),
            _epoch(record.created), record.size, labels, len(self._images.in_use(image_id)))

    def listing(self, all_: bool = False, filters: dict[str, list[str]] | None = None) -> list[ImageSummary]:
        """The images `docker images` shows, newest first (raises InvalidArgument on an unknown filter)."""
        for key in filters or {}:  # refused even when no image would be tested against it, as Docker does
            if key not in _FILTERS:
                raise InvalidArgument(f"invalid filter '{key[:64]}'")
        tags = self._images.tag_map()
        # Another platform of a tagged multi-platform image, or a build step's image (Docker's
        # "intermediate" images): not dangling, and shown only with --all.
        # So is an untagged image that is the parent of another (a build step's, a commit's base), as
        # Docker hides it.
        hidden = (self._images.referenced_images() | self._images.build_cache_images() | set(self._images.children())) - set(tags) \
            if not all_ else set()
        patterns = (filters or {}).get("reference") or []
        out = []
        for image_id, record in self._images.records():
            if image_id in hidden:
                continue
            item = self.summary(image_id, record, tags.get(image_id, []))
            if filters and not image_matches(item, filters, self._images):
                continue
            if patterns:  # as Docker: only the names the reference filter matched (`images -q REF` once)
                item = replace(item, repo_tags=tuple(t for t in item.repo_tags if reference_matches(patterns, t)),
                               repo_digests=tuple(t for t in item.repo_digests if reference_matches(patterns, t)))
            out.append(item)
        out.sort(key=lambda i: i.created, reverse=True)
        return out

    def inspect(self, name: str) -> ImageDetails:
        image_id = self._images.resolve(name)
        record = self._images.record(image_id)
        return ImageDetails(image_id, record, self._images.config(image_id),
                            tuple(self._images.repo_tags(image_id)), tuple(self._images.repo_digests(image_id)),
                            self._images.parent(image_id, record), tuple(self._images.layer_dirs(image_id)))

    def history(self, name: str) -> ImageHistory:
        image_id = self._images.resolve(name)
        return ImageHistory(image_id, tuple(self._images.repo_tags(image_id)), self._images.record(image_id).size,
                            self._images.config(image_id).history)


def _epoch(iso: str) -> int:
    try:
        return timefmt.parse_ns(iso) // 1_000_000_000
    except ValueError:
        return 0


_FILTERS = frozenset({"dangling", "reference", "label", "before", "since", "until"})  # what image_matches knows


def image_matches(item: ImageSummary, filters: dict[str, list[str]], images: Images) -> bool:
    """Whether the listed *item* passes `docker images`' filters (each key's values must all hold).

    Raises:
        InvalidArgument: an unknown filter, or an `until` that is not a time.
    """
    for key, values in filters.items():
        if key == "dangling":
            dangling = not item.repo_tags
            if any((v in ("true", "1")) != dangling for v in values):
                return False
        elif key == "reference":
            if not any(reference_matches(values, t) for t in item.repo_tags + item.repo_digests):
                return False
        elif key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in item.labels or (eq and item.labels[k] != val):
                    return False
        elif key in ("before", "since", "until"):  # as Docker: relative to another image, or to a time
            created = _created_ns(images.record(item.id))
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


def _created_ns(record: ImageRecord) -> int:
    try:
        return timefmt.parse_ns(record.created)
    except ValueError:
        return 0
