"""Network verbs: `berth network create|ls|inspect|rm|connect|disconnect|prune`, and `berth port`.

Strategy: the same Engine API calls and output shapes as the docker CLI.
"""

from __future__ import annotations

import json
import re
from typing import Any

from berth.cli import groups
from berth.cli.common import Ctx, StatusError, describe, for_each
from berth.cli.gotemplate import Template, render_rows
from berth.cli.ipamopts import ipam_configs
from berth.cli.parser import Parser, filter_flag
from berth.cli.prune import confirmed, prune_filters
from berth.cli.tables import go_json, json_rows
from berth.client.errors import APIError, NotFoundError
from berth.errors import InvalidArgument


def _create(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network create", "[OPTIONS] NETWORK", "Create a network", min_args=1, max_args=1)
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--ipv6", action="store_true", default=None)
    p.add_argument("--ipv4", default=None, choices=("true", "false"))
    p.add_argument("--ipam-driver", default="default")
    p.add_argument("--ipam-opt", action="append", default=[])
    p.add_argument("--aux-address", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    try:
        configs = ipam_configs(ns.subnet, ns.ip_range, ns.gateway,
                               [(a.partition("=")[0], a.partition("=")[2]) for a in ns.aux_address])
    except InvalidArgument as exc:
        raise StatusError(1, str(exc)) from None  # said as is, as docker's CLI says it
    body: dict[str, Any] = {
            "Name": ns.args[0], "Driver": ns.driver, "Internal": ns.internal, "Attachable": ns.attachable,
            "IPAM": {"Driver": ns.ipam_driver, "Config": configs,
                     "Options": dict(o.partition("=")[::2] for o in ns.ipam_opt)},
            "Labels": dict(label.partition("=")[::2] for label in ns.label),
            "Options": dict(o.partition("=")[::2] for o in ns.opt)}
    if ns.ipv6 is not None:
        body["EnableIPv6"] = True
    if ns.ipv4 is not None:
        body["EnableIPv4"] = ns.ipv4 == "true"
    ctx.print(str(ctx.client.post("/networks/create", None, body)["Id"]))
    return 0


NETWORKS_DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORKS_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv4": "IPV4", "IPv6": "IPV6",
                    "Internal": "INTERNAL", "Labels": "LABELS", "Label": "LABEL", "CreatedAt": "CREATED AT"}


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def go_time(text: str) -> str:
    """An API timestamp as Go prints a time.Time (`2026-01-02 03:04:05.5 +0000 UTC`); unknown shapes as given."""
    m = _RFC3339.match(text)
    if not m:
        return text
    day, clock, frac, zone = m.groups()
    frac = (frac or "").rstrip("0")
    offset = "+0000 UTC" if zone == "Z" else f"{zone.replace(':', '')} {zone.replace(':', '')}"
    return f"{day} {clock}{'.' + frac if frac else ''} {offset}"


def network_row(n: dict[str, Any], trunc: bool) -> dict[str, Any]:
    """The fields docker's `network ls --format` knows, from one GET /networks entry."""
    labels = n.get("Labels") or {}
    return {"ID": str(n.get("Id", ""))[:12] if trunc else str(n.get("Id", "")), "Name": n.get("Name", ""),
            "Driver": n.get("Driver", ""), "Scope": n.get("Scope", ""),
            "IPv4": "true" if n.get("EnableIPv4") else "false", "IPv6": "true" if n.get("EnableIPv6") else "false", "Internal": "true" if n.get("Internal") else "false",
            "Labels": ",".join(f"{k}={v}" for k, v in labels.items()), "CreatedAt": go_time(str(n.get("Created", ""))),
            "Label": lambda key: labels.get(key, "")}


def _ls(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network ls", "[OPTIONS]", "List networks", max_args=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_flag("-f, --filter"))
    p.add_argument("--format", default=None)
    p.add_argument("--no-trunc", action="store_true")
    ns = p.parse(argv)
    filters: dict[str, list[str]] = {}
    for f in ns.filter:
        k, sep, v = f.partition("=")
        if not sep:
            raise StatusError(125, f"berth: bad format of filter (expected name=value): {f}")
        filters.setdefault(k.strip().lower(), []).append(v)
    nets = ctx.client.get("/networks", {"filters": json.dumps(filters) if filters else None}) or []
    fmt = ns.format or NETWORKS_DEFAULT
    if ns.quiet:
        fmt = "{{.ID}}"
    elif fmt == "table":
        fmt = NETWORKS_DEFAULT
    rows = sorted((network_row(n, not ns.no_trunc) for n in nets), key=lambda r: str(r["Name"]))
    if fmt == "json":
        ctx.out.write(json_rows(rows))
        return 0
    ctx.out.write(render_rows(fmt, rows, NETWORKS_HEADERS))
    return 0


def _inspect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network inspect", "[OPTIONS] NETWORK [NETWORK...]", "Display detailed information on one or more "
               "networks", min_args=1)
    p.add_argument("-f", "--format", default=None)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    tmpl = Template(ns.format) if ns.format and ns.format != "json" else None
    docs: list[Any] = []
    errors: list[str] = []
    for ref in ns.args:
        try:
            doc = ctx.client.get(f"/networks/{ref}", {"verbose": ns.verbose})
        except APIError as exc:
            errors.append(describe(exc))
            continue
        docs.append(doc)
        if tmpl is not None:
            ctx.print(tmpl.execute(doc))
    if ns.format == "json":  # docker: the whole array, compact
        ctx.print(go_json(docs, escape_html=False))
    elif tmpl is None:
        ctx.print(json.dumps(docs, indent=4, ensure_ascii=False))
    elif not docs:
        ctx.print()  # docker: a template that printed nothing still ends its line
    for line in errors:
        ctx.error(line)
    return 1 if errors else 0


def _rm(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network rm", "NETWORK [NETWORK...]", "Remove one or more networks", min_args=1)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)

    def act(ref: str) -> str | None:
        try:
            ctx.client.delete(f"/networks/{ref}")
        except NotFoundError:
            if ns.force:  # docker: with --force, a network that is not there is no error
                return None
            raise
        return ref
    return for_each(ctx, ns.args, act)


def _connect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network connect", "[OPTIONS] NETWORK CONTAINER", "Connect a container to a network",
               min_args=2, max_args=2)
    p.add_argument("--ip", default=None)
    p.add_argument("--ip6", default=None)
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--link", action="append", default=[])
    p.add_argument("--driver-opt", action="append", default=[])
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    endpoint: dict[str, Any] = {"Aliases": ns.alias or None, "Links": ns.link or None}
    if ns.driver_opt:
        endpoint["DriverOpts"] = dict(o.partition("=")[::2] for o in ns.driver_opt)
    if ns.ip or ns.ip6:
        endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", ns.ip), ("IPv6Address", ns.ip6)) if v}
    ctx.client.post(f"/networks/{ns.args[0]}/connect", None, {"Container": ns.args[1], "EndpointConfig": endpoint})
    return 0


def _disconnect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network disconnect", "[OPTIONS] NETWORK CONTAINER", "Disconnect a container from a network",
               min_args=2, max_args=2)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    ctx.client.post(f"/networks/{ns.args[0]}/disconnect", None, {"Container": ns.args[1], "Force": ns.force})
    return 0


