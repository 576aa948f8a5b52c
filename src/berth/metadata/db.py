"""Metadata in SQLite (WAL): images, image indexes (multi-platform), tags, containers.

Strategy: each record is a JSON document keyed by id, plus the few columns we
look things up by (name, ref). Every change is one transaction, so a daemon
killed at any moment leaves the previous or the next state, never a mix.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Iterator

from berth.errors import AlreadyExists

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tags (ref TEXT PRIMARY KEY, image_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS containers (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS indexes (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volumes (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS build_cache (key TEXT PRIMARY KEY, image_id TEXT NOT NULL);
"""


class Database:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(build_cache)")}
        if "created" not in columns:  # a root written before build-cache records had an age
            self._db.execute("ALTER TABLE build_cache ADD COLUMN created REAL NOT NULL DEFAULT 0")

    def close(self) -> None:
        self._db.close()

    # images -----------------------------------------------------------
    def put_image(self, image_id: str, doc: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO images VALUES (?, ?)", (image_id, json.dumps(doc)))

    def get_image(self, image_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT doc FROM images WHERE id = ?", (image_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def images(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for image_id, doc in self._db.execute("SELECT id, doc FROM images").fetchall():
            yield image_id, json.loads(doc)

    def delete_image(self, image_id: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
            self._db.execute("DELETE FROM images WHERE id = ?", (image_id,))

    # image indexes: a tag may name one; its doc lists the platforms' manifests and local images
    def put_index(self, digest: str, doc: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO indexes VALUES (?, ?)", (digest, json.dumps(doc)))

    def get_index(self, digest: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT doc FROM indexes WHERE id = ?", (digest,)).fetchone()
        return json.loads(row[0]) if row else None

    def indexes(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for digest, doc in self._db.execute("SELECT id, doc FROM indexes").fetchall():
            yield digest, json.loads(doc)

    def delete_index(self, digest: str) -> None:
        self._db.execute("DELETE FROM indexes WHERE id = ?", (digest,))

    # the build cache: a step's key -> the image it made
    def build_cache_get(self, key: str) -> str | None:
        row = self._db.execute("SELECT image_id FROM build_cache WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def build_cache_put(self, key: str, image_id: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO build_cache (key, image_id, created) VALUES (?, ?, ?)",
                         (key, image_id, time.time()))

    def build_cache_images(self, before: float | None = None) -> set[str]:
        """The images build-cache records name (only records made before *before*, a Unix time, if given)."""
        rows = self._db.execute("SELECT DISTINCT image_id FROM build_cache WHERE created < ?",
                                (float("inf") if before is None else before,)).fetchall()
        return {str(r[0]) for r in rows}

    def build_cache_clear(self, before: float | None = None) -> int:
        """Forget the build-cache records (made before *before*, if given); how many."""
        return int(self._db.execute("DELETE FROM build_cache WHERE created < ?",
                                    (float("inf") if before is None else before,)).rowcount)

    # networks
    def put_network(self, doc: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO networks VALUES (?, ?)", (doc["Id"], json.dumps(doc)))

    def networks(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for nid, doc in self._db.execute("SELECT id, doc FROM networks").fetchall():
            yield nid, json.loads(doc)

    def delete_network(self, nid: str) -> None:
        self._db.execute("DELETE FROM networks WHERE id = ?", (nid,))

    def set_tag(self, ref: str, image_id: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO tags VALUES (?, ?)", (ref, image_id))

    def remove_tag(self, ref: str) -> None:
        self._db.execute("DELETE FROM tags WHERE ref = ?", (ref,))

    def tag(self, ref: str) -> str | None:
        row = self._db.execute("SELECT image_id FROM tags WHERE ref = ?", (ref,)).fetchone()
        return row[0] if row else None

    def tags(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for ref, image_id in self._db.execute("SELECT ref, image_id FROM tags ORDER BY ref"):
            out.setdefault(image_id, []).append(ref)
        return out

    # containers -------------------------------------------------------
    def insert_container(self, cid: str, name: str, doc: dict[str, Any]) -> None:
        try:
            self._db.execute("INSERT INTO containers VALUES (?, ?, ?)", (cid, name, json.dumps(doc)))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"name {name}") from exc

    def update_container(self, cid: str, name: str, doc: dict[str, Any]) -> None:
        try:
            self._db.execute("UPDATE containers SET name = ?, doc = ? WHERE id = ?", (name, json.dumps(doc), cid))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"name {name}") from exc

    def containers(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for cid, doc in self._db.execute("SELECT id, doc FROM containers").fetchall():
            yield cid, json.loads(doc)

    def delete_container(self, cid: str) -> None:
        self._db.execute("DELETE FROM containers WHERE id = ?", (cid,))

    # volumes ----------------------------------------------------------
    def put_volume(self, name: str, doc: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO volumes VALUES (?, ?)", (name, json.dumps(doc)))

    def get_volume(self, name: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT doc FROM volumes WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def volumes(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, doc in self._db.execute("SELECT name, doc FROM volumes").fetchall():
            yield name, json.loads(doc)

    def delete_volume(self, name: str) -> None:
        self._db.execute("DELETE FROM volumes WHERE name = ?", (name,))
