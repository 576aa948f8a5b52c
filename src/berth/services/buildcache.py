"""The classic builder's step cache: a key per step, the image it made, and cache_from's scope.

Strategy: a step's key is a digest of its parent image, its platform, the
instruction after variable expansion, what else it depends on (build
arguments, a checksum of COPY's sources) and the config so far; the
database maps it to the image the step made. A hit is used only while that
image exists and, when the build names cache_from images, only if it is one
of them or an ancestor (`cache_scope`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from berth.errors import InvalidArgument, NotFound
from berth.metadata.db import Database
from berth.oci import platform as platforms
from berth.oci.imageconfig import HistoryEntry
from berth.services.buildtypes import (
    BuildOptions,
    CacheSource,
    Emit,
    StageState,
    say,
    short,
)
from berth.services.images import Images


class BuildCache:
    def __init__(self, db: Database, images: Images) -> None:
        self._db, self._images = db, images

    def key(self, state: StageState, what: str, extra: Any) -> str:
        doc = [state.image or "scratch", platforms.to_dict(state.platform), what, extra,
               json.dumps(state.config.to_doc(), sort_keys=True)]
        return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()

    def take(self, key: str, state: StageState, opts: BuildOptions, emit: Emit) -> bool:
        """Take the step's image from the cache when it is there; say so as Docker does."""
        cached = self.cached(key, opts)
        if cached is None:
            return False
        say(opts, emit, " ---> Using cache")
        say(opts, emit, f" ---> {short(cached)}")
        state.image = cached
        return True

    def cached(self, key: str, opts: BuildOptions) -> str | None:
        if opts.nocache:
            return None
        image = self._db.build_cache_get(key)
        if not image or not self._images.has(image):
            return None
        if opts.cache_sources is not None:
            config = self._images.config(image)
            if not cache_scope(opts.cache_sources, config.history, config.diff_ids):
                return None
        return image

    def sources(self, names: list[str], platform: str) -> list[CacheSource]:
        """(history, diff_ids) of each cache_from image that exists (a missing one is skipped, as Docker does)."""
        out: list[CacheSource] = []
        for name in names:
            try:
                config = self._images.config(self._images.resolve(name, platform))
            except (NotFound, InvalidArgument):
                continue
            out.append((config.history, config.diff_ids))
        return out

    def remember(self, key: str, image: str) -> None:
        self._db.build_cache_put(key, image)


def cache_scope(sources: Sequence[CacheSource], history: Sequence[HistoryEntry], diff_ids: Sequence[str]) -> bool:
    """Whether an image with *history* and *diff_ids* may serve as cache when the build names cache_from images.

    The classic builder's rule: a cached step counts only when its image is one of the
    named images or an ancestor of one. berth records no parent links; an ancestor is
    recognised by content instead: every image derived from another (a build step, a
    commit) repeats its history (each entry with its creation time) and its layers, so
    "*history* and *diff_ids* are a prefix of the source's" is "the source was made from it".
    *sources* holds (history, diff_ids) of each named image that exists.
    """
    return any(tuple(history) == h[:len(history)] and tuple(diff_ids) == d[:len(diff_ids)] for h, d in sources)
