#!/usr/bin/env python3
"""The density benchmark: many idle VM-isolated containers on one berthd.

    .venv/bin/python bench/density.py [--count 300] [--settle 90] [--window 60] [--out BENCHMARKS.md]

Strategy: reuse bench/run.py's machinery (Engine, the busybox tarball, timed CLI
runs, summaries, cleanup) and measure what a crowd of idle utility VMs costs the
host, and what it does to the latency of the next start and of an exec. Only
berth is measured: Docker has no VM isolation to compare with. In order:

1. Baseline on an idle host (berthd up, no container): the wall clock of
   `docker run -d --isolation vm --network none busybox sleep 100000` and of
   its `docker rm -f`, a few times, after one untimed run that readies the
   guest kernel; then `docker exec C true` into one such container, ~10 times.
   berthd keeps a pool of restored VMs (`--vm-pool`, refilled at idle
   priority a moment after each start), so a start takes about a quarter of
   the time when the pool has a VM ready: each timed start comes after --gap
   seconds of quiet, and berthd's log tells which starts were served by the
   pool. The crowd's back-to-back starts mix both kinds.
2. The crowd: COUNT `docker run -d --isolation vm --network none busybox sleep
   1000000`, one after another, each timed. MemAvailable is read before each
   start: under the floor (--min-available-mib) the script stops starting and
   measures the crowd it has. A start that fails ends the run (no figure under
   load is taken), after which everything is removed as usual.
3. Once all are running (`docker inspect`: State.Running, and State.Pid, which
   is the container's QEMU; its parent is the container's berth-vm-monitor)
   and a settle period has passed: host memory used (MemTotal - MemAvailable)
   against the figure taken just before the crowd, the PSS (smaps_rollup) of
   each container's QEMU, monitor and anything below the monitor, then over a
   window the 1-minute load average every 5 s and the CPU time (utime + stime)
   the QEMUs, the monitors and berthd used.
4. Under that load: `docker exec C true` into one of them and one more
   start + `docker rm -f`, timed as in 1.
5. Removal: `docker rm -f` in batches of 10 ids on a small thread pool
   (timed), then run.py's cleanup stops berthd and removes its state.

The machine is shared and TCG VMs are CPU-bound: run it under the end-to-end
tests' lock (`flock /tmp/berth-e2e.lock ...`). The results go between the
density markers of BENCHMARKS.md and, raw, to bench/results/density-<stamp>.json;
the figures are also printed to stdout as JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import importlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
# bench/run.py and bench/net.py are scripts, not typed packages: load them dynamically
# so their typing stays their business (mypy does not follow these imports).
base: Any = importlib.import_module("run")
net: Any = importlib.import_module("net")

REPO: Path = base.REPO
RESULTS: Path = base.RESULTS
BenchError: type[Exception] = base.BenchError
log: Callable[[str], None] = base.log
Engine = Any  # bench/run.py's Engine dataclass

BEGIN = "<!-- density benchmark: begin -->"
END = "<!-- density benchmark: end -->"

VM = ["--isolation", "vm", "--network", "none"]
PROBE_RUN = ["run", "-d", *VM, "busybox", "sleep", "100000"]    # the start that is timed, then removed
IDLE_RUN = ["run", "-d", *VM, "busybox", "sleep", "1000000"]    # the crowd
EXEC = ["true"]
RUN_TIMEOUT = 180   # seconds for one `docker run -d` or `docker rm -f` (TCG under load)
SAMPLE_EVERY = 5.0  # seconds between load average samples
EDGE = 50           # the first and last EDGE starts are summarized apart
RM_BATCH = 10       # ids per `docker rm -f` at the end
RM_WORKERS = 4      # `docker rm -f` processes at once
MONITOR = "berth-vm-monitor"


# --------------------------------------------------------------------------- /proc


def meminfo() -> dict[str, int]:
    """/proc/meminfo in kB, by field name."""
    out = {}
    for line in base.read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            out[key] = int(rest.split()[0])
    return out


def used_kb() -> int:
    """Host memory in use: MemTotal - MemAvailable, in kB."""
    m = meminfo()
    return m["MemTotal"] - m["MemAvailable"]


def available_mib() -> float:
    return meminfo()["MemAvailable"] / 1024


def load1() -> float:
    """The 1-minute load average."""
    return float(base.read("/proc/loadavg").split()[0])


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of *pid* (all its threads) in clock ticks, or None if it is gone."""
    stat = base.read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