def _prune(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network prune", "[OPTIONS]", "Remove all unused networks", max_args=0)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_flag("--filter"))
    ns = p.parse(argv)
    filters = prune_filters(ns.filter)
    if not ns.force and not confirmed(ctx, "WARNING! This will remove all custom networks not used by at least "
                                      "one container."):
        return 0
    doc = ctx.client.post("/networks/prune", {"filters": filters}) or {}
    names = doc.get("NetworksDeleted") or []
    if names:
        ctx.print("Deleted Networks:\n" + "".join(f"{n}\n" for n in names))
    return 0


SUBCOMMANDS: groups.Table = {
    "connect": (_connect, "Connect a container to a network"),
    "create": (_create, "Create a network"),
    "disconnect": (_disconnect, "Disconnect a container from a network"),
    "inspect": (_inspect, "Display detailed information on one or more networks"),
    "ls": (_ls, "List networks"), "list": (_ls, "List networks"),
    "prune": (_prune, "Remove all unused networks"),
    "rm": (_rm, "Remove one or more networks"), "remove": (_rm, "Remove one or more networks"),
}


def cmd_network(ctx: Ctx, argv: list[str]) -> int:
    return groups.dispatch(ctx, "network", "Manage networks", SUBCOMMANDS, argv, set(SUBCOMMANDS) - {"list", "remove"})


def cmd_port(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("port", "CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a specific mapping",
               min_args=1, max_args=2)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    ports = (ctx.client.get(f"/containers/{ns.args[0]}/json").get("NetworkSettings") or {}).get("Ports") or {}
    wanted = None
    if len(ns.args) > 1:
        wanted = ns.args[1] if "/" in ns.args[1] else f"{ns.args[1]}/tcp"
        if not ports.get(wanted):
            raise StatusError(1, f"Error: No public port '{ns.args[1]}' published for {ns.args[0]}")
    for key in sorted(ports):
        if wanted and key != wanted:
            continue
        for b in ports[key] or []:
            shown = f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}"
            ctx.print(shown if wanted else f"{key} -> {shown}")
    return 0


COMMANDS = {"network": cmd_network, "port": cmd_port}
