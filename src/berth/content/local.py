"""Content-addressed blobs under <root>/blobs/sha256/<hex>.

Strategy: bytes are written to <root>/ingest/ while hashing; only when the
digest matches (the expected one, if the caller knows it) is the file fsynced
and renamed into blobs/. A crash leaves at most a stale ingest file, never a
visible blob with the wrong content. Downloads whose digest is known ahead
(`resume(digest)`) are written to <root>/partial/<hex> instead, which is kept
across daemon restarts so an interrupted pull continues where it stopped.
A file berthd wrote itself under its root (an extracted `docker load`) can be
adopted instead of copied: hashed, checked, fsynced, then hard-linked in.

Garbage collection (services.imageremoval) deletes through this store, and
never a blob that work in progress may be about to refer to: an `operation()`
(a pull, load, import, commit or build) brackets such work, and every blob
published or reused (`reuse`) while one runs, or while a collection runs, is
*marked*; a marked blob is not deleted (`delete_unmarked` checks and unlinks
under one lock), and the marks go when no operation and no collection is left.
A blob a finished operation left unreferenced is taken by the next collection.
Ingest files are swept when no live `Ingest` owns them; partial downloads by
`drop_partial`'s rule (services.imageremoval decides when).
"""

from __future__ import annotations

import hashlib
import os
import contextlib
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

from berth.errors import InvalidArgument, NotFound
from berth.host import fs

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_T = TypeVar("_T")


def validate_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


class Ingest:
    """One blob being written. Use write() then commit(); abort() on failure."""

    def __init__(self, store: LocalStore, path: str | None = None) -> None:
        self._store = store
        self.path = path or os.path.join(store.ingest_dir, uuid.uuid4().hex)
        self._hash = hashlib.sha256()
        self.size = 0
        if path is not None and os.path.exists(path):  # a partial download: hash what is there, go on
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    self._hash.update(chunk)
                    self.size += len(chunk)
        store._live(self.path, True)
        try:
            self._file = open(self.path, "ab")
        except BaseException:
            store._live(self.path, False)
            raise

    def reset(self) -> None:
        """Start again from byte 0 (the server would not resume)."""
        self._file.truncate(0)
        self._file.seek(0)
        self._hash = hashlib.sha256()
        self.size = 0

    def flush(self) -> None:
        self._file.flush()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def digest(self) -> str:
        """The digest of what was written so far."""
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected: str | None = None) -> str:
        """Verify and publish the blob; return its digest.

        Raises:
            InvalidArgument: the content does not match *expected*.
        """
        digest = "sha256:" + self._hash.hexdigest()
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if expected is not None and expected != digest:
                os.unlink(self.path)
                raise InvalidArgument(f"content digest mismatch: expected {expected}, got {digest}")
            self._store.mark(digest)  # before it is visible: a collection running now leaves it
            os.rename(self.path, self._store.path(digest))
        finally:
            self._store._live(self.path, False)
        fs.fsync_dir(self._store.blob_dir)
        return digest

    def close(self) -> None:
        """Stop writing but keep the bytes (a resumable download that was interrupted)."""
        if not self._file.closed:
            self._file.flush()
            self._file.close()
        self._store._live(self.path, False)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._store._live(self.path, False)