# --------------------------------------------------------------------------- pure parts


@dataclass
class Member:
    """One container of the crowd."""

    cid: str
    start_s: float     # wall clock of its `docker run -d`
    qemu: int = 0      # State.Pid
    monitor: int = 0   # QEMU's parent, the container's berth-vm-monitor


def median_ms(samples: Sequence[float]) -> float | None:
    return statistics.median(samples) * 1000 if samples else None


def edges(samples: Sequence[float], n: int = EDGE) -> dict[str, Any]:
    """Median (ms) of the first and of the last *n* samples (fewer if there are fewer), and the total (s)."""
    whole = base.summarize(samples) if samples else {}
    return {"p10_ms": whole.get("p10_ms"), "median_ms": whole.get("median_ms"), "p90_ms": whole.get("p90_ms"),
            "first_n": min(n, len(samples)), "first_median_ms": median_ms(samples[:n]),
            "last_n": min(n, len(samples)), "last_median_ms": median_ms(samples[-n:]),
            "max_ms": max(samples) * 1000 if samples else None, "total_s": sum(samples)}


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def cpu_percent(ticks: int, seconds: float) -> float:
    """CPU ticks over *seconds* as % of one core."""
    return ticks / os.sysconf("SC_CLK_TCK") / seconds * 100 if seconds > 0 else 0.0


def replace_section(text: str, section: str) -> str:
    """*text* with this benchmark's marked section replaced by (or, without one, appended as) *section*."""
    replaced: str = net.replace_section(text, section, BEGIN, END)
    return replaced


# --------------------------------------------------------------------------- steps


def start(eng: Engine, args: list[str]) -> tuple[str, float]:
    """Run one `docker run -d`: the container id and the CLI's wall clock."""
    t0 = time.perf_counter()
    cp = eng.docker(args, timeout=RUN_TIMEOUT, check=False)
    took = time.perf_counter() - t0
    lines = cp.stdout.strip().splitlines()
    if cp.returncode != 0 or not lines:
        raise BenchError(eng.failure(args, cp))
    return lines[-1], took


def remove(eng: Engine, ids: Sequence[str]) -> float:
    args = ["rm", "-f", *ids]
    t0 = time.perf_counter()
    cp = eng.docker(args, timeout=RUN_TIMEOUT + 10 * len(ids), check=False)
    took = time.perf_counter() - t0
    if cp.returncode != 0:
        raise BenchError(eng.failure(["rm", "-f", f"<{len(ids)} ids>"], cp))
    return took


def pool_hits(eng: Engine, ids: Sequence[str]) -> int:
    """How many of these containers got a VM from berthd's pool, by its log ("its VM came from the pool")."""
    text = base.read(str(eng.logfile))
    return sum(1 for cid in ids if f"container {cid[:12]}: its VM came from the pool" in text)


def start_stop(eng: Engine, runs: int, gap: float) -> dict[str, Any]:
    """*runs* times: wait *gap* seconds, a timed start of a VM container, then its timed removal."""
    run_s, rm_s, ids = [], [], []
    for _ in range(runs):
        time.sleep(gap)
        cid, took = start(eng, PROBE_RUN)
        ids.append(cid)
        run_s.append(took)
        rm_s.append(remove(eng, [cid]))
    out = {"run": base.summarize(run_s), "rm": base.summarize(rm_s), "pool_hits": pool_hits(eng, ids)}
    log(f"start: median {out['run']['median_ms']:.0f} ms ({out['pool_hits']} of {runs} from the VM pool), "
        f"rm -f: median {out['rm']['median_ms']:.0f} ms (n={runs})")
    return out


