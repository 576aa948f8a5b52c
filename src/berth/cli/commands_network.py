"""Network verbs: `berth network create|ls|inspect|rm|connect|disconnect|prune`, and `berth port`.

Strategy: the same Engine API calls and output shapes as the docker CLI.
"""

from __future__ import annotations

import json
from typing import Any

from berth.cli.common import Ctx, StatusError, for_each
from berth.cli.parser import Parser


def _create(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network create", "[OPTIONS] NETWORK", "Create a network", min_args=1, max_args=1)
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", default=None)
    p.add_argument("--gateway", default=None)
    p.add_argument("--ip-range", default=None)
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    config = {k: v for k, v in (("Subnet", ns.subnet), ("Gateway", ns.gateway), ("IPRange", ns.ip_range)) if v}
    body = {"Name": ns.args[0], "Driver": ns.driver, "Internal": ns.internal, "Attachable": ns.attachable,
            "IPAM": {"Driver": "default", "Config": [config] if config else []},
            "Labels": dict(label.partition("=")[::2] for label in ns.label),
            "Options": dict(o.partition("=")[::2] for o in ns.opt)}
    ctx.print(str(ctx.client.post("/networks/create", None, body)["Id"]))
    return 0


def _ls(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network ls", "[OPTIONS]", "List networks", max_args=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--no-trunc", action="store_true")
    ns = p.parse(argv)
    filters: dict[str, list[str]] = {}
    for f in ns.filter:
        k, _, v = f.partition("=")
        filters.setdefault(k, []).append(v)
    nets = ctx.client.get("/networks", {"filters": json.dumps(filters) if filters else None})
    if ns.quiet:
        for n in nets:
            ctx.print(n["Id"] if ns.no_trunc else n["Id"][:12])
        return 0
    rows = [("NETWORK ID", "NAME", "DRIVER", "SCOPE")]
    rows += [(n["Id"] if ns.no_trunc else n["Id"][:12], n["Name"], n["Driver"], n["Scope"]) for n in nets]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        ctx.print("   ".join(r[i].ljust(widths[i]) for i in range(3)) + "   " + r[3])
    return 0


def _inspect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network inspect", "NETWORK [NETWORK...]", "Display detailed information on networks", min_args=1)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    docs: list[Any] = []
    failed = False
    for ref in ns.args:
        try:
            docs.append(ctx.client.get(f"/networks/{ref}"))
        except Exception as exc:  # noqa: BLE001 - reported like docker, then exit 1
            ctx.error(f"Error response from daemon: {getattr(exc, 'message', exc)}")
            failed = True
    ctx.print(json.dumps(docs, indent=4))
    return 1 if failed else 0


def _rm(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network rm", "NETWORK [NETWORK...]", "Remove one or more networks", min_args=1)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)

    def act(ref: str) -> str:
        ctx.client.delete(f"/networks/{ref}")
        return ref
    return for_each(ctx, ns.args, act)


def _connect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("network connect", "[OPTIONS] NETWORK CONTAINER", "Connect a container to a network",
               min_args=2, max_args=2)
    p.add_argument("--ip", default=None)
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    endpoint: dict[str, Any] = {"Aliases": ns.alias or None}
    if ns.ip:
        endpoint["IPAMConfig"] = {"IPv4Address": ns.ip}
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
    p.parse(argv)
    doc = ctx.client.post("/networks/prune") or {}
    names = doc.get("NetworksDeleted") or []
    if names:
        ctx.print("Deleted Networks:\n" + "\n".join(names))
    return 0


SUBCOMMANDS = {"create": _create, "ls": _ls, "list": _ls, "inspect": _inspect, "rm": _rm, "remove": _rm,
               "connect": _connect, "disconnect": _disconnect, "prune": _prune}


def cmd_network(ctx: Ctx, argv: list[str]) -> int:
    if not argv or argv[0] not in SUBCOMMANDS:
        ctx.print("Usage:  berth network COMMAND\n\nCommands:\n  " + "\n  ".join(sorted(SUBCOMMANDS)))
        return 0 if not argv or argv[0] in ("-h", "--help") else 1
    return SUBCOMMANDS[argv[0]](ctx, argv[1:])


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
            raise StatusError(1, f"Error: No public port '{wanted}' published for {ns.args[0]}")
    for key in sorted(ports):
        if wanted and key != wanted:
            continue
        for b in ports[key] or []:
            shown = f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}"
            ctx.print(shown if wanted else f"{key} -> {shown}")
    return 0


COMMANDS = {"network": cmd_network, "port": cmd_port}
