"""System verbs: version, info, inspect, events.

Strategy: fetch, then format with pure helpers (`version_lines`, `info_lines`,
`event_line`) that tests can drive with canned API answers. Aligned key/value
blocks go through berth.cli.gotemplate.tabwrite like docker's tabwriter.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from typing import Any

from berth import API_VERSION, __version__
from berth.cli.common import Ctx, StatusError, describe, finish_inspect
from berth.cli.gotemplate import Template, tabwrite
from berth.cli.parser import Parser, filter_flag
from berth.cli.units import format_nano_time, parse_api_time, parse_timestamp
from berth.client.errors import APIError, NotFoundError
from berth.errors import InvalidArgument

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def client_version(api_version: str) -> dict[str, Any]:
    return {
        "Platform": {"Name": "berth"},
        "Version": __version__,
        "ApiVersion": api_version,
        "DefaultAPIVersion": API_VERSION,
        "PythonVersion": platform.python_version(),
        "Os": platform.system().lower(),
        "Arch": _ARCH.get(platform.machine(), platform.machine()),
    }


def ansic_time(text: str) -> str:
    """RFC 3339 -> Go's ANSIC layout ("Thu May  7 21:09:36 2026"), as docker shows Built."""
    ts = parse_api_time(text)
    if ts is None:
        return text
    t = time.gmtime(ts)
    return time.strftime("%a %b ", t) + f"{t.tm_mday:2d}" + time.strftime(" %H:%M:%S %Y", t)


def version_lines(client: Mapping[str, Any], server: Mapping[str, Any] | None) -> str:
    """The text of `berth version` (server may be None when the daemon is unreachable)."""
    api = str(client["ApiVersion"])
    if api != client["DefaultAPIVersion"]:
        api += f" (downgraded from {client['DefaultAPIVersion']})"
    lines = [
        "Client:",
        f" Version:\t{client['Version']}",
        f" API version:\t{api}",
        f" Python version:\t{client['PythonVersion']}",
        f" OS/Arch:\t{client['Os']}/{client['Arch']}",
    ]
    if server is not None:
        name = ((server.get("Platform") or {}).get("Name") or "").strip()
        lines += ["", "Server:" + (f" {name}" if name else "")]
        components = list(server.get("Components") or [])
        if not any(c.get("Name") == "Engine" for c in components):
            components.insert(0, {"Name": "Engine", "Version": server.get("Version", "")})
        for comp in components:
            lines.append(f" {comp.get('Name', '')}:")
            details = comp.get("Details") or {}
            if comp.get("Name") == "Engine":
                def pick(key: str, details: dict = details) -> str:
                    value = server.get(key)
                    return str(details.get(key, "") if value is None else value)
                lines += [
                    f"  Version:\t{server.get('Version') or comp.get('Version', '')}",
                    f"  API version:\t{pick('ApiVersion')} "
                    f"(minimum version {pick('MinAPIVersion')})",
                    f"  Go version:\t{pick('GoVersion')}",
                    f"  Git commit:\t{pick('GitCommit')}",
                    f"  Built:\t{ansic_time(pick('BuildTime'))}",
                    f"  OS/Arch:\t{pick('Os')}/{pick('Arch')}",
                    f"  Experimental:\t{str(server.get('Experimental', False)).lower()}",
                ]
            else:
                lines.append(f"  Version:\t{comp.get('Version', '')}")
                for key in sorted(details):
                    lines.append(f"  {key}:\t{details[key]}")
    return tabwrite("\n".join(lines) + "\n", minwidth=20, padding=1)


