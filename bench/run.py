#!/usr/bin/env python3
"""Side-by-side benchmark: Debian's dockerd vs berthd, both driven by the real docker CLI.

    .venv/bin/python bench/run.py [--runs 20] [--idle 10] [--out BENCHMARKS.md]

One run starts both daemons on private state under /tmp, imports the same busybox
tarball into each, measures `docker run` latency (interleaved) and the memory each
engine adds per idle running container, writes BENCHMARKS.md and keeps the raw numbers
as JSON in bench/results/. Everything it started is stopped and removed at the end,
also on Ctrl-C or SIGTERM. Needs root.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
VENV_PY = REPO / ".venv" / "bin" / "python"
BERTHD = REPO / ".venv" / "bin" / "berthd"
DOCKER_CLI = shutil.which("docker") or "/usr/local/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
IMAGE = "busybox:latest"

LAT_TRUE = ["run", "--rm", "--network", "none", "busybox", "true"]
LAT_ECHO = ["run", "--rm", "--network", "none", "busybox", "echo", "hi"]
LAT_FLOOR = ["version"]  # one client start and one server round trip: the CLI's own share
IDLE_RUN = ["run", "-d", "--network", "none", "busybox", "sleep", "3600"]
POOL_MEMBER = "berth.vm.poolmember"  # a VM waiting in berth's pool (berth.vm.poolmember)


class BenchError(Exception):
    """A step failed; the message says which command and how."""


@dataclass(frozen=True)
class Session:
    """One benchmark run's places: its time stamp, its log directory under bench/results, a scratch
    directory in /tmp (first in the list of directories cleaned up) and the docker CLI's environment."""

    stamp: str
    logdir: Path
    scratch: Path
    env: dict[str, str]


def new_session(kind: str, prefix: str, **env: str) -> Session:
    """Make the places of a run of bench/<kind>.py ("" for run.py): bench/results/logs[-kind]-<stamp>/,
    a scratch directory /tmp/<prefix>*, the CLI's config in it; the environment drops DOCKER_HOST and
    friends (each call names its engine) and adds *env*."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logdir = RESULTS / (f"logs-{kind}-{stamp}" if kind else f"logs-{stamp}")
    logdir.mkdir()
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    cfg = scratch / "cli"
    cfg.mkdir()
    cli_env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY")}
    cli_env.update(DOCKER_CONFIG=str(cfg), DOCKER_CLI_HINTS="false", **env)
    return Session(stamp, logdir, scratch, cli_env)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # start time in clock ticks: (pid, start) names a process uniquely
    comm: str
    cmdline: str
    pidns: str


def snapshot() -> dict[int, Proc]:
    """Every process now visible in /proc."""
    procs: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        stat = read(f"/proc/{pid}/stat")
        if not stat:
            continue
        # comm may hold spaces and parens: split on the last ')'
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        comm = head.partition("(")[2]
        cmdline = read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
        try:
            pidns = os.readlink(f"/proc/{pid}/ns/pid")
        except OSError:
            pidns = ""
        procs[pid] = Proc(pid, int(fields[1]), int(fields[19]), comm, cmdline, pidns)
    return procs


def descendants(procs: dict[int, Proc], roots: set[int]) -> set[int]:
    """roots and every process below them."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, todo = set(), [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def mem_kb(pid: int) -> dict[str, int] | None:
    """Rss and Pss (kB) from /proc/PID/smaps_rollup, or None if the process is gone."""
    text = read(f"/proc/{pid}/smaps_rollup")
    vals = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            vals[key.lower()] = int(rest.split()[0])
    return vals if len(vals) == 2 else None


# --------------------------------------------------------------------------- http over unix