class LocalStore:
    def __init__(self, root: str) -> None:
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.ingest_dir = os.path.join(root, "ingest")
        self.partial_dir = os.path.join(root, "partial")
        os.makedirs(self.blob_dir, exist_ok=True)
        os.makedirs(self.ingest_dir, exist_ok=True)
        os.makedirs(self.partial_dir, exist_ok=True)
        for stale in os.listdir(self.ingest_dir):  # left by a crash mid-write
            os.unlink(os.path.join(self.ingest_dir, stale))
        self._lock = threading.Lock()
        self._operations = 0  # operations (pull, load, import, commit, build) under way
        self._collections = 0  # collections under way
        self._marked: set[str] = set()  # published or reused while either ran: not garbage yet
        self._ingests: set[str] = set()  # paths of live Ingests

    # garbage collection's guards -----------------------------------------------------
    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """Bracket work that publishes or reuses blobs before a record refers to them: what it
        touches is kept from collections until it ends (and the next collection takes what it left)."""
        with self._lock:
            self._operations += 1
        try:
            yield
        finally:
            with self._lock:
                self._operations -= 1
                self._forget()

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """Bracket a collection: blobs published or reused meanwhile are marked, so kept by it."""
        with self._lock:
            self._collections += 1
        try:
            yield
        finally:
            with self._lock:
                self._collections -= 1
                self._forget()

    def _forget(self) -> None:
        if not self._operations and not self._collections:
            self._marked.clear()

    def mark(self, item: str) -> None:
        """Keep *item* (a blob digest, or a snapshot's chain id) from collections while work runs."""
        with self._lock:
            if self._operations or self._collections:
                self._marked.add(item)

    def reuse(self, digest: str) -> bool:
        """Whether the blob is here; if it is, marked as used (an operation about to refer to it)."""
        with self._lock:
            if not os.path.exists(self.path(digest)):
                return False
            if self._operations or self._collections:
                self._marked.add(digest)
            return True

    def unless_marked(self, item: str, action: Callable[[], _T]) -> _T | None:
        """Run *action* unless *item* is marked, atomically with marking (None when marked)."""
        with self._lock:
            if item in self._marked:
                return None
            return action()

    def delete_unmarked(self, digest: str) -> int:
        """Delete the blob unless it is marked; the bytes freed (0 when kept or gone)."""
        def unlink() -> int:
            try:
                size = os.lstat(self.path(digest)).st_size
                os.unlink(self.path(digest))
            except FileNotFoundError:
                return 0
            return size
        return self.unless_marked(digest, unlink) or 0

    def _live(self, path: str, live: bool) -> None:
        with self._lock:
            (self._ingests.add if live else self._ingests.discard)(path)

    def sweep_ingests(self) -> int:
        """Delete ingest files no live Ingest owns (a write that was never committed nor aborted); bytes freed."""
        freed = 0
        with self._lock:
            for name in os.listdir(self.ingest_dir):
                path = os.path.join(self.ingest_dir, name)
                if path in self._ingests:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    freed += os.lstat(path).st_size
                    os.unlink(path)
        return freed

    def drop_partial(self, digest: str, max_age: float, now: float | None = None) -> int:
        """Delete the partial download of *digest* if it is idle for more than *max_age* seconds (by its
        modification time) or its blob is complete already; bytes freed. The caller makes sure no pull
        is writing it (services.layers.Leases.locked)."""
        path = os.path.join(self.partial_dir, validate_digest(digest).split(":", 1)[1])
        with self._lock:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return 0
            if path in self._ingests:
                return 0
            idle = (time.time() if now is None else now) - st.st_mtime
            if idle <= max_age and not os.path.exists(self.path(digest)):
                return 0
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                return st.st_size
            return 0

    def path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, validate_digest(digest).split(":", 1)[1])

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def ingest(self) -> Ingest:
        return Ingest(self)

    def resume(self, digest: str) -> Ingest:
        """An ingest for the blob *digest* that keeps what an earlier, interrupted download wrote.

        `size` is where to continue; `abort()` drops the bytes, `close()` keeps them.
        """
        return Ingest(self, os.path.join(self.partial_dir, validate_digest(digest).split(":", 1)[1]))

    def partials(self) -> list[str]:
        """Digests of interrupted downloads."""
        return ["sha256:" + n for n in os.listdir(self.partial_dir) if _DIGEST.fullmatch("sha256:" + n)]

    def digests(self) -> list[str]:
        """Every blob's digest."""
        return ["sha256:" + n for n in os.listdir(self.blob_dir) if _DIGEST.fullmatch("sha256:" + n)]

    def put(self, data: bytes, expected: str | None = None) -> str:
        ing = self.ingest()
        try:
            ing.write(data)
            return ing.commit(expected)
        except BaseException:
            ing.abort()
            raise

    def adopt(self, path: str, expected: str | None = None) -> str:
        """Make the regular file at *path* a blob without copying it: hashed, verified, fsynced, then
        hard-linked into blobs/ (checked to be the very inode hashed); return its digest.

        For a file berthd wrote itself under its root (an extracted `docker load` archive) and writes no
        more; *path* keeps its name, removing it later leaves the blob.

        Raises:
            InvalidArgument: *path* is not a regular file, or its content does not match *expected*.
        """
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidArgument(f"{path} is not a regular file")
            h = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
            digest = "sha256:" + h.hexdigest()
            if expected is not None and expected != digest:
                raise InvalidArgument(f"content digest mismatch: expected {expected}, got {digest}")
            if self.reuse(digest):
                return digest
            os.fsync(fd)  # the content is durable before any name in blobs/ refers to it
            target = self.path(digest)
            self.mark(digest)
            try:
                os.link(path, target, follow_symlinks=False)
            except FileExistsError:
                return digest
            st, linked = os.fstat(fd), os.lstat(target)
            if (linked.st_dev, linked.st_ino) != (st.st_dev, st.st_ino):  # not the inode hashed: undo
                os.unlink(target)
                raise InvalidArgument(f"{path} changed while it was stored")
        finally:
            os.close(fd)
        fs.fsync_dir(self.blob_dir)
        return digest

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
