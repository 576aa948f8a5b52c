"""The container records the engine keeps in memory, and the table that holds them.

Strategy: one `Container` per container, made from its database record at start and kept for the
daemon's life; the `ContainerTable` is built first by the composition root and handed to every
service that reads containers (images ask who uses an image, networks which containers are
attached, volumes which are mounted), while `Containers` alone changes it. No service needs
another service to find a container.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from berth.errors import InvalidArgument, NotFound
from berth.metadata.db import Database


class Container:
    """The live view of one container: its record plus in-memory coordination."""

    def __init__(self, doc: dict[str, Any], directory: str) -> None:
        self.doc = doc
        self.dir = directory
        self.changed = asyncio.Condition()
        self.exits = 0            # incremented at every exit, for next-exit waiters
        self.removed = False
        self.removing = False
        self.watcher: asyncio.Task[None] | None = None
        self.release: asyncio.Task[None] | None = None  # the runtime letting go after an exit, still under way
        self.pending_attach: list[Callable[[bool], None]] = []  # attachers waiting for start
        self.lock = asyncio.Lock()   # serialises start/stop/remove
        self.restarting = False

    @property
    def id(self) -> str:
        return str(self.doc["Id"])

    @property
    def name(self) -> str:
        return str(self.doc["Name"]).lstrip("/")

    @property
    def state(self) -> dict[str, Any]:
        return self.doc["State"]  # type: ignore[no-any-return]

    @property
    def running(self) -> bool:
        return bool(self.state["Running"])

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


class ContainerTable:
    """Every container the daemon knows, by id; the lookups the API's references need."""

    def __init__(self, by_id: dict[str, Container]) -> None:
        self.by_id = by_id

    @classmethod
    def load(cls, db: Database, containers_dir: str) -> ContainerTable:
        return cls({cid: Container(doc, os.path.join(containers_dir, cid)) for cid, doc in db.containers()})

    def get(self, ref: str) -> Container:
        """By full id, name, or unique id prefix.

        Raises:
            NotFound: "No such container: <ref>".
            InvalidArgument: the prefix names more than one.
        """
        if ref in self.by_id:
            return self.by_id[ref]
        name = ref.lstrip("/")
        for c in self.by_id.values():
            if c.name == name:
                return c
        matches = [c for cid, c in self.by_id.items() if ref and cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        return list(self.by_id.values())

    def using_image(self, image_id: str) -> list[str]:
        return [c.id for c in self.by_id.values() if c.doc["Image"] == image_id]

    def mounts(self) -> list[tuple[str, dict[str, Any], bool]]:
        """(id, record, running) of each container, for the volume service's in-use checks."""
        return [(c.id, c.doc, c.running) for c in self.by_id.values()]
