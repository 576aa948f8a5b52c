#!/usr/bin/env python3
"""The networking benchmark: Debian's dockerd vs berthd, side by side, through the docker CLI.

    .venv/bin/python bench/net.py [--runs 20] [--xfer-runs 10] [--mib 1024] [--out BENCHMARKS.md]

Strategy: reuse bench/run.py's machinery (Engine, timed runs, summaries, the
busybox tarball, cleanup) and change only what networking needs. dockerd runs
with its defaults this time, docker0 and iptables included, inside a network
namespace of its own (`unshare --net`), so nothing it does touches the host's
network. berthd runs on a private root with its own default bridge, subnet and
nftables table, so it cannot clash with other daemons on the machine. Three
things are measured, each engine's runs interleaved with the other's:

1. `docker run --rm busybox true` on the default bridge, and with
   `--network none` as the reference: wall clock of the CLI, as in run.py.
2. Container to container on a user-defined network, by name through the
   engine's embedded DNS: a client container connects to the server container
   and sends N MiB. The client reads the clock (busybox `ts %.s`, microseconds)
   before it connects and after the server has closed the connection, which
   the server does only once it has read all N MiB.
3. Host to a port published on 127.0.0.1: a Python client sends N MiB to
   127.0.0.1:PORT and waits for the server's close, timing itself. Docker's
   published ports live in dockerd's namespace, so for Docker that client runs
   there (`nsenter -t <dockerd pid> -n`).

The containers use busybox nc only to accept and connect: `nc -e` hands the
socket to `dd` with 1 MiB blocks, because nc's own copy loop moves 1 KiB per
system call and would measure itself rather than the network path. The
server's dd reads exactly N MiB (`iflag=fullblock`); its "N+0 records in"
lines in the container log are counted at the end against the transfers that
reported success, so a short transfer cannot pass unnoticed.

All traffic stays on loopback, on the engines' own bridges, and inside
dockerd's namespace. Everything started is stopped and removed at the end,
also on Ctrl-C or SIGTERM; berth's bridges and nftables table, which outlive
berthd by design, are deleted by name afterwards.

The results go between the marker lines of BENCHMARKS.md (bench/run.py keeps
that section when it rewrites the file) and, raw, to bench/results/net-<stamp>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
# bench/run.py is a script, not a typed package: load it dynamically so its own
# typing stays its business (mypy does not follow this import).
base: Any = importlib.import_module("run")

REPO: Path = base.REPO
RESULTS: Path = base.RESULTS
BenchError: type[Exception] = base.BenchError
log: Callable[[str], None] = base.log
Engine = Any  # bench/run.py's Engine dataclass

BEGIN = "<!-- network benchmark: begin -->"
END = "<!-- network benchmark: end -->"

NET = "bn-net"  # the user-defined network on each engine (names are per daemon)
SERVER = "bn-srv"  # the server container's name, which the client resolves
PORT = 5001  # the server's port inside its container

LAT_BRIDGE = ["run", "--rm", "busybox", "true"]
LAT_NONE = ["run", "--rm", "--network", "none", "busybox", "true"]

# The client's clock: busybox `ts` stamps a line with gettimeofday(2), "SECONDS.MICROSECONDS".
# (busybox `adjtimex` would do too, but berth's seccomp profile refuses clock_adjtime, which
# Docker's has allowed since 2020, and `date` has no %N in busybox.)
_CLOCK = "t() { echo | ts %.s; }"
CONNECT_FAILED = 1  # busybox nc's status when it cannot connect (the server between two accepts)


# --------------------------------------------------------------------------- pure parts


def server_command(mib: int) -> list[str]:
    """The server container's command: accept, read exactly *mib* MiB with dd, close; forever."""
    loop = (f"while :; do nc -l -p {PORT} -e dd of=/dev/null bs=1M count={mib} iflag=fullblock; done")
    return ["sh", "-c", loop]


def client_script(server: str, mib: int) -> str:
    """The client container's shell script: time one connection that sends *mib* MiB to *server*.

    It prints `bn-xfer T0 T1 RC`: the clock (seconds.microseconds) before connecting and after the
    server closed, and the status (0 = all sent and the server closed; 1 = could
    not connect; 3 = the connection broke while sending).
    """
    inner = f"dd if=/dev/zero bs=1M count={mib} 2>/dev/null || exit 3; read x; exit 0"
    return (f"{_CLOCK}; a=$(t); nc {server} {PORT} -e sh -c '{inner}'; rc=$?; b=$(t); "
            'echo "bn-xfer $a $b $rc"')


