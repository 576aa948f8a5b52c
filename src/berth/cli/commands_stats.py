"""`berth stats` and `berth system df`: resource usage as docker's CLI shows it.

Strategy: `stats` asks GET /containers/{id}/stats?stream=false for each
container (in parallel, one client a thread: the daemon takes a second to
measure the CPU), turns each sample into docker's row (`stats_row`, pure) and
renders the table; without --no-stream it redraws every round until
interrupted. `system df` renders GET /system/df with `df_rows` (pure), docker's
four lines (images, containers, local volumes, build cache).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from berth.cli.common import Ctx, describe
from berth.cli.gotemplate import render_rows
from berth.cli.parser import Parser
from berth.cli.tables import container_names, json_rows, short_id
from berth.cli.units import bytes_size, human_size, human_size4
from berth.client.engine import Client
from berth.client.errors import APIError, DaemonUnreachable

STATS_DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
                 "\t{{.BlockIO}}\t{{.PIDs}}")
STATS_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                 "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
DF_DEFAULT = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}
WORKERS = 8  # stats requests in flight at once


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def cpu_percent(doc: Mapping[str, Any]) -> float:
    """docker's CPU %: the container's share of the host's CPU time since the previous sample, times CPUs."""
    cpu, pre = doc.get("cpu_stats") or {}, doc.get("precpu_stats") or {}
    delta = _num((cpu.get("cpu_usage") or {}).get("total_usage")) - _num((pre.get("cpu_usage") or {}).get("total_usage"))
    system = _num(cpu.get("system_cpu_usage")) - _num(pre.get("system_cpu_usage"))
    online = _num(cpu.get("online_cpus")) or float(len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []))
    if delta > 0 and system > 0:
        return delta / system * online * 100.0
    return 0.0


def memory(doc: Mapping[str, Any]) -> tuple[float, float]:
    """(usage without the inactive page cache, limit), as docker computes them."""
    mem = doc.get("memory_stats") or {}
    usage = _num(mem.get("usage"))
    stats = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):  # cgroup v1, then v2
        inactive = _num(stats.get(key))
        if key in stats and inactive < usage:
            usage -= inactive
            break
    return usage, _num(mem.get("limit"))


