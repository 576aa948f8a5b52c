"""`berth build`: a Dockerfile and its context into an image, through POST /build.

Strategy: the context directory is sent as a tar streamed from a worker
thread (files the context's .dockerignore excludes are left out, as the docker
CLI does, so nothing big travels for nothing); the daemon's step-by-step
output is printed as it comes, and a failing step's exit code becomes ours.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from berth.cli.common import Ctx, StatusError
from berth.cli.parser import Parser, UsageError, integer, typed
from berth.cli.runextra import parse_ulimit
from berth.cli.units import ram_in_bytes

MAX_DOCKERFILE = 16 << 20  # a Dockerfile read from stdin or from outside the context


def _swap(text: str) -> int:
    return -1 if text.strip() == "-1" else ram_in_bytes(text)


def _ulimit(text: str) -> str:
    parse_ulimit(text)  # checked as run checks it
    return text


class _Pipe(io.RawIOBase):
    """A tar written by a thread, read by the HTTP client as the request body."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = os.read(self._r, len(b))
        b[: len(data)] = data
        return len(data)

    def writer(self) -> IO[bytes]:
        return os.fdopen(self._w, "wb")

    def close(self) -> None:
        os.close(self._r)
        super().close()


def _ignored(context: Path) -> Any:
    try:
        from berth.wire import dockerignore
        return dockerignore.parse((context / ".dockerignore").read_text())
    except (OSError, ImportError):
        return None