@dataclass(frozen=True)
class ClientReport:
    """What one client run printed."""

    seconds: float
    status: int


def _stamp(text: str) -> int:
    """A `ts %.s` stamp ("1795370250.080264") in microseconds."""
    sec, _, frac = text.partition(".")
    if not sec.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(text)
    return int(sec) * 1_000_000 + int((frac or "0").ljust(6, "0")[:6])


def parse_client(output: str) -> ClientReport:
    """Read the `bn-xfer T0 T1 RC` line of a client run.

    Raises:
        BenchError: no such line, or it does not hold two stamps and a status.
    """
    for line in output.splitlines():
        fields = line.split()
        if fields[:1] != ["bn-xfer"]:
            continue
        try:
            t0, t1, rc = fields[1:]
            return ClientReport((_stamp(t1) - _stamp(t0)) / 1e6, int(rc))
        except ValueError:
            raise BenchError(f"client printed a malformed timing line {line!r}; expected "
                             "`bn-xfer T0 T1 RC` (does the image's busybox have the ts applet?)") from None
    raise BenchError(f"client printed no `bn-xfer` line; its output was {output.strip()[:500]!r}")


def count_full_reads(log_text: str, mib: int) -> int:
    """How many times the server's dd read all *mib* MiB ("MIB+0 records in")."""
    return sum(1 for line in log_text.splitlines() if line.strip() == f"{mib}+0 records in")


def free_subnets(taken: Sequence[ipaddress.IPv4Network], count: int, rng: random.Random,
                 pool: str = "172.30.0.0/15") -> list[ipaddress.IPv4Network]:
    """*count* distinct /24s from *pool*, picked at random, overlapping none of *taken*.

    Raises:
        BenchError: the pool has fewer free /24s than asked for.
    """
    free = [n for n in ipaddress.IPv4Network(pool).subnets(new_prefix=24)
            if not any(n.overlaps(t) for t in taken)]
    if len(free) < count:
        raise BenchError(f"fewer than {count} free /24 subnets in {pool} (the host's routes take the rest); "
                         "remove stale bridges or change the pool in bench/net.py")
    return rng.sample(free, count)


def rate_summary(seconds: Sequence[float], mib: int) -> dict[str, Any]:
    """Median, p10 and p90 of the throughput (MB/s, 10^6 bytes) over the runs' durations."""
    rates = sorted(mib * 1048576 / s / 1e6 for s in seconds)
    if len(rates) >= 2:
        dec = statistics.quantiles(rates, n=10, method="inclusive")
        p10, p90 = dec[0], dec[8]
    else:
        p10 = p90 = rates[0]
    return {"n": len(rates), "median_mb_s": statistics.median(rates), "p10_mb_s": p10, "p90_mb_s": p90,
            "seconds": [round(s, 6) for s in seconds]}


def replace_section(text: str, section: str, begin: str = BEGIN, end: str = END) -> str:
    """*text* with the part between *begin* and *end* (markers included) replaced by *section*.

    *section* must itself start with *begin* and end with *end*. Without markers in
    *text*, the section is appended after one blank line. The markers default to
    this benchmark's; bench/build.py passes its own.
    """
    start = text.find(begin)
    stop = text.find(end, start) if start >= 0 else -1
    if start >= 0 and stop >= 0:
        return text[:start] + section + text[stop + len(end):]
    head = text.rstrip("\n")
    return (head + "\n\n" if head else "") + section + "\n"


# --------------------------------------------------------------------------- host facts