def ping(sock_path: str, timeout: float = 1.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n" not in data:  # the status line is all we judge by
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        status = data.split(b"\r\n", 1)[0].split()
        return len(status) >= 2 and status[0].startswith(b"HTTP/1.") and status[1] == b"200"
    except OSError:
        return False


# --------------------------------------------------------------------------- engines


@dataclass
class Engine:
    name: str
    workdir: Path  # everything of this engine lives below it
    sock: Path
    logfile: Path
    env: dict[str, str]
    log_on_error: bool = False  # append the daemon log's tail to failures (berthd)
    launcher: subprocess.Popen | None = None
    daemon_pids: set[int] = field(default_factory=set)
    started: bool = False
    mode_args: tuple[str, ...] = ()   # berth's isolation modes: extra `docker run` flags
    vm: bool = False                  # count the container's init (a sandbox, a VM): it is the isolation's cost

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def docker(self, args: list[str], timeout: float = 60, check: bool = True,
               input_file: Path | None = None) -> subprocess.CompletedProcess:
        if args and args[0] == "run" and self.mode_args:
            args = ["run", *self.mode_args, *args[1:]]
        cmd = [DOCKER_CLI, "-H", self.host, *args]
        stdin = open(input_file, "rb") if input_file else subprocess.DEVNULL
        try:
            cp = subprocess.run(cmd, stdin=stdin, capture_output=True, text=True,
                                timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired as e:
            msg = f"{self.name}: `docker {' '.join(args)}` timed out after {timeout}s"
            if self.log_on_error:
                msg += f"\n--- daemon log tail ({self.logfile.name}):\n{tail(self.logfile, 15)}"
            raise BenchError(msg) from e
        finally:
            if input_file:
                stdin.close()
        if check and cp.returncode != 0:
            raise BenchError(self.failure(args, cp))
        return cp

    def failure(self, args: list[str], cp: subprocess.CompletedProcess, what: str = "") -> str:
        msg = (f"{self.name}: `docker {' '.join(args)}` exited {cp.returncode}{what}: "
               f"{(cp.stderr or cp.stdout).strip()[:2000]}")
        if self.log_on_error:
            msg += f"\n--- daemon log tail ({self.logfile.name}):\n{tail(self.logfile, 15)}"
        return msg

    def wait_ping(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ping(str(self.sock)):
                return
            if self.launcher and self.launcher.poll() is not None:
                raise BenchError(f"{self.name}: daemon exited with {self.launcher.returncode} "
                                 f"before answering _ping; log tail:\n{tail(self.logfile)}")
            time.sleep(0.05)
        raise BenchError(f"{self.name}: no _ping answer on {self.sock} within {timeout}s; "
                         f"log tail:\n{tail(self.logfile)}")

    def mentions_me(self, p: Proc, ids: list[str]) -> bool:
        return str(self.workdir) in p.cmdline or any(cid in p.cmdline for cid in ids)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_docker(workdir: Path, logdir: Path, env: dict[str, str], launched: list[Engine]) -> Engine:
    if not Path(DOCKERD).exists():
        log("dockerd missing: apt-get update && apt-get install -y docker.io")
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "docker.io"], check=True)
    d = workdir
    eng = Engine("docker", d, d / "docker.sock", logdir / "dockerd.log", env)
    launched.append(eng)  # cleaned up whatever happens next
    inner = (f"ip link set lo up; exec {DOCKERD} --bridge none --iptables=false "
             f"--data-root {d}/root --exec-root {d}/exec --pidfile {d}/pid -H unix://{d}/docker.sock")
    with open(eng.logfile, "wb") as lf:
        # own session: a Ctrl-C on the terminal reaches only this script, which then cleans up in order
        eng.launcher = subprocess.Popen(["unshare", "--net", "--fork", "sh", "-c", inner],
                                        stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
    eng.started = True
    eng.wait_ping(60)
    procs = snapshot()
    # dockerd is the child of unshare (sh exec'd it); containerd is dockerd's child
    eng.daemon_pids = descendants(procs, {eng.launcher.pid}) - {eng.launcher.pid}
    names = sorted(procs[p].comm for p in eng.daemon_pids)
    log(f"dockerd up: daemon processes {names}")
    return eng


def start_berth(workdir: Path, logdir: Path, env: dict[str, str], launched: list[Engine],
                name: str = "berth", extra: tuple[str, ...] = (), berthd: Path = BERTHD) -> Engine:
    b = workdir
    eng = Engine(name, b, b / "berth.sock", logdir / f"{name}d.log", env, log_on_error=True)
    launched.append(eng)
    if not berthd.exists():
        raise BenchError(f"berth: {berthd} does not exist (pip install -e . in the venv?)")
    with open(eng.logfile, "wb") as lf:
        eng.launcher = subprocess.Popen([str(berthd), "--root", f"{b}/root", "--host", f"unix://{b}/berth.sock",
                                         "--vm-dir", os.environ.get("BERTH_VM_DIR", "/var/cache/berth-test-vm"),
                                         *extra],
                                        stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
    eng.started = True
    eng.wait_ping(60)
    eng.daemon_pids = descendants(snapshot(), {eng.launcher.pid})
    log(f"berthd up: daemon processes {sorted(eng.daemon_pids)}")
    return eng


def source_state() -> str:
    """'; source c945879' or '; source c945879 + uncommitted changes' for the repo berth runs from."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode != 0:
        return ""
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True).stdout.strip()
    return f"; source {head.stdout.strip()}" + (" + uncommitted changes in src/" if dirty else "")


def import_image(eng: Engine, tarball: Path) -> None:
    t0 = time.perf_counter()
    eng.docker(["import", "-", IMAGE], timeout=120, input_file=tarball)
    log(f"{eng.name}: imported {IMAGE} in {time.perf_counter() - t0:.2f}s")


def engine_version(eng: Engine) -> str:
    cp = eng.docker(["version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"],
                    check=False, timeout=20)
    ver = cp.stdout.strip() if cp.returncode == 0 else f"unknown ({(cp.stderr or '').strip()[:200]})"
    cp = eng.docker(["info", "--format", "{{.CgroupDriver}} {{.CgroupVersion}} {{.Driver}}"],
                    check=False, timeout=20)
    if cp.returncode == 0 and cp.stdout.split():
        parts = cp.stdout.split() + ["?", "?"]
        ver += f"; cgroup driver {parts[0]}, cgroup v{parts[1]}, storage {parts[2]}"
    return ver


# --------------------------------------------------------------------------- latency


def timed(eng: Engine, args: list[str], expect: str | None) -> float:
    t0 = time.perf_counter()
    cp = eng.docker(args, timeout=60, check=False)
    elapsed = time.perf_counter() - t0
    if cp.returncode != 0:
        raise BenchError(eng.failure(args, cp))
    if expect is not None and cp.stdout.strip() != expect:
        raise BenchError(eng.failure(args, cp, f" but printed {cp.stdout!r}, expected {expect!r}"))
    return elapsed


def summarize(samples: list[float]) -> dict:
    s = sorted(samples)
    if len(s) >= 2:
        dec = statistics.quantiles(s, n=10, method="inclusive")
        p10, p90 = dec[0], dec[8]
    else:
        p10 = p90 = s[0]
    return {"n": len(s), "median_ms": statistics.median(s) * 1000, "p10_ms": p10 * 1000,
            "p90_ms": p90 * 1000, "min_ms": s[0] * 1000, "max_ms": s[-1] * 1000,
            "samples_ms": [round(x * 1000, 2) for x in samples]}


def latency(engines: list[Engine], args: list[str], expect: str | None, runs: int,
            errors: dict[str, str]) -> dict[str, dict]:
    """Warm up each engine twice, then alternate docker, berth, docker, ... runs times each."""
    label = "docker " + " ".join(args)
    live = []
    for eng in engines:
        try:
            for _ in range(2):
                timed(eng, args, expect)
            live.append(eng)
        except BenchError as e:
            errors[f"{eng.name}: {label}"] = str(e)
            log(f"FAILED warm-up: {e}")
    samples: dict[str, list[float]] = {e.name: [] for e in live}
    for _ in range(runs):
        for eng in list(live):
            try:
                samples[eng.name].append(timed(eng, args, expect))
            except BenchError as e:
                errors[f"{eng.name}: {label}"] = str(e)
                log(f"FAILED: {e}")
                live.remove(eng)
    out = {name: summarize(s) for name, s in samples.items() if s}
    for name, r in out.items():
        log(f"{label} [{name}]: median {r['median_ms']:.1f} ms, p10 {r['p10_ms']:.1f}, p90 {r['p90_ms']:.1f} (n={r['n']})")
    return out


# --------------------------------------------------------------------------- memory


def container_pids(eng: Engine, ids: list[str], procs: dict[int, Proc]) -> tuple[set[int], set[int]]:
    """The containers' own processes: each container's init (State.Pid) and everything
    below it, plus anything living in a pid namespace other than ours (container processes,
    e.g. from exec, that are not below init). Also returns the inits."""
    roots = set()
    for cid in ids:
        cp = eng.docker(["inspect", "-f", "{{.State.Pid}}", cid], check=False, timeout=20)
        if cp.returncode == 0 and cp.stdout.strip().isdigit() and int(cp.stdout.strip()) > 0:
            roots.add(int(cp.stdout.strip()))
        else:
            log(f"{eng.name}: no State.Pid for {cid[:12]} ({(cp.stderr or cp.stdout).strip()[:200]})")
    mine = os.readlink("/proc/self/ns/pid")
    other_ns = {p.pid for p in procs.values() if p.pidns and p.pidns != mine}
    return descendants(procs, roots) | other_ns, roots


def per_container_procs(eng: Engine, ids: list[str], before: dict[int, Proc],
                        procs: dict[int, Proc], in_container: set[int]) -> set[int]:
    """Processes the engine started for these containers: new since `before`, and either
    below the daemon or naming the engine's directory or a container id in their command
    line; minus the containers' own processes and the daemon processes."""
    below_daemon = descendants(procs, eng.daemon_pids)
    pooled = descendants(procs, {p.pid for p in procs.values() if POOL_MEMBER in p.cmdline})
    out = set()
    for p in procs.values():
        old = before.get(p.pid)
        if old is not None and old.start == p.start:
            continue  # existed before the containers
        if p.pid in in_container or p.pid in eng.daemon_pids or p.pid in pooled:
            continue  # (a VM waiting in the pool is no container's: pool_cost counts it)
        if p.pid in below_daemon or eng.mentions_me(p, ids):
            out.add(p.pid)
    return out


def pool_cost(eng: Engine) -> dict | None:
    """What one VM waiting in berth's pool costs (its QEMU, and its waiting process), averaged over
    the ones waiting now; None when none waits."""
    rows = []
    for ready in sorted(eng.workdir.glob("root/s/p-*/ready")):
        try:
            state = json.loads(ready.read_text())
        except (OSError, ValueError):
            continue
        qemu, member = mem_kb(int(state["qemu_pid"])), mem_kb(int(state["pid"]))
        if qemu and member:
            rows.append({"shape": state.get("shape"), "qemu": qemu, "member": member})
    if not rows:
        return None
    n = len(rows)
    return {"waiting": n, "rows": rows,
            "qemu_pss_kb": sum(r["qemu"]["pss"] for r in rows) / n,
            "member_pss_kb": sum(r["member"]["pss"] for r in rows) / n,
            "qemu_rss_kb": sum(r["qemu"]["rss"] for r in rows) / n,
            "member_rss_kb": sum(r["member"]["rss"] for r in rows) / n}


def daemon_rss(eng: Engine) -> int:
    total = 0
    for pid in eng.daemon_pids:
        m = mem_kb(pid)
        if m:
            total += m["rss"]
    return total


def memory(eng: Engine, k: int) -> dict:
    ids: list[str] = []
    time.sleep(1.0)
    before = snapshot()
    rss_before = daemon_rss(eng)
    try:
        for _ in range(k):
            cp = eng.docker(IDLE_RUN, timeout=60)
            ids.append(cp.stdout.strip().splitlines()[-1])
        time.sleep(3.0)  # let monitors and daemons settle
        for cid in ids:
            st = eng.docker(["inspect", "-f", "{{.State.Running}}", cid], timeout=20).stdout.strip()
            if st != "true":
                raise BenchError(f"{eng.name}: container {cid[:12]} not running (State.Running={st})")
        procs = snapshot()
        in_container, roots = container_pids(eng, ids, procs)
        monitors = per_container_procs(eng, ids, before, procs, in_container)
        if eng.vm:  # the sandbox or utility VM (State.Pid) is what this isolation adds per container
            monitors |= roots
            in_container -= roots
            # a VM handed out by berth's pool: its monitor is the pooled process, older than the container
            monitors |= {procs[r].ppid for r in roots
                         if r in procs and "berth-vm-monitor" in getattr(procs.get(procs[r].ppid), "cmdline", "")}
        rss_after = daemon_rss(eng)
        # new processes this count left out, for checking by eye (other users of the machine show up here too)
        unclassified = [{"pid": p.pid, "ppid": p.ppid, "comm": p.comm, "cmdline": p.cmdline[:200]}
                        for p in procs.values()
                        if p.pid not in monitors and p.pid not in in_container and p.pid not in eng.daemon_pids
                        and not (before.get(p.pid) and before[p.pid].start == p.start)
                        and p.pid != os.getpid() and p.cmdline]  # no cmdline: zombie or kernel thread
        rows = []
        rss = pss = 0
        for pid in sorted(monitors):
            m = mem_kb(pid)
            if not m:
                continue
            rss += m["rss"]
            pss += m["pss"]
            rows.append({"pid": pid, "ppid": procs[pid].ppid, "comm": procs[pid].comm,
                         "cmdline": procs[pid].cmdline[:300], **m})
        by_comm: dict[str, int] = {}
        for r in rows:
            exe = os.path.basename(r["cmdline"].split(" ", 1)[0]) or r["comm"]  # comm is cut at 15 chars
            by_comm[exe] = by_comm.get(exe, 0) + 1
        ctr_rows = [{"pid": pid, "comm": procs[pid].comm, **(mem_kb(pid) or {})}
                    for pid in sorted(in_container & descendants(procs, roots))]
        res = {
            "containers": k,
            "per_container_processes": by_comm,
            "rss_kb_per_container": rss / k,
            "pss_kb_per_container": pss / k,
            "daemon_rss_kb_before": rss_before,
            "daemon_rss_kb_after": rss_after,
            "daemon_rss_growth_kb_per_container": (rss_after - rss_before) / k,
            "processes": rows,
            "container_processes_excluded": ctr_rows,
            "other_new_processes": unclassified,
        }
        log(f"{eng.name}: {k} idle containers -> per-container processes {by_comm}, "
            f"RSS {rss / k / 1024:.2f} MiB, PSS {pss / k / 1024:.2f} MiB per container; "
            f"daemon RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB")
        if not rows:
            log(f"{eng.name}: WARNING found no per-container engine process")
        if unclassified:
            log(f"{eng.name}: {len(unclassified)} other new processes not counted (see JSON): "
                + ", ".join(sorted({u['comm'] for u in unclassified}))[:300])
        return res
    finally:
        if ids:
            try:
                cp = eng.docker(["rm", "-f", *ids], timeout=120, check=False)
                if cp.returncode != 0:
                    log(f"WARNING: {eng.failure(['rm', '-f', '...'], cp)}")
            except BenchError as e:
                log(f"WARNING: {e}")


# --------------------------------------------------------------------------- cleanup


def stop_pid(pid: int, grace: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or "zombie" in read(f"/proc/{pid}/status").lower():
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def cleanup(engines: list[Engine], dirs: list[Path]) -> None:
    # ignore further Ctrl-C while tearing down
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for eng in engines:
            if not eng.started:
                continue
            if eng.launcher and eng.launcher.poll() is None and ping(str(eng.sock)):
                try:
                    cp = eng.docker(["ps", "-aq"], check=False, timeout=30)
                    ids = cp.stdout.split() if cp.returncode == 0 else []
                    if ids:
                        log(f"{eng.name}: removing {len(ids)} leftover containers")
                        eng.docker(["rm", "-f", *ids], check=False, timeout=120)
                except BenchError as e:
                    log(f"cleanup: {e}")
            procs = snapshot()
            # the daemon proper (dockerd, which stops its containerd itself; berthd) and what it runs
            targets = set(eng.daemon_pids)
            if eng.launcher:
                targets |= descendants(procs, {eng.launcher.pid})
            for pid in sorted(targets):
                if pid in procs and procs[pid].comm not in ("containerd", "unshare"):
                    stop_pid(pid, 15)
            if eng.launcher:
                try:
                    eng.launcher.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    eng.launcher.kill()
                    eng.launcher.wait(timeout=5)
            # containerd (dockerd's), shims, monitors and container processes that outlived the daemon
            procs = snapshot()
            left = {p.pid for p in procs.values()
                    if str(eng.workdir) in p.cmdline or p.pid in eng.daemon_pids}
            left = descendants(procs, left)
            left.discard(os.getpid())
            for pid in sorted(left):
                log(f"{eng.name}: killing leftover {pid} {procs[pid].cmdline[:120]}")
                stop_pid(pid, 3)
        for d in dirs:
            unmount_below(d)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
            if d.exists():
                log(f"could not remove {d}")
    finally:
        signal.signal(signal.SIGINT, old)


def unmount_below(d: Path) -> None:
    prefix = str(d)
    for _ in range(3):
        points = []
        for line in read("/proc/self/mountinfo").splitlines():
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == prefix or mp.startswith(prefix + "/"):
                points.append(mp)
        if not points:
            return
        for mp in sorted(set(points), key=lambda m: m.count("/"), reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)


# --------------------------------------------------------------------------- report


def machine_info() -> dict:
    mem = next((l.split()[1] for l in read("/proc/meminfo").splitlines() if l.startswith("MemTotal:")), "0")
    runc = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.splitlines()
    conmon = subprocess.run(["conmon", "--version"], capture_output=True, text=True).stdout.splitlines()
    cli = subprocess.run([DOCKER_CLI, "--version"], capture_output=True, text=True).stdout.strip()
    model = next((l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines()
                  if l.startswith("model name")), platform.machine())
    return {"nproc": os.cpu_count(), "cpu": model, "mem_total_mib": int(mem) // 1024,
            "kernel": platform.release(), "runc": runc[0] if runc else "?",
            "conmon": conmon[0] if conmon else "?", "docker_cli": cli,
            "python": sys.version.split()[0], "loadavg_start": read("/proc/loadavg").strip()}


def fmt(x: float | None, unit: str = "") -> str:
    return "—" if x is None else f"{x:.1f}{unit}"


# bench/net.py, bench/build.py and bench/transfer.py own the parts of the output between
# these lines; rewriting the file keeps them, in the order they had
KEPT = (("<!-- network benchmark: begin -->", "<!-- network benchmark: end -->"),
        ("<!-- build benchmark: begin -->", "<!-- build benchmark: end -->"),
        ("<!-- transfer benchmark: begin -->", "<!-- transfer benchmark: end -->"),
        ("<!-- density benchmark: begin -->", "<!-- density benchmark: end -->"))


def kept_section(out: Path) -> str:
    """The marked sections the other benchmarks wrote into *out*, markers included, in file order,
    one blank line apart; "" if there are none."""
    try:
        text = out.read_text()
    except OSError:
        return ""
    found = []
    for begin, end in KEPT:
        start = text.find(begin)
        stop = text.find(end, start) if start >= 0 else -1
        if start >= 0 and stop >= 0:
            found.append((start, text[start:stop + len(end)]))
    return "\n\n".join(section for _, section in sorted(found))


def write_markdown(res: dict, out: Path) -> None:
    kept = kept_section(out)
    m = res["machine"]
    L = []
    L.append("# Benchmarks: berth vs Docker\n")
    L.append("Generated by `bench/run.py`; do not edit by hand. Rerun to refresh.\n")
    L.append("## Machine\n")
    L.append(f"- Date: {res['date']}")
    L.append(f"- CPU: {m['nproc']} × {m['cpu']}; memory {m['mem_total_mib']} MiB; kernel {m['kernel']}")
    L.append(f"- runc: {m['runc']}; conmon: {m['conmon']}; client: {m['docker_cli']}")
    L.append(f"- Docker: {res['versions'].get('docker', 'not started')} (Debian docker.io)")
    L.append(f"- berth: {res['versions'].get('berth', 'not started')}")
    L.append(f"- Load average at start / end (the end includes this benchmark's own work): "
             f"{m['loadavg_start']} / {res.get('loadavg_end', '?')}\n")
    L.append("## Latency of `docker run`\n")
    L.append(f"Wall clock of the docker CLI process, start to exit, against each engine; "
             f"2 warm-up runs each, then {res['runs']} runs each, interleaved docker, berth, docker, berth, …\n")
    L.append("| command | engine | median | p10 | p90 | berth / docker (median) |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: |")
    for key, cmd in (("true", LAT_TRUE), ("echo", LAT_ECHO), ("floor", LAT_FLOOR)):
        lat = res["latency"].get(key, {})
        d = lat.get("docker")
        for name in ["docker", "berth", *sorted(n for n in lat if n.startswith("berth-"))]:
            r = lat.get(name)
            if r is None and name != "docker" and name != "berth":
                continue
            ratio = f"{r['median_ms'] / d['median_ms']:.2f}" if d and r and name != "docker" else ""
            label = {"berth": "berth (process)", "berth-runsc": "berth (--runtime runsc)",
                     "berth-baseline": f"berth (process) at {res.get('baseline', 'the baseline')}",
                     "berth-vm": "berth (--isolation hyperv, warm pool: a waiting clone, TCG)",
                     "berth-vm-nopool": "berth (--isolation hyperv, no pool: a template clone restored, TCG)",
                     "berth-vm-cold": "berth (--isolation hyperv, VM cold boot, TCG)"}.get(name, name)
            L.append(f"| `docker {' '.join(cmd)}` | {label} | "
                     f"{fmt(r and r['median_ms'], ' ms')} | {fmt(r and r['p10_ms'], ' ms')} | "
                     f"{fmt(r and r['p90_ms'], ' ms')} | {ratio} |")
    L.append("")
    L.append("`docker version` is there for scale: it is one start of the CLI plus one API round trip, "
             "a floor no engine can go under for `docker run` as the CLI does it.\n")
    L.append("## Memory per idle running container\n")
    k = res["idle"]
    L.append(f"{k} containers started with `docker run -d --network none busybox sleep 3600` on each engine. "
             "The engine's per-container processes are the processes that appeared while the containers were "
             "started and that run below a daemon process or name the engine's state directory or a container "
             "id in their command line (shims and conmon re-parent to pid 1), minus the containers' own processes (each container's `State.Pid` and everything below it, "
             "and anything in another pid namespace). RSS and PSS come from `/proc/PID/smaps_rollup`, "
             f"summed and divided by {k}. Daemon growth is the RSS of the daemon processes "
             "(dockerd + containerd; berthd) after minus before, divided by the same count.\n")
    L.append("For `berth-runsc` and `berth-vm` the sandbox or utility VM itself (the container's `State.Pid`: runsc's sandbox, QEMU) is counted: "
             "it is what that isolation costs per container.\n")
    L.append("| engine | per-container processes | RSS / container | PSS / container | daemon RSS growth / container |")
    L.append("| --- | --- | ---: | ---: | ---: |")
    for name in ["docker", "berth", *sorted(n for n in res["memory"] if n.startswith("berth-"))]:
        r = res["memory"].get(name)
        if not r:
            L.append(f"| {name} | not measured | — | — | — |")
            continue
        procs = ", ".join(f"{v} × {c}" for c, v in sorted(r["per_container_processes"].items())) or "none found"
        L.append(f"| {name} | {procs} | {r['rss_kb_per_container'] / 1024:.2f} MiB | "
                 f"{r['pss_kb_per_container'] / 1024:.2f} MiB | "
                 f"{r['daemon_rss_growth_kb_per_container'] / 1024:.2f} MiB |")
    dm, bm = res["memory"].get("docker"), res["memory"].get("berth")
    if dm and bm and dm["pss_kb_per_container"]:
        L.append(f"\nberth / docker: RSS {bm['rss_kb_per_container'] / dm['rss_kb_per_container']:.2f}, "
                 f"PSS {bm['pss_kb_per_container'] / dm['pss_kb_per_container']:.2f}.")
    L.append("")
    L.append("## Against the targets\n")
    lt = res["latency"].get("true", {})
    if lt.get("docker") and lt.get("berth"):
        r = lt["berth"]["median_ms"] / lt["docker"]["median_ms"]
        L.append(f"- Latency, target berth ≤ 0.5 × Docker for `docker {' '.join(LAT_TRUE)}`: "
                 f"{r:.2f} × ({'met' if r <= 0.5 else 'not met'}).")
    else:
        L.append("- Latency: not measured for both engines in this run.")
    if lt.get("berth") and lt.get("berth-baseline") and lt.get("docker"):
        now, then = lt["berth"]["median_ms"], lt["berth-baseline"]["median_ms"]
        change = now / then - 1
        L.append(f"- No regression from the change since {res.get('baseline', 'the baseline')}, target at most "
                 f"+5 % in `docker {' '.join(LAT_TRUE)}`: {then:.1f} ms then, {now:.1f} ms now, {change:+.1%} "
                 f"(ratio to Docker {then / lt['docker']['median_ms']:.2f} then, "
                 f"{now / lt['docker']['median_ms']:.2f} now, same run; "
                 f"{'met' if change <= 0.05 else 'not met'}).")
    if dm and bm:
        ok = (bm["rss_kb_per_container"] < dm["rss_kb_per_container"]
              and bm["pss_kb_per_container"] < dm["pss_kb_per_container"])
        L.append(f"- Memory, target less than Docker per idle container: {'met' if ok else 'not met'} "
                 f"(RSS {bm['rss_kb_per_container'] / 1024:.2f} vs {dm['rss_kb_per_container'] / 1024:.2f} MiB, "
                 f"PSS {bm['pss_kb_per_container'] / 1024:.2f} vs {dm['pss_kb_per_container'] / 1024:.2f} MiB).")
    else:
        L.append("- Memory: not measured for both engines in this run.")
    vm_lat, vm_mem = lt.get("berth-vm"), res["memory"].get("berth-vm")
    if vm_lat:
        ms = vm_lat["median_ms"]
        L.append(f"- VM isolation, target `docker run --rm --isolation hyperv IMG true` under 0.6 s end to end here "
                 f"(TCG): {ms / 1000:.2f} s ({'met' if ms < 600 else 'not met'}); cold boot: "
                 f"{fmt(lt.get('berth-vm-cold') and lt['berth-vm-cold']['median_ms'], ' ms')}.")
        if lt.get("docker"):
            r = ms / lt["docker"]["median_ms"]
            L.append(f"- VM isolation with a warm pool at or below Docker's process containers (`docker "
                     f"{' '.join(LAT_TRUE)}`): {ms:.1f} ms vs {lt['docker']['median_ms']:.1f} ms, {r:.2f} × "
                     f"({'met' if r <= 1 else 'not met'}); with the pool empty (each start restores a clone): "
                     f"{fmt(lt.get('berth-vm-nopool') and lt['berth-vm-nopool']['median_ms'], ' ms')}.")
    pc = res.get("pool")
    if pc:
        L.append(f"- One VM waiting in the pool costs {(pc['qemu_pss_kb'] + pc['member_pss_kb']) / 1024:.1f} MiB PSS: "
                 f"its QEMU {pc['qemu_pss_kb'] / 1024:.1f} MiB and its waiting process (Python) "
                 f"{pc['member_pss_kb'] / 1024:.1f} MiB (RSS {pc['qemu_rss_kb'] / 1024:.1f} and "
                 f"{pc['member_rss_kb'] / 1024:.1f} MiB; {pc['waiting']} measured). Once claimed the process "
                 "becomes the container's C monitor, so a container served from the pool costs what any "
                 "VM-isolated container costs (row above).")
    if vm_mem:
        pss = vm_mem["pss_kb_per_container"] / 1024
        L.append(f"- VM isolation, target under 50 MiB PSS per idle VM-isolated container: {pss:.1f} MiB "
                 f"({'met' if pss < 50 else 'not met'}; the clone's QEMU and the per-container monitor, "
                 "see the JSON for the split).")
    if lt.get("docker") and dm:
        L.append(f"- The issue's reference figures for Docker on this kind of machine are about 230 ms and "
                 f"15 MB RSS / 3.4 MB PSS per idle container; this run measured "
                 f"{lt['docker']['median_ms']:.0f} ms and {dm['rss_kb_per_container'] * 1.024 / 1000:.1f} MB RSS / "
                 f"{dm['pss_kb_per_container'] * 1.024 / 1000:.1f} MB PSS (MB = 10^6 bytes here).")
    L.append("")
    if res["errors"]:
        L.append("## Failures in this run\n")
        for what, msg in res["errors"].items():
            L.append(f"- **{what}**:\n\n  ```\n  " + msg.replace("\n", "\n  ") + "\n  ```")
        L.append("")
    L.append("## How to reproduce\n")
    L.append("As root on a Debian 12 machine with `docker.io` (dockerd 20.10), `runc`, `conmon` and the "
             "docker CLI installed, from the repository root:\n")
    L.append("```\n.venv/bin/python bench/run.py --runs 20 --idle 10 --out BENCHMARKS.md\n```\n")
    L.append("The script builds a busybox image tarball (`berth.testing.rootfs`), starts Debian's dockerd in "
             "its own network namespace (`unshare --net`, `--bridge none --iptables=false`, state under a "
             "temporary directory in /tmp) and berthd (`--root` and socket under another), imports the same "
             "tarball into both with `docker import`, runs the measurements above and tears everything down. "
             "Raw samples and the per-process memory breakdown are kept as JSON in `bench/results/` "
             f"(git-ignored){'; this file was written from `' + res['raw'] + '`' if res.get('raw') else ''}. "
             "Numbers move with machine load: the load average is recorded above, and the "
             "ratio of two interleaved engines is steadier than either absolute figure.")
    out.write_text("\n".join(L) + "\n" + (f"\n{kept}\n" if kept else ""))


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description="docker vs berthd side-by-side benchmark")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per engine and command")
    ap.add_argument("--idle", type=int, default=10, help="idle containers per engine for the memory test")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--engines", default="docker,berth", help="comma list, default docker,berth")
    ap.add_argument("--modes", default="runsc,vm,vm-nopool,vm-cold",
                    help="berth's other isolation modes to measure beside process isolation "
                         "(runsc,vm,vm-nopool,vm-cold)")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                    help="also time process isolation with the berthd of another checkout (made by "
                         "bench/baseline.sh REF), interleaved with the rest: the regression check")
    ap.add_argument("--from-json", type=Path, help="only rewrite --out from a results JSON of an earlier run")
    args = ap.parse_args()
    if args.from_json:
        res = json.loads(args.from_json.read_text())
        res.setdefault("raw", str(args.from_json.resolve().relative_to(REPO)))
        write_markdown(res, args.out)
        return 0
    if os.geteuid() != 0:
        print("run as root (dockerd and runc need it)", file=sys.stderr)
        return 2

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # a shell may start us with SIGINT ignored (background job): Ctrl-C must still clean up
    signal.signal(signal.SIGINT, signal.default_int_handler)

    session = new_session("", "bn-")
    stamp, logdir, scratch, env = session.stamp, session.logdir, session.scratch, session.env
    dirs = [scratch]

    want = [e.strip() for e in args.engines.split(",") if e.strip()]
    launched: list[Engine] = []  # every engine whose daemon was started: all get cleaned up
    ready: list[Engine] = []  # those that answered and imported the image
    res: dict = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                 "runs": args.runs, "idle": args.idle, "machine": machine_info(),
                 "versions": {}, "latency": {}, "memory": {}, "errors": {}}
    errors = res["errors"]
    interrupted = False
    try:
        from berth.testing.rootfs import write_rootfs_tar  # noqa: PLC0415 (repo's venv)

        tarball = write_rootfs_tar(scratch / "busybox.tar")
        log(f"busybox tarball {tarball.stat().st_size // 1024} KiB")
        starters = {"docker": start_docker, "berth": start_berth}
        for name in want:
            d = Path(tempfile.mkdtemp(prefix=f"b{name[0]}-", dir="/tmp"))
            dirs.append(d)
            try:
                eng = starters[name](d, logdir, env, launched)
                res["versions"][name] = engine_version(eng)
                if name == "berth":
                    res["versions"][name] += source_state()
                import_image(eng, tarball)
                ready.append(eng)
            except BenchError as e:
                errors[f"{name}: start/import"] = str(e)
                log(f"FAILED {name}: {e}")
        base = next((e for e in ready if e.name == "berth"), None)
        if base is not None:
            for mode, flags, vm in (("berth-runsc", ("--runtime", "runsc"), True),
                                    ("berth-vm", ("--isolation", "hyperv"), True)):
                if mode.split("-", 1)[1] in args.modes.split(","):
                    ready.append(dataclasses.replace(base, name=mode, mode_args=flags, vm=vm))
            # More berthds for the VM modes: no pool (each start restores a clone), and VMs booted cold.
            for mode, prefix, flags in (("vm-nopool", "bn-", ("--vm-pool", "0")),
                                        ("vm-cold", "bc-", ("--vm-boot", "cold"))):
                if mode not in args.modes.split(","):
                    continue
                d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
                dirs.append(d)
                try:
                    other = start_berth(d, logdir, env, launched, f"berth-{mode}", flags)
                    import_image(other, tarball)
                    ready.append(dataclasses.replace(other, mode_args=("--isolation", "hyperv"), vm=True))
                except BenchError as e:
                    errors[f"berth-{mode}: start/import"] = str(e)
            if args.baseline:  # the same measurements with an earlier berth, in the same run
                d = Path(tempfile.mkdtemp(prefix="bb-", dir="/tmp"))
                dirs.append(d)
                try:
                    old = start_berth(d, logdir, env, launched, "berth-baseline",
                                      berthd=args.baseline / ".venv" / "bin" / "berthd")
                    res["baseline"] = (args.baseline / "REF").read_text().strip() \
                        if (args.baseline / "REF").exists() else str(args.baseline)
                    import_image(old, tarball)
                    ready.append(old)
                except BenchError as e:
                    errors["berth-baseline: start/import"] = str(e)
            if any(e.vm for e in ready):  # the first VM container prepares the guest kernel: not timed
                timed(next(e for e in ready if e.vm), LAT_TRUE, None)
        if ready:
            res["latency"]["true"] = latency(ready, LAT_TRUE, None, args.runs, errors)
            res["latency"]["echo"] = latency(ready, LAT_ECHO, "hi", args.runs, errors)
            res["latency"]["floor"] = latency(ready, LAT_FLOOR, None, args.runs, errors)
            pooled = next((e for e in ready if e.name == "berth-vm"), None)
            if pooled is not None:
                time.sleep(3)  # the refill after the last start
                res["pool"] = pool_cost(pooled)
            for eng in ready:
                if eng.name == "berth-baseline":  # the regression check is about latency
                    continue
                try:
                    res["memory"][eng.name] = memory(eng, args.idle)
                except BenchError as e:
                    errors[f"{eng.name}: memory"] = str(e)
                    log(f"FAILED memory: {e}")
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up")
    except Exception:  # keep cleanup and the record of what broke
        errors["bench"] = traceback.format_exc()
        log(errors["bench"])
    finally:
        res["loadavg_end"] = read("/proc/loadavg").strip()
        cleanup(launched, dirs)
    if interrupted:
        return 130
    res["logs"] = str(logdir.relative_to(REPO))
    raw = RESULTS / f"{stamp}.json"
    res["raw"] = str(raw.relative_to(REPO))
    raw.write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, args.out)
    log(f"wrote {args.out} and {raw}")
    if errors:
        log("errors:\n" + "\n".join(f"  {k}: {v.splitlines()[0] if v else ''}" for k, v in errors.items()))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
