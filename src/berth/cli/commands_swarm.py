"""`berth swarm|node|service|secret|config|stack|plugin|checkpoint ...`: docker's verbs, the daemon's answer.

Strategy: berthd runs no swarm and serves no plugins, and says so for every path
of those groups (api/handlers/swarm.py, routes.PLANNED). These groups exist
so that a script written for docker's CLI gets the same answer and exit code
from berth's: each sub-verb makes the one request docker's makes first and
prints what the daemon says. Their flags are not checked: whatever they
are, that first request is refused. `plugin ls` against a daemon that does
serve plugins prints docker's table.
"""

from __future__ import annotations

from typing import Any

from berth.cli import groups
from berth.cli.common import Ctx, StatusError, describe
from berth.cli.gotemplate import render_rows
from berth.client.errors import APIError

# group -> (description, {sub-verb: (method, path, description)})
GROUPS: dict[str, tuple[str, dict[str, tuple[str, str, str]]]] = {
    "swarm": ("Manage Swarm", {
        "ca": ("GET", "/swarm", "Show or rotate the swarm's root CA"),
        "init": ("POST", "/swarm/init", "Start a swarm with this node as its manager"),
        "join": ("POST", "/swarm/join", "Join this node to a swarm"),
        "join-token": ("GET", "/swarm", "Show or rotate the tokens that join nodes"),
        "leave": ("POST", "/swarm/leave", "Take this node out of its swarm"),
        "unlock": ("POST", "/swarm/unlock", "Unlock a locked swarm manager"),
        "unlock-key": ("GET", "/swarm/unlockkey", "Show or rotate the unlock key"),
        "update": ("POST", "/swarm/update", "Change the swarm's settings"),
    }),
    "node": ("Manage Swarm nodes", {verb: ("GET", "/nodes", text) for verb, text in (
        ("demote", "Make managers workers"), ("inspect", "Show nodes in detail"), ("ls", "List the swarm's nodes"),
        ("promote", "Make workers managers"), ("ps", "List the tasks on nodes"), ("rm", "Remove nodes"),
        ("update", "Change a node's settings"))}),
    "service": ("Manage Swarm services", {verb: ("GET", "/services", text) for verb, text in (
        ("create", "Start a new service"), ("inspect", "Show services in detail"), ("logs", "Show a service's logs"),
        ("ls", "List services"), ("ps", "List a service's tasks"), ("rm", "Remove services"),
        ("rollback", "Go back to a service's previous settings"), ("scale", "Change how many replicas run"),
        ("update", "Change a service"))}),
    "secret": ("Manage Swarm secrets", {verb: ("GET", "/secrets", text) for verb, text in (
        ("create", "Store a secret"), ("inspect", "Show secrets in detail"), ("ls", "List secrets"),
        ("rm", "Remove secrets"))}),
    "config": ("Manage Swarm configs", {verb: ("GET", "/configs", text) for verb, text in (
        ("create", "Store a config"), ("inspect", "Show configs in detail"), ("ls", "List configs"),
        ("rm", "Remove configs"))}),
    "stack": ("Manage Swarm stacks", {verb: ("GET", "/services", text) for verb, text in (
        ("config", "Show the final form of a stack's compose files"), ("deploy", "Start or update a stack"),
        ("ls", "List stacks"), ("ps", "List a stack's tasks"), ("rm", "Remove stacks"),
        ("services", "List a stack's services"))}),
    "plugin": ("Manage plugins", {verb: ("GET", "/plugins", text) for verb, text in (
        ("create", "Make a plugin from a root file system and config"), ("disable", "Turn a plugin off"),
        ("enable", "Turn a plugin on"), ("inspect", "Show plugins in detail"), ("install", "Install a plugin"),
        ("ls", "List plugins"), ("push", "Upload a plugin to a registry"), ("rm", "Remove plugins"),
        ("set", "Change a plugin's settings"), ("upgrade", "Replace a plugin with a newer one"))}),
}


def _relay(group: str, verb: str, method: str, path: str) -> Any:
    def command(ctx: Ctx, argv: list[str]) -> int:
        if argv and argv[0] in ("--help", "-h"):
            ctx.out.write(f"Usage:  berth {group} {verb} [OPTIONS]\n\n{GROUPS[group][1][verb][2]}\n\n"
                          "berthd runs no swarm and serves no plugins: this asks it anyway and prints its answer.\n")
            return 0
        try:
            answer = ctx.client.request(method, path, {"force": True} if verb == "leave" else None)
        except APIError as exc:
            raise StatusError(1, describe(exc)) from exc
        if (group, verb) == ("plugin", "ls"):
            rows = [{"ID": str(p.get("Id", ""))[:12], "Name": p.get("Name", ""),
                     "Description": (p.get("Config") or {}).get("Description", ""),
                     "Enabled": str(bool(p.get("Enabled"))).lower()} for p in answer.json() or []]
            ctx.out.write(render_rows("table {{.ID}}\t{{.Name}}\t{{.Description}}\t{{.Enabled}}", rows,
                                      {"ID": "ID", "Name": "NAME", "Description": "DESCRIPTION",
                                       "Enabled": "ENABLED"}))
        return 0
    return command


def _group(group: str) -> Any:
    description, verbs = GROUPS[group]
    table = {verb: (_relay(group, verb, method, path), text) for verb, (method, path, text) in verbs.items()}

    def command(ctx: Ctx, argv: list[str]) -> int:
        return groups.dispatch(ctx, group, description, table, argv)
    return command


def cmd_checkpoint(ctx: Ctx, argv: list[str]) -> int:
    """`checkpoint [create|ls|rm]`: docker's CLI offers it only with an experimental daemon; berthd is not one."""
    words = "checkpoint" + (f" {argv[0]}" if argv and argv[0] in ("create", "ls", "list", "rm", "remove") else "")
    raise StatusError(1, f"berth {words} is only supported on a Docker daemon with experimental features enabled")


COMMANDS = {**{group: _group(group) for group in GROUPS}, "checkpoint": cmd_checkpoint}
