"""Image routes: import (create?fromSrc=-), list, inspect, tag, remove, history."""

from __future__ import annotations

import json
from typing import AsyncIterator

from berth.api.server import Reply, Request, Router, Stream
from berth.api.wiring import Daemon
from berth.errors import InvalidArgument, NotFound


def register(router: Router, d: Daemon) -> None:
    async def create(req: Request) -> Stream | Reply:
        src = req.q("fromSrc")
        if req.q("fromImage"):
            image = req.q("fromImage")
            raise NotFound(f"pull access denied for {image}: berth cannot pull from registries yet; "
                           "make the image locally with `docker import` (see the README)")
        if src != "-":
            if not src:
                raise InvalidArgument("images/create needs fromSrc=- (import) or fromImage (pull)")
            raise InvalidArgument(f"import from a URL ({src}) is not supported: send the tarball as the body (fromSrc=-)")
        changes = req.query.get("changes", [])
        image_id = await d.images.import_tarball(req.stream(), req.q("repo"), req.q("tag"), changes,
                                                 req.q("message"), req.q("platform"))

        async def out() -> AsyncIterator[bytes]:
            yield json.dumps({"status": image_id}).encode() + b"\r\n"
        return Stream(out())

    async def list_(req: Request) -> Reply:
        return Reply(200, d.images.listing(req.qbool("all"), req.filters()))

    async def inspect(req: Request) -> Reply:
        return Reply(200, d.images.inspect(req.params["image"]))

    async def history(req: Request) -> Reply:
        return Reply(200, d.images.history(req.params["image"]))

    async def tag(req: Request) -> Reply:
        d.images.tag(req.params["image"], req.q("repo"), req.q("tag"))
        return Reply(201)

    async def remove(req: Request) -> Reply:
        return Reply(200, d.images.remove(req.params["image"], req.qbool("force")))

    router.add("POST", "/images/create", create)
    router.add("GET", "/images/json", list_)
    router.add("GET", "/images/{image}/json", inspect)
    router.add("GET", "/images/{image}/history", history)
    router.add("POST", "/images/{image}/tag", tag)
    router.add("DELETE", "/images/{image}", remove)

