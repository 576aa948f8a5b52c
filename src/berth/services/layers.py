"""Image layers: unpacked once per chain id, verified against the image config, and kept from GC by leases.

Strategy: a layer blob (plain, gzip, bzip2, xz or zstd; gzip by
image.archivestream.Gunzip, in 1 MiB reads) is read once through a hashing reader and unpacked by image.archive's safe extraction into a
private directory that is published under its chain id only once its
content hashed to the diff id the config names; a directory that is not
published is never seen. Work in progress (a pull, a load, a commit) leases
the blobs and chain ids it needs, so `ImageRemoval.collect` leaves them.
All of it is file work: callers run it in a thread, never on the event loop.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from typing import IO, Any, BinaryIO, cast

import zstandard

from berth.content.local import LocalStore
from berth.errors import InvalidArgument, NotFound
from berth.image import archive, archivestream
from berth.snapshot.overlay import Snapshots

MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"


class Leases:
    """Blob digests and chain ids that work in progress needs: `collect()` keeps them.

    Thread-safe: the collection (in a worker thread) checks an item and deletes it while holding
    `locked()`, so a lease taken meanwhile waits for that one deletion, then finds the item gone.
    """

    def __init__(self) -> None:
        self._leases: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lease(self, items: Iterable[str]) -> Iterator[None]:
        """Keep *items* (blob digests, chain ids) from `collect()` while a pull, load or commit runs."""
        held = list(items)
        with self._lock:
            self._leases.update(held)
        try:
            yield
        finally:
            with self._lock:
                self._leases.subtract(held)
                self._leases += Counter()  # drop zero counts

    def hold(self, item: str) -> None:
        """Add one more item to the leases (released with `release`)."""
        with self._lock:
            self._leases[item] += 1

    def release(self, item: str) -> None:
        with self._lock:
            self._leases[item] -= 1
            self._leases += Counter()

    def held(self) -> set[str]:
        """Everything leased now."""
        with self._lock:
            return set(self._leases)

    @contextlib.contextmanager
    def locked(self) -> Iterator[Collection[str]]:
        """What is leased, with no lease taken or let go until the block ends (keep it short)."""
        with self._lock:
            yield self._leases.keys()


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it (the layer's diff ID)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner, self.hash = inner, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._inner.read(len(buf))
        self.hash.update(data)
        buf[: len(data)] = data
        return len(data)


def _decompressed(f: BinaryIO) -> tuple[IO[bytes], str]:
    head = f.read(6)
    f.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], archivestream.Gunzip(f)), MEDIA_LAYER + "+gzip"
    if head.startswith(b"BZh"):
        return bz2.BZ2File(f), MEDIA_LAYER + "+bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(f), MEDIA_LAYER + "+xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(f)), MEDIA_LAYER + "+zstd"
    return f, MEDIA_LAYER


def _sniffed(f: io.BufferedReader[Any]) -> IO[bytes]:
    """The decompressed view of a non-seekable stream, by its magic bytes (peeked, not consumed)."""
    head = f.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], archivestream.Gunzip(f))
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(f))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(IO[bytes], lzma.LZMAFile(f))
    if head.startswith(b"BZh"):
        return cast(IO[bytes], bz2.BZ2File(f))
    return f


class Layers:
    """Unpacks layer blobs from the content store into snapshots (one per chain id)."""

    def __init__(self, store: LocalStore, snaps: Snapshots) -> None:
        self._store, self._snaps = store, snaps

    def unpack_single(self, layer_digest: str) -> tuple[int, str, str]:
        """Unpack the layer blob into a fresh private directory, then publish it as its diff id's snapshot.

        The diff id is known only once the whole layer is read, so the directory is
        prepared under no name (never a chain id: a leftover of an interrupted import
        must not pass for an unpacked layer, whose diff id would then read as the
        empty digest) and published under the diff id, fsynced, or dropped when that
        snapshot exists already.
        """
        with open(self._store.path(layer_digest), "rb") as raw:
            stream, media = _decompressed(raw)
            hashing = _Hashing(stream)
            reader = io.BufferedReader(hashing, 1 << 20)
            tmp = self._snaps.prepare()
            try:
                directory = os.path.join(tmp, "fs")
                try:
                    size = archive.apply_layer(reader, directory)  # type: ignore[arg-type]
                    while reader.read(1 << 20):
                        pass
                except (EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
                    raise InvalidArgument(f"import: the archive is truncated or corrupt: {exc}") from exc
                with open(os.path.join(tmp, "size"), "w") as f:
                    f.write(str(size))
                diff_id = "sha256:" + hashing.hash.hexdigest()
                self._store.mark(diff_id)  # its own chain id: a collection running now leaves it
                self._snaps.publish(tmp, diff_id)
            except BaseException:
                self._snaps.discard(tmp)
                raise
        return size, diff_id, media

    def unpack(self, layer_digest: str, diff_id: str, chain: str) -> int:
        """Unpack a layer blob as the snapshot *chain* (once); return its unpacked size."""
        self._store.mark(chain)
        if self._snaps.exists(chain):
            try:
                with open(os.path.join(os.path.dirname(self._snaps.path(chain)), "size")) as f:
                    return int(f.read() or 0)
            except (OSError, ValueError):
                return 0

        def fill(directory: str) -> None:
            with open(self._store.path(layer_digest), "rb") as raw:
                stream, _ = _decompressed(raw)
                hashing = _Hashing(stream)
                reader = io.BufferedReader(hashing, 1 << 20)
                size = archive.apply_layer(reader, directory)  # type: ignore[arg-type]
                while reader.read(1 << 20):
                    pass
            got = "sha256:" + hashing.hash.hexdigest()
            if got != diff_id:
                raise InvalidArgument(f"layer {layer_digest} unpacks to {got}, but the image config says {diff_id}: "
                                      "the image is corrupt")
            with open(os.path.join(os.path.dirname(directory), "size"), "w") as f:
                f.write(str(size))

        try:
            self._snaps.commit(chain, fill)
        except FileNotFoundError as exc:
            raise NotFound(f"layer {layer_digest} is not in the content store") from exc
        except (EOFError, OSError, lzma.LZMAError, zstandard.ZstdError) as exc:
            raise InvalidArgument(f"layer {layer_digest} is truncated or corrupt: {exc}") from exc
        return self.unpack(layer_digest, diff_id, chain)

    def unpack_stream(self, stream: IO[bytes], diff_id: str) -> tuple[str, int]:
        """Unpack a layer read from *stream* (plain, gzip or zstd) into a prepared directory.

        The layer's content must hash to *diff_id*. Returns (prepared directory,
        unpacked size): the caller publishes it with `publish_layer` once the blob's
        own digest is verified, or drops it with `discard_layer`; until then it is
        invisible. Lets a pull unpack while it downloads.

        Raises:
            InvalidArgument: the layer is refused (hostile paths), corrupt or not what the config says.
        """
        tmp = self._snaps.prepare()
        try:
            source = io.BufferedReader(cast(io.RawIOBase, stream), 1 << 20)
            hashing = _Hashing(_sniffed(source))
            reader = io.BufferedReader(hashing, 1 << 20)
            try:
                size = archive.apply_layer(reader, os.path.join(tmp, "fs"))  # type: ignore[arg-type]
                while reader.read(1 << 20):
                    pass
            except (EOFError, lzma.LZMAError, zstandard.ZstdError, gzip.BadGzipFile) as exc:
                raise InvalidArgument(f"layer {diff_id} is truncated or corrupt: {exc}") from exc
            got = "sha256:" + hashing.hash.hexdigest()
            if got != diff_id:
                raise InvalidArgument(f"a layer unpacks to {got}, but the image config says {diff_id}: "
                                      "the image is corrupt")
            with open(os.path.join(tmp, "size"), "w") as f:
                f.write(str(size))
            return tmp, size
        except BaseException:
            self._snaps.discard(tmp)
            raise

    def publish(self, tmp: str, chain: str) -> None:
        self._store.mark(chain)
        self._snaps.publish(tmp, chain)

    def discard(self, tmp: str) -> None:
        self._snaps.discard(tmp)

    def has(self, chain: str) -> bool:
        self._store.mark(chain)  # about to be relied on, or not: marked either way (kept one collection more)
        return self._snaps.exists(chain)

    def size(self, chain: str) -> int:
        try:
            with open(os.path.join(os.path.dirname(self._snaps.path(chain)), "size")) as f:
                return int(f.read() or 0)
        except (OSError, ValueError):
            return 0


    def total_size(self) -> int:
        """Bytes of every unpacked layer (each shared layer once): `docker system df`'s LayersSize."""
        return sum(self.size(c) for c in self._snaps.chains())

    def path(self, chain: str) -> str:
        """The unpacked layer's directory (an overlay lower dir)."""
        return self._snaps.path(chain)

    def chains(self) -> list[str]:
        """Every chain id unpacked here."""
        return list(self._snaps.chains())

    def remove(self, chain: str) -> None:
        self._snaps.remove(chain)

    def detach_unmarked(self, chain: str) -> str | None:
        """Move the snapshot *chain* out of sight unless the store marked it (work in progress relies
        on it), atomically with marking; return where it went, for `discard` (a `.tmp-` directory,
        swept at start if a crash comes first), or None when it stays."""
        def detach() -> str | None:
            trash = os.path.join(self._snaps.root, f".tmp-gc-{uuid.uuid4().hex}")
            try:
                os.rename(os.path.dirname(self._snaps.path(chain)), trash)
            except FileNotFoundError:
                return None
            return trash
        return self._store.unless_marked(chain, detach)
