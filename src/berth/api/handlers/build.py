"""Build routes: POST /build (the classic builder protocol) and POST /build/prune."""

from __future__ import annotations

from typing import Any

from berth import timefmt
from berth.api.handlers.images import progress_stream
from berth.api.replies import Reply, Stream
from berth.api.request import Request, parse_json
from berth.api.routing import Router
from berth.api.wiring import Daemon
from berth.errors import InvalidArgument
from berth.services import createtypes
from berth.services.buildtypes import BuildError, BuildOptions
from berth.wire.containerspec import HostConfig


def _json_param(req: Request, name: str, default: Any) -> Any:
    """A JSON object in the query (buildargs, labels), depth checked before it is parsed."""
    text = req.q(name)
    if not text:
        return default
    value = parse_json(text, f"build: the {name} parameter", req.limits.max_json_depth)
    if value is not None and not isinstance(value, dict):
        raise InvalidArgument(f"build: {name} must be a JSON object like {{\"KEY\": \"value\"}}")
    return value


def _json_list(req: Request, name: str) -> list[str]:
    """A JSON array of strings in the query (cachefrom), depth checked before it is parsed."""
    text = req.q(name)
    if not text:
        return []
    value = parse_json(text, f"build: the {name} parameter", req.limits.max_json_depth)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f'build: {name} must be a JSON array of image names like ["app:latest"]')
    return value


_LIMITS = (("memory", "Memory"), ("memswap", "MemorySwap"), ("cpushares", "CpuShares"), ("cpuquota", "CpuQuota"),
           ("cpuperiod", "CpuPeriod"), ("shmsize", "ShmSize"))


def step_limits(req: Request) -> HostConfig:
    """The RUN steps' resource limits from the build's query, as the HostConfig `docker run` would send."""
    doc: dict[str, Any] = {}
    for param, key in _LIMITS:
        value = req.qint(param)
        if value:
            if value < -1 or (value < 0 and param != "memswap"):
                raise InvalidArgument(f"build: {param} must not be negative: {value}")
            doc[key] = value
    for param, key in (("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems"), ("cgroupparent", "CgroupParent")):
        if req.q(param):
            doc[key] = req.q(param)
    ulimits = req.q("ulimits")
    if ulimits:
        value = parse_json(ulimits, "build: the ulimits parameter", req.limits.max_json_depth)
        if value is not None:
            doc["Ulimits"] = value
    try:
        createtypes.check(doc, createtypes.HOST_CONFIG, "")
    except InvalidArgument as exc:
        raise InvalidArgument(f"build: {exc}") from None
    return HostConfig.from_doc(doc)


def options(req: Request) -> BuildOptions:
    """The classic builder's query parameters as BuildOptions."""
    if req.qbool("squash"):
        raise InvalidArgument("squash is only supported with experimental mode")
    args = _json_param(req, "buildargs", {}) or {}
    labels = _json_param(req, "labels", {}) or {}
    hosts = " ".join(req.qall("extrahosts"))  # the key may be repeated (docker-py sends one per host)
    return BuildOptions(
        tags=[t for t in req.query.get("t", []) if t],
        dockerfile=(req.query.get("dockerfile") or [""])[0] or "Dockerfile",  # docker-py sends the name, then the text
        buildargs={str(k): "" if v is None else str(v) for k, v in args.items()},
        target=req.q("target"), labels={str(k): str(v) for k, v in labels.items()},
        nocache=req.qbool("nocache"), pull=req.qbool("pull"), rm=req.qbool("rm", True),
        forcerm=req.qbool("forcerm"), quiet=req.qbool("q"), platform=req.q("platform"),
        networkmode=req.q("networkmode") if req.q("networkmode") not in ("", "default") else "",
        extrahosts=[h for h in hosts.replace(",", " ").split() if h] if hosts else [],
        isolation=req.q("isolation") if req.q("isolation") not in ("", "default") else "",
        cache_from=_json_list(req, "cachefrom"), step_limits=step_limits(req))


def register(router: Router, d: Daemon) -> None:
    async def build(req: Request) -> Stream:
        opts = options(req)
        body = req.stream()

        async def work(emit: Any) -> None:
            try:
                with d.imageio.operation():  # what its steps store stays until an image refers to it
                    await d.builder.build(body, opts, emit)
            except BuildError as exc:  # a step failed: its exit code goes back, as Docker's classic builder does
                emit({"errorDetail": {"code": exc.code, "message": str(exc)}, "error": str(exc)})
        return await progress_stream(work)

    async def prune(req: Request) -> Reply:
        until = [v for v in req.filters().get("until", []) if v]  # docker builder prune --filter until=1h
        before = min(timefmt.parse_since(v) for v in until) / 1e9 if until else None
        cleared, reclaimed = await d.imageremoval.prune_build_cache(before)
        return Reply(200, {"CachesDeleted": [str(cleared)] if cleared else None, "SpaceReclaimed": reclaimed})

    router.add("POST", "/build", build)
    router.add("POST", "/build/prune", prune)
