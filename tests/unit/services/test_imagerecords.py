"""services.imagerecords: image and index records on a real database, read from what older daemons wrote."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from berth.metadata.db import Database
from berth.services.imagerecords import (
    ImageRecord,
    ImageRecords,
    IndexChild,
    IndexRecord,
)

OLD_IMAGE = {  # as register() wrote it, tagged and with a parent, plus a key from some other version
    "manifest": "sha256:m", "layers": ["sha256:l1"], "diff_ids": ["sha256:d1"], "size": 5,
    "created": "2024-01-01T00:00:00Z", "repo_digests": ["reg/x@sha256:m"], "tagged": "2024-01-02T00:00:00Z",
    "parent": "sha256:p", "future": {"kept": True},
}
OLD_IMPORT = {"manifest": "sha256:m", "layers": ["sha256:l1"], "diff_ids": ["sha256:d1"], "size": 5,
              "created": "2024-01-01T00:00:00Z"}
OLD_INDEX = {"children": [{"manifest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"},
                           "image": "sha256:i"},
                          {"manifest": "sha256:b", "platform": {"os": "linux", "architecture": "arm64"}, "image": None}],
             "created": "2024-01-01T00:00:00Z", "repo_digests": ["reg/x@sha256:idx"]}


def _db(tmp_path: Path) -> Database:
    return Database(str(tmp_path / "db"))


def test_an_older_image_row_loads_and_is_written_back_the_same(tmp_path: Path) -> None:
    db = _db(tmp_path)
    records = ImageRecords(db)
    for doc in (OLD_IMAGE, OLD_IMPORT):
        db.put_image("sha256:x", doc)
        record = records.get("sha256:x")
        assert record is not None
        records.put("sha256:x", record)
        assert json.dumps(db.get_image("sha256:x")) == json.dumps(doc)


def test_image_record_fields(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.put_image("sha256:x", OLD_IMAGE)
    record = ImageRecords(db).get("sha256:x")
    assert record == ImageRecord("sha256:m", ("sha256:l1",), ("sha256:d1",), 5, "2024-01-01T00:00:00Z",
                                 ("reg/x@sha256:m",), "2024-01-02T00:00:00Z", "sha256:p", {"future": {"kept": True}})
    assert ImageRecords(db).get("sha256:nothing") is None


def test_put_items_delete(tmp_path: Path) -> None:
    records = ImageRecords(_db(tmp_path))
    one = ImageRecord("sha256:m", ("sha256:l",), ("sha256:d",), 1, "t")
    records.put("sha256:1", one)
    records.put("sha256:2", replace(one, parent="sha256:1"))
    assert dict(records.items()) == {"sha256:1": one, "sha256:2": replace(one, parent="sha256:1")}
    records.delete("sha256:1")
    assert [i for i, _ in records.items()] == ["sha256:2"]


def test_an_older_index_row_loads_and_is_written_back_the_same(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.put_index("sha256:idx", OLD_INDEX)
    records = ImageRecords(db)
    index = records.index("sha256:idx")
    assert index == IndexRecord((IndexChild("sha256:a", {"os": "linux", "architecture": "amd64"}, "sha256:i"),
                                 IndexChild("sha256:b", {"os": "linux", "architecture": "arm64"})),
                                "2024-01-01T00:00:00Z", ("reg/x@sha256:idx",))
    assert index.images() == ["sha256:i"]
    records.put_index("sha256:idx", index)
    assert json.dumps(db.get_index("sha256:idx")) == json.dumps(OLD_INDEX)
    assert [d for d, _ in records.indexes()] == ["sha256:idx"]
    records.delete_index("sha256:idx")
    assert records.index("sha256:idx") is None