def exec_latency(eng: Engine, cid: str, runs: int) -> dict[str, Any]:
    """One untimed `docker exec CID true`, then *runs* timed ones."""
    args = ["exec", cid, *EXEC]
    base.timed(eng, args, None)
    out: dict[str, Any] = base.summarize([base.timed(eng, args, None) for _ in range(runs)])
    log(f"exec into {cid[:12]}: median {out['median_ms']:.0f} ms (n={runs})")
    return out


def idle_exec(eng: Engine, runs: int) -> dict[str, Any]:
    """Exec latency into a VM container of its own, on an otherwise empty engine; removed after."""
    cid, _ = start(eng, PROBE_RUN)
    try:
        return exec_latency(eng, cid, runs)
    finally:
        remove(eng, [cid])


def start_crowd(eng: Engine, count: int, floor_mib: float, crowd: list[Member], res: dict[str, Any]) -> None:
    """Start up to *count* idle VM containers one after another, appending each to *crowd*.

    Stops early, with the reason in res["stopped_early"], when MemAvailable falls under
    *floor_mib*. A failed start raises BenchError (the containers started so far stay in *crowd*).
    """
    t0 = time.monotonic()
    for i in range(count):
        avail = available_mib()
        if avail < floor_mib:
            res["stopped_early"] = (f"MemAvailable {avail:.0f} MiB under the floor of {floor_mib:.0f} MiB "
                                    f"before start {i + 1}")
            log(f"stopping at {i} containers: {res['stopped_early']}")
            return
        try:
            cid, took = start(eng, IDLE_RUN)
        except BenchError as e:
            raise BenchError(f"start {i + 1} of {count} failed: {e}") from None
        crowd.append(Member(cid, took))
        if (i + 1) % 10 == 0 or i + 1 == count:
            log(f"{i + 1}/{count} started in {time.monotonic() - t0:.0f} s; last {took * 1000:.0f} ms, "
                f"MemAvailable {available_mib():.0f} MiB, load {load1():.2f}")


def locate(eng: Engine, crowd: list[Member]) -> None:
    """Check every container runs and note its QEMU (State.Pid) and monitor (QEMU's parent)."""
    procs = base.snapshot()
    for group in batches([m.cid for m in crowd], 50):
        cp = eng.docker(["inspect", "-f", "{{.Id}} {{.State.Running}} {{.State.Pid}}", *group], timeout=120)
        for line in cp.stdout.splitlines():
            cid, running, pid = line.split()
            m = next(x for x in crowd if x.cid == cid or cid.startswith(x.cid))
            if running != "true" or not pid.isdigit() or int(pid) <= 0:
                raise BenchError(f"container {cid[:12]} is not running (State.Running={running}, State.Pid={pid})")
            m.qemu = int(pid)
            parent = procs[m.qemu].ppid if m.qemu in procs else 0
            if parent in procs and (MONITOR in procs[parent].cmdline or m.cid in procs[parent].cmdline):
                m.monitor = parent
            else:
                log(f"WARNING: {cid[:12]}: QEMU {m.qemu}'s parent {parent} is no {MONITOR}; counting QEMU alone")


def engine_others(eng: Engine, procs: dict[int, Any], counted: set[int]) -> list[dict[str, Any]]:
    """berth's processes that belong to no container of the crowd (e.g. a pooled VM waiting to be
    claimed): below berthd or naming its state directory, minus the daemon and *counted*."""
    below = base.descendants(procs, eng.daemon_pids)
    out = []
    for p in procs.values():
        if p.pid in counted or p.pid in eng.daemon_pids or not p.cmdline:
            continue
        if p.pid in below or str(eng.workdir) in p.cmdline:
            kb = base.mem_kb(p.pid) or {"rss": 0, "pss": 0}
            out.append({"pid": p.pid, "ppid": p.ppid, "comm": p.comm, "cmdline": p.cmdline[:200], **kb})
    return out


