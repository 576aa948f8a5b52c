"""The build cache's records carry their age, so `docker builder prune --filter until=` can choose."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from berth.metadata.db import Database


def test_records_made_before_a_time_are_the_only_ones_pruned(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "berth.db"))
    db.build_cache_put("old", "sha256:old")
    cut = time.time() + 0.001
    time.sleep(0.01)
    db.build_cache_put("new", "sha256:new")
    assert db.build_cache_images(cut) == {"sha256:old"}
    assert db.build_cache_clear(cut) == 1
    assert db.build_cache_images() == {"sha256:new"}
    assert db.build_cache_clear() == 1 and db.build_cache_images() == set()


def test_a_root_from_before_ages_is_migrated_and_its_records_count_as_old(tmp_path: Path) -> None:
    path = tmp_path / "berth.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE build_cache (key TEXT PRIMARY KEY, image_id TEXT NOT NULL)")
    raw.execute("INSERT INTO build_cache VALUES ('k', 'sha256:kept-from-before')")
    raw.commit()
    raw.close()
    db = Database(str(path))
    assert db.build_cache_get("k") == "sha256:kept-from-before"
    assert db.build_cache_images(time.time() - 3600) == {"sha256:kept-from-before"}
