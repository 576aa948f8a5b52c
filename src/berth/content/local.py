"""Content-addressed blobs under <root>/blobs/sha256/<hex>.

Strategy: bytes are written to <root>/ingest/ while hashing; only when the
digest matches (the expected one, if the caller knows it) is the file fsynced
and renamed into blobs/. A crash leaves at most a stale ingest file, never a
visible blob with the wrong content.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid

from berth.errors import InvalidArgument, NotFound
from berth.host import fs

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def validate_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


class Ingest:
    """One blob being written. Use write() then commit(); abort() on failure."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self.path = os.path.join(store.ingest_dir, uuid.uuid4().hex)
        self._file = open(self.path, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self, expected: str | None = None) -> str:
        """Verify and publish the blob; return its digest.

        Raises:
            InvalidArgument: the content does not match *expected*.
        """
        digest = "sha256:" + self._hash.hexdigest()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if expected is not None and expected != digest:
            os.unlink(self.path)
            raise InvalidArgument(f"content digest mismatch: expected {expected}, got {digest}")
        os.rename(self.path, self._store.path(digest))
        fs.fsync_dir(self._store.blob_dir)
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class LocalStore:
    def __init__(self, root: str) -> None:
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.ingest_dir = os.path.join(root, "ingest")
        os.makedirs(self.blob_dir, exist_ok=True)
        os.makedirs(self.ingest_dir, exist_ok=True)
        for stale in os.listdir(self.ingest_dir):  # left by a crash mid-write
            os.unlink(os.path.join(self.ingest_dir, stale))

    def path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, validate_digest(digest).split(":", 1)[1])

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def ingest(self) -> Ingest:
        return Ingest(self)

    def put(self, data: bytes, expected: str | None = None) -> str:
        ing = self.ingest()
        try:
            ing.write(data)
            return ing.commit(expected)
        except BaseException:
            ing.abort()
            raise

    def read(self, digest: str) -> bytes:
        try:
            with open(self.path(digest), "rb") as f:
                return f.read()
        except FileNotFoundError as exc:
            raise NotFound(f"content {digest}") from exc

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError as exc:
            raise NotFound(f"content {digest}") from exc

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass


__all__ = ["LocalStore", "Ingest", "validate_digest"]
