"""A container's file system as the API hands it out: `docker export` (a tar of the whole tree) and
`docker diff` (the changes of its upper layer against its image).

Both walk trees the container may change under them, by descriptor (berth.image.fsexport and
berth.image.diff); the walks run in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from berth.host import fs
from berth.image import diff, fsexport
from berth.image.diff import (
    Change,  # a path and its kind: what `changes` returns (api.views renders it)
)
from berth.services.containers import Containers
from berth.services.images import Images
from berth.services.records import Container


@dataclass(frozen=True, slots=True)
class DiskSizes:
    """What a container occupies: `rw` its own writes (its upper layer), `root_fs` those plus its image."""

    rw: int
    root_fs: int


def sizes(images: Images, c: Container) -> DiskSizes:
    rw = fs.disk_usage(os.path.join(c.dir, "upper"))
    return DiskSizes(rw, rw + images.record(c.record.image).size)


def export(cs: Containers, ref: str) -> AsyncIterator[bytes]:
    """The container's root as a tar stream; the root stays mounted until the stream ends or is dropped.

    Raises (before the stream starts):
        NotFound: no such container.
    """
    view = cs.root_view(ref)
    root = view.__enter__()

    async def body() -> AsyncIterator[bytes]:
        try:
            chunks = fsexport.iter_tree_tar(Path(root))
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            view.__exit__(None, None, None)
    return body()


async def changes(cs: Containers, images: Images, ref: str) -> list[Change]:
    """`docker diff`: each path added, modified or deleted in the container, against its image.

    Raises:
        NotFound: no such container.
    """
    c = cs.get(ref)
    return await asyncio.to_thread(diff.container_changes, cs.upper_dir(c.id), images.layer_dirs(c.record.image))