def memory(eng: Engine, crowd: list[Member], used_before_kb: int) -> dict[str, Any]:
    """Host memory growth and each container's PSS (its QEMU, its monitor and anything below the monitor)."""
    procs = base.snapshot()
    per_qemu, per_monitor, per_container = [], [], []
    kinds: dict[str, int] = {}
    missing = 0
    counted: set[int] = set()
    for m in crowd:
        pids = base.descendants(procs, {m.monitor} if m.monitor else {m.qemu}) | {m.qemu}
        counted |= pids
        total = 0
        for pid in pids:
            kb = base.mem_kb(pid)
            if kb is None:
                missing += 1
                continue
            total += kb["pss"]
            if pid == m.qemu:
                per_qemu.append(kb["pss"])
            elif pid == m.monitor:
                per_monitor.append(kb["pss"])
            exe = os.path.basename(procs[pid].cmdline.split(" ", 1)[0]) if pid in procs else "?"
            kinds[exe or procs[pid].comm] = kinds.get(exe or procs[pid].comm, 0) + 1
        per_container.append(total)
    used = used_kb()
    others = engine_others(eng, procs, counted)
    out: dict[str, Any] = {
        "host_used_kb_before": used_before_kb, "host_used_kb": used,
        "host_used_growth_kb": used - used_before_kb,
        "host_used_growth_kb_per_container": (used - used_before_kb) / len(crowd),
        "mem_available_kb": meminfo()["MemAvailable"],
        "pss_kb_total": sum(per_container),
        "pss_kb_median_per_container": statistics.median(per_container),
        "pss_kb_max_per_container": max(per_container),
        "pss_kb_median_qemu": statistics.median(per_qemu) if per_qemu else None,
        "pss_kb_median_monitor": statistics.median(per_monitor) if per_monitor else None,
        "processes": kinds, "processes_gone": missing,
        "other_engine_processes": others, "other_engine_pss_kb": sum(o["pss"] for o in others),
        "pss_kb_per_container": per_container,
    }
    log(f"memory: host used +{out['host_used_growth_kb'] / 1024:.0f} MiB "
        f"({out['host_used_growth_kb_per_container'] / 1024:.1f} MiB / container); PSS total "
        f"{out['pss_kb_total'] / 1024:.0f} MiB, median {out['pss_kb_median_per_container'] / 1024:.1f} MiB "
        f"per container; processes {kinds}")
    return out


def watch(eng: Engine, crowd: list[Member], window: float) -> dict[str, Any]:
    """Over *window* seconds: the 1-minute load average every SAMPLE_EVERY s, and the CPU time
    the QEMUs, the monitors and berthd used (as % of one core)."""
    groups = {"qemu": [m.qemu for m in crowd], "monitor": [m.monitor for m in crowd if m.monitor],
              "berthd": sorted(eng.daemon_pids)}

    def ticks() -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        for name, pids in groups.items():
            out[name] = {p: t for p in pids if (t := cpu_ticks(p)) is not None}
        return out

    t0, first = time.monotonic(), ticks()
    loads = [load1()]
    while time.monotonic() - t0 < window:
        time.sleep(min(SAMPLE_EVERY, max(0.0, window - (time.monotonic() - t0))))
        loads.append(load1())
    last, seconds = ticks(), time.monotonic() - t0
    out: dict[str, Any] = {"seconds": round(seconds, 1), "load1_samples": loads,
                           "load1_median": statistics.median(loads), "load1_max": max(loads), "cpu": {}}
    for name in groups:
        both = first[name].keys() & last[name].keys()
        used = sum(last[name][p] - first[name][p] for p in both)
        out["cpu"][name] = {"processes": len(both), "percent_of_one_core": cpu_percent(used, seconds),
                            "percent_per_container": cpu_percent(used, seconds) / len(crowd)}
    q = out["cpu"]["qemu"]
    log(f"window {seconds:.0f} s: load1 median {out['load1_median']:.2f}, max {out['load1_max']:.2f}; QEMU CPU "
        f"{q['percent_of_one_core']:.1f} % of a core ({q['percent_per_container']:.2f} % / container)")
    return out


