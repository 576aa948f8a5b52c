"""Container verbs: create, run, start, attach, exec, logs, ps, stop, kill, restart,
pause, unpause, rm, wait, top, rename.

Strategy: each verb parses its flags (berth.cli.parser), maps them to Engine API
calls, and formats the answer with the pure helpers (runopts, tables, units).
Exit codes follow docker: 125 when berth or the daemon fails to run a container,
126/127 for a command that cannot be invoked / is not found, otherwise the
container's (or exec's) own exit code; 1 for other failures.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import time
from typing import Any

from berth.cli import commands_registry, tty
from berth.cli.common import Ctx, StatusError, describe, for_each
from berth.cli.gotemplate import tabwrite
from berth.cli.parser import Parser, UsageError, filter_flag, integer, typed
from berth.cli.runerrors import StartFailed, as_run_failure
from berth.cli.runextra import windows_only
from berth.cli.runopts import (
    CreateRequest,
    add_create_flags,
    build_create,
    env_files,
    expand_env,
)
from berth.cli.session import (
    Waiter,
    attach_query,
    run_stream,
    settle_exit,
    start_error_code,
)
from berth.cli.tables import PS_DEFAULT, PS_HEADERS, PS_QUIET, normalize_ref, ps_row, render_listing, status_text
from berth.cli.units import parse_api_time
from berth.client.engine import Client
from berth.client.errors import APIError, NotFoundError
from berth.errors import InvalidArgument

RUN_USAGE = "[OPTIONS] IMAGE [COMMAND] [ARG...]"


# --------------------------------------------------------------------------- create / run


def _create(ctx: Ctx, req: CreateRequest, image: str) -> str:
    """POST /containers/create; print warnings; pull first as --pull says (docker reports it on stderr)."""
    puller = dataclasses.replace(ctx, out=io.StringIO() if req.quiet else ctx.err)
    platform = (req.query or {}).get("platform")
    try:
        if req.pull == "always":
            commands_registry.pull(puller, image, platform, quiet=req.quiet)
        doc = ctx.client.post("/containers/create", req.query, req.body)
    except NotFoundError as exc:
        if "no such image" not in exc.message.lower() or req.pull == "never":
            raise StatusError(125, describe(exc)) from exc
        if not req.quiet:
            ctx.error(f"Unable to find image '{normalize_ref(image)}' locally")
        try:
            commands_registry.pull(puller, image, platform, quiet=req.quiet)
            doc = ctx.client.post("/containers/create", req.query, req.body)
        except APIError as again:
            raise StatusError(125, describe(again)) from again
    for warning in (doc or {}).get("Warnings") or []:
        ctx.error(f"WARNING: {warning}")
    return str(doc["Id"])


def _build(ctx: Ctx, ns: Any) -> CreateRequest:
    size = (tty.terminal_size(1) or tty.terminal_size(0)) if ns.tty else None
    if refused := windows_only(ns):  # said as is, exit 1: docker's CLI refuses these before any request
        raise UsageError(refused, code=1, complete=True, bare=True)
    try:
        return build_create(ns, console_size=size)
    except InvalidArgument as exc:
        raise StatusError(125, f"berth: {exc}") from exc


@as_run_failure("create")
def cmd_create(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("create", RUN_USAGE, "Create a new container")
    add_create_flags(p, run=False)
    ns = p.parse(argv)
    req = _build(ctx, ns)
    ctx.print(_create(ctx, req, ns.image))
    return 0


@as_run_failure("run")
def cmd_run(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("run", RUN_USAGE, "Create and run a new container from an image")
    add_create_flags(p, run=True)
    ns = p.parse(argv)
    if ns.interactive and ns.tty and not ns.detach and not tty.is_tty(0):
        raise StatusError(1, "the input device is not a TTY")
    req = _build(ctx, ns)
    client = ctx.client
    cid = _create(ctx, req, ns.image)

    if ns.detach:
        _start(client, cid)
        ctx.print(cid)
        return 0

    h = client.hijack("POST", f"/containers/{cid}/attach",
                      attach_query(req.attach_stdin, req.attach_stdout, req.attach_stderr,
                                   ns.detach_keys))
    waiter = Waiter(client, cid, "removed" if ns.rm else "next-exit").start()
    try:
        _start(client, cid)
        ctx.flush()
        if run_stream(client, h, tty_mode=ns.tty, stdin=req.attach_stdin, resize_path=f"/containers/{cid}/resize",
                      sig_proxy_id=cid if ns.sig_proxy else None, detach_keys=ns.detach_keys):
            return 0  # detached: the container runs on
    finally:
        h.close()
    code = settle_exit(waiter, lambda: _is_running(client, cid))
    return 0 if code is None else code


def _start(client: Client, cid: str) -> None:
    try:
        client.request("POST", f"/containers/{cid}/start")
    except APIError as exc:
        raise StartFailed(start_error_code(exc.message), describe(exc)) from exc


def _is_running(client: Client, cid: str) -> bool:
    state = client.get(f"/containers/{cid}/json").get("State") or {}
    return bool(state.get("Running"))


# --------------------------------------------------------------------------- start / attach


def cmd_start(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("start", "[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped "
               "containers", min_args=1)
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--detach-keys", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    client = ctx.client
    if not (ns.attach or ns.interactive):
        def start(name: str) -> str:
            client.request("POST", f"/containers/{name}/start")
            return name
        return for_each(ctx, ns.args, start)
    if len(ns.args) > 1:
        raise StatusError(1, "you cannot start and attach multiple containers at once")
    info = client.get(f"/containers/{ns.args[0]}/json")
    cid = str(info["Id"])
    config = info.get("Config") or {}
    is_tty = bool(config.get("Tty"))
    stdin = bool(ns.interactive and config.get("OpenStdin"))
    h = client.hijack("POST", f"/containers/{cid}/attach",
                      attach_query(stdin, True, True, ns.detach_keys))
    auto_remove = bool((info.get("HostConfig") or {}).get("AutoRemove"))
    waiter = Waiter(client, cid, "removed" if auto_remove else "next-exit").start()
    try:
        if not (info.get("State") or {}).get("Running"):  # start -a of a running one only attaches
            _start(client, cid)
        if run_stream(client, h, tty_mode=is_tty, stdin=stdin, resize_path=f"/containers/{cid}/resize",
                      sig_proxy_id=None if is_tty else cid, detach_keys=ns.detach_keys):
            return 0
    finally:
        h.close()
    code = settle_exit(waiter, lambda: _is_running(client, cid))
    return 0 if code is None else code


def cmd_attach(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("attach", "[OPTIONS] CONTAINER", "Attach local standard input, output, and "
               "error streams to a running container", min_args=1, max_args=1)
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("--detach-keys", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    client = ctx.client
    info = client.get(f"/containers/{ns.args[0]}/json")
    cid = str(info["Id"])
    state = info.get("State") or {}
    if not state.get("Running"):
        raise StatusError(1, "You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise StatusError(1, "You cannot attach to a paused container, unpause it first")
    config = info.get("Config") or {}
    is_tty = bool(config.get("Tty"))
    stdin = bool(config.get("OpenStdin")) and not ns.no_stdin
    if is_tty and stdin and not tty.is_tty(0):
        raise StatusError(1, "the input device is not a TTY")
    sig_proxy = str(ns.sig_proxy).lower() in ("1", "t", "true")
    waiter = Waiter(client, cid, "not-running").start()
    h = client.hijack("POST", f"/containers/{cid}/attach",
                      attach_query(stdin, True, True, ns.detach_keys))
    try:
        if run_stream(client, h, tty_mode=is_tty, stdin=stdin, resize_path=f"/containers/{cid}/resize",
                      sig_proxy_id=cid if sig_proxy else None, detach_keys=ns.detach_keys):
            raise StatusError(1, "read escape sequence")  # docker's CLI says so, and exits 1
    finally:
        h.close()
    code = settle_exit(waiter, lambda: _is_running(client, cid))
    return 0 if code is None else code


# --------------------------------------------------------------------------- exec


def cmd_exec(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("exec", "[OPTIONS] CONTAINER COMMAND [ARG...]",
               "Execute a command in a running container", min_args=2)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir", default=None)
    p.add_argument("-u", "--user", default=None)
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--detach-keys", default=None)
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    ns = p.parse(argv)
    if not ns.command:
        raise p.arity_error()
    if ns.interactive and ns.tty and not ns.detach and not tty.is_tty(0):
        raise StatusError(1, "the input device is not a TTY")
    client = ctx.client
    body: dict[str, Any] = {
        "User": ns.user or "",
        "Privileged": ns.privileged,
        "Tty": ns.tty,
        "AttachStdin": ns.interactive and not ns.detach,
        "AttachStdout": not ns.detach,
        "AttachStderr": not ns.detach,
        "Env": env_files(ns.env_file, os.environ) + expand_env(ns.env, os.environ),
        "WorkingDir": ns.workdir or "",
        "Cmd": ns.command,
    }
    if ns.detach_keys:
        body["DetachKeys"] = ns.detach_keys
    size = tty.terminal_size(1) or tty.terminal_size(0)
    if ns.tty and size:
        body["ConsoleSize"] = list(size)
    exec_id = str(client.post(f"/containers/{ns.container}/exec", None, body)["Id"])
    start_body: dict[str, Any] = {"Detach": ns.detach, "Tty": ns.tty}
    if ns.tty and size:
        start_body["ConsoleSize"] = list(size)
    if ns.detach:
        client.request("POST", f"/exec/{exec_id}/start", None, start_body)
        return 0
    h = client.hijack("POST", f"/exec/{exec_id}/start", None, start_body)
    try:
        ctx.flush()
        if run_stream(client, h, tty_mode=ns.tty, stdin=ns.interactive, resize_path=f"/exec/{exec_id}/resize",
                      sig_proxy_id=None, detach_keys=ns.detach_keys):
            raise StatusError(1, "read escape sequence")
    finally:
        h.close()
    for _ in range(50):
        info = client.get(f"/exec/{exec_id}/json")
        if not info.get("Running"):
            break
        time.sleep(0.1)
    code = info.get("ExitCode")
    return int(code) if code is not None else 0


# --------------------------------------------------------------------------- ps


def _filters(items: list[str]) -> dict[str, list[str]] | None:
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise StatusError(125, f"berth: bad format of filter (expected name=value): {item}")
        out.setdefault(key.strip().lower(), []).append(value)
    return out or None


def cmd_ps(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("ps", "[OPTIONS]", "List containers", max_args=0)
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-n", "--last", type=typed("-n, --last", integer), default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default=None)
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_flag("-f, --filter"))
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    last = 1 if ns.latest and ns.last == -1 else ns.last
    fmt = ns.format
    if fmt in (None, "", "table"):
        fmt = PS_QUIET if ns.quiet else PS_DEFAULT
    elif ns.quiet:
        fmt = PS_QUIET
    query = {"all": ns.all or last > 0, "limit": last if last > 0 else None,
             "size": ns.size or ".Size" in fmt, "filters": _filters(ns.filter)}
    client = ctx.client
    containers = client.get("/containers/json", query)
    now = time.time()
    rows = []
    for c in containers:
        status = None
        if not c.get("Status") and ".Status" in fmt:
            try:
                state = client.get(f"/containers/{c['Id']}/json").get("State") or {}
                status = status_text(state, now, parse_api_time)
            except APIError:
                status = str(c.get("State", ""))
        rows.append(ps_row(c, now, trunc=not ns.no_trunc, status=status))
    if ns.size and fmt == PS_DEFAULT:
        fmt = PS_DEFAULT + "\t{{.Size}}"
    ctx.out.write(render_listing(fmt, rows, PS_HEADERS))
    return 0


# --------------------------------------------------------------------------- simple verbs


def _names_parser(verb: str, usage: str, desc: str) -> Parser:
    p = Parser(verb, usage, desc, min_args=1)
    p.add_argument("args", nargs="*")
    return p


def cmd_stop(ctx: Ctx, argv: list[str], verb: str = "stop") -> int:
    p = _names_parser(verb, "[OPTIONS] CONTAINER [CONTAINER...]",
                      f"{verb.capitalize()} one or more containers")
    p.add_argument("-t", "--time", "--timeout", dest="time",
                   type=typed("-t, --timeout", integer), default=None)
    p.add_argument("-s", "--signal", default=None)
    ns = p.parse(argv)
    client = ctx.client

    def act(name: str) -> str:
        client.request("POST", f"/containers/{name}/{verb}", {"t": ns.time, "signal": ns.signal})
        return name

    return for_each(ctx, ns.args, act)


def cmd_restart(ctx: Ctx, argv: list[str]) -> int:
    return cmd_stop(ctx, argv, verb="restart")


def cmd_kill(ctx: Ctx, argv: list[str]) -> int:
    p = _names_parser("kill", "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Kill one or more running containers")
    p.add_argument("-s", "--signal", default=None)
    ns = p.parse(argv)
    client = ctx.client

    def act(name: str) -> str:
        client.request("POST", f"/containers/{name}/kill", {"signal": ns.signal})
        return name

    return for_each(ctx, ns.args, act)


def _simple(verb: str) -> Any:
    def cmd(ctx: Ctx, argv: list[str]) -> int:
        p = _names_parser(verb, "CONTAINER [CONTAINER...]",
                          f"{verb.capitalize()} all processes within one or more containers")
        ns = p.parse(argv)
        client = ctx.client

        def act(name: str) -> str:
            client.request("POST", f"/containers/{name}/{verb}")
            return name

        return for_each(ctx, ns.args, act)

    cmd.__name__ = f"cmd_{verb}"
    return cmd


cmd_pause = _simple("pause")
cmd_unpause = _simple("unpause")


def cmd_rm(ctx: Ctx, argv: list[str]) -> int:
    p = _names_parser("rm", "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("-l", "--link", action="store_true")
    ns = p.parse(argv)
    client = ctx.client

    def act(name: str) -> str | None:
        try:
            client.request("DELETE", f"/containers/{name}", {"force": ns.force, "v": ns.volumes, "link": ns.link})
        except NotFoundError as exc:
            if not ns.force:
                raise
            ctx.error(describe(exc))  # docker: with --force, a missing container is said but not a failure
            return None
        return name

    return for_each(ctx, ns.args, act)


def cmd_wait(ctx: Ctx, argv: list[str]) -> int:
    p = _names_parser("wait", "CONTAINER [CONTAINER...]",
                      "Block until one or more containers stop, then print their exit codes")
    ns = p.parse(argv)
    client = ctx.client

    def act(name: str) -> str:
        with client.stream("POST", f"/containers/{name}/wait") as sr:
            docs = list(sr.json_lines())
        doc = docs[-1] if docs else {}
        err = doc.get("Error") or {}
        if isinstance(err, dict) and err.get("Message"):
            raise APIError(500, str(err["Message"]))
        return str(doc.get("StatusCode", 0))

    return for_each(ctx, ns.args, act)


def cmd_top(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("top", "CONTAINER [ps OPTIONS]", "Display the running processes of a container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    ns = p.parse(argv)
    query = {"ps_args": " ".join(ns.ps_args) if ns.ps_args else None}
    doc = ctx.client.get(f"/containers/{ns.container}/top", query)
    lines = ["\t".join(doc.get("Titles") or [])]
    lines += ["\t".join(str(x) for x in proc) for proc in doc.get("Processes") or []]
    ctx.out.write(tabwrite("\n".join(lines) + "\n", minwidth=20, padding=3))
    return 0


def cmd_rename(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("rename", "CONTAINER NEW_NAME", "Rename a container", min_args=2, max_args=2)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    old, new = ns.args[0].strip(), ns.args[1].strip()
    if not old or not new:
        raise StatusError(1, "Error: Neither old nor new names may be empty")
    ctx.client.request("POST", f"/containers/{old}/rename", {"name": new})
    return 0


COMMANDS = {
    "create": cmd_create, "run": cmd_run, "start": cmd_start, "attach": cmd_attach,
    "exec": cmd_exec, "ps": cmd_ps, "stop": cmd_stop,
    "restart": cmd_restart, "kill": cmd_kill, "pause": cmd_pause, "unpause": cmd_unpause,
    "rm": cmd_rm, "wait": cmd_wait, "top": cmd_top, "rename": cmd_rename,
}