def host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host routes or has an address in (all tables)."""
    out: list[ipaddress.IPv4Network] = []
    for argv in (["ip", "-4", "-j", "route", "show", "table", "all"], ["ip", "-4", "-j", "addr"]):
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        if cp.returncode != 0:
            raise BenchError(f"`{' '.join(argv)}` failed: {cp.stderr.strip()}")
        for entry in json.loads(cp.stdout or "[]"):
            dsts = [entry.get("dst", "")]
            dsts += [f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", []) if "local" in a]
            for dst in dsts:
                if dst and dst != "default" and ":" not in dst:
                    try:
                        out.append(ipaddress.IPv4Network(dst, strict=False))
                    except ValueError:
                        continue
    return out


def free_port(rng: random.Random) -> int:
    """A TCP port nothing listens on at 127.0.0.1, below the usual ephemeral range."""
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise BenchError("found no free TCP port on 127.0.0.1 in 20000-31999 after 200 tries")


def sysctl(name: str) -> str:
    return base.read("/proc/sys/" + name.replace(".", "/")).strip() or "?"


# --------------------------------------------------------------------------- engines


def start_docker_bridged(workdir: Path, logdir: Path, env: dict[str, str], launched: list[Engine]) -> Engine:
    """Debian's dockerd with its default bridge and iptables, alone in a new network namespace."""
    d = workdir
    eng = base.Engine("docker", d, d / "docker.sock", logdir / "dockerd.log", env)
    launched.append(eng)  # cleaned up whatever happens next
    inner = (f"ip link set lo up; exec {base.DOCKERD} --data-root {d}/root --exec-root {d}/exec "
             f"--pidfile {d}/pid -H unix://{d}/docker.sock")
    with open(eng.logfile, "wb") as lf:
        eng.launcher = subprocess.Popen(["unshare", "--net", "--fork", "sh", "-c", inner],
                                        stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
    eng.started = True
    eng.wait_ping(60)
    eng.daemon_pids = base.descendants(base.snapshot(), {eng.launcher.pid}) - {eng.launcher.pid}
    log(f"dockerd up (default bridge, iptables on, own network namespace): pid {dockerd_pid(eng)}")
    return eng


def dockerd_pid(eng: Engine) -> int:
    text = base.read(str(eng.workdir / "pid")).strip()
    if not text.isdigit():
        raise BenchError(f"docker: no pid in {eng.workdir / 'pid'}; dockerd log tail:\n{base.tail(eng.logfile)}")
    return int(text)


@dataclass
class BerthObjects:
    """The kernel objects a berthd run leaves behind by design, to delete by name at the end."""

    bridges: list[str]
    nft_table: str


@dataclass
class Rig:
    """One engine's transfer set-up: a user-defined network and a server container on it."""

    engine: str
    network_id: str
    server_id: str
    host_port: int
    netns_prefix: list[str]  # argv that puts the host-side client where the published port is
    transfers: int = 0  # successful transfers, to check against the server's log


def set_up_transfer(eng: Engine, mib: int, port: int, subnet: str | None, prefix: list[str],
                    rigs: list[Rig], objects: BerthObjects | None) -> Rig:
    args = ["network", "create", *(["--subnet", subnet] if subnet else []), NET]
    rig = Rig(eng.name, "", "", port, prefix)
    rigs.append(rig)  # torn down by name, whatever happens next
    eng.docker(args, timeout=60)
    net_id = eng.docker(["network", "inspect", "-f", "{{.Id}}", NET], timeout=20).stdout.strip()
    rig.network_id = net_id
    if objects is not None:
        objects.bridges.append(f"br-{net_id[:12]}")
    cp = eng.docker(["run", "-d", "--name", SERVER, "--network", NET, "-p", f"127.0.0.1:{port}:{PORT}",
                     "busybox", *server_command(mib)], timeout=60)
    rig.server_id = cp.stdout.strip().splitlines()[-1]
    log(f"{eng.name}: network {NET} ({net_id[:12]}), server {rig.server_id[:12]} publishing 127.0.0.1:{port}")
    return rig


def tear_down_rigs(engines: Iterable[Engine], rigs: list[Rig]) -> None:
    """Remove the server containers and networks while the daemons still run (berth then drops their bridges)."""
    by_name = {e.name: e for e in engines}
    for rig in rigs:
        eng = by_name.get(rig.engine)
        if eng is None or not eng.started or (eng.launcher and eng.launcher.poll() is not None):
            continue
        for args in (["rm", "-f", rig.server_id or SERVER], ["network", "rm", NET]):
            try:
                cp = eng.docker(args, check=False, timeout=60)
                if cp.returncode != 0 and "No such" not in (cp.stderr or "") and "not found" not in (cp.stderr or ""):
                    log(f"cleanup: {eng.failure(args, cp)}")
            except Exception as e:  # noqa: BLE001 (teardown goes on whatever happens)
                log(f"cleanup: {e}")


def delete_berth_objects(objects: BerthObjects) -> None:
    """Delete what this run's berthd made on the host and left (it keeps bridges across restarts)."""
    for bridge in objects.bridges:
        if Path(f"/sys/class/net/{bridge}").exists():
            cp = subprocess.run(["ip", "link", "del", bridge], capture_output=True, text=True, timeout=30)
            if cp.returncode != 0:
                log(f"cleanup: could not delete bridge {bridge}: {cp.stderr.strip()}")
    listed = subprocess.run(["nft", "list", "table", "ip", objects.nft_table], capture_output=True, timeout=30)
    if listed.returncode == 0:
        cp = subprocess.run(["nft", "delete", "table", "ip", objects.nft_table], capture_output=True,
                            text=True, timeout=30)
        if cp.returncode != 0:
            log(f"cleanup: could not delete nftables table {objects.nft_table}: {cp.stderr.strip()}")


# --------------------------------------------------------------------------- transfers


def container_transfer(eng: Engine, mib: int) -> float:
    """One client container sends *mib* MiB to the server by name; seconds, from the client's clock."""
    args = ["run", "--rm", "--network", NET, "busybox", "sh", "-c", client_script(SERVER, mib)]
    for attempt in range(5):
        cp = eng.docker(args, timeout=300, check=False)
        if cp.returncode != 0:
            raise BenchError(eng.failure(args[:5] + ["CLIENT"], cp))
        report = parse_client(cp.stdout)
        if report.status == 0:
            return report.seconds
        if report.status != CONNECT_FAILED:
            raise BenchError(f"{eng.name}: the transfer broke (client status {report.status}): "
                             f"{(cp.stderr or cp.stdout).strip()[:500]}")
        time.sleep(0.2 * (attempt + 1))  # the server loop is between two accepts
    raise BenchError(f"{eng.name}: the client could not connect to {SERVER}:{PORT} in 5 tries: "
                     f"{(cp.stderr or cp.stdout).strip()[:500]}")


def send(host: str, port: int, mib: int) -> float:
    """Connect, send *mib* MiB of zeros, half-close, wait for the peer's close; seconds from connect to close."""
    block = bytes(1 << 20)
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=60) as s:
        for _ in range(mib):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    return time.perf_counter() - t0


