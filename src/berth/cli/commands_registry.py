"""Registry and archive verbs: pull, push, login, logout, save, load, commit, export, image bootstrap/prune
(the `image` group itself is berth.cli.commands_imagegroup).

Strategy: the same Engine API calls as the docker CLI. Credentials live where
docker keeps them (`$DOCKER_CONFIG/config.json`, default ~/.docker), so
`docker login` and `berth login` share them; pull and push send them in
X-Registry-Auth. Progress streams are drawn with rich bars on a terminal and
as docker's plain lines otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from berth.cli.common import Ctx, StatusError, platform_json, require_api
from berth.cli.parser import Parser, filter_flag
from berth.cli.tables import split_repo_tag
from berth.client.errors import APIError
from berth.oci import reference
from berth.wire.registryauth import credentials_from_config
from berth.wire.registrynames import registry_and_repo

# ---- credentials -----------------------------------------------------------------------

def config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def read_config() -> dict[str, Any]:
    try:
        doc = json.loads(config_path().read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_config(doc: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent="\t") + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def registry_auth_header(registry: str) -> dict[str, str]:
    """X-Registry-Auth for *registry* from the stored login, if any."""
    creds = credentials_from_config(read_config(), registry)
    if creds is None:
        return {}
    doc = {"username": creds.username, "password": creds.password, "serveraddress": registry}
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()}


def _server_key(server: str) -> str:
    return "https://index.docker.io/v1/" if server in ("", "docker.io") else server


# ---- progress ---------------------------------------------------------------------------

def show_progress(ctx: Ctx, messages: Iterator[Any]) -> list[dict[str, Any]]:
    """Draw a pull/push progress stream; raise APIError on an error message; return the messages."""
    seen: list[dict[str, Any]] = []
    tty = ctx.out is sys.stdout and sys.stdout.isatty()
    if tty:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        with Progress(TextColumn("{task.fields[layer]}"), TextColumn("{task.description}"), BarColumn(),
                      DownloadColumn(), transient=False) as bars:
            tasks: dict[str, Any] = {}
            for msg in messages:
                _check(msg)
                seen.append(msg)
                layer, status = msg.get("id"), msg.get("status", "")
                detail = msg.get("progressDetail") or {}
                if layer and (status.startswith(("Pulling fs", "Preparing", "Downloading", "Pushing", "Verifying",
                                                 "Download complete", "Extracting", "Pull complete", "Pushed",
                                                 "Already exists", "Layer already exists", "Mounted from"))):
                    if layer not in tasks:
                        tasks[layer] = bars.add_task(status, layer=f"{layer}:", total=detail.get("total") or None)
                    bars.update(tasks[layer], description=status, completed=detail.get("current"),
                                total=detail.get("total") or None)
                    if status in ("Pull complete", "Pushed", "Already exists", "Layer already exists"):
                        bars.update(tasks[layer], completed=1, total=1)
                elif status:
                    bars.console.print(f"{layer}: {status}" if layer else status)
        return seen
    for msg in messages:
        _check(msg)
        seen.append(msg)
        status = msg.get("status")
        if status and status not in ("Downloading", "Pushing", "Extracting"):
            ctx.print(f"{msg['id']}: {status}" if msg.get("id") else str(status))
    return seen


def _check(msg: Any) -> None:
    if isinstance(msg, dict) and (msg.get("error") or msg.get("errorDetail")):
        detail = msg.get("errorDetail") or {}
        raise APIError(500, str(detail.get("message") or msg.get("error")))


# ---- verbs ------------------------------------------------------------------------------

def cmd_pull(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("pull", "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry", min_args=1, max_args=1)
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("--platform", default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    pull(ctx, ns.args[0], ns.platform, quiet=ns.quiet, all_tags=ns.all_tags)
    return 0


def pull(ctx: Ctx, name: str, platform: str | None, *, quiet: bool = False, all_tags: bool = False) -> None:
    ref = reference.parse(name, default_tag=None if all_tags else "latest")
    registry, _ = registry_and_repo(ref.name)
    if all_tags and (ref.tag or ref.digest):
        raise StatusError(1, "tag can't be used with --all-tags/-a")
    if not all_tags and not ref.digest and ":" not in name.rsplit("/", 1)[-1] and not quiet:
        ctx.print("Using default tag: latest")
    image = ref.name
    tag = "" if all_tags else ref.digest or ref.tag or "latest"
    with ctx.client.stream("POST", "/images/create", {"fromImage": image, "tag": tag, "platform": platform},
                           None, registry_auth_header(registry)) as sr:
        if quiet:
            for msg in sr.json_lines():
                _check(msg)
        else:
            show_progress(ctx, sr.json_lines())
    ctx.print(str(ref))


def cmd_push(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("push", "[OPTIONS] NAME[:TAG]", "Upload an image to a registry", min_args=1, max_args=1)
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("--platform", default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    ref = reference.parse(ns.args[0], default_tag=None if ns.all_tags else "latest")
    registry, _ = registry_and_repo(ref.name)
    query = {"tag": ref.tag or None}
    if ns.platform:  # one platform of a multi-platform image (API 1.46)
        require_api(ctx, "--platform", "1.46")
        query["platform"] = platform_json(ns.platform)
    with ctx.client.stream("POST", f"/images/{ref.name}/push", query, None, registry_auth_header(registry)) as sr:
        messages = sr.json_lines()
        if ns.quiet:
            for msg in messages:
                _check(msg)
        else:
            show_progress(ctx, messages)
    return 0


def cmd_login(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("login", "[OPTIONS] [SERVER]", "Log in to a registry", max_args=1)
    p.add_argument("-u", "--username", default=None)
    p.add_argument("-p", "--password", default=None)
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    server = ns.args[0] if ns.args else "docker.io"
    password = ns.password
    if ns.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    if not ns.username or password is None:
        if not sys.stdin.isatty():
            raise StatusError(1, "Error: Cannot perform an interactive login from a non TTY device")
        import getpass

        if not ns.username:
            ctx.out.write("Username: ")
            ctx.flush()
            ns.username = sys.stdin.readline(1024).strip()
        if password is None:
            password = getpass.getpass("Password: ")
        if not ns.username or not password:
            raise StatusError(1, "Error: Username and password are required")
    ctx.client.post("/auth", None, {"username": ns.username, "password": password, "serveraddress": server})
    doc = read_config()
    token = base64.b64encode(f"{ns.username}:{password}".encode()).decode()
    doc.setdefault("auths", {})[_server_key(server)] = {"auth": token}
    _write_config(doc)
    ctx.print("Login Succeeded")
    return 0


def cmd_logout(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("logout", "[SERVER]", "Log out from a registry", max_args=1)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    server = ns.args[0] if ns.args else "docker.io"
    doc = read_config()
    ctx.print(f"Removing login credentials for {server}")  # docker says so whether or not there were any
    if (doc.get("auths") or {}).pop(_server_key(server), None) is not None:
        _write_config(doc)
    return 0


def cmd_save(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("save", "[OPTIONS] IMAGE [IMAGE...]", "Save one or more images to a tar archive", min_args=1)
    p.add_argument("-o", "--output", default=None)
    p.add_argument("--platform", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    query: dict[str, Any] = {"names": ns.args}
    if ns.platform:  # API 1.48: save only this platform of multi-platform images
        require_api(ctx, "--platform", "1.48")
        query["platform"] = platform_json(ns.platform)
    if ns.output is None and sys.stdout.isatty():
        raise StatusError(1, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
    with ctx.client.stream("GET", "/images/get", query) as sr:
        if ns.output is None:
            for chunk in sr.chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        else:
            _write_atomically(Path(ns.output), sr.chunks())
    return 0


def _write_atomically(target: Path, chunks: Iterator[bytes]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=str(target.parent or Path(".")))
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_load(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("load", "[OPTIONS]", "Load an image from a tar archive or STDIN", max_args=0)
    p.add_argument("-i", "--input", default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform", default=None)
    ns = p.parse(argv)
    query: dict[str, Any] = {"quiet": "1" if ns.quiet else None}
    if ns.platform:  # API 1.48: load only this platform of a multi-platform archive
        require_api(ctx, "--platform", "1.48")
        query["platform"] = platform_json(ns.platform)
    if ns.input is None and sys.stdin.isatty():
        raise StatusError(1, "requested load from stdin, but stdin is empty")
    source = open(ns.input, "rb") if ns.input else sys.stdin.buffer
    try:
        headers = {"Content-Type": "application/x-tar"}
        if ns.input:
            headers["Content-Length"] = str(os.fstat(source.fileno()).st_size)
        with ctx.client.stream("POST", "/images/load", query, source, headers) as sr:
            for msg in sr.json_lines():
                _check(msg)
                if isinstance(msg, dict) and msg.get("stream"):
                    ctx.print(str(msg["stream"]), end="")
    finally:
        if ns.input:
            source.close()
    return 0


def cmd_commit(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("commit", "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
               "Create a new image from a container's changes", min_args=1, max_args=2)
    p.add_argument("-a", "--author", default=None)
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default=None)
    p.add_argument("-p", "--pause", default="true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    repo, tag = split_repo_tag(ns.args[1]) if len(ns.args) > 1 else ("", "")
    doc = ctx.client.post("/commit", {"container": ns.args[0], "repo": repo or None, "tag": tag or None,
                                      "author": ns.author, "comment": ns.message, "changes": ns.change or None,
                                      "pause": ns.pause})
    ctx.print(str(doc["Id"]))
    return 0


def cmd_export(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("export", "[OPTIONS] CONTAINER", "Export a container's filesystem as a tar archive",
               min_args=1, max_args=1)
    p.add_argument("-o", "--output", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    if ns.output is None and sys.stdout.isatty():
        raise StatusError(1, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
    with ctx.client.stream("GET", f"/containers/{ns.args[0]}/export") as sr:
        if ns.output is None:
            for chunk in sr.chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        else:
            _write_atomically(Path(ns.output), sr.chunks())
    return 0


def cmd_image_prune(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("image prune", "[OPTIONS]", "Remove unused images", max_args=0)
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_flag("--filter"))
    ns = p.parse(argv)
    from berth.cli.prune import confirmed, prune_filters

    filters = json.dumps({**json.loads(prune_filters(ns.filter) or "{}"), "dangling": ["false" if ns.all else "true"]})
    what = ("all images without at least one container associated to them" if ns.all else "all dangling images")
    if not ns.force and not confirmed(ctx, f"WARNING! This will remove {what}."):
        return 0
    doc = ctx.client.post("/images/prune", {"filters": filters}) or {}
    deleted = doc.get("ImagesDeleted") or []
    if deleted:
        ctx.print("Deleted Images:")
        for item in deleted:
            for key, value in item.items():
                ctx.print(f"{key.lower()}: {value}")
        ctx.print()
    ctx.print(f"Total reclaimed space: {_size(int(doc.get('SpaceReclaimed') or 0))}")
    return 0


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}GB"


def cmd_bootstrap(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("image bootstrap", "[OPTIONS]",
               "Make base images from Debian's packages (no registry needed) and load them", max_args=0)
    p.add_argument("--platform", action="append", default=[],
                   help="busybox platforms (default linux/amd64 and linux/arm64)")
    p.add_argument("--debian", action="store_true", help="also debian:bookworm via mmdebstrap (slow)")
    p.add_argument("--name", default="busybox:latest")
    ns = p.parse(argv)
    from berth.oci.reference import full_name
    from berth.tools import bootstrap, layouttar

    with tempfile.TemporaryDirectory(prefix="berth-bootstrap-") as tmp:
        layouts = []
        busybox = Path(tmp) / "busybox"
        asyncio.run(bootstrap.build_busybox(busybox, ns.platform or ("linux/amd64", "linux/arm64"),
                                            name=full_name(ns.name)))
        layouts.append(busybox)
        if ns.debian:
            debian = Path(tmp) / "debian"
            asyncio.run(bootstrap.build_debian(debian))
            layouts.append(debian)
        for layout in layouts:
            tar = layouttar.write_layout_tar(layout, Path(tmp) / f"{layout.name}.tar")
            with open(tar, "rb") as f, ctx.client.stream(
                    "POST", "/images/load", None, f,
                    {"Content-Type": "application/x-tar", "Content-Length": str(tar.stat().st_size)}) as sr:
                for msg in sr.json_lines():
                    _check(msg)
                    if isinstance(msg, dict) and msg.get("stream"):
                        ctx.print(str(msg["stream"]), end="")
    return 0


COMMANDS = {"pull": cmd_pull, "push": cmd_push, "login": cmd_login, "logout": cmd_logout, "save": cmd_save,
            "load": cmd_load, "commit": cmd_commit, "export": cmd_export}