def cmd_version(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("version", "[OPTIONS]", "Show the berth version information", max_args=0)
    p.add_argument("-f", "--format", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    server: dict[str, Any] | None = None
    error: BaseException | None = None
    try:
        api = ctx.client.api_version
        server = ctx.client.get("/version")
    except Exception as exc:  # show the client part whatever happens
        api, error = API_VERSION, exc
    client = client_version(api)
    if ns.format:
        tmpl = Template("{{json .}}" if ns.format == "json" else ns.format)
        # docker's Go field is APIVersion (JSON "ApiVersion"): templates may use either
        ctx.print(tmpl.execute({"Client": {**client, "APIVersion": client.get("ApiVersion")},
                                "Server": {**server, "APIVersion": server.get("ApiVersion")} if server else server}))
    else:
        ctx.out.write(version_lines(client, server))
    if error is not None:
        raise StatusError(1, describe(error))
    return 0


def _binary_size(n: float) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def info_lines(client: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    lines = [
        "Client:",
        f" Version:    {client['Version']}",
        " Context:    default",
        " Debug Mode: false",
        "",
        "Server:",
        f" Containers: {info.get('Containers', 0)}",
        f"  Running: {info.get('ContainersRunning', 0)}",
        f"  Paused: {info.get('ContainersPaused', 0)}",
        f"  Stopped: {info.get('ContainersStopped', 0)}",
        f" Images: {info.get('Images', 0)}",
        f" Server Version: {info.get('ServerVersion', '')}",
        f" Storage Driver: {info.get('Driver', '')}",
    ]
    for pair in info.get("DriverStatus") or []:
        if isinstance(pair, list) and len(pair) == 2:
            lines.append(f"  {pair[0]}: {pair[1]}")
    lines += [
        f" Logging Driver: {info.get('LoggingDriver', '')}",
        f" Cgroup Driver: {info.get('CgroupDriver', '')}",
        f" Cgroup Version: {info.get('CgroupVersion', '')}",
    ]
    plugins = info.get("Plugins") or {}
    if plugins:
        lines.append(" Plugins:")
        lines += [f"  {kind}: {' '.join(plugins[kind])}" for kind in ("Volume", "Network", "Authorization", "Log")
                  if plugins.get(kind)]
    swarm = info.get("Swarm") or {}
    if swarm:
        lines.append(f" Swarm: {swarm.get('LocalNodeState', '')}")
    runtimes = info.get("Runtimes") or {}
    if runtimes:
        lines.append(f" Runtimes: {' '.join(sorted(runtimes))}")
    lines.append(f" Default Runtime: {info.get('DefaultRuntime', '')}")
    isolation = info.get("Isolation")
    if isolation:
        lines.append(f" Default Isolation: {isolation}")
    modes = info.get("IsolationModes")
    if modes:
        lines.append(f" Isolation Modes: {' '.join(modes)}")
        lines.append(f" Virtualization: {info.get('VirtualizationAccel') or 'none'}")
    if info.get("OSType") == "linux":
        lines.append(f" Init Binary: {info.get('InitBinary', '')}")
        for key, words in (("ContainerdCommit", "containerd"), ("RuncCommit", "runc"), ("InitCommit", "init")):
            commit = info.get(key) or {}
            line = f" {words} version: {commit.get('ID', '')}"
            if commit.get("Expected") and commit.get("Expected") != commit.get("ID"):
                line += f" (expected: {commit['Expected']})"
            lines.append(line)
    sec = info.get("SecurityOptions") or []
    if sec:
        lines.append(" Security Options:")
        for opt in sec:
            for part in str(opt).split(","):
                key, _, value = part.partition("=")
                lines.append(f"  {value}" if key == "name" else f"   {key[:1].upper()}{key[1:]}: {value}")
    lines += [
        f" Kernel Version: {info.get('KernelVersion', '')}",
        f" Operating System: {info.get('OperatingSystem', '')}",
        f" OSType: {info.get('OSType', '')}",
        f" Architecture: {info.get('Architecture', '')}",
        f" CPUs: {info.get('NCPU', 0)}",
        f" Total Memory: {_binary_size(float(info.get('MemTotal') or 0))}",
        f" Name: {info.get('Name', '')}",
        f" ID: {info.get('ID', '')}",
        f" Docker Root Dir: {info.get('DockerRootDir', '')}",
        f" Debug Mode: {str(bool(info.get('Debug'))).lower()}",
    ]
    for key, words in (("HttpProxy", "HTTP Proxy"), ("HttpsProxy", "HTTPS Proxy"), ("NoProxy", "No Proxy")):
        if info.get(key):
            lines.append(f" {words}: {info[key]}")
    labels = info.get("Labels") or []
    if labels:
        lines.append(" Labels:")
        lines += [f"  {label}" for label in labels]
    lines.append(f" Experimental: {str(bool(info.get('ExperimentalBuild'))).lower()}")
    registry = info.get("RegistryConfig") or {}
    insecure = [str(c.get("Name")) for c in (registry.get("IndexConfigs") or {}).values()
                if isinstance(c, dict) and not c.get("Secure")] + [str(c) for c in registry.get("InsecureRegistryCIDRs")
                                                                    or []]
    if insecure:
        lines.append(" Insecure Registries:")
        lines += [f"  {name}" for name in insecure]
    if registry.get("Mirrors"):
        lines.append(" Registry Mirrors:")
        lines += [f"  {m}" for m in registry["Mirrors"]]
    lines.append(f" Live Restore Enabled: {str(bool(info.get('LiveRestoreEnabled'))).lower()}")
    return "\n".join(lines) + "\n\n"


def cmd_info(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("info", "[OPTIONS]", "Display system-wide information", max_args=0)
    p.add_argument("-f", "--format", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    info = ctx.client.get("/info")
    if ns.format:
        ctx.print(Template("{{json .}}" if ns.format == "json" else ns.format).execute(info))
        return 0
    ctx.out.write(info_lines(client_version(ctx.client.api_version), info))
    for warning in info.get("Warnings") or []:
        ctx.error(str(warning))
    return 0


# --------------------------------------------------------------------------- inspect


def cmd_inspect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("inspect", "[OPTIONS] NAME|ID [NAME|ID...]",
               "Return low-level information on berth objects", min_args=1)
    p.add_argument("-f", "--format", default=None)
    p.add_argument("--type", default=None)
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    if ns.type not in (None, "", "container", "image"):
        raise StatusError(1, f'"{ns.type}" is not a valid value for --type')
    tmpl = Template(ns.format) if ns.format and ns.format != "json" else None
    client = ctx.client
    found: list[Any] = []
    errors: list[str] = []
    for name in ns.args:
        obj = None
        for kind in (["container", "image"] if not ns.type else [ns.type]):
            try:
                if kind == "container":
                    obj = client.get(f"/containers/{name}/json", {"size": ns.size})
                else:
                    obj = client.get(f"/images/{name}/json")
                break
            except NotFoundError as exc:
                if ns.type:  # docker: with --type, the daemon's own words
                    errors.append(describe(exc))
                    break
                continue
            except APIError as exc:
                errors.append(describe(exc))
                break
        else:
            errors.append(f"Error: No such object: {name}")
        if obj is not None:
            found.append(obj)
            if tmpl is not None:
                ctx.print(tmpl.execute(obj))
    return finish_inspect(ctx, ns.format, tmpl is not None, found, errors)


# --------------------------------------------------------------------------- events


def event_line(ev: Mapping[str, Any]) -> str:
    """docker's default event line: time type action id (k=v, ...)."""
    nanos = ev.get("timeNano") or int(ev.get("time") or 0) * 1_000_000_000
    actor = ev.get("Actor") or {}
    kind = ev.get("Type") or ""
    action = ev.get("Action") or ev.get("status") or ""
    ident = actor.get("ID") or ev.get("id") or ""
    line = f"{format_nano_time(int(nanos))} {kind} {action} {ident}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


def cmd_events(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("events", "[OPTIONS]", "Get real time events from the server", max_args=0)
    p.add_argument("--since", default=None)
    p.add_argument("--until", default=None)
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_flag("-f, --filter"))
    p.add_argument("--format", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    now = time.time()
    filters: dict[str, list[str]] = {}
    for item in ns.filter:
        key, sep, value = item.partition("=")
        if not sep:
            raise StatusError(125, f"berth: bad format of filter (expected name=value): {item}")
        filters.setdefault(key.strip().lower(), []).append(value)
    try:
        query = {
            "since": parse_timestamp(ns.since, now) if ns.since else None,
            "until": parse_timestamp(ns.until, now) if ns.until else None,
            "filters": filters or None,
        }
    except InvalidArgument as exc:
        raise StatusError(1, str(exc)) from None  # said as docker's CLI says it, without a prefix
    fmt = ns.format
    if fmt == "json":
        fmt = "{{json .}}"
    tmpl = Template(fmt) if fmt else None
    with ctx.client.stream("GET", "/events", query) as sr:
        for ev in sr.json_lines():
            ctx.print(tmpl.execute(ev) if tmpl else event_line(ev))
            ctx.flush()
    return 0


COMMANDS = {"version": cmd_version, "info": cmd_info, "inspect": cmd_inspect,
            "events": cmd_events}  # `system` is berth.cli.commands_sysgroup
