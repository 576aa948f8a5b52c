"""A data root's database read without changing it: for tools that look at a stopped daemon's records.

Strategy: berth.metadata.db.Database opens the database to serve (read-write, WAL, the schema
made if missing); a tool that only looks (`berth system reset` listing the networks whose
bridges it deletes) must not write a byte, not even a WAL file. So the file is opened with
SQLite's `immutable` flag when no WAL file is beside it (nothing is written, not even a
shared-memory file), else `mode=ro` through the WAL (a killed daemon's last commits are there);
a WAL that cannot be read that way is skipped (`immutable`: the last checkpoint).
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any
from urllib.parse import quote

from berth.errors import FailedPrecondition

_TABLES = ("containers", "networks", "volumes")  # the tables keyed by an id (or name) with a JSON doc


def documents(path: str, table: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, document) of every row of *table*; [] when the database or the table does not exist.

    Raises:
        FailedPrecondition: the file is not a database SQLite can read.
    """
    if table not in _TABLES:
        raise ValueError(f"unknown table {table!r}")
    if not os.path.isfile(path):
        return []
    key = "name" if table == "volumes" else "id"
    last: sqlite3.Error | None = None
    # With no WAL file the database file is all there is: read it immutable (no -shm made). A WAL
    # (a daemon running or killed) holds committed rows the file lacks: read through it.
    tries = ("mode=ro", "mode=ro&immutable=1") if os.path.exists(path + "-wal") else ("mode=ro&immutable=1",)
    for flags in tries:
        try:
            db = sqlite3.connect(f"file:{quote(path)}?{flags}", uri=True)
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            rows = db.execute(f"SELECT {key}, doc FROM {table}").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            last = exc
            continue
        except sqlite3.Error as exc:
            last = exc
            continue
        finally:
            db.close()
        out = []
        for ident, doc in rows:
            try:
                parsed = json.loads(doc)
            except (TypeError, ValueError):
                continue
            if isinstance(parsed, dict):
                out.append((str(ident), parsed))
        return out
    raise FailedPrecondition(f"cannot read {path}: {last}")
