"""Tests for berth.content.local: the content-addressed blob store, on a real temp dir."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from berth.content.local import LocalStore, validate_digest
from berth.errors import InvalidArgument, NotFound


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(str(tmp_path / "content"))


def ingest_files(s: LocalStore) -> list[str]:
    return os.listdir(s.ingest_dir)


def blob_files(s: LocalStore) -> list[str]:
    return os.listdir(s.blob_dir)


def test_layout(tmp_path: Path) -> None:
    s = LocalStore(str(tmp_path / "c"))
    assert s.blob_dir == str(tmp_path / "c" / "blobs" / "sha256")
    assert s.ingest_dir == str(tmp_path / "c" / "ingest")
    assert os.path.isdir(s.blob_dir) and os.path.isdir(s.ingest_dir)


@pytest.mark.parametrize("data", [b"", b"hello\n", bytes(range(256)) * 1000])
def test_put_read_exists_size_delete(store: LocalStore, data: bytes) -> None:
    digest = store.put(data)
    assert digest == sha(data)
    assert store.exists(digest)
    assert store.read(digest) == data
    assert store.size(digest) == len(data)
    assert store.path(digest) == os.path.join(store.blob_dir, digest.split(":")[1])
    assert blob_files(store) == [digest.split(":")[1]]
    assert ingest_files(store) == []
    store.delete(digest)
    assert not store.exists(digest)
    assert blob_files(store) == []
    store.delete(digest)  # deleting again is fine


def test_put_twice_is_idempotent(store: LocalStore) -> None:
    assert store.put(b"same") == store.put(b"same")
    assert len(blob_files(store)) == 1
    assert ingest_files(store) == []


def test_read_missing_is_not_found(store: LocalStore) -> None:
    with pytest.raises(NotFound):
        store.read(sha(b"never stored"))
    assert not store.exists(sha(b"never stored"))


def test_commit_with_expected_digest(store: LocalStore) -> None:
    data = b"layer bytes" * 1000
    ing = store.ingest()
    for i in range(0, len(data), 777):
        ing.write(data[i:i + 777])
    assert ing.size == len(data)
    assert ing.commit(sha(data)) == sha(data)
    assert store.read(sha(data)) == data
    assert ingest_files(store) == []


def test_put_with_expected_digest(store: LocalStore) -> None:
    assert store.put(b"abc", expected=sha(b"abc")) == sha(b"abc")


def test_mismatch_leaves_no_blob_and_no_ingest_file(store: LocalStore) -> None:
    wrong = sha(b"something else")
    with pytest.raises(InvalidArgument, match="mismatch"):
        store.put(b"the real content", expected=wrong)
    assert not store.exists(wrong)
    assert not store.exists(sha(b"the real content"))
    assert blob_files(store) == []
    assert ingest_files(store) == []


def test_mismatch_through_ingest_leaves_nothing(store: LocalStore) -> None:
    ing = store.ingest()
    ing.write(b"partial")
    assert len(ingest_files(store)) == 1  # bytes go to ingest/ first, never to blobs/
    assert blob_files(store) == []
    with pytest.raises(InvalidArgument):
        ing.commit(sha(b"other"))
    assert blob_files(store) == []
    assert ingest_files(store) == []
    ing.abort()  # abort after a failed commit is harmless
    assert ingest_files(store) == []


def test_abort_removes_the_ingest_file(store: LocalStore) -> None:
    ing = store.ingest()
    ing.write(b"half a layer")
    ing.abort()
    assert ingest_files(store) == []
    assert blob_files(store) == []
    ing.abort()


def test_stale_ingest_files_removed_when_store_opens(tmp_path: Path) -> None:
    root = str(tmp_path / "c")
    s = LocalStore(root)
    kept = s.put(b"kept")
    crashed = s.ingest()
    crashed.write(b"written before a crash")
    crashed._file.flush()
    Path(s.ingest_dir, "another-stale").write_bytes(b"x")
    assert len(ingest_files(s)) == 2
    s2 = LocalStore(root)
    assert ingest_files(s2) == []
    assert s2.read(kept) == b"kept"
    crashed._file.close()


BAD_DIGESTS = [
    "", "sha256:", "sha256:abc", "sha256:" + "g" * 64, "sha256:" + "A" * 64, "sha512:" + "a" * 64,
    "a" * 64, "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:../../../etc/passwd",
    "sha256:" + "a" * 62 + "/x", "SHA256:" + "a" * 64, " sha256:" + "a" * 64,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_invalid_digests_refused(store: LocalStore, digest: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_digest(digest)
    for op in (store.path, store.exists, store.read, store.delete, store.size):
        with pytest.raises(InvalidArgument):
            op(digest)


def test_invalid_expected_digest_is_refused_and_leaves_nothing(store: LocalStore) -> None:
    with pytest.raises(InvalidArgument):
        store.put(b"data", expected="sha256:nothex")
    assert blob_files(store) == []
    assert ingest_files(store) == []


def test_valid_digest_returned_unchanged() -> None:
    d = "sha256:" + "0123456789abcdef" * 4
    assert validate_digest(d) == d


def test_digest_with_trailing_newline_refused(store: LocalStore) -> None:
    with pytest.raises(InvalidArgument):
        validate_digest(sha(b"x") + "\n")


def test_size_of_missing_blob_is_not_found(store: LocalStore) -> None:
    with pytest.raises(NotFound):
        store.size(sha(b"never stored"))


# --------------------------------------------------------------------------- adopt: a file becomes a blob by link


def test_adopt_links_the_file_in(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "layer.tar"
    src.write_bytes(b"layer bytes" * 1000)
    digest = store.adopt(str(src), sha(src.read_bytes()))
    assert digest == sha(src.read_bytes())
    assert store.read(digest) == src.read_bytes()
    assert os.stat(store.path(digest)).st_ino == os.stat(src).st_ino  # linked, not copied
    src.unlink()
    assert store.read(digest) == b"layer bytes" * 1000  # the blob outlives the extracted name
    assert ingest_files(store) == []


def test_adopt_without_expected_returns_the_digest(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    assert store.adopt(str(src)) == sha(b"x")


def test_adopt_refuses_a_mismatch_and_stores_nothing(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"actual")
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        store.adopt(str(src), sha(b"claimed"))
    assert blob_files(store) == []
    assert src.exists()


def test_adopt_of_a_blob_already_there_keeps_it(store: LocalStore, tmp_path: Path) -> None:
    digest = store.put(b"same")
    before = os.stat(store.path(digest)).st_ino
    src = tmp_path / "f"
    src.write_bytes(b"same")
    assert store.adopt(str(src), digest) == digest
    assert os.stat(store.path(digest)).st_ino == before


def test_adopt_refuses_symlinks_and_non_files(store: LocalStore, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.write_bytes(b"t")
    link = tmp_path / "l"
    link.symlink_to(target)
    with pytest.raises(OSError):
        store.adopt(str(link))
    with pytest.raises((InvalidArgument, OSError)):
        store.adopt(str(tmp_path))
    assert blob_files(store) == []