def host_transfer(rig: Rig, mib: int) -> float:
    """Run `net.py --send` (in dockerd's namespace for Docker) against the published port; its seconds."""
    argv = [*rig.netns_prefix, sys.executable, str(Path(__file__).resolve()), "--send",
            "127.0.0.1", str(rig.host_port), str(mib)]
    err = ""
    for attempt in range(5):
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if cp.returncode == 0:
            return float(json.loads(cp.stdout)["seconds"])
        lines = (cp.stderr or cp.stdout).strip().splitlines()
        err = lines[-1] if lines else f"exit status {cp.returncode}"
        time.sleep(0.2 * (attempt + 1))  # refused or reset: the server loop is between two accepts
    raise BenchError(f"{rig.engine}: sending to 127.0.0.1:{rig.host_port} failed 5 times: {err}")


def proxy_cpu_seconds(eng: Engine) -> float:
    """CPU time (user + system) of the docker-proxy processes below dockerd so far."""
    procs = base.snapshot()
    total = 0
    for pid in base.descendants(procs, set(eng.daemon_pids)):
        if procs[pid].comm != "docker-proxy":
            continue
        fields = base.read(f"/proc/{pid}/stat").rpartition(")")[2].split()
        if len(fields) > 12:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


POOL_GAP = 1.5  # s of quiet before each timed VM start: berthd's pool refills a VM in about 1 s


def warm_pool_latency(eng: Engine, cmd: list[str], runs: int) -> dict[str, Any]:
    """*cmd* timed *runs* times with VM isolation, each after POOL_GAP s of quiet (2 warm-ups: the
    first teaches berthd's pool the VM's shape), so each start finds a VM waiting in the pool."""
    for _ in range(2):
        base.timed(eng, cmd, None)
        time.sleep(POOL_GAP)
    samples = []
    for _ in range(runs):
        time.sleep(POOL_GAP)
        samples.append(base.timed(eng, cmd, None))
    r = base.summarize(samples)
    log(f"docker {' '.join(cmd)} [{eng.name}, {POOL_GAP} s apart]: median {r['median_ms']:.1f} ms (n={r['n']})")
    return r


