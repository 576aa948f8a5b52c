"""Image routes: pull/import, push, login, list, inspect, history, tag, remove, prune, save, load, df."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from berth.api.errors import RequestTimeout, RequestTooLarge
from berth.api.replies import Reply, Stream
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.views import images as views
from berth.api.wiring import Daemon
from berth.errors import BerthError, InvalidArgument
from berth.oci import platform as platforms
from berth.services import imagemanifests, pullall
from berth.wire.registryauth import Credentials, decode_x_registry_auth

TAR = "application/x-tar"


PROGRESS_SOFT_CAP = 1 << 20   # pending bytes past which superseded progress-bar updates are dropped
PROGRESS_HARD_CAP = 64 << 20  # pending bytes past which the work ends: the client is not reading


def _line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode() + b"\r\n"


class ClientNotReading(BerthError):
    """The stream's client stopped reading while the work kept producing."""


class _Pending:
    """The lines a progress stream has not yet handed to its client, bounded in bytes.

    A progress-bar update ("Downloading" with a progressDetail) is superseded by the next one for
    the same id, so under pressure it is dropped; every other line is kept up to the hard cap, where
    the work is stopped with ClientNotReading rather than grow the daemon's memory without end.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.size = 0
        self.unread = False  # the client went away: what the work reports goes nowhere

    def put(self, doc: dict[str, Any]) -> None:
        if self.unread:
            return
        line = _line(doc)
        if self.size > PROGRESS_SOFT_CAP and (doc.get("progressDetail") or {}).get("current") is not None:
            return
        if self.size + len(line) > PROGRESS_HARD_CAP:
            raise ClientNotReading(f"the client stopped reading: over {PROGRESS_HARD_CAP >> 20} MiB of output "
                                   "pending; read the stream as it comes")
        self.size += len(line)
        self.queue.put_nowait(line)

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def get(self) -> bytes | None:
        line = await self.queue.get()
        if line is not None:
            self.size -= len(line)
        return line


async def progress_stream(work: Callable[[Callable[[dict[str, Any]], None]], Awaitable[Any]],
                          detach: Callable[[asyncio.Task[Any]], None] | None = None) -> Stream:
    """Run *work* (which reports through its emit argument) as Docker's JSON progress stream.

    Errors raised before the first message become the HTTP error itself (a
    status and a message); later ones end the stream with errorDetail, as
    Docker's do. With *detach* (a pull), work whose client goes away is not
    cancelled but handed to *detach* to finish, its reports dropped.
    """
    pending = _Pending()
    task = asyncio.ensure_future(work(pending.put))
    task.add_done_callback(lambda _: pending.end())
    try:
        first = await pending.get()
    except asyncio.CancelledError:  # the request ended before the first message
        if detach is not None and not task.done():
            pending.unread = True
            detach(task)
        else:
            task.cancel()
        raise
    if first is None:
        task.result()  # raises the error as an HTTP status

    async def body() -> AsyncIterator[bytes]:
        item = first
        try:
            while item is not None:
                yield item
                item = await pending.get()
            exc = task.exception()
            if exc is not None:
                message = str(exc) if isinstance(exc, BerthError) else f"internal error: {type(exc).__name__}: {exc}"
                yield _line({"errorDetail": {"message": message}, "error": message})
        finally:
            if not task.done():
                if detach is not None:
                    pending.unread = True
                    detach(task)
                else:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
    return Stream(body())


async def threaded(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking iterator of bytes (tar writers) served from a worker thread, chunk by chunk."""
    while True:
        chunk = await asyncio.to_thread(next, chunks, None)
        if chunk is None:
            return
        yield chunk


def credentials(req: Request) -> Credentials | None:
    return decode_x_registry_auth(req.headers.get("x-registry-auth", ""))


