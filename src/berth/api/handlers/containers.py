"""Container routes: lifecycle, inspect/list, logs, attach, exec, export, commit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import AsyncIterator

from berth import timefmt
from berth.api.containerrequests import create_request, update_request
from berth.api.execrequests import create_request as exec_create_request
from berth.api.execrequests import start_request as exec_start_request
from berth.api.replies import Hijack, Reply, Stream
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.views import containerfs as fs_views
from berth.api.views import containers as views
from berth.api.views import execs as exec_views
from berth.api.views import pathstat
from berth.api.views import stats as stats_views
from berth.api.wiring import Daemon
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.oci import reference
from berth.oci.imageconfig import RuntimeConfig
from berth.services import (
    containerfs,
    containerview,
    copy,
    createtypes,
    endpoints,
    healthrules,
    links,
    stats,
    streams,
)

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


def _since(req: Request, name: str) -> int:
    value = req.q(name)
    if not value or value == "0":
        return 0
    try:
        return timefmt.parse_since(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r}") from None


def register(router: Router, d: Daemon) -> None:
    cs = d.containers
    life = d.lifecycle

    async def create(req: Request) -> Reply:
        body = await req.json()
        endpoints.check_create_version(body, req.api_version)  # one network at create below API 1.44
        healthrules.for_api_version(body, req.api_version)  # StartInterval from API 1.44
        cid, warnings = cs.create(req.q("name"), create_request(body), req.q("platform"))
        return Reply(201, {"Id": cid, "Warnings": warnings})

    async def list_(req: Request) -> Reply:
        limit = req.qint("limit", -1) or -1
        return Reply(200, views.listing(cs, d.images, req.qbool("all"), limit, req.filters(), req.qbool("size")))

    async def inspect(req: Request) -> Reply:
        c = cs.get(req.params["id"])
        doc = views.inspect(c, req.api_version)
        if req.qbool("size"):
            doc |= views.sizes(d.images, c)
        return Reply(200, doc)

    async def start(req: Request) -> Reply:
        await life.start(req.params["id"])
        return Reply(204)

    async def stop(req: Request) -> Reply:
        await life.stop(req.params["id"], req.qint("t"), req.q("signal") or None)
        return Reply(204)

    async def restart(req: Request) -> Reply:
        await life.restart(req.params["id"], req.qint("t"), req.q("signal") or None)
        return Reply(204)

    async def kill(req: Request) -> Reply:
        await life.kill(req.params["id"], req.q("signal") or None)
        return Reply(204)

    async def pause(req: Request) -> Reply:
        await life.pause(req.params["id"])
        return Reply(204)

    async def unpause(req: Request) -> Reply:
        await life.unpause(req.params["id"])
        return Reply(204)

    async def wait(req: Request) -> Stream:
        # Headers go out at once (docker run sends this before start and waits for them);
        # the body follows when the condition is met.
        result = life.wait(req.params["id"], req.q("condition"))
        first = asyncio.ensure_future(result)
        await asyncio.sleep(0)
        if first.done() and first.exception() is not None:
            raise first.exception()  # type: ignore[misc]

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b""
                yield json.dumps(views.wait_result(await first)).encode() + b"\n"
            finally:
                first.cancel()
        return Stream(body())

    async def remove(req: Request) -> Reply:
        if req.qbool("link"):  # a link is named LINKER/ALIAS (remove_link below); a container's own name is not one
            raise Conflict("Conflict, cannot remove the default link name of the container")
        await life.remove(req.params["id"], req.qbool("force"), req.qbool("v"))
        return Reply(204)

    async def remove_link(req: Request) -> Reply:  # docker rm --link LINKER/ALIAS, docker-py remove_link
        if not req.qbool("link"):
            raise NotFound(f"No such container: {req.params['id']}/{req.params['alias']}")
        links.unlink(cs, req.params["id"], req.params["alias"])
        return Reply(204)

    async def rename(req: Request) -> Reply:
        cs.rename(req.params["id"], req.q("name"))
        return Reply(204)

    async def top(req: Request) -> Reply:
        titles, rows = await cs.top(req.params["id"], req.q("ps_args"))
        return Reply(200, {"Titles": titles, "Processes": rows})

    async def resize(req: Request) -> Reply:
        cs.resize(req.params["id"], req.qint("h", 0) or 0, req.qint("w", 0) or 0)
        return Reply(200)

    async def logs(req: Request) -> Stream:
        c = cs.get(req.params["id"])
        tail = req.q("tail", "all")
        try:
            tail_n = -1 if tail in ("all", "") else int(tail)
        except ValueError:
            raise InvalidArgument(f"invalid value for tail: {tail!r}") from None
        opts = streams.LogOptions(follow=req.qbool("follow"), stdout=req.qbool("stdout"),
                                  stderr=req.qbool("stderr"), since_ns=_since(req, "since"),
                                  until_ns=_since(req, "until"), timestamps=req.qbool("timestamps"),
                                  tail=tail_n, details=req.qbool("details"))
        if not (opts.stdout or opts.stderr):
            raise InvalidArgument("You must choose at least one stream")
        chunks = streams.logs(cs, c, opts)
        first = [await _first(chunks)]

        async def all_chunks() -> AsyncIterator[bytes]:
            if first[0]:
                yield first[0]
            async for chunk in chunks:
                yield chunk
        return Stream(all_chunks(), RAW if c.record.tty else MULTIPLEXED)

    async def attach(req: Request) -> Hijack:
        c = cs.get(req.params["id"])
        keys = req.q("detachKeys")
        opts = streams.AttachOptions(stdin=req.qbool("stdin"), stdout=req.qbool("stdout"),
                                     stderr=req.qbool("stderr"), stream=req.qbool("stream"),
                                     logs=req.qbool("logs"), detach_keys=_detach_keys(keys))

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: bytes) -> None:
            await streams.attach(cs, c, opts, reader, writer, pending)
        return Hijack(run, RAW if c.record.tty else MULTIPLEXED)

    async def stats_(req: Request) -> Stream:
        c = cs.get(req.params["id"])
        samples = stats.stream(c, req.qbool("stream", True), req.qbool("one-shot"))

        async def lines() -> AsyncIterator[bytes]:
            async for sample in samples:
                yield json.dumps(stats_views.sample(sample)).encode() + b"\n"
        return Stream(lines())

    async def update(req: Request) -> Reply:
        warnings = await cs.update(req.params["id"], update_request(await req.json()))
        return Reply(200, {"Warnings": warnings})

    async def prune(req: Request) -> Reply:
        report = await life.prune(req.filters())
        return Reply(200, {"ContainersDeleted": report.deleted or None, "SpaceReclaimed": report.reclaimed})

    async def exec_create(req: Request) -> Reply:
        config = exec_create_request(await req.json())
        return Reply(201, {"Id": d.execs.create(req.params["id"], config)})

    async def exec_start(req: Request) -> Hijack | Reply:
        start = exec_start_request(await req.json(required=False))
        e = d.execs.get(req.params["id"])
        raw = start.raw  # as Docker: the terminal is the create request's; the framing, this one's
        if start.console_size is not None:
            d.execs.set_console_size(e.id, start.console_size)
        if start.detach:
            await d.execs.start(e.id, True, None, None)
            return Reply(200)
        d.execs.check_startable(e.id)

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: bytes) -> None:
            await d.execs.start(e.id, False, reader, writer, pending, framed=not raw)
        return Hijack(run, RAW if raw else MULTIPLEXED)

    async def exec_inspect(req: Request) -> Reply:
        return Reply(200, exec_views.inspect(d.execs.get(req.params["id"])))

    async def exec_resize(req: Request) -> Reply:
        d.execs.resize(req.params["id"], req.qint("h", 0) or 0, req.qint("w", 0) or 0)
        return Reply(201)

    async def export(req: Request) -> Stream:
        return Stream(containerfs.export(cs, req.params["id"]), "application/x-tar")

    async def changes(req: Request) -> Reply:  # docker diff: Docker answers null when nothing changed
        found = await containerfs.changes(cs, d.images, req.params["id"])
        return Reply(200, fs_views.changes(found) if found else b"null\n")

    async def commit(req: Request) -> Reply:
        c = cs.get(req.q("container"))
        body = await req.json(required=False)
        createtypes.check_commit_config(body)  # a ContainerConfig object, fields of the right types: else 400
        body = body or {}
        async with life.held_still(c.id, req.qbool("pause", True)):  # one exiting meanwhile is committed as is
            image_id = await asyncio.to_thread(
                d.imageio.commit, c.record.image, Path(cs.upper_dir(c.id)), RuntimeConfig.from_doc({**c.config.to_doc(), **body}),
                repo=req.q("repo"), tag=req.q("tag"), comment=req.q("comment"), author=req.q("author"),
                changes=req.query.get("changes", []), container_id=c.id)
        repo, tag = req.q("repo"), req.q("tag")
        cs.committed(c, image_id, str(reference.parse(f"{repo}:{tag}" if tag else repo)) if repo else "",
                     req.q("comment"))
        return Reply(201, {"Id": image_id})

    async def archive_get(req: Request) -> Reply | Stream:  # HEAD too: the stat header alone
        ref, path = req.params["id"], _archive_path(req)
        c = cs.get(ref)
        view_cm = cs.root_view(c.id)
        root = view_cm.__enter__()
        try:
            view = containerview.View.of_container(c.record.binds, c.host.readonly_rootfs, c.dir, root, ref)
            if req.method == "HEAD":
                info = await asyncio.to_thread(containerview.stat_path, view, path)
                view_cm.__exit__(None, None, None)
                return Reply(200, headers=[pathstat.header(info)])
            info, chunks = await asyncio.to_thread(copy.archive, view, path)
        except BaseException:
            view_cm.__exit__(None, None, None)
            raise
        cs.event(c, "archive-path")

        async def body() -> AsyncIterator[bytes]:  # streamed: a big directory never sits in memory
            try:
                while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                    yield chunk
            finally:
                view_cm.__exit__(None, None, None)
        return Stream(body(), "application/x-tar", headers=[pathstat.header(info)])

    async def archive_put(req: Request) -> Reply:
        ref, path = req.params["id"], _archive_path(req)
        c = cs.get(ref)
        with cs.root_view(c.id) as root:
            view = containerview.View.of_container(c.record.binds, c.host.readonly_rootfs, c.dir, root, ref)
            owner = None
            if req.qbool("copyUIDGID"):
                owner = await asyncio.to_thread(copy.owner_of, view, c.config.user)
            options = copy.ExtractOptions(req.qbool("noOverwriteDirNonDir"), owner)
            await copy.extract_body(view, path, req.stream(), options)
        cs.event(c, "extract-to-dir")
        return Reply(200)

    router.add("GET", "/containers/{id}/archive", archive_get)
    router.add("PUT", "/containers/{id}/archive", archive_put)
    router.add("GET", "/containers/{id}/export", export)
    router.add("GET", "/containers/{id}/changes", changes)
    router.add("POST", "/commit", commit)
    router.add("POST", "/containers/create", create)
    router.add("POST", "/containers/prune", prune)
    router.add("GET", "/containers/json", list_)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("POST", "/containers/{id}/start", start)
    router.add("POST", "/containers/{id}/stop", stop)
    router.add("POST", "/containers/{id}/restart", restart)
    router.add("POST", "/containers/{id}/kill", kill)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("DELETE", "/containers/{id}", remove)
    router.add("DELETE", "/containers/{id}/{alias}", remove_link)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("GET", "/containers/{id}/top", top)
    router.add("POST", "/containers/{id}/resize", resize)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("GET", "/containers/{id}/stats", stats_)
    router.add("POST", "/containers/{id}/update", update)
    router.add("POST", "/containers/{id}/exec", exec_create)
    router.add("POST", "/exec/{id}/start", exec_start)
    router.add("GET", "/exec/{id}/json", exec_inspect)
    router.add("POST", "/exec/{id}/resize", exec_resize)


def _archive_path(req: Request) -> str:
    path = req.q("path")
    if not path:
        raise InvalidArgument("the path query parameter is required: the file or directory in the container")
    return path


async def _first(chunks: AsyncIterator[bytes]) -> bytes:
    """Run the generator to its first chunk so errors surface as a status, not a broken stream."""
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return b""


def _detach_keys(spec: str) -> bytes:
    if not spec:
        return streams.DETACH
    out = b""
    for key in spec.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            ch = key[5]
            out += bytes([(ord(ch.upper()) - 64) & 0x7F]) if ch.isalpha() else {
                "@": b"\x00", "[": b"\x1b", "\\": b"\x1c", "]": b"\x1d", "^": b"\x1e", "_": b"\x1f"}.get(ch, b"")
        elif len(key) == 1:
            out += key.encode()
        else:
            raise InvalidArgument(f"invalid detach keys: {spec!r}")
    return out