def _io(doc: Mapping[str, Any]) -> tuple[str, str]:
    rx = tx = 0.0
    for net in (doc.get("networks") or {}).values():
        rx += _num((net or {}).get("rx_bytes"))
        tx += _num((net or {}).get("tx_bytes"))
    read = write = 0.0
    for entry in (doc.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str((entry or {}).get("op", "")).lower()
        if op == "read":
            read += _num(entry.get("value"))
        elif op == "write":
            write += _num(entry.get("value"))
    return f"{human_size(rx)} / {human_size(tx)}", f"{human_size(read)} / {human_size(write)}"


def stats_row(given: str, doc: Mapping[str, Any] | None, name: str, cid: str, trunc: bool) -> dict[str, Any]:
    """One row of `stats`; *doc* None (a container not running) shows zeros, as docker does."""
    doc = doc or {}
    usage, limit = memory(doc)
    net, blk = _io(doc) if doc else ("0B / 0B", "0B / 0B")
    return {
        "Container": given, "ID": short_id(cid, trunc), "Name": name or "--",
        "CPUPerc": f"{cpu_percent(doc):.2f}%", "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}",
        "MemPerc": f"{(usage / limit * 100.0 if limit else 0.0):.2f}%", "NetIO": net, "BlockIO": blk,
        "PIDs": str(int(_num((doc.get("pids_stats") or {}).get("current")))),
    }


def _sample(ctx: Ctx, target: tuple[str, str, str, bool], trunc: bool) -> dict[str, Any] | str:
    given, cid, name, running = target
    if not running:
        return stats_row(given, None, name, cid, trunc)
    client = Client(ctx.host, tls=ctx.tls)
    try:
        with client.stream("GET", f"/containers/{cid}/stats", {"stream": "0"}) as sr:
            docs = list(sr.json_lines())
    except (APIError, DaemonUnreachable) as exc:
        return describe(exc)
    doc = docs[-1] if docs and isinstance(docs[-1], dict) else {}
    return stats_row(given, doc, name, cid, trunc)


def cmd_stats(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("stats", "[OPTIONS] [CONTAINER...]",
               "Display a live stream of container(s) resource usage statistics")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--format", default=None)
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    fmt = ns.format or STATS_DEFAULT
    if fmt == "table":
        fmt = STATS_DEFAULT
    tty = ctx.out is sys.stdout and sys.stdout.isatty()
    while True:
        targets, failed = _targets(ctx, ns.args, ns.all)
        if failed:  # docker names what it cannot find and shows nothing
            return 1
        rows: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=min(WORKERS, max(1, len(targets)))) as pool:
            for result in pool.map(lambda t: _sample(ctx, t, not ns.no_trunc), targets):
                if isinstance(result, str):
                    ctx.error(result)
                    failed = True
                else:
                    rows.append(result)
        if tty and not ns.no_stream:
            ctx.out.write("\x1b[2J\x1b[H")
        ctx.out.write(json_rows(rows) if fmt == "json" else render_rows(fmt, rows, STATS_HEADERS))
        ctx.flush()
        if ns.no_stream or (failed and ns.args):
            return 1 if failed else 0
        if not any(running for *_, running in targets):  # no sample took its second: pace the rounds
            time.sleep(1)


def _targets(ctx: Ctx, names: list[str], all_: bool) -> tuple[list[tuple[str, str, str, bool]], bool]:
    """(given name, id, name, running) for each container asked about (or every listed one)."""
    out: list[tuple[str, str, str, bool]] = []
    failed = False
    if names:
        for given in names:
            try:
                info = ctx.client.get(f"/containers/{given}/json")
            except APIError as exc:
                ctx.error(describe(exc))
                failed = True
                continue
            state = info.get("State") or {}
            out.append((given, str(info["Id"]), str(info.get("Name", "")).lstrip("/"), bool(state.get("Running"))))
        return out, failed
    for c in ctx.client.get("/containers/json", {"all": all_}) or []:
        out.append((str(c["Id"]), str(c["Id"]), container_names(c.get("Names")),
                    str(c.get("State", "")) in ("running", "paused", "restarting")))
    return out, failed


# --------------------------------------------------------------------------- system df


def _reclaim(reclaimable: float, total: float, percent: bool = True) -> str:
    if percent and total > 0:
        return f"{human_size4(reclaimable)} ({int(reclaimable * 100 // total)}%)"
    return human_size4(reclaimable)


def df_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """docker's `system df` lines from GET /system/df."""
    images = doc.get("Images") or []
    layers = _num(doc.get("LayersSize"))
    used = sum(_num(i.get("Size")) - _num(i.get("SharedSize")) for i in images
               if _num(i.get("Containers")) > 0 and _num(i.get("Size")) != -1 and _num(i.get("SharedSize")) != -1)
    containers = doc.get("Containers") or []

    def active(c: Mapping[str, Any]) -> bool:
        state = str(c.get("State", ""))
        return any(s in state for s in ("running", "paused", "restarting"))
    c_size = sum(_num(c.get("SizeRw")) for c in containers)
    c_free = sum(_num(c.get("SizeRw")) for c in containers if not active(c))
    volumes = doc.get("Volumes") or []
    usage = [v.get("UsageData") or {} for v in volumes]
    v_size = sum(_num(u.get("Size")) for u in usage if _num(u.get("Size")) != -1)
    v_free = sum(_num(u.get("Size")) for u in usage if _num(u.get("Size")) != -1 and _num(u.get("RefCount")) == 0)
    cache = doc.get("BuildCache") or []
    b_size = sum(_num(b.get("Size")) for b in cache if not b.get("Shared"))
    b_free = sum(_num(b.get("Size")) for b in cache if not b.get("Shared") and not b.get("InUse"))
    return [
        {"Type": "Images", "TotalCount": str(len(images)),
         "Active": str(sum(1 for i in images if _num(i.get("Containers")) > 0)),
         "Size": human_size4(layers), "Reclaimable": _reclaim(layers - used, layers)},
        {"Type": "Containers", "TotalCount": str(len(containers)),
         "Active": str(sum(1 for c in containers if active(c))),
         "Size": human_size4(c_size), "Reclaimable": _reclaim(c_free, c_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(volumes)),
         "Active": str(sum(1 for u in usage if _num(u.get("RefCount")) > 0)),
         "Size": human_size4(v_size), "Reclaimable": _reclaim(v_free, v_size)},
        {"Type": "Build Cache", "TotalCount": str(len(cache)),
         "Active": str(sum(1 for b in cache if b.get("InUse"))),
         "Size": human_size4(b_size), "Reclaimable": _reclaim(b_free, b_size, percent=False)},
    ]


def cmd_system_df(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("system df", "[OPTIONS]", "Show berth disk usage", max_args=0)
    p.add_argument("--format", default=None)
    p.add_argument("-v", "--verbose", action="store_true")
    ns = p.parse(argv)
    if ns.verbose:
        from berth.cli.diskusage import verbose

        ctx.out.write(verbose(ctx.client.get("/system/df") or {}, ns.format or "", time.time()))
        return 0
    fmt = ns.format or DF_DEFAULT
    if fmt == "table":
        fmt = DF_DEFAULT
    rows = df_rows(ctx.client.get("/system/df") or {})
    ctx.out.write(json_rows(rows) if fmt == "json" else render_rows(fmt, rows, DF_HEADERS))
    return 0


COMMANDS = {"stats": cmd_stats}
