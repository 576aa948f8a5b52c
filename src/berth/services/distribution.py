"""Pull and push images with OCI registries, reporting Docker's JSON progress messages.

Strategy: the registry client (berth.registry) does the HTTP; this module
decides what to fetch or send and records the result in the image store.
A pull resolves the reference (an index is kept whole; the wanted platform's
manifest is chosen from it, the host's by default) *before* it reports
anything, so a bad name, a missing tag, a refused login or a platform the
image lacks is an HTTP error with a message, not a broken stream. Layers then
download concurrently, each streamed into a resumable ingest
(<root>/partial/<hex>) that survives a broken connection or a daemon crash
(written, and the layer unpacked from the same bytes, by one worker thread per
layer: services.unpacker.BlobWriter; the event loop only hands bytes over):
the next attempt asks for the rest with a Range request. A blob becomes
visible only when its digest matches. Everything a pull writes is leased
against garbage collection until the image is recorded (and the pull is an
operation of the store, content.local). One download per blob at a time: a
second pull of the same blob waits for the first, then finds it stored (two
writers never append to one partial file).

A pull whose client goes away is not stopped: `detach` adopts its task, which
goes on to the end and tags the image, as Docker's does, its progress sent
nowhere; `close` (daemon shutdown) cancels what is still running (its partial
downloads stay, for the next pull to resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.content.local import LocalStore
from berth.errors import InvalidArgument, NotFound, Unavailable
from berth.host import spool
from berth.oci import image as oci_image
from berth.oci import platform as platforms
from berth.oci import reference
from berth.oci.image import Descriptor, ImageIndex, ImageManifest, MalformedImage
from berth.registry import (
    Credentials,
    RegistryClient,
    RegistryDataError,
    RegistryOptions,
    credentials_from_config,
    display_name,
    registry_and_repo,
)
from berth.services.events import Events
from berth.services.imagerecords import IndexRecord
from berth.services.images import Images
from berth.services.layers import Layers, Leases
from berth.services.unpacker import BlobWriter
from berth.snapshot.overlay import chain_ids

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
CONCURRENT_LAYERS = 3
RESUME_ATTEMPTS = 4
PROGRESS_EVERY = 0.2  # seconds between progress messages per layer
CHUNKED_ABOVE = 32 << 20  # push blobs larger than this in chunks
CHUNK_BYTES = 16 << 20


def progress_bar(current: int, total: int, width: int = 50) -> str:
    """Docker's textual progress: `[=====>     ]  1.2MB/3.4MB`."""
    def human(n: float) -> str:
        for unit in ("B", "kB", "MB", "GB"):
            if n < 1000 or unit == "GB":
                return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
            n /= 1000
        return f"{n:.3g}GB"
    if total <= 0:
        return human(current)
    filled = min(width, current * width // total)
    arrow = "=" * max(0, filled - 1) + (">" if filled < width else "=") if filled else ">"
    return f"[{arrow.ljust(width)}] {human(current):>8}/{human(total)}"


@dataclass(frozen=True, slots=True)
class PullResult:
    image_id: str
    target: str  # the image id, or the index digest a multi-platform tag names
    digest: str  # what the registry served for the reference
    downloaded: bool


@dataclass(frozen=True, slots=True)
class RegistryImage:
    """What a registry has for a name (`GET /distribution/{name}/json`): the manifest or index it serves
    for the reference, and the platforms an index lists (none for a single manifest)."""

    media_type: str
    digest: str
    size: int
    platforms: tuple[platforms.Platform, ...]


class Distribution:
    def __init__(self, images: Images, layers: Layers, leases: Leases, store: LocalStore, events: Events,
                 options: RegistryOptions, docker_config: Path | None = None) -> None:
        self._images, self._layers, self._leases, self._store, self._events = images, layers, leases, store, events
        self._options = options
        self._docker_config = docker_config
        self._client: RegistryClient | None = None
        self._downloads: dict[str, _Turn] = {}  # blob digest -> held by the pull downloading it
        self._detached: set[asyncio.Task[Any]] = set()  # pulls that outlive their clients

    def client(self) -> RegistryClient:
        if self._client is None:
            self._client = RegistryClient(self._options)
        return self._client

    async def close(self) -> None:
        """Let go of the registry client, cancelling the pulls that went on without their clients."""
        detached, self._detached = set(self._detached), set()
        for task in detached:
            task.cancel()
        await asyncio.gather(*detached, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def detach(self, task: asyncio.Task[Any]) -> None:
        """Keep *task* (a pull whose client went away) running to its end; `close` cancels it."""
        if task.done():
            return
        self._detached.add(task)

        def ended(t: asyncio.Task[Any]) -> None:
            self._detached.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                log.warning("a pull its client left failed: %s", exc)
        task.add_done_callback(ended)

    def credentials(self, registry: str, given: Credentials | None) -> Credentials | None:
        """The credentials a request brought (X-Registry-Auth), else those of the daemon's config file."""
        if given is not None or self._docker_config is None:
            return given
        try:
            return credentials_from_config(json.loads(self._docker_config.read_text()), registry)
        except (OSError, ValueError):
            return None

    # login ---------------------------------------------------------------------------
    async def login(self, server: str, creds: Credentials) -> None:
        """Check *creds* against the registry *server* (`docker login`)."""
        registry = _registry_of(server)
        await self.client().check_login(registry, creds)

    async def describe(self, name: str, creds: Credentials | None) -> RegistryImage:
        """What the registry has for *name* (`GET /distribution/{name}/json`): descriptor and platforms."""
        ref = reference.parse(name)
        registry, repo = registry_and_repo(ref.name)
        top = await self.client().get_manifest(registry, repo, ref.digest or ref.tag or "latest",
                                               self.credentials(registry, creds))
        parsed = top.image  # None for an artifact, say: no platforms to show
        found: tuple[platforms.Platform, ...] = ()
        if isinstance(parsed, ImageIndex):
            found = tuple(platforms.of_dict(m.platform or {}) for m in parsed.manifests
                          if (m.platform or {}).get("architecture") not in (None, "unknown"))
        return RegistryImage(top.media_type, top.digest, len(top.data), found)

    # pull ----------------------------------------------------------------------------
    async def pull(self, ref_text: str, platform: str, creds: Credentials | None, emit: Emit) -> PullResult:
        """Pull *ref_text* for *platform*; progress goes to *emit* (nothing before the image is resolved).

        Raises:
            NotFound, Unauthenticated, Unavailable, InvalidArgument (platform mismatch),
            RegistryDataError (the registry sent something wrong): before any progress when they can.
        """
        with self._store.operation():
            return await self._pull(ref_text, platform, creds, emit)

    async def _pull(self, ref_text: str, platform: str, creds: Credentials | None, emit: Emit) -> PullResult:
        ref = reference.parse(ref_text)
        registry, repo = registry_and_repo(ref.name)
        creds = self.credentials(registry, creds)
        wanted = platforms.parse(platform) if platform else None
        rc = self.client()
        top = await rc.get_manifest(registry, repo, ref.digest or ref.tag or "latest", creds)
        top_parsed = top.parsed()
        index = top_parsed if isinstance(top_parsed, ImageIndex) else None
        manifest, parsed = top, top_parsed
        if index is not None:
            want = wanted or platforms.host()
            chosen = platforms.choose(want, index.descriptors())
            if chosen is None:
                raise InvalidArgument(platforms.mismatch_message(
                    str(ref), want, platforms.available(index.descriptors())))
            manifest = await rc.get_manifest(registry, repo, str(chosen["digest"]), creds)
            parsed = manifest.parsed()
        if not isinstance(parsed, ImageManifest):
            raise RegistryDataError(f"the manifest of {ref} from {registry} has no config or layers")
        config_desc = parsed.config
        layers = list(parsed.layers)
        blobs = [config_desc.digest, *(layer.digest for layer in layers)]
        with self._leases.lease([top.digest, manifest.digest, *blobs]):
            if not self._store.exists(config_desc.digest):
                async with self._downloading(config_desc.digest):
                    if not self._store.exists(config_desc.digest):
                        await self._download(registry, repo, config_desc, creds, lambda d: None)
            try:
                config = oci_image.parse_config(self._store.read(config_desc.digest), digest=config_desc.digest,
                                                what=f"the config of {ref}")
            except MalformedImage as exc:
                raise RegistryDataError(str(exc)) from None
            have = platforms.of_config(config.doc)
            if wanted is not None and index is None and not platforms.matches(wanted, have):
                raise InvalidArgument(platforms.mismatch_message(str(ref), wanted, [have]))
            shown = ref.tag or ref.digest or "latest"
            emit({"status": f"Pulling from {display_name(registry, repo)}", "id": shown})
            previous = self._images.target(str(ref))
            sem = asyncio.Semaphore(CONCURRENT_LAYERS)
            fetched = [False]

            diff_ids = list(config.diff_ids)
            if len(diff_ids) != len(layers):
                raise RegistryDataError(f"the config of {ref} lists {len(diff_ids)} layers but its manifest "
                                        f"{len(layers)}")
            chains = dict(zip(diff_ids, chain_ids(diff_ids), strict=True))

            async def layer(desc: Descriptor, diff_id: str) -> None:
                short = desc.digest[7:19]
                if self._store.exists(desc.digest):
                    emit({"status": "Already exists", "progressDetail": {}, "id": short})
                    return
                emit({"status": "Pulling fs layer", "progressDetail": {}, "id": short})
                async with sem, self._downloading(desc.digest):
                    if self._store.exists(desc.digest):  # another pull stored it while this one waited
                        fetched[0] = True
                        emit({"status": "Pull complete", "progressDetail": {}, "id": short})
                        return
                    chain = chains[diff_id]
                    unpack = None if self._layers.has(chain) else diff_id
                    tmp = await self._download(registry, repo, desc, creds, emit, unpack=unpack)
                    if tmp is not None:
                        await spool.settled(self._layers.publish, tmp, chain)  # syncfs: not on the loop
                fetched[0] = True
                emit({"status": "Pull complete", "progressDetail": {}, "id": short})

            with self._leases.lease(chains.values()):
                await _gather(layer(desc, diff) for desc, diff in zip(layers, diff_ids, strict=False))
                image_id = await asyncio.to_thread(self._images.register, parsed, config=config,
                                                   repo_digests=[f"{ref.name}@{top.digest}"])
            target = image_id
            if index is not None:
                target = self._images.register_index(index, {manifest.digest: image_id})
            if ref.tag:
                self._images.set_tag(str(ref), target, f"{ref.name}@{top.digest}")
        emit({"status": f"Digest: {top.digest}"})
        fresh = fetched[0] or previous != target
        emit({"status": f"Status: {'Downloaded newer image' if fresh else 'Image is up to date'} for {ref}"})
        self._images.event("pull", str(ref), ref.name, image_id)  # as Docker: the reference, then its name
        return PullResult(image_id, target, top.digest, fresh)

    @contextlib.asynccontextmanager
    async def _downloading(self, digest: str) -> AsyncIterator[None]:
        """Hold the one download of *digest* (its partial file has one writer); others wait their turn."""
        turn = self._downloads.setdefault(digest, _Turn())
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users:
                del self._downloads[digest]

    async def _download(self, registry: str, repo: str, desc: Descriptor, creds: Credentials | None,
                        emit: Emit, *, unpack: str | None = None) -> str | None:
        """Fetch one blob into the store, resuming a partial download, verifying its digest.

        With *unpack* (the layer's diff ID) the layer is unpacked while it downloads;
        the prepared snapshot directory is returned for the caller to publish.
        """
        digest, total = desc.digest, desc.size
        short = digest[7:19]
        ingest = await spool.settled(self._store.resume, digest)  # hashes a partial file: not on the loop
        writer = BlobWriter(self._layers, ingest, unpack)  # its thread writes the ingest (and unpacks)
        fed = ingest.size  # what the ingest will hold once the thread has written all it was fed
        last = 0.0
        try:
            for attempt in range(RESUME_ATTEMPTS):
                try:
                    async with await self.client().open_blob(registry, repo, digest, creds, offset=fed) as stream:
                        if stream.start != fed:  # the registry sent the whole blob again
                            await writer.abort()
                            await spool.settled(ingest.reset)
                            writer, fed = BlobWriter(self._layers, ingest, unpack), 0
                        async for chunk in stream:
                            fed += len(chunk)
                            if total and fed > total:  # a registry's blob is bounded by the manifest's size
                                raise BlobTooLarge(f"blob {digest} from {display_name(registry, repo)} is larger "
                                                   f"than the {total} bytes its manifest says: refused")
                            await writer.feed(chunk)
                            now = time.monotonic()
                            if now - last >= PROGRESS_EVERY:
                                last = now
                                emit({"status": "Downloading", "id": short,
                                      "progressDetail": {"current": fed, "total": total},
                                      "progress": progress_bar(fed, total)})
                    break
                except Unavailable:
                    if attempt == RESUME_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.5 * 2 ** attempt)
            if total and fed != total:
                raise RegistryDataError(f"blob {digest} from {display_name(registry, repo)} ended after "
                                        f"{fed} of {total} bytes")
            emit({"status": "Verifying Checksum", "progressDetail": {}, "id": short})
            if unpack:
                emit({"status": "Extracting", "progressDetail": {}, "id": short})
            tmp, refused = None, None
            try:
                tmp = await writer.finish()
            except InvalidArgument as exc:
                refused = exc
        except BaseException as exc:
            await writer.abort()  # the thread has stopped: the ingest is ours again
            if isinstance(exc, BlobTooLarge):
                await spool.settled(ingest.abort)  # nothing of it is worth resuming
            else:
                ingest.close()  # keep what arrived: the next pull asks for the rest
            raise
        try:
            await spool.settled(ingest.commit, digest)  # the blob's own digest first: a wrong blob explains a bad layer
        except InvalidArgument as exc:
            if tmp is not None:
                await spool.settled(self._layers.discard, tmp)
            raise RegistryDataError(f"blob {digest} from {display_name(registry, repo)} has the wrong content "
                                    f"({exc}): refused, nothing was stored") from None
        if refused is not None:
            raise refused
        emit({"status": "Download complete", "progressDetail": {}, "id": short})
        return tmp

    # push ----------------------------------------------------------------------------
    async def push(self, name: str, tag: str, creds: Credentials | None, emit: Emit,
                   platform: str = "") -> list[str]:
        """Push the local tag(s) of *name* (only *platform*'s image of a multi-platform one, if given)."""
        base = reference.parse(name, default_tag=None)
        registry, repo = registry_and_repo(base.name)
        creds = self.credentials(registry, creds)
        tags = [tag] if tag else ([base.tag] if base.tag else self._local_tags(base.name))
        if not tags:
            raise NotFound(f"An image does not exist locally with the tag: {base.name}")
        refs = [reference.parse(f"{base.name}:{t}") for t in tags]
        targets = {}
        for ref in refs:
            target = self._images.target(str(ref))
            if target is None:
                raise NotFound(f"An image does not exist locally with the tag: {ref}")
            targets[ref] = (target, self._images.resolve(str(ref), platform) if platform else target)
        emit({"status": f"The push refers to repository [{_full_name(registry, repo)}]"})
        pushed = []
        for ref, (target, sent) in targets.items():
            digest, size = await self._push_target(registry, repo, str(ref.tag), sent, creds, emit)
            emit({"status": f"{ref.tag}: digest: {digest} size: {size}"})
            emit({"progressDetail": {}, "aux": {"Tag": ref.tag, "Digest": digest, "Size": size}})
            if sent == target:  # one platform's push leaves the tag, and its repo digests, as they were
                self._images.set_tag(str(ref), target, f"{ref.name}@{digest}")
            self._images.event("push", str(ref), ref.name, target)  # as Docker: the reference, then its name
            pushed.append(digest)
        return pushed

    def _local_tags(self, name: str) -> list[str]:
        out = []
        for tags in self._images.tag_map().values():
            for t in tags:
                ref = reference.parse(t)
                if ref.name == name and ref.tag:
                    out.append(ref.tag)
        return sorted(set(out))

    async def _push_target(self, registry: str, repo: str, tag: str, target: str, creds: Credentials | None,
                           emit: Emit) -> tuple[str, int]:
        index = self._images.index(target)
        if index is not None:
            children = index.children
            if all(c.image for c in children):
                for child in children:
                    await self._push_image(registry, repo, child.image, creds, emit)
                raw = self._store.read(target)
                media = oci_image.parse_manifest(raw, what="the stored index").media_type
                digest = await self.client().put_manifest(registry, repo, tag, media, raw, creds)
                return digest, len(raw)
            target = self._default(index)  # not every platform is here: push the one we have
        return await self._push_image(registry, repo, target, creds, emit, tag=tag)

    def _default(self, index: IndexRecord) -> str:
        present = index.images()
        if not present:
            raise NotFound("none of the index's platforms is here to push")
        return present[0]

    async def _push_image(self, registry: str, repo: str, image_id: str, creds: Credentials | None, emit: Emit,
                          tag: str | None = None) -> tuple[str, int]:
        record = self._images.record(image_id)
        raw = self._store.read(record.manifest)
        parsed = oci_image.parse_image_manifest(raw, what="the stored manifest")
        rc = self.client()
        layers = [layer.digest for layer in parsed.layers]
        sources = [d.split("@", 1)[0] for d in record.repo_digests]
        for digest in layers:
            emit({"status": "Preparing", "progressDetail": {}, "id": digest[7:19]})
        for digest in [*layers, parsed.config.digest]:
            await self._push_blob(registry, repo, digest, sources, creds, emit, show=digest in layers)
        media = parsed.media_type
        digest = await rc.put_manifest(registry, repo, tag or record.manifest, media, raw, creds)
        return digest, len(raw)

    async def _push_blob(self, registry: str, repo: str, digest: str, sources: list[str],
                         creds: Credentials | None, emit: Emit, *, show: bool) -> None:
        rc = self.client()
        short = digest[7:19]
        if await rc.blob_size(registry, repo, digest, creds) is not None:
            if show:
                emit({"status": "Layer already exists", "progressDetail": {}, "id": short})
            return
        for source in sources:
            src_registry, src_repo = registry_and_repo(source)
            if src_registry == registry and src_repo != repo and \
                    await rc.mount_blob(registry, repo, digest, src_repo, creds):
                if show:
                    emit({"status": f"Mounted from {src_repo}", "progressDetail": {}, "id": short})
                return
        path = self._store.path(digest)
        size = self._store.size(digest)
        sent = [0]
        last = [0.0]

        async def chunks() -> Any:
            sent[0] = 0
            with open(path, "rb") as f:
                while data := await asyncio.to_thread(f.read, 1 << 20):
                    sent[0] += len(data)
                    if show and time.monotonic() - last[0] >= PROGRESS_EVERY:
                        last[0] = time.monotonic()
                        emit({"status": "Pushing", "id": short, "progressDetail": {"current": sent[0], "total": size},
                              "progress": progress_bar(sent[0], size)})
                    yield data

        # Big blobs go up in chunks (PATCH with Content-Range), small ones in one PUT.
        await rc.upload_blob(registry, repo, digest, size, chunks, creds,
                             chunk_size=CHUNK_BYTES if size > CHUNKED_ABOVE else None)
        if show:
            emit({"status": "Pushed", "progressDetail": {}, "id": short})


@dataclass
class _Turn:
    """The downloads of one blob, one at a time: the lock, and how many pulls hold or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


async def _gather(coros: Any) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class BlobTooLarge(RegistryDataError):
    """A registry sent more of a blob than the manifest declared (it is refused before it is all written)."""


def _registry_of(server: str) -> str:
    s = server.strip()
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    s = s.split("/", 1)[0]
    if s in ("", "index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return s


def _full_name(registry: str, repo: str) -> str:
    return f"{registry}/{repo}"


__all__ = ["Distribution", "PullResult", "RegistryImage", "progress_bar"]