def interleaved(names: list[str], once: Callable[[str], float], runs: int, warmups: int, label: str,
                errors: dict[str, str], on_success: Callable[[str], None]) -> dict[str, list[float]]:
    """Warm each up, then run docker, berth, docker, berth, ... *runs* times each; seconds per engine."""
    live = []
    for name in names:
        try:
            for _ in range(warmups):
                once(name)
                on_success(name)
            live.append(name)
        except Exception as e:  # noqa: BLE001 (one engine's failure must not stop the other)
            errors[f"{name}: {label}"] = str(e)
            log(f"FAILED warm-up: {e}")
    samples: dict[str, list[float]] = {n: [] for n in live}
    for _ in range(runs):
        for name in list(live):
            try:
                samples[name].append(once(name))
                on_success(name)
            except Exception as e:  # noqa: BLE001
                errors[f"{name}: {label}"] = str(e)
                log(f"FAILED: {e}")
                live.remove(name)
    return {n: s for n, s in samples.items() if s}


def verify_servers(engines: dict[str, Engine], rigs: list[Rig], mib: int, errors: dict[str, str]) -> dict[str, Any]:
    """Compare each server's count of full reads with the transfers that reported success."""
    out: dict[str, Any] = {}
    for rig in rigs:
        eng = engines[rig.engine]
        cp = eng.docker(["logs", rig.server_id], timeout=60, check=False)
        full = count_full_reads((cp.stdout or "") + (cp.stderr or ""), mib)
        out[rig.engine] = {"transfers_reported": rig.transfers, "server_full_reads": full}
        if full != rig.transfers:
            errors[f"{rig.engine}: verification"] = (
                f"the server read all {mib} MiB {full} times but {rig.transfers} transfers reported success; "
                f"see `docker logs` of the server (its dd prints 'records in' per connection)")
        log(f"{rig.engine}: server read {mib} MiB in full {full} times, {rig.transfers} transfers reported")
    return out


# --------------------------------------------------------------------------- report


def _ms(r: dict[str, Any] | None, key: str) -> str:
    return "—" if not r else f"{r[key]:.1f} ms"


def _mbs(r: dict[str, Any] | None, key: str) -> str:
    return "—" if not r else f"{r[key]:.0f}"