def _write_context(context: Path, out: IO[bytes], dockerfile: str, extra: tuple[str, bytes] | None = None) -> None:
    """The context as a tar into *out*; *extra* is a Dockerfile from outside it (its name in the tar, its text)."""
    patterns = _ignored(context)
    keep = {dockerfile, ".dockerignore"}
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for dirpath, dirnames, filenames in os.walk(context):
                rel_dir = os.path.relpath(dirpath, context)
                for name in sorted(dirnames + filenames):
                    rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                    if patterns is not None and rel not in keep and patterns.excluded(rel):
                        if name in dirnames and patterns.dir_excluded_entirely(rel):
                            dirnames.remove(name)
                        continue
                    if extra is not None and rel == ".dockerignore":
                        continue  # written below, naming the added Dockerfile
                    full = os.path.join(dirpath, name)
                    info = tar.gettarinfo(full, arcname=rel)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    if info.isreg():
                        with open(full, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
                dirnames.sort()
            if extra is not None:
                # as docker's CLI: the Dockerfile under its own name, and a .dockerignore that names it, so that
                # the daemon takes it out of the context once read
                try:
                    ignore = (context / ".dockerignore").read_bytes()[:MAX_DOCKERFILE]
                except OSError:
                    ignore = b".dockerignore"
                for name, data in ((extra[0], extra[1]), (".dockerignore", ignore + f"\n{extra[0]}\n".encode())):
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
                    tar.addfile(info, io.BytesIO(data))
    finally:
        out.close()


def dockerfile_in_context(context: Path, given: str | None, cwd: Path) -> tuple[str, Path | None]:
    """Where the Dockerfile is, as docker's CLI finds it: `-f` is relative to the current directory
    (not the context); the name it has in the context, and its path when it lies outside the context
    (then it travels in the tar under a name of its own)."""
    if not given:
        return "Dockerfile", None
    path = (cwd / given).resolve()
    root = context.resolve()
    if path == root or root in path.parents:
        return path.relative_to(root).as_posix(), None
    return f".dockerfile.{secrets.token_hex(10)}", path


def _limits(ns: argparse.Namespace) -> dict[str, Any]:
    """The RUN steps' resource flags as the build API's query parameters."""
    query: dict[str, Any] = {"cpusetcpus": ns.cpuset_cpus, "cpusetmems": ns.cpuset_mems,
                             "cgroupparent": ns.cgroup_parent}
    for attr, param in (("memory", "memory"), ("memory_swap", "memswap"), ("cpu_shares", "cpushares"),
                        ("cpu_quota", "cpuquota"), ("cpu_period", "cpuperiod"), ("shm_size", "shmsize")):
        value = getattr(ns, attr)
        if value:
            query[param] = str(value)
    if ns.ulimit:
        query["ulimits"] = json.dumps([parse_ulimit(u) for u in ns.ulimit])
    return query


def cmd_build(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("build", "[OPTIONS] PATH | -", "Build an image from a Dockerfile", min_args=1, max_args=1)
    p.add_argument("-t", "--tag", action="append", default=[])
    p.add_argument("-f", "--file", default=None)
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--target", default=None)
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--pull", action="store_true")
    p.add_argument("--rm", default="true")
    p.add_argument("--force-rm", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform", default=None)
    p.add_argument("--network", default=None)
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("--isolation", default=None)
    p.add_argument("--cache-from", action="append", default=[])
    p.add_argument("--iidfile", default=None)
    p.add_argument("--compress", action="store_true")  # the context is a local stream: nothing to gain
    p.add_argument("--squash", action="store_true")
    p.add_argument("--security-opt", action="append", default=[])  # docker's classic build sends it nowhere
    p.add_argument("--disable-content-trust", default="true")  # berth never verifies signatures
    p.add_argument("--cgroup-parent", default=None)
    p.add_argument("--cpuset-cpus", default=None)
    p.add_argument("--cpuset-mems", default=None)
    p.add_argument("-c", "--cpu-shares", type=typed("-c, --cpu-shares", integer), default=None)
    p.add_argument("--cpu-period", type=typed("--cpu-period", integer), default=None)
    p.add_argument("--cpu-quota", type=typed("--cpu-quota", integer), default=None)
    p.add_argument("-m", "--memory", type=typed("-m, --memory", ram_in_bytes), default=None)
    p.add_argument("--memory-swap", type=typed("--memory-swap", _swap), default=None)
    p.add_argument("--shm-size", type=typed("--shm-size", ram_in_bytes), default=None)
    p.add_argument("--ulimit", action="append", default=[], type=typed("--ulimit", _ulimit))
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    source = ns.args[0]
    if ns.squash:  # docker's CLI asks the daemon; berthd has no experimental mode
        raise UsageError('"--squash" is only supported on a Docker daemon with experimental features enabled',
                         code=1, complete=True, bare=True)
    if ns.file == "-" and source == "-":
        raise StatusError(1, "invalid argument: can't use stdin for both build context and dockerfile")
    dockerfile, outside = ("Dockerfile", None) if source == "-" else \
        dockerfile_in_context(Path(source), ns.file if ns.file != "-" else None, Path.cwd())
    extra: tuple[str, bytes] | None = None
    if ns.file == "-":
        dockerfile = f".dockerfile.{secrets.token_hex(10)}"
        extra = (dockerfile, sys.stdin.buffer.read(MAX_DOCKERFILE + 1))
    elif outside is not None:
        try:
            extra = (dockerfile, outside.read_bytes()[:MAX_DOCKERFILE + 1])
        except OSError as exc:
            raise StatusError(1, f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                                 f"lstat {outside}: {(exc.strerror or str(exc)).lower()}") from None
    if extra is not None and len(extra[1]) > MAX_DOCKERFILE:
        raise StatusError(1, f"the Dockerfile is larger than {MAX_DOCKERFILE} bytes")
    args = {}
    for item in ns.build_arg:
        key, eq, value = item.partition("=")
        if eq:
            args[key] = value
        elif key in os.environ:
            args[key] = os.environ[key]
    query: dict[str, Any] = {
        "t": ns.tag or None, "dockerfile": dockerfile, "buildargs": json.dumps(args) if args else None,
        "target": ns.target, "labels": json.dumps(dict(x.partition("=")[::2] for x in ns.label)) if ns.label else None,
        "nocache": "1" if ns.no_cache else None, "pull": "1" if ns.pull else None,
        "rm": "0" if ns.rm.lower() in ("false", "0") else "1", "forcerm": "1" if ns.force_rm else None,
        "q": "1" if ns.quiet else None, "platform": ns.platform, "networkmode": ns.network,
        "extrahosts": ",".join(ns.add_host) if ns.add_host else None, "isolation": ns.isolation,
        "cachefrom": json.dumps(ns.cache_from) if ns.cache_from else None,
        **_limits(ns)}
    headers = {"Content-Type": "application/x-tar"}
    if source == "-":
        body: Any = sys.stdin.buffer
    else:
        context = Path(source)
        if not context.is_dir():
            raise StatusError(1, f"unable to prepare context: path {source!r} not found")
        pipe = _Pipe()
        threading.Thread(target=_write_context, args=(context, pipe.writer(), dockerfile, extra),
                         daemon=True).start()
        body = pipe
    image_id = ""
    quiet: list[str] = []
    with ctx.client.stream("POST", "/build", query, body, headers) as sr:
        for msg in sr.json_lines():
            if not isinstance(msg, dict):
                continue
            if msg.get("error") or msg.get("errorDetail"):
                detail = msg.get("errorDetail") or {}
                raise StatusError(int(detail.get("code") or 1), str(detail.get("message") or msg.get("error")))
            if msg.get("stream") and ns.quiet:
                quiet.append(str(msg["stream"]))
            elif msg.get("stream"):
                ctx.out.write(str(msg["stream"]))
                ctx.out.flush()
            if (msg.get("aux") or {}).get("ID"):
                image_id = str(msg["aux"]["ID"])
    if ns.quiet:  # docker's CLI prints what a quiet build streamed (the image ID) once it ends
        ctx.out.write("".join(quiet))
        image_id = "".join(quiet) or image_id
    if ns.iidfile and image_id:
        try:
            Path(ns.iidfile).write_text(image_id)
        except OSError as exc:
            raise StatusError(1, f"failed to write image ID to file: {exc}") from None
    return 0


COMMANDS = {"build": cmd_build}