def remove_crowd(eng: Engine, crowd: list[Member]) -> tuple[float, list[str]]:
    """`docker rm -f` the crowd in batches on a small pool: the wall clock and the failures."""
    if not crowd:
        return 0.0, []
    failures: list[str] = []
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(RM_WORKERS) as pool:
        for fut in [pool.submit(remove, eng, group) for group in batches([m.cid for m in crowd], RM_BATCH)]:
            try:
                fut.result()
            except BenchError as e:
                failures.append(str(e))
    took = time.perf_counter() - t0
    log(f"removed {len(crowd)} containers in {took:.1f} s" + (f"; {len(failures)} batches failed" if failures else ""))
    crowd.clear()
    return took, failures


# --------------------------------------------------------------------------- report


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.0f} ms"


def _mib(kb: float | None) -> str:
    return "—" if kb is None else f"{kb / 1024:.1f} MiB"


def render(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md section, markers included."""
    m, cfg = res["machine"], res["config"]
    base_, load = res.get("idle_host", {}), res.get("under_load", {})
    crowd, mem, w = res.get("crowd", {}), res.get("memory"), res.get("window")
    n = crowd.get("started", 0)
    L = [BEGIN, "## Density: idle VM-isolated containers\n",
         ("Generated by `bench/density.py` (bench/run.py keeps this section when it rewrites the file); "
          "do not edit by hand. Rerun to refresh.\n")]
    L.append(f"- Date: {res['date']}; CPU: {m['nproc']} × {m['cpu']}; memory {m['mem_total_mib']} MiB; "
             f"kernel {m['kernel']}; client: {m['docker_cli']}")
    L.append(f"- berth: {res['versions'].get('berth', 'not started')}; VMs under TCG, cloned from the saved "
             "template" + (f"; berthd started with `{' '.join(cfg['berthd_args'])}`" if cfg.get("berthd_args") else ""))
    L.append(f"- Asked for {cfg['count']} containers, {n} started"
             + (f" (stopped early: {res['stopped_early']})" if res.get("stopped_early") else "")
             + f"; settle {cfg['settle']:.0f} s, window {cfg['window']:.0f} s; load average at start / end: "
             f"{m['loadavg_start']} / {res.get('loadavg_end', '?')}\n")

    L.append("### Latency: idle host and with the crowd running\n")
    L.append("Wall clock of the docker CLI process; `C` is a running VM container (its own on the idle host, "
             "one of the crowd under load). Each start is followed by its `docker rm -f`, timed apart, and preceded "
             f"by {cfg.get('gap', 0):.0f} s of quiet in which berthd's VM pool (if on) can get a VM ready; how many "
             "starts got their VM from the pool is read from berthd's log.\n")
    L.append(f"| command | idle host | with {n} idle VM containers | ratio |")
    L.append("| --- | ---: | ---: | ---: |")
    rows = (("start", "run", f"`docker {' '.join(PROBE_RUN)}`"), ("start", "rm", "`docker rm -f C`"),
            ("exec", None, f"`docker exec C {' '.join(EXEC)}`"))
    for key, sub, label in rows:
        a, b = base_.get(key), load.get(key)
        if sub:
            a, b = a and a.get(sub), b and b.get(sub)
        am, bm = a and a["median_ms"], b and b["median_ms"]
        ratio = f"{bm / am:.2f}" if am and bm else ""
        cells = [_ms(am), _ms(bm)]
        if sub == "run":
            for i, phase in enumerate((base_.get(key), load.get(key))):
                if phase and phase.get("pool_hits") is not None:
                    cells[i] += f" ({phase['pool_hits']}/{phase['run']['n']} pooled)"
        L.append(f"| {label} (median of {a['n'] if a else '—'} / {b['n'] if b else '—'}) | {cells[0]} | {cells[1]} "
                 f"| {ratio} |")
    L.append("")

    L.append("### The crowd\n")
    L.append(f"`docker {' '.join(IDLE_RUN)}`, {cfg['count']} times one after another"
             f" (no more once MemAvailable is under {cfg['min_available_mib']:.0f} MiB). Memory after the settle "
             "period; load and CPU over the window after it. PSS from `/proc/PID/smaps_rollup` of each container's "
             "QEMU (its `State.Pid`), its parent berth-vm-monitor and anything below the monitor. Host memory used "
             "is MemTotal − MemAvailable, against the figure just before the first start. The two differ: a clone "
             "maps the template's RAM file privately (copy on write), so the pages it only reads are page cache "
             "shared by every clone, split among them in PSS but counted by MemAvailable as available; the host's "
             "growth is closer to what the crowd adds, PSS is the share each container is charged.\n")
    L.append("| figure | value |")
    L.append("| --- | ---: |")
    if crowd:
        L.append(f"| containers started{' (all running after the settle)' if mem else ''} | {n} |")
        L.append(f"| start, median of the first {crowd['first_n']} | {_ms(crowd['first_median_ms'])} |")
        L.append(f"| start, median of the last {crowd['last_n']} | {_ms(crowd['last_median_ms'])} |")
        L.append(f"| start, p10 / median / p90 of all {n} | {_ms(crowd.get('p10_ms'))} / "
                 f"{_ms(crowd.get('median_ms'))} / {_ms(crowd.get('p90_ms'))} |")
        L.append(f"| start, slowest | {_ms(crowd['max_ms'])} |")
        if crowd.get("pool_hits") is not None:
            L.append(f"| starts whose VM came from berthd's pool | {crowd['pool_hits']} of {n} |")
        L.append(f"| time to start all {n} (sum of the starts) | {crowd['total_s']:.1f} s |")
    if mem:
        L.append(f"| host memory used, growth | {_mib(mem['host_used_growth_kb'])} "
                 f"({_mib(mem['host_used_growth_kb_per_container'])} / container) |")
        L.append(f"| PSS, all containers | {_mib(mem['pss_kb_total'])} |")
        L.append(f"| PSS per container, median (max) | {_mib(mem['pss_kb_median_per_container'])} "
                 f"({_mib(mem['pss_kb_max_per_container'])}) |")
        L.append(f"| of which QEMU / monitor, medians | {_mib(mem['pss_kb_median_qemu'])} / "
                 f"{_mib(mem['pss_kb_median_monitor'])} |")
        L.append(f"| berth's processes outside the crowd (e.g. a pooled VM waiting), PSS | "
                 f"{len(mem.get('other_engine_processes', []))} processes, {_mib(mem.get('other_engine_pss_kb'))} |")
        L.append(f"| MemAvailable left | {_mib(mem['mem_available_kb'])} |")
    if w:
        L.append(f"| 1-min load average over the window, median (max) of {len(w['load1_samples'])} samples | "
                 f"{w['load1_median']:.2f} ({w['load1_max']:.2f}) |")
        for name, label in (("qemu", "QEMU"), ("monitor", "monitors"), ("berthd", "berthd")):
            c = w["cpu"][name]
            per = f" ({c['percent_per_container']:.3f} % / container)" if name != "berthd" else ""
            L.append(f"| CPU of {label}, % of one core | {c['percent_of_one_core']:.2f} %{per} |")
    if res.get("removal_s") is not None:
        L.append(f"| removal of all (`docker rm -f`, {RM_BATCH} ids a call, {RM_WORKERS} at once) | "
                 f"{res['removal_s']:.1f} s |")
    L.append("")
    if res["errors"]:
        L.append("### Failures in this run\n")
        for what, msg in res["errors"].items():
            L.append(f"- **{what}**:\n\n  ```\n  " + msg.replace("\n", "\n  ") + "\n  ```")
        L.append("")
    L.append("### How to reproduce\n")
    L.append("As root, with berth installed in `.venv`, the docker CLI and QEMU, the guest kernel and template in "
             "`$BERTH_VM_DIR` (default `/var/cache/berth-test-vm`), from the repository root:\n")
    L.append(f"```\nflock /tmp/berth-e2e.lock .venv/bin/python bench/density.py --count {cfg['count']} "
             f"--settle {cfg['settle']:.0f} --window {cfg['window']:.0f}"
             + "".join(f" --berthd-arg={a}" for a in cfg.get("berthd_args", [])) + "\n```\n")
    raw = res.get("raw")
    L.append("Per-container PSS and every latency sample are kept in `bench/results/` (git-ignored)"
             + (f"; this section was written from `{raw}`." if raw else "."))
    L.append(END)
    return "\n".join(L)


def write_section(out: Path, section: str) -> None:
    text = out.read_text() if out.exists() else ""
    out.write_text(replace_section(text, section))


def figures(res: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, without the per-sample lists: what goes to stdout."""
    def brief(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: brief(v) for k, v in x.items() if k not in ("samples_ms", "pss_kb_per_container", "other_engine_processes")}
        return x
    keys = ("date", "config", "idle_host", "crowd", "memory", "window", "under_load", "removal_s",
            "stopped_early", "errors", "raw")
    return {k: brief(res[k]) for k in keys if k in res}


# --------------------------------------------------------------------------- main


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def measure(args: argparse.Namespace, res: dict[str, Any], launched: list[Engine], dirs: list[Path],
            crowd: list[Member], scratch: Path, logdir: Path, env: dict[str, str]) -> None:
    from berth.testing.rootfs import write_rootfs_tar  # the venv's berth

    tarball = write_rootfs_tar(scratch / "busybox.tar")
    d = Path(tempfile.mkdtemp(prefix="bd-density-", dir="/tmp"))
    dirs.append(d)
    eng = base.start_berth(d, logdir, env, launched, "berth", tuple(args.berthd_arg))
    res["versions"]["berth"] = base.engine_version(eng) + base.source_state()
    base.import_image(eng, tarball)
    cid, took = start(eng, PROBE_RUN)  # the first VM container readies the guest kernel: not counted
    remove(eng, [cid])
    log(f"warm-up start {took * 1000:.0f} ms")

    time.sleep(2.0)
    res["idle_host"] = {"start": start_stop(eng, args.start_runs, args.gap), "exec": idle_exec(eng, args.exec_runs),
                        "load1": load1()}
    time.sleep(2.0)
    used_before = used_kb()
    try:
        start_crowd(eng, args.count, args.min_available_mib, crowd, res)
    finally:  # the starts so far, also when one failed
        res["crowd"] = {"started": len(crowd), **edges([m.start_s for m in crowd]),
                        "pool_hits": pool_hits(eng, [m.cid for m in crowd]),
                        "samples_ms": [round(m.start_s * 1000, 1) for m in crowd]}
    if not crowd:
        raise BenchError("no container of the crowd started")
    locate(eng, crowd)
    log(f"all {len(crowd)} running; settling for {args.settle:.0f} s")
    time.sleep(args.settle)
    locate(eng, crowd)  # still running after the settle
    res["memory"] = memory(eng, crowd, used_before)
    res["window"] = watch(eng, crowd, args.window)
    res["under_load"] = {"exec": exec_latency(eng, crowd[len(crowd) // 2].cid, args.exec_runs),
                         "start": start_stop(eng, args.start_runs, args.gap), "load1": load1()}


def main() -> int:
    ap = argparse.ArgumentParser(description="berthd: many idle VM-isolated containers")
    ap.add_argument("--count", type=int, default=300, help="idle VM containers to start (default 300)")
    ap.add_argument("--settle", type=float, default=90, help="seconds to wait once all run (default 90)")
    ap.add_argument("--window", type=float, default=60,
                    help="seconds over which load and CPU are sampled (default 60)")
    ap.add_argument("--exec-runs", type=int, default=10, help="timed `docker exec` per phase (default 10)")
    ap.add_argument("--start-runs", type=int, default=5, help="timed start + rm -f per phase (default 5)")
    ap.add_argument("--gap", type=float, default=3,
                    help="seconds of quiet before each timed start + rm -f, so berthd's VM pool can refill (default 3)")
    ap.add_argument("--min-available-mib", type=float, default=1536,
                    help="stop starting when MemAvailable is under this (default 1536)")
    ap.add_argument("--berthd-arg", action="append", default=[], metavar="ARG",
                    help="an extra berthd argument, repeatable (e.g. --berthd-arg=--vm-pool=0)")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--from-json", type=Path, help="only rewrite the section of --out from an earlier run's JSON")
    args = ap.parse_args()
    if args.from_json:
        write_section(args.out, render(json.loads(args.from_json.read_text())))
        return 0
    if os.geteuid() != 0:
        print("run as root (berthd needs it)", file=sys.stderr)
        return 2
    if args.count < 1 or args.exec_runs < 1 or args.start_runs < 1 or min(args.settle, args.window, args.gap) < 0:
        print("--count, --exec-runs and --start-runs must be at least 1; --settle, --window and --gap not negative",
              file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background

    session = base.new_session("density", "bdx-")
    stamp, logdir, scratch, env = session.stamp, session.logdir, session.scratch, session.env
    dirs = [scratch]

    launched: list[Engine] = []
    crowd: list[Member] = []
    res: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": base.machine_info(),
        "config": {"count": args.count, "settle": args.settle, "window": args.window, "exec_runs": args.exec_runs,
                   "start_runs": args.start_runs, "gap": args.gap, "min_available_mib": args.min_available_mib,
                   "berthd_args": args.berthd_arg},
        "versions": {}, "errors": {}}
    interrupted = False
    try:
        measure(args, res, launched, dirs, crowd, scratch, logdir, env)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up")
    except BenchError as e:
        res["errors"]["run"] = str(e)
        log(f"FAILED: {e}")
    except Exception:  # keep cleanup and the record of what broke
        res["errors"]["bench"] = traceback.format_exc()
        log(res["errors"]["bench"])
    finally:
        res["loadavg_end"] = base.read("/proc/loadavg").strip()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
        try:
            if crowd and launched and base.ping(str(launched[0].sock)):
                res["members"] = [asdict(m) for m in crowd]
                res["removal_s"], failed = remove_crowd(launched[0], crowd)
                if failed:
                    res["errors"]["removal"] = "\n".join(failed)
            base.cleanup(launched, dirs)
        finally:
            signal.signal(signal.SIGINT, old)
    if interrupted:
        return 130
    res["logs"] = str(logdir.relative_to(REPO))
    raw = RESULTS / f"density-{stamp}.json"
    res["raw"] = str(raw.relative_to(REPO))
    raw.write_text(json.dumps(res, indent=2) + "\n")
    write_section(args.out, render(res))
    print(json.dumps(figures(res), indent=2))
    log(f"wrote {args.out} and {raw}")
    if res["errors"]:
        log("errors:\n" + "\n".join(f"  {k}: {v.splitlines()[0] if v else ''}" for k, v in res["errors"].items()))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
