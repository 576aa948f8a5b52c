"""`berth container ...` (docker's management-command spellings), and `update`, `diff`, `container prune`.

Strategy: the `container` group maps each of docker's sub-verbs onto the
top-level verb that already does it (`container ls` is `ps`, `container inspect`
is `inspect --type container`), imported when called so this module sits above
the other command modules without import cycles. `update`, `diff` and
`container prune` are thin mappings onto POST /containers/{id}/update,
GET /containers/{id}/changes and POST /containers/prune.
"""

from __future__ import annotations

from typing import Any

from berth.cli import groups
from berth.cli.common import Ctx, StatusError, for_each
from berth.cli.parser import Parser, filter_flag, integer, typed
from berth.cli.prune import confirmed, prune_filters
from berth.cli.units import human_size4, parse_cpus, ram_in_bytes

_CHANGE_KINDS = {0: "C", 1: "A", 2: "D"}


def _swap(text: str) -> int:
    return -1 if text.strip() == "-1" else ram_in_bytes(text)


def cmd_update(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("update", "[OPTIONS] CONTAINER [CONTAINER...]", "Update configuration of one or more containers",
               min_args=1)
    ints = (("--blkio-weight", "BlkioWeight"), ("--cpu-period", "CpuPeriod"), ("--cpu-quota", "CpuQuota"),
            ("--cpu-rt-period", "CpuRealtimePeriod"), ("--cpu-rt-runtime", "CpuRealtimeRuntime"),
            ("--pids-limit", "PidsLimit"))
    for flag, _ in ints:
        p.add_argument(flag, type=typed(flag, integer), default=None)
    p.add_argument("-c", "--cpu-shares", type=typed("-c, --cpu-shares", integer), default=None)
    p.add_argument("--cpus", type=typed("--cpus", parse_cpus), default=None)
    p.add_argument("--cpuset-cpus", default=None)
    p.add_argument("--cpuset-mems", default=None)
    p.add_argument("-m", "--memory", type=typed("-m, --memory", ram_in_bytes), default=None)
    p.add_argument("--memory-reservation", type=typed("--memory-reservation", ram_in_bytes), default=None)
    p.add_argument("--memory-swap", type=typed("--memory-swap", _swap), default=None)
    p.add_argument("--restart", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    body: dict[str, Any] = {}
    for flag, key in ints:
        value = getattr(ns, flag[2:].replace("-", "_"))
        if value is not None:
            body[key] = value
    for attr, key in (("cpu_shares", "CpuShares"), ("cpus", "NanoCpus"), ("cpuset_cpus", "CpusetCpus"),
                      ("cpuset_mems", "CpusetMems"), ("memory", "Memory"),
                      ("memory_reservation", "MemoryReservation"), ("memory_swap", "MemorySwap")):
        value = getattr(ns, attr)
        if value is not None:
            body[key] = value
    if ns.restart is not None:
        name, _, count = ns.restart.partition(":")
        if count and not count.isdigit():
            raise StatusError(125, f'invalid argument "{ns.restart}" for "--restart" flag: '
                                   f'strconv.Atoi: parsing "{count}": invalid syntax')
        body["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(count or 0)}
    if not body:
        raise StatusError(1, "you must provide one or more flags when using this command")
    warnings: list[str] = []

    def act(name: str) -> str:
        doc = ctx.client.post(f"/containers/{name}/update", None, body) or {}
        warnings.extend(str(w) for w in doc.get("Warnings") or [])
        return name

    code = for_each(ctx, ns.args, act)
    for warning in warnings:
        ctx.error(warning)
    return code


def cmd_diff(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("diff", "CONTAINER", "Inspect changes to files or directories on a container's filesystem",
               min_args=1, max_args=1)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    for change in ctx.client.get(f"/containers/{ns.args[0]}/changes") or []:
        ctx.print(f"{_CHANGE_KINDS.get(change.get('Kind'), '?')} {change.get('Path', '')}")
    return 0


def cmd_container_prune(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("container prune", "[OPTIONS]", "Remove all stopped containers", max_args=0)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_flag("--filter"))
    ns = p.parse(argv)
    filters = prune_filters(ns.filter)
    if not ns.force and not confirmed(ctx, "WARNING! This will remove all stopped containers."):
        return 0
    doc = ctx.client.post("/containers/prune", {"filters": filters}) or {}
    deleted = doc.get("ContainersDeleted") or []
    if deleted:
        ctx.print("Deleted Containers:\n" + "".join(f"{d}\n" for d in deleted))
    ctx.print(f"Total reclaimed space: {human_size4(int(doc.get('SpaceReclaimed') or 0))}")
    return 0


def _container_inspect(ctx: Ctx, argv: list[str]) -> int:
    from berth.cli.commands_system import cmd_inspect

    return cmd_inspect(ctx, ["--type", "container", *argv])


def _table() -> groups.Table:
    from berth.cli import (
        commands_containers,
        commands_logs,
        commands_network,
        commands_registry,
        commands_stats,
        commands_volumes,
    )
    c = commands_containers
    return {
        "attach": (c.cmd_attach, "Attach local standard input, output, and error streams to a running container"),
        "commit": (commands_registry.cmd_commit, "Create a new image from a container's changes"),
        "cp": (commands_volumes.cmd_cp, "Copy files/folders between a container and the local filesystem"),
        "create": (c.cmd_create, "Create a new container"),
        "diff": (cmd_diff, "Inspect changes to files or directories on a container's filesystem"),
        "exec": (c.cmd_exec, "Execute a command in a running container"),
        "export": (commands_registry.cmd_export, "Export a container's filesystem as a tar archive"),
        "inspect": (_container_inspect, "Display detailed information on one or more containers"),
        "kill": (c.cmd_kill, "Kill one or more running containers"),
        "logs": (commands_logs.cmd_logs, "Fetch the logs of a container"),
        "ls": (c.cmd_ps, "List containers"), "list": (c.cmd_ps, "List containers"),
        "ps": (c.cmd_ps, "List containers"),
        "pause": (c.cmd_pause, "Pause all processes within one or more containers"),
        "port": (commands_network.cmd_port, "List port mappings or a specific mapping for the container"),
        "prune": (cmd_container_prune, "Remove all stopped containers"),
        "rename": (c.cmd_rename, "Rename a container"),
        "restart": (c.cmd_restart, "Restart one or more containers"),
        "rm": (c.cmd_rm, "Remove one or more containers"), "remove": (c.cmd_rm, "Remove one or more containers"),
        "run": (c.cmd_run, "Create and run a new container from an image"),
        "start": (c.cmd_start, "Start one or more stopped containers"),
        "stats": (commands_stats.cmd_stats, "Display a live stream of container(s) resource usage statistics"),
        "stop": (c.cmd_stop, "Stop one or more running containers"),
        "top": (c.cmd_top, "Display the running processes of a container"),
        "unpause": (c.cmd_unpause, "Unpause all processes within one or more containers"),
        "update": (cmd_update, "Update configuration of one or more containers"),
        "wait": (c.cmd_wait, "Block until one or more containers stop, then print their exit codes"),
    }


def cmd_container(ctx: Ctx, argv: list[str]) -> int:
    table = _table()
    shown = set(table) - {"list", "ps", "remove"}
    return groups.dispatch(ctx, "container", "Manage containers", table, argv, shown)


COMMANDS = {"container": cmd_container, "update": cmd_update, "diff": cmd_diff}
