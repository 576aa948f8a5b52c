"""`berth build`: a Dockerfile and its context into an image, through POST /build.

Strategy: the context directory is sent as a tar streamed from a worker
thread (files the context's .dockerignore excludes are left out, as the docker
CLI does, so nothing big travels for nothing); the daemon's step-by-step
output is printed as it comes, and a failing step's exit code becomes ours.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import threading
from pathlib import Path
from typing import IO, Any

from berth.cli.common import Ctx, StatusError
from berth.cli.parser import Parser


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


def _write_context(context: Path, out: IO[bytes], dockerfile: str) -> None:
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
    finally:
        out.close()


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
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    source = ns.args[0]
    dockerfile = ns.file or "Dockerfile"
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
        "extrahosts": ",".join(ns.add_host) if ns.add_host else None, "isolation": ns.isolation}
    headers = {"Content-Type": "application/x-tar"}
    if source == "-":
        body: Any = sys.stdin.buffer
    else:
        context = Path(source)
        if not context.is_dir():
            raise StatusError(1, f"unable to prepare context: path {source!r} not found")
        if ns.file and os.path.isabs(ns.file):
            raise StatusError(1, "berth build: give -f relative to the context directory")
        pipe = _Pipe()
        threading.Thread(target=_write_context, args=(context, pipe.writer(), dockerfile), daemon=True).start()
        body = pipe
    image_id = ""
    with ctx.client.stream("POST", "/build", query, body, headers) as sr:
        for msg in sr.json_lines():
            if not isinstance(msg, dict):
                continue
            if msg.get("error") or msg.get("errorDetail"):
                detail = msg.get("errorDetail") or {}
                raise StatusError(int(detail.get("code") or 1), str(detail.get("message") or msg.get("error")))
            if msg.get("stream"):
                ctx.out.write(str(msg["stream"]))
                ctx.out.flush()
            if (msg.get("aux") or {}).get("ID"):
                image_id = str(msg["aux"]["ID"])
    if ns.quiet and image_id:
        ctx.print(image_id)
    return 0


COMMANDS = {"build": cmd_build}