def render(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md section, markers included."""
    m, cfg = res["machine"], res["config"]
    L = [BEGIN, "## Networking: berth vs Docker\n",
         "Generated by `bench/net.py` (bench/run.py keeps this section when it rewrites the file); "
         "do not edit by hand. Rerun to refresh.\n"]
    L.append(f"- Date: {res['date']}; CPU: {m['nproc']} × {m['cpu']}; memory {m['mem_total_mib']} MiB; "
             f"kernel {m['kernel']}; client: {m['docker_cli']}")
    L.append(f"- Docker: {res['versions'].get('docker', 'not started')}; dockerd's defaults (docker0, "
             "iptables, userland proxy) in a network namespace of its own (`unshare --net`)")
    L.append(f"- berth: {res['versions'].get('berth', 'not started')}; default bridge `{cfg['berth_bridge']}` "
             f"{cfg['berth_bip']}, user network {cfg['berth_subnet']}, nftables table `{cfg['berth_nft_table']}`")
    L.append(f"- Host: net.bridge.bridge-nf-call-iptables = {cfg['bridge_nf_call_iptables']}; load average at "
             f"start / end: {m['loadavg_start']} / {res.get('loadavg_end', '?')}\n")

    L.append("### Start latency on the default bridge\n")
    L.append(f"Wall clock of the docker CLI process, start to exit; 2 warm-up runs per engine, then "
             f"{res['runs']} runs each, interleaved docker, berth, docker, berth, … The VM rows are the same "
             f"berthd with `--isolation hyperv`, timed afterwards, each start after {POOL_GAP} s of quiet so that "
             "berthd's pool has a VM waiting (back to back, starts outrun the refill and restore their own "
             "clone: see the `no pool` row of the run latency table above).\n")
    L.append("| command | engine | median | p10 | p90 | berth / docker (median) |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: |")
    for key, cmd in (("bridge", LAT_BRIDGE), ("none", LAT_NONE)):
        lat = res["latency"].get(key, {})
        d = lat.get("docker")
        for name in ("docker", "berth", "berth-vm"):
            r = lat.get(name)
            if r is None and name == "berth-vm":
                continue
            ratio = f"{r['median_ms'] / d['median_ms']:.2f}" if d and r and name != "docker" else ""
            label = {"berth-vm": "berth (--isolation hyperv, VM from the warm pool, TCG)"}.get(name, name)
            L.append(f"| `docker {' '.join(cmd)}` | {label} | {_ms(r, 'median_ms')} | {_ms(r, 'p10_ms')} | "
                     f"{_ms(r, 'p90_ms')} | {ratio} |")
    lb, ln = res["latency"].get("bridge", {}), res["latency"].get("none", {})
    extra = []
    for name in ("docker", "berth", "berth-vm"):
        if lb.get(name) and ln.get(name):
            extra.append(f"{name} {lb[name]['median_ms'] - ln[name]['median_ms']:+.1f} ms")
    if extra:
        L.append(f"\nWhat joining the default bridge adds to a run (median, bridge minus none): {', '.join(extra)}.\n")
    else:
        L.append("")

    mib = res["mib"]
    L.append("### Throughput\n")
    L.append(f"{mib} MiB per transfer; 2 warm-up transfers per engine, then {res['xfer_runs']} each, interleaved. "
             "MB/s = 10^6 bytes per second; p10 is the slower end.\n")
    L.append("| path | engine | median MB/s | p10 | p90 | berth / docker (median) |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: |")
    paths = (("container", "container → container, user-defined network, by name (embedded DNS)"),
             ("host", "host → port published on 127.0.0.1"))
    for key, label in paths:
        tp = res["throughput"].get(key, {})
        d = tp.get("docker")
        for name in ("docker", "berth"):
            r = tp.get(name)
            ratio = f"{r['median_mb_s'] / d['median_mb_s']:.2f}" if d and r and name != "docker" else ""
            L.append(f"| {label} | {name} | {_mbs(r, 'median_mb_s')} | {_mbs(r, 'p10_mb_s')} | "
                     f"{_mbs(r, 'p90_mb_s')} | {ratio} |")
    L.append("")
    L.append("- Container → container: a server container on the network runs "
             f"`nc -l -p {PORT} -e dd of=/dev/null bs=1M count={mib} iflag=fullblock` in a loop; each client is "
             f"`docker run --rm --network {NET} busybox sh -c …`, which connects to `{SERVER}:{PORT}` by name with "
             f"busybox nc, hands the socket to `dd if=/dev/zero bs=1M count={mib}` and waits for the server's close. "
             "The client times itself from before the name lookup to the close, with the clock read by "
             "busybox `ts %.s` (µs). Same kernel path on both engines (veth pairs on a Linux bridge); what can "
             "differ is the rules each engine puts on it.")
    L.append("- Host → published port: the same server container publishes `127.0.0.1:PORT:5001`; a Python client "
             f"sends {mib} MiB in 1 MiB `sendall` calls to 127.0.0.1:PORT, half-closes and waits for the close; "
             "timed from connect to close. **For Docker the client runs inside dockerd's network namespace** "
             "(`nsenter -t <dockerd pid> -n`), where its published ports are; there Docker serves 127.0.0.1 with "
             "its userland `docker-proxy` (the default), which copies every byte through a process"
             + (f" (it used {res['docker_proxy_cpu_s']:.2f} s of CPU over these transfers)"
                if res.get("docker_proxy_cpu_s") is not None else "")
             + ". berth serves it with an nftables DNAT rule in the kernel (route_localnet on its bridge).")
    ver = res.get("verified") or {}
    if ver:
        L.append("- Check: each server's log was counted for complete reads (`"
                 f"{mib}+0 records in`): " + "; ".join(
                     f"{n} {v['server_full_reads']} of {v['transfers_reported']}" for n, v in sorted(ver.items()))
                 + " reported transfers.")
    L.append("")
    if res["errors"]:
        L.append("### Failures in this run\n")
        for what, msg in res["errors"].items():
            L.append(f"- **{what}**:\n\n  ```\n  " + msg.replace("\n", "\n  ") + "\n  ```")
        L.append("")
    L.append("### How to reproduce\n")
    L.append("As root, with what bench/run.py needs (Debian's `docker.io`, `runc`, `conmon`, the docker CLI) "
             "plus `iptables` for dockerd and `nft` for berthd, from the repository root:\n")
    L.append(f"```\n.venv/bin/python bench/net.py --runs {res['runs']} --xfer-runs {res['xfer_runs']} "
             f"--mib {mib}\n```\n")
    raw = res.get("raw")
    L.append("Raw durations are kept in `bench/results/` (git-ignored)"
             + (f"; this section was written from `{raw}`." if raw else "."))
    L.append(END)
    return "\n".join(L)


def write_section(out: Path, section: str) -> None:
    text = out.read_text() if out.exists() else ""
    out.write_text(replace_section(text, section))


# --------------------------------------------------------------------------- main


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def measure(args: argparse.Namespace, res: dict[str, Any], launched: list[Engine], dirs: list[Path],
            rigs: list[Rig], objects: BerthObjects, scratch: Path, logdir: Path, env: dict[str, str]) -> None:
    from berth.api.wiring import nft_table  # the venv's berth
    from berth.testing.rootfs import write_rootfs_tar

    errors = res["errors"]
    rng = random.Random()
    bip_net, user_net = free_subnets(host_networks(), 2, rng)
    bridge = f"bnb{rng.randrange(16 ** 6):06x}"  # 9 characters, under IFNAMSIZ
    res["config"].update(berth_bridge=bridge, berth_bip=f"{next(bip_net.hosts())}/{bip_net.prefixlen}",
                         berth_subnet=str(user_net))
    tarball = write_rootfs_tar(scratch / "busybox.tar")
    ready: list[Engine] = []
    for name in ("docker", "berth"):
        d = Path(tempfile.mkdtemp(prefix=f"bn{name[0]}-", dir="/tmp"))
        dirs.append(d)
        try:
            if name == "docker":
                eng = start_docker_bridged(d, logdir, env, launched)
            else:
                objects.bridges.append(bridge)
                objects.nft_table = nft_table(f"{d}/root")
                res["config"]["berth_nft_table"] = objects.nft_table
                eng = base.start_berth(d, logdir, env, launched, "berth",
                                       ("--bridge", bridge, "--bip", res["config"]["berth_bip"]))
            res["versions"][name] = base.engine_version(eng)
            if name == "berth":
                res["versions"][name] += base.source_state()
            base.import_image(eng, tarball)
            ready.append(eng)
        except BenchError as e:
            errors[f"{name}: start/import"] = str(e)
            log(f"FAILED {name}: {e}")
    if not ready:
        return

    res["latency"]["bridge"] = base.latency(ready, LAT_BRIDGE, None, args.runs, errors)
    res["latency"]["none"] = base.latency(ready, LAT_NONE, None, args.runs, errors)
    berth_eng = next((e for e in ready if e.name == "berth"), None)
    if berth_eng is not None and shutil.which("qemu-system-x86_64"):  # the same starts in a VM, pool warm
        vm = dataclasses.replace(berth_eng, name="berth-vm", mode_args=("--isolation", "hyperv"), vm=True)
        for key, cmd in (("bridge", LAT_BRIDGE), ("none", LAT_NONE)):
            try:
                res["latency"][key]["berth-vm"] = warm_pool_latency(vm, cmd, args.runs)
            except BenchError as e:
                errors[f"berth-vm: docker {' '.join(cmd)}"] = str(e)

    by_name = {e.name: e for e in ready}
    rig_of: dict[str, Rig] = {}
    for eng in ready:
        try:
            if eng.name == "docker":
                rig_of[eng.name] = set_up_transfer(eng, args.mib, free_port(rng), None,
                                                   ["nsenter", "-t", str(dockerd_pid(eng)), "-n"], rigs, None)
            else:
                rig_of[eng.name] = set_up_transfer(eng, args.mib, free_port(rng), str(user_net), [], rigs, objects)
        except BenchError as e:
            errors[f"{eng.name}: transfer set-up"] = str(e)
            log(f"FAILED {eng.name}: {e}")
    names = [n for n in ("docker", "berth") if n in rig_of]

    def counted(name: str) -> None:
        rig_of[name].transfers += 1

    for key, once in (("container", lambda n: container_transfer(by_name[n], args.mib)),
                      ("host", lambda n: host_transfer(rig_of[n], args.mib))):
        proxy_before = proxy_cpu_seconds(by_name["docker"]) if "docker" in by_name else 0.0
        secs = interleaved(names, once, args.xfer_runs, 2, f"{key} throughput", errors, counted)
        if key == "host" and "docker" in by_name:  # evidence of the path Docker's bytes took
            res["docker_proxy_cpu_s"] = round(proxy_cpu_seconds(by_name["docker"]) - proxy_before, 2)
            log(f"docker-proxy used {res['docker_proxy_cpu_s']} s of CPU during the host transfers")
        res["throughput"][key] = {n: rate_summary(s, args.mib) for n, s in secs.items()}
        for n, r in res["throughput"][key].items():
            log(f"{key} throughput [{n}]: median {r['median_mb_s']:.0f} MB/s, p10 {r['p10_mb_s']:.0f}, "
                f"p90 {r['p90_mb_s']:.0f} (n={r['n']})")
    res["verified"] = verify_servers(by_name, rigs, args.mib, errors)


def main() -> int:
    ap = argparse.ArgumentParser(description="docker vs berthd networking benchmark")
    ap.add_argument("--runs", type=int, default=20, help="timed `docker run` per engine and command (default 20)")
    ap.add_argument("--xfer-runs", type=int, default=10, help="timed transfers per engine and path (default 10)")
    ap.add_argument("--mib", type=int, default=1024, help="MiB sent per transfer (default 1024)")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--from-json", type=Path, help="only rewrite the section of --out from an earlier run's JSON")
    ap.add_argument("--send", nargs=3, metavar=("HOST", "PORT", "MIB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.send:  # the host-side client, started by host_transfer (maybe inside dockerd's namespace)
        print(json.dumps({"seconds": send(args.send[0], int(args.send[1]), int(args.send[2]))}))
        return 0
    if args.from_json:
        write_section(args.out, render(json.loads(args.from_json.read_text())))
        return 0
    if os.geteuid() != 0:
        print("run as root (dockerd, runc and the bridges need it)", file=sys.stderr)
        return 2
    if args.runs < 1 or args.xfer_runs < 1 or args.mib < 1:
        print("--runs, --xfer-runs and --mib must be at least 1", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background

    session = base.new_session("net", "bnx-")
    stamp, logdir, scratch, env = session.stamp, session.logdir, session.scratch, session.env
    dirs = [scratch]

    launched: list[Engine] = []
    rigs: list[Rig] = []
    objects = BerthObjects([], "")
    res: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "runs": args.runs,
        "xfer_runs": args.xfer_runs, "mib": args.mib, "machine": base.machine_info(), "versions": {},
        "config": {"bridge_nf_call_iptables": sysctl("net.bridge.bridge-nf-call-iptables"),
                   "berth_bridge": "?", "berth_bip": "?", "berth_subnet": "?", "berth_nft_table": "?"},
        "latency": {}, "throughput": {}, "errors": {}}
    interrupted = False
    try:
        measure(args, res, launched, dirs, rigs, objects, scratch, logdir, env)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up")
    except Exception:  # keep cleanup and the record of what broke
        res["errors"]["bench"] = traceback.format_exc()
        log(res["errors"]["bench"])
    finally:
        res["loadavg_end"] = base.read("/proc/loadavg").strip()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
        try:
            tear_down_rigs(launched, rigs)
            base.cleanup(launched, dirs)
            if objects.nft_table:
                delete_berth_objects(objects)
        finally:
            signal.signal(signal.SIGINT, old)
    if interrupted:
        return 130
    res["logs"] = str(logdir.relative_to(REPO))
    res["rigs"] = [asdict(r) for r in rigs]
    raw = RESULTS / f"net-{stamp}.json"
    res["raw"] = str(raw.relative_to(REPO))
    raw.write_text(json.dumps(res, indent=2) + "\n")
    write_section(args.out, render(res))
    log(f"wrote {args.out} and {raw}")
    if res["errors"]:
        log("errors:\n" + "\n".join(f"  {k}: {v.splitlines()[0] if v else ''}" for k, v in res["errors"].items()))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