def register(router: Router, d: Daemon) -> None:
    async def create(req: Request) -> Stream | Reply:
        src = req.q("fromSrc")
        if req.q("fromImage"):
            image, tag = req.q("fromImage"), req.q("tag")
            if tag:
                image = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
            creds = credentials(req)
            if not tag and pullall.names_repository(image):  # no tag anywhere: every tag, as Docker
                return await progress_stream(
                    lambda emit: pullall.pull_all_tags(d.distribution, image, req.q("platform"), creds, emit),
                    detach=d.distribution.detach)
            return await progress_stream(lambda emit: d.distribution.pull(image, req.q("platform"), creds, emit),
                                         detach=d.distribution.detach)  # as Docker's: the pull outlives its client
        if src != "-":
            if not src:
                raise InvalidArgument("images/create needs fromSrc=- (import) or fromImage (pull)")
            raise InvalidArgument(f"import from a URL ({src}) is not supported: send the tarball as the body (fromSrc=-)")
        changes = req.query.get("changes", [])
        image_id = await d.images.import_tarball(req.stream(), req.q("repo"), req.q("tag"), changes,
                                                 req.q("message"), req.q("platform"))

        async def out() -> AsyncIterator[bytes]:
            yield _line({"status": image_id})
        return Stream(out())

    async def push(req: Request) -> Stream:
        creds = credentials(req)
        platform = platforms.from_query(req.q("platform"))  # API 1.46: one platform of a multi-platform image
        return await progress_stream(lambda emit: d.distribution.push(req.params["image"], req.q("tag"), creds, emit,
                                                                      platform))

    async def login(req: Request) -> Reply:
        body = await req.json()
        server = str(body.get("serveraddress") or "docker.io")
        creds = Credentials(username=str(body.get("username") or ""), password=str(body.get("password") or ""),
                            identity_token=str(body.get("identitytoken") or ""))
        await d.distribution.login(server, creds)
        return Reply(200, {"Status": "Login Succeeded", "IdentityToken": ""})

    async def list_(req: Request) -> Reply:
        items = d.imageviews.listing(req.qbool("all"), req.filters())
        if not req.qbool("manifests"):  # API 1.47: each image's manifests, only when asked for
            return Reply(200, views.listing(items))
        return Reply(200, views.listing(items, await imagemanifests.for_listing(d.images, d.store, items)))

    async def inspect(req: Request) -> Reply:
        return Reply(200, views.inspect(d.imageviews.inspect(req.params["image"])))

    async def history(req: Request) -> Reply:
        return Reply(200, views.history(d.imageviews.history(req.params["image"])))

    async def tag(req: Request) -> Reply:
        d.images.tag(req.params["image"], req.q("repo"), req.q("tag"))
        return Reply(201)

    async def remove(req: Request) -> Reply:
        return Reply(200, views.removed(await d.imageremoval.remove_async(req.params["image"], req.qbool("force"))))

    async def prune(req: Request) -> Reply:
        filters = req.filters()
        all_ = any(v in ("false", "0") for v in filters.get("dangling", []))
        return Reply(200, views.prune(await d.imageremoval.prune_async(all_, filters)))

    async def save_many(req: Request) -> Stream:
        return Stream(threaded(d.imageio.save(req.query.get("names", []))), TAR)

    async def save_one(req: Request) -> Stream:
        return Stream(threaded(d.imageio.save([req.params["image"]])), TAR)

    async def load(req: Request) -> Stream:
        # As Docker: the answer is a 200 stream whatever happens to the archive; a refused one ends
        # it with errorDetail (docker-py raises ImageLoadError, the CLI prints it and exits 1).
        try:
            lines = await d.imageio.load(req.stream())
        except (RequestTimeout, RequestTooLarge):
            raise  # the request itself failed, not the archive: its own status, and the connection closes
        except BerthError as exc:
            failed = str(exc)

            async def error() -> AsyncIterator[bytes]:
                yield _line({"errorDetail": {"message": failed}, "error": failed})
            return Stream(error())

        async def out() -> AsyncIterator[bytes]:
            for text in lines:
                yield _line({"stream": text + "\n"})
        return Stream(out())

    router.add("POST", "/images/create", create)
    router.add("POST", "/images/load", load)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/get", save_many)
    router.add("GET", "/images/json", list_)
    router.add("POST", "/auth", login)
    router.add("GET", "/images/{image}/get", save_one)
    router.add("GET", "/images/{image}/json", inspect)
    router.add("GET", "/images/{image}/history", history)
    router.add("POST", "/images/{image}/push", push)
    router.add("POST", "/images/{image}/tag", tag)
    router.add("DELETE", "/images/{image}", remove)
