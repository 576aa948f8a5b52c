"""End-to-end: a crash campaign. berthd is SIGKILLed at random moments of real work, again and again.

Theory of operation
-------------------
A seeded ``random.Random`` (the seed is printed in every failure; ``BERTH_CRASH_SEED`` replays one,
``BERTH_CRASH_KILLS`` changes the number of rounds) plans the rounds: an operation (pull from a local
registry, a classic build with RUN steps, run --rm, run -d then rm -f, commit (which pauses), save/rmi/load,
network create/use/rm, volume create/use/rm), an isolation where it matters (process, runsc, a utility VM)
and a delay. The operation's docker CLI commands run one after the other in a thread; berthd gets SIGKILL
after the delay (a few ms to 1.5 s) and is started again on the same root. After every restart:

- the daemon answers; the three survivors (a counter under runc, one under runsc, one in a VM) run on with
  the same pid and a log with no gap that still grows;
- every container's recorded state agrees with its runtime (runc/runsc ``state``, the VM monitor's
  ``state``, the freezer for paused runc containers); none is paused (nothing holds a pause once the
  daemon is gone); no auto-remove container is left created or exited; no runtime state has no record,
  and none is kept for a run that ended;
- the data root agrees with the records: no container directory, mounted root, network namespace,
  volume directory, dangling link in s/, bridge or nftables rule ("berth:<id>" comment) outlives what
  owns it;
- every image is inspectable and one or two, picked by the seed, save whole.

Each check gets a few seconds (GRACE) for what a restart does beside serving. The plan is a function
of the seed; where a kill lands inside an operation still depends on the machine's speed, so a replay
hits the same operations at nearly, not exactly, the same points. Each operation repeats (with fresh
names) until the kill, so every kill lands inside one.

At the end everything is removed, the daemon is stopped with SIGTERM, and the host and the data root
are searched for litter: mounts, processes, runtime state, cgroups, nftables rules naming the
campaign's addresses or bridges, bridges of removed networks, dangling symlinks, and files left under
containers/, s/, blobs/, ingest/, partial/, snapshots/, volumes/, build/, tmp/ and netns/.

Problems are collected through the whole campaign (each tagged with its round, the operation, and the
command the kill cut short) and reported together, so one run shows every class it found.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from berth_e2e_conftest import Daemon, assert_responsive, docker, is_dockerd, ping, popen_docker, wait_until

pytestmark = pytest.mark.timeout(400)

KILLS = int(os.environ.get("BERTH_CRASH_KILLS", "24"))
MAX_DELAY = 1.5
GRACE = 8.0  # seconds a restarted daemon gets to reconcile before a check counts as failed
COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done"
BASE = "busybox:latest"
BIG = "crash-big:1"
OPS = ("pull", "build", "run_rm", "run_rm_f", "commit", "save_load", "network", "volume")
ISOLATED_OPS = ("run_rm", "run_rm_f", "commit")
ISOLATION_ARGS = {"process": ["--isolation", "process"], "runsc": ["--runtime", "runsc"],
                  "vm": ["--isolation", "hyperv"]}
CGROUP = Path("/sys/fs/cgroup")
DOCKERFILE = ("FROM busybox:latest\nARG ROUND\nRUN echo \"$ROUND\" > /round && sleep 0.3\n"
              "RUN cat /round > /copy\n")


def _seed() -> int:
    env = os.environ.get("BERTH_CRASH_SEED")
    return int(env) if env else random.SystemRandom().randrange(1 << 31)


def _vm_usable() -> bool:
    """As tests/e2e/test_vm_isolation.py decides: VM isolation is tested wherever QEMU is installed."""
    return shutil.which("qemu-system-x86_64") is not None


# --------------------------------------------------------------------------- #
# The plan


@dataclass(frozen=True)
class Round:
    n: int
    op: str
    isolation: str   # "process", "runsc" or "vm" (ISOLATED_OPS), else "process"
    delay: float

    def label(self) -> str:
        iso = f"[{self.isolation}]" if self.op in ISOLATED_OPS else ""
        return f"round {self.n} {self.op}{iso} kill@{self.delay:.3f}s"


def plan(seed: int, kills: int, ops: tuple[str, ...], isolations: tuple[str, ...]) -> list[Round]:
    """The campaign for *seed*: the same rounds every time (the checks' sampling uses its own stream)."""
    rng = random.Random(seed)
    rounds = []
    for n in range(kills):
        op = rng.choice(ops)
        iso = rng.choice(isolations)
        # Half the kills land early (the first steps of an operation), the rest anywhere up to MAX_DELAY.
        delay = rng.uniform(0.005, 0.3) if rng.random() < 0.5 else rng.uniform(0.3, MAX_DELAY)
        rounds.append(Round(n, op, iso if op in ISOLATED_OPS else "process", round(delay, 3)))
    return rounds


@dataclass
class Campaign:
    """What the rounds share: names made at setup, and everything seen, for the final search."""

    d: Daemon
    work: Path
    registry_ref: str | None
    isolations: tuple[str, ...]
    survivors: dict[str, str] = field(default_factory=dict)          # isolation -> name
    survivor_pids: dict[str, int] = field(default_factory=dict)      # name -> pid
    survivor_last: dict[str, int] = field(default_factory=dict)      # name -> last number seen
    commit_targets: dict[str, str] = field(default_factory=dict)     # isolation -> name
    seen_ids: set[str] = field(default_factory=set)
    seen_names: dict[str, str] = field(default_factory=dict)          # id -> "name [runtime] (round)"
    seen_ips: set[str] = field(default_factory=set)
    seen_networks: dict[str, str] = field(default_factory=dict)       # id -> name
    problems: list[str] = field(default_factory=list)

    def steps(self, r: Round, k: int) -> list[list[str]]:
        """The docker commands of round *r*'s *k*-th pass (an operation repeats until the kill)."""
        n, iso = f"{r.n}-{k}", ISOLATION_ARGS[r.isolation]
        if r.op == "pull":
            assert self.registry_ref
            return [["rmi", "-f", self.registry_ref], ["pull", self.registry_ref]]
        if r.op == "build":
            return [["build", "-q", "-t", f"crash-build:{n}", "--build-arg", f"ROUND={n}", str(self.work / "ctx")]]
        if r.op == "run_rm":
            return [["run", "--rm", *iso, BASE, "sh", "-c", "echo hello; sleep 0.3"]]
        if r.op == "run_rm_f":
            # a published port gives it nftables rules of its own (runsc containers here have loopback only)
            ports = [] if r.isolation == "runsc" else ["-p", "127.0.0.1::8080"]
            return [["run", "-d", "--name", f"crash-d-{n}", *ports, *iso, BASE, "sleep", "1000"],
                    ["rm", "-f", f"crash-d-{n}"]]
        if r.op == "commit":
            return [["commit", self.commit_targets[r.isolation], f"crash-commit:{n}"]]
        if r.op == "save_load":
            return [["rmi", "-f", BIG], ["load", "-q", "-i", str(self.work / "big.tar")],
                    ["save", "-o", str(self.work / "round.tar"), BIG]]
        if r.op == "network":
            net = f"crash-net-{n}"
            return [["network", "create", net], ["run", "--rm", "--network", net, BASE, "true"], ["network", "rm", net]]
        if r.op == "volume":
            vol = f"crash-vol-{n}"
            return [["volume", "create", vol], ["run", "--rm", "-v", f"{vol}:/v", BASE, "sh", "-c", "echo x > /v/f"],
                    ["volume", "rm", vol]]
        raise AssertionError(r.op)


# --------------------------------------------------------------------------- #
# One operation in the background


@dataclass
class Step:
    argv: list[str]
    start: float
    end: float = 0.0
    rc: int | None = None
    out: str = ""


class Operation(threading.Thread):
    """Run a round's docker commands in order, pass after pass, until one fails or the campaign says stop."""

    MAX_PASSES = 50

    def __init__(self, d: Daemon, steps: Callable[[int], list[list[str]]]) -> None:
        super().__init__(daemon=True)
        self.d, self.steps = d, steps
        self.done: list[tuple[int, int, Step]] = []   # (pass, index in the pass, step)
        self.stop = threading.Event()
        self.proc: subprocess.Popen | None = None

    def run(self) -> None:
        for k in range(self.MAX_PASSES):
            for i, argv in enumerate(self.steps(k)):
                if self.stop.is_set():
                    return
                step = Step(argv, time.monotonic())
                self.done.append((k, i, step))
                self.proc = popen_docker(self.d, *argv)
                try:
                    out, _ = self.proc.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    out, _ = self.proc.communicate(timeout=10)
                step.end, step.rc, step.out = time.monotonic(), self.proc.returncode, (out or "")[-600:]
                if step.rc != 0:
                    return

    def finish(self) -> None:
        self.join(60)
        if self.is_alive() and self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.join(10)

    def kill_point(self, killed_at: float) -> str:
        """Which command the kill cut short."""
        for k, i, s in self.done:
            if s.end == 0.0 or s.end >= killed_at:
                return (f"during pass {k + 1} step {i + 1}/{len(self.steps(k))} `docker {' '.join(s.argv)}` "
                        f"(+{killed_at - s.start:.3f}s into it)")
        return "between commands" if all(s.rc == 0 for _, _, s in self.done) else "after a command failed on its own"

    def failures_before(self, killed_at: float) -> list[Step]:
        """Commands that failed before the kill: the daemon refused work it should have done."""
        return [s for _, _, s in self.done if s.rc not in (0, None) and s.end < killed_at]


# --------------------------------------------------------------------------- #
# What the runtime says


def runtime_state(d: Daemon, kind: str, cid: str) -> str | None:
    """runc's or runsc's status of *cid* in berth's state root; None when it has none."""
    state_root = Path(d.root, "runtime", kind)
    if not state_root.is_dir():
        return None
    cp = subprocess.run([kind, "--root", str(state_root), "state", cid], capture_output=True, text=True, timeout=30)
    if cp.returncode != 0:
        return None
    try:
        return str(json.loads(cp.stdout)["status"])
    except (ValueError, KeyError):
        return f"unreadable: {cp.stdout[:80]!r}"


def runtime_ids(d: Daemon, kind: str) -> set[str]:
    state_root = Path(d.root, "runtime", kind)
    if not state_root.is_dir():
        return set()
    return {p.name for p in state_root.iterdir() if p.is_dir()}


def vm_state(d: Daemon, cid: str) -> str | None:
    """The VM monitor's word on its container ("running", "paused", ...); None when no monitor answers."""
    path = os.path.join(d.root, "s", f"{cid[:16]}.vm")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"state\n")
            data = b""
            while not data.endswith(b"\n") and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    word, _, rest = data.decode(errors="replace").strip().partition(" ")
    return rest if word == "ok" else f"{word} {rest}".strip() or None


def freezer_state(cid: str) -> str | None:
    try:
        return (CGROUP / "freezer" / "berth" / cid / "freezer.state").read_text().strip()
    except OSError:
        return None


def nft_rules(d: Daemon) -> list[tuple[str, str, str]]:
    """The rules of the daemon's nftables table: (family, rule, the id its "berth:<id>" comment names)."""
    from berth.api.wiring import nft_table

    rules = []
    for family in ("ip", "ip6"):
        cp = subprocess.run(["nft", "list", "table", family, nft_table(d.root)], capture_output=True, text=True,
                            timeout=30)
        for line in cp.stdout.splitlines():
            m = re.search(r'comment "berth:([0-9a-f]{12,64})"', line)
            if m:
                rules.append((family, line.strip(), m.group(1)))
    return rules


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --------------------------------------------------------------------------- #
# The checks after each restart


def inspect_all(d: Daemon) -> list[dict]:
    ids = docker(d, "ps", "-aq", "--no-trunc").stdout.split()
    if not ids:
        return []
    cp = docker(d, "inspect", *ids, check=False)  # one may go (an auto-remove) between ps and inspect
    return json.loads(cp.stdout or "[]")


def container_problems(c: Campaign) -> list[str]:
    """Disagreements between berth's records and the runtimes, paused or auto-remove containers left."""
    d, problems = c.d, []
    containers = inspect_all(d)
    known = set()
    for info in containers:
        cid, name, st, hc = info["Id"], info["Name"].lstrip("/"), info["State"], info["HostConfig"]
        known.add(cid)
        c.seen_ids.add(cid)
        c.seen_names.setdefault(cid, f"{name} [{'vm' if hc.get('Isolation') in ('hyperv', 'vm') else hc.get('Runtime')}]")
        for net in (info.get("NetworkSettings") or {}).get("Networks") or {}:
            ip = info["NetworkSettings"]["Networks"][net].get("IPAddress")
            if ip:
                c.seen_ips.add(ip)
        vm = hc.get("Isolation") in ("hyperv", "vm")
        kind = "vm" if vm else (hc.get("Runtime") or "runc")
        rt = vm_state(d, cid) if vm else runtime_state(d, kind, cid)
        frozen = None if vm or kind != "runc" else freezer_state(cid)
        status, what = st["Status"], f"{name} ({cid[:12]}, {kind})"
        where = f"berth says {status}{' paused' if st['Paused'] else ''}, {kind} says {rt}, freezer {frozen}"
        if st["Paused"] or status == "paused":
            problems.append(f"{what} is paused with no operation holding it: {where}")
            if rt != "paused" or (kind == "runc" and frozen != "FROZEN"):
                problems.append(f"{what} state lie: {where}")
        elif status == "running":
            if rt != "running" or (kind == "runc" and frozen not in (None, "THAWED")):
                problems.append(f"{what} state lie: {where}")
            elif not _alive(st["Pid"]):
                problems.append(f"{what} is running by its record with pid {st['Pid']} gone")
        elif status in ("created", "exited", "dead"):
            if rt == "stopped":  # the release after an exit (runc delete) runs beside it: a moment, not for good
                problems.append(f"{what} runtime still holds the state of its ended run: {where}")
            elif rt is not None:
                problems.append(f"{what} state lie: {where}")
            if hc.get("AutoRemove"):
                problems.append(f"{what} auto-remove container left {status}")
        else:
            problems.append(f"{what} in transient state: {where}")
    for kind in ("runc", "runsc"):
        for orphan in sorted(runtime_ids(d, kind) - known):
            problems.append(f"{kind} state of {orphan[:12]} which has no container record "
                            f"({runtime_state(d, kind, orphan)})")
            c.seen_ids.add(orphan)
    running = {i["Id"] for i in containers if i["State"]["Running"]}
    return problems + storage_problems(c, known, running)


def storage_problems(c: Campaign, known: set[str], running: set[str]) -> list[str]:
    """Files of the data root that disagree with the records: what a kill left and no restart claimed."""
    root, problems = Path(c.d.root), []
    top = root / "containers"
    for entry in sorted(os.listdir(top)) if top.is_dir() else []:
        if entry not in known:
            problems.append(f"directory containers/{entry[:12]} with no container record")
    for mp in _mountpoints_under(str(root)):
        rel = Path(mp).relative_to(root).parts
        if rel[:1] == ("containers",) and len(rel) > 1 and rel[1] not in running:
            problems.append(f"mount {mp} of a container that is not running ({'no record' if rel[1] not in known else 'stopped'})")
        if rel[:1] == ("netns",) and len(rel) > 1 and rel[1] not in running:
            problems.append(f"network namespace {mp} of a container that is not running")
    netns = root / "netns"
    for entry in sorted(os.listdir(netns)) if netns.is_dir() else []:
        if entry not in running:
            problems.append(f"netns/{entry[:12]} of a container that is not running")
    volumes = set(docker(c.d, "volume", "ls", "-q").stdout.split())
    vdir = root / "volumes"
    on_disk = {e for e in os.listdir(vdir) if (vdir / e).is_dir()} if vdir.is_dir() else set()
    for name in sorted(on_disk - volumes):
        problems.append(f"volume directory volumes/{name} with no volume record")
    for name in sorted(volumes - on_disk):
        problems.append(f"volume {name} listed with no directory")
    sockets = root / "s"
    for entry in sorted(os.listdir(sockets)) if sockets.is_dir() else []:
        path = sockets / entry
        if path.is_symlink() and not path.exists():
            problems.append(f"dangling link s/{entry} -> {os.readlink(path)}")
    listed = set(docker(c.d, "network", "ls", "-q", "--no-trunc").stdout.split())
    for family, line, owner in nft_rules(c.d):
        if owner not in running and owner not in listed:
            whose = c.seen_names.get(owner) or c.seen_networks.get(owner) or "unknown"
            problems.append(f"nftables rule of {owner[:12]} ({whose}), neither a running container nor a network: "
                            f"{family}: {line}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for nid, name in sorted(c.seen_networks.items()):
        if nid not in listed and f"br-{nid[:12]}" in links:
            problems.append(f"bridge br-{nid[:12]} of removed network {name}")
    return problems


def survivor_problems(c: Campaign) -> list[str]:
    problems = []
    for iso, name in c.survivors.items():
        st = json.loads(docker(c.d, "inspect", "--format", "{{json .State}}", name, check=False).stdout or "null")
        if not st or not st["Running"] or st["Paused"] or st["Pid"] != c.survivor_pids[name]:
            problems.append(f"survivor {name} ({iso}) not running on as before: {st} (pid was {c.survivor_pids[name]})")
            continue
        nums = [int(x) for x in docker(c.d, "logs", name, check=False).stdout.split() if x.isdigit()]
        if nums != list(range(len(nums))):
            gaps = [(a, b) for a, b in zip(nums, nums[1:], strict=False) if b != a + 1][:5]
            problems.append(f"survivor {name} ({iso}) log has a gap or repeat: {gaps}")
        elif not nums or nums[-1] <= c.survivor_last.get(name, -1):
            problems.append(f"survivor {name} ({iso}) log does not grow: last {nums[-1:]} "
                            f"(was {c.survivor_last.get(name)})")
        else:
            c.survivor_last[name] = nums[-1]
    return problems


def image_problems(c: Campaign, rng: random.Random) -> list[str]:
    d, problems = c.d, []
    ids = sorted(set(docker(d, "images", "-aq", "--no-trunc").stdout.split()))
    if not ids:
        return ["no images at all (busybox at least must stay)"]
    cp = docker(d, "image", "inspect", *ids, check=False)
    if cp.returncode != 0:
        problems.append(f"listed images not inspectable: {cp.stderr.strip()[:300]}")
    for iid in rng.sample(ids, min(2, len(ids))):
        out = c.work / "check.tar"
        cp = docker(d, "save", "-o", str(out), iid, check=False, timeout=120)
        if cp.returncode != 0:
            problems.append(f"image {iid[:19]} does not save: {cp.stderr.strip()[:300]}")
            continue
        try:
            with tarfile.open(out) as tar:
                members = set(tar.getnames())
                manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            missing = [p for m in manifest for p in [m["Config"], *m["Layers"]] if p not in members]
            if missing:
                problems.append(f"image {iid[:19]} saved without {missing}")
        except (tarfile.TarError, KeyError, ValueError, TypeError) as exc:
            problems.append(f"image {iid[:19]} saves an unreadable archive: {exc}")
        out.unlink(missing_ok=True)
    return problems


def settle(fn, grace: float = GRACE) -> list[str]:
    """fn() until it finds nothing, for up to *grace* seconds (a restarted daemon reconciles); its last findings."""
    deadline = time.monotonic() + grace
    while True:
        found = fn()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


# --------------------------------------------------------------------------- #
# The final search for litter


def _mountpoints_under(path: str) -> list[str]:
    prefix = path.rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].encode().decode("unicode_escape")
        if mp == path or mp.startswith(prefix):
            found.append(mp)
    return found


def _processes_mentioning(text: str) -> list[str]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if text.encode() in raw or root.startswith(text):
            argv = raw.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {argv[:160]}")
    return found


def _cgroup_dirs() -> set[str]:
    return {str(p) for p in CGROUP.glob("*/berth/*") if p.is_dir()}


def litter(c: Campaign, cgroups_before: set[str]) -> dict[str, list[str]]:
    d, root = c.d, Path(c.d.root)
    found: dict[str, list[str]] = {}
    found["mounts"] = _mountpoints_under(str(d.tmp))
    found["processes"] = _processes_mentioning(str(d.tmp))
    found["runtime state"] = [str(p) for kind in ("runc", "runsc") for p in (root / "runtime" / kind).glob("*")]
    found["cgroups"] = sorted(_cgroup_dirs() - cgroups_before)  # the lock keeps other daemons away
    rules = []
    for family, line, owner in nft_rules(d):
        if owner in c.seen_ids or owner in c.seen_networks or \
                any(re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])", line) for ip in c.seen_ips) or \
                any(f"br-{nid[:12]}" in line for nid in c.seen_networks):
            rules.append(f"{family}: {line}")
    found["nftables rules"] = rules
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found["bridges"] = [f"br-{nid[:12]} ({name})" for nid, name in c.seen_networks.items() if f"br-{nid[:12]}" in links]
    dangling = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if os.path.islink(p) and not os.path.exists(p):
                dangling.append(f"{p} -> {os.readlink(p)}")
    found["dangling symlinks"] = dangling
    for sub in ("containers", "s", "blobs", "ingest", "partial", "snapshots", "volumes", "build", "tmp", "netns"):
        top = root / sub
        entries = [str(p) for p in top.rglob("*") if not p.is_dir() or p.is_symlink()] if top.is_dir() else []
        if sub in ("containers", "volumes", "snapshots", "netns"):  # empty directories count there too
            entries += [str(p) for p in top.glob("*") if p.is_dir() and not any(p.iterdir())] if top.is_dir() else []
        if sub == "s":  # the VM pool's learnt shapes: state kept on purpose across restarts, like berth.db
            entries = [e for e in entries if os.path.basename(e) != "pool-shapes.json"]
        found[f"files under {sub}/"] = sorted(set(entries))
    return {k: v for k, v in found.items() if v}


# --------------------------------------------------------------------------- #
# Setup


def _write_big_tar(path: Path, size: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("big.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _start_counter(c: Campaign, iso: str) -> None:
    name = f"crash-s-{iso}"
    docker(c.d, "run", "-d", "--name", name, *ISOLATION_ARGS[iso], BASE, "sh", "-c", COUNTER, timeout=240)
    c.survivors[iso] = name


def setup(c: Campaign, rootfs_tar: Path, registry) -> None:
    d = c.d
    docker(d, "import", str(rootfs_tar), BASE, timeout=120)
    _write_big_tar(c.work / "big-layer.tar", 6 << 20, 1)
    docker(d, "import", str(c.work / "big-layer.tar"), BIG, timeout=120)
    docker(d, "save", "-o", str(c.work / "big.tar"), BIG, timeout=120)
    ctx = c.work / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    if registry is not None:
        _write_big_tar(c.work / "pull-layer.tar", 12 << 20, 2)
        docker(d, "import", str(c.work / "pull-layer.tar"), c.registry_ref, timeout=120)
        docker(d, "push", c.registry_ref, timeout=120)
        docker(d, "rmi", c.registry_ref)
    for iso in c.isolations:
        _start_counter(c, iso)
        target = f"crash-t-{iso}"
        docker(d, "run", "-d", "--name", target, *ISOLATION_ARGS[iso], BASE, "sleep", "100000", timeout=240)
        c.commit_targets[iso] = target
    for name in c.survivors.values():
        wait_until(lambda n=name: "3" in docker(d, "logs", n).stdout.split(), 180, f"survivor {name} to count")
        c.survivor_pids[name] = json.loads(docker(d, "inspect", "--format", "{{json .State}}", name).stdout)["Pid"]


def remove_everything(d: Daemon) -> list[str]:
    """What a user does to empty berth; the commands that failed."""
    failed = []

    def run(*args: str) -> None:
        cp = docker(d, *args, check=False, timeout=180)
        if cp.returncode != 0:
            failed.append(f"`docker {' '.join(args)[:120]}` exited {cp.returncode}: {cp.stderr.strip()[:300]}")

    ids = docker(d, "ps", "-aq").stdout.split()
    if ids:
        run("rm", "-f", *ids)
    images = sorted(set(docker(d, "images", "-aq").stdout.split()))
    if images:
        run("rmi", "-f", *images)
    vols = docker(d, "volume", "ls", "-q").stdout.split()
    if vols:
        run("volume", "rm", "-f", *vols)
    nets = docker(d, "network", "ls", "--filter", "type=custom", "-q").stdout.split()
    if nets:
        run("network", "rm", *nets)
    run("builder", "prune", "-af")
    left = {"containers": docker(d, "ps", "-aq").stdout.split(), "images": docker(d, "images", "-aq").stdout.split(),
            "volumes": docker(d, "volume", "ls", "-q").stdout.split(),
            "networks": docker(d, "network", "ls", "--filter", "type=custom", "-q").stdout.split()}
    failed += [f"{k} still listed after removal: {v}" for k, v in left.items() if v]
    return failed


# --------------------------------------------------------------------------- #
# The campaign


def test_the_plan_is_a_function_of_the_seed():
    """A failure is replayed with its seed: the same rounds (operation, isolation, kill delay) come back."""
    a = plan(12345, KILLS, OPS, tuple(ISOLATION_ARGS))
    assert a == plan(12345, KILLS, OPS, tuple(ISOLATION_ARGS)) != plan(12346, KILLS, OPS, tuple(ISOLATION_ARGS))
    assert all(0.005 <= r.delay <= MAX_DELAY for r in a)
    assert all(r.isolation == "process" for r in a if r.op not in ISOLATED_OPS)


def test_crash_campaign(berthd_factory, rootfs_tar, tmp_path):
    seed = _seed()
    d = berthd_factory()
    if is_dockerd(d):
        pytest.skip("berth's runtime state, data root and crash recovery")
    d.env["DOCKER_BUILDKIT"] = "0"
    isolations = ("process", "runsc", "vm") if _vm_usable() else ("process", "runsc")
    if shutil.which("runsc") is None:
        isolations = tuple(i for i in isolations if i != "runsc")
    ops = OPS if shutil.which("docker-registry") else tuple(o for o in OPS if o != "pull")
    rounds = plan(seed, KILLS, ops, isolations)
    header = (f"crash campaign seed={seed} (replay: BERTH_CRASH_SEED={seed}), {len(rounds)} kills, "
              f"isolations {isolations}, daemon log {d.log_path}")
    print(header)
    cgroups_before = _cgroup_dirs()
    registry_cm = None
    if "pull" in ops:
        from berth.testing.registry import LocalRegistry

        (tmp_path / "registry").mkdir()
        registry_cm = LocalRegistry(tmp_path / "registry")
        registry_cm.start()
    try:
        c = Campaign(d, tmp_path, f"{registry_cm.address}/crash/big:1" if registry_cm else None, isolations)
        t0 = time.monotonic()
        setup(c, rootfs_tar, registry_cm)
        print(f"setup took {time.monotonic() - t0:.1f}s")
        check_rng = random.Random(seed ^ 0x5EED)
        campaign_start = time.monotonic()
        for r in rounds:
            _one_round(c, r, check_rng)
        print(f"{len(rounds)} rounds took {time.monotonic() - campaign_start:.1f}s")
        _finale(c, cgroups_before)
    finally:
        if registry_cm is not None:
            registry_cm.stop()
    if c.problems:
        pytest.fail(header + f"\n{len(c.problems)} problems:\n" + "\n".join(c.problems), pytrace=False)


def _one_round(c: Campaign, r: Round, check_rng: random.Random) -> None:
    d = c.d
    op = Operation(d, lambda k: c.steps(r, k))
    op.start()
    time.sleep(r.delay)
    op.stop.set()
    killed_at = time.monotonic()
    d.kill9()
    op.finish()
    point = op.kill_point(killed_at)
    for _, _, s in op.done:  # networks made and removed between two kills are searched for at the end too
        if s.argv[:2] == ["network", "create"] and re.fullmatch(r"[0-9a-f]{64}", s.out.strip()):
            c.seen_networks[s.out.strip()] = s.argv[2]
        if s.argv[:2] == ["run", "-d"] and re.fullmatch(r"[0-9a-f]{64}", s.out.strip()):
            c.seen_ids.add(s.out.strip())
            c.seen_names.setdefault(s.out.strip(), f"{s.argv[3]} [{r.isolation}]")
    tag = f"{r.label()} {point}"
    for s in op.failures_before(killed_at):
        c.problems.append(f"{tag}: `docker {' '.join(s.argv)}` failed before the kill (exit {s.rc}): {s.out.strip()}")
    restart_began = time.monotonic()
    log_offset = d.log_path.stat().st_size
    d.restart()
    took = time.monotonic() - restart_began
    if took > 10:
        c.problems.append(f"{tag}: the daemon took {took:.1f}s to answer /_ping after its restart")
    if not ping(d.sock, timeout=3.0):
        c.problems.append(f"{tag}: the restarted daemon stopped answering /_ping")
    for nid_name in docker(d, "network", "ls", "--filter", "type=custom", "--format", "{{.ID}} {{.Name}}",
                           "--no-trunc").stdout.splitlines():
        nid, _, name = nid_name.partition(" ")
        c.seen_networks[nid] = name
    found = survivor_problems(c)
    found += settle(lambda: container_problems(c))
    found += image_problems(c, check_rng)
    with open(d.log_path, errors="replace") as f:
        f.seek(log_offset)
        recovery = [line.split(" ", 2)[-1].strip() for line in f if " WARNING " in line or " ERROR " in line]
    if found and recovery:
        found[0] += "\n    the restart logged: " + "\n    the restart logged: ".join(recovery[:8])
    c.problems += [f"{tag}: {p}" for p in found]
    # The user retries what the kill cut short: rm -f of run -d containers left from this round
    # (an adopted container must be removable), so that VMs do not pile up.
    left = [n for n in docker(d, "ps", "-a", "--filter", "name=^crash-d-", "--format", "{{.Names}}").stdout.split()]
    if left:
        cp = docker(d, "rm", "-f", *left, check=False, timeout=120)
        if cp.returncode != 0:
            c.problems.append(f"{tag}: `docker rm -f {' '.join(left)}` after the restart failed: {cp.stderr.strip()}")
    print(f"{tag}: {len(found)} problems; restart logged {recovery}")


def _annotate(c: Campaign, path: str) -> str:
    """*path* with the container it belongs to, when an id (or a 12/16-digit prefix) in it names one seen."""
    for word in re.findall(r"[0-9a-f]{12,64}", path):
        for cid, what in c.seen_names.items():
            if cid.startswith(word):
                return f"{path}  <- container {what}"
    return path


def _finale(c: Campaign, cgroups_before: set[str]) -> None:
    d = c.d
    if c.registry_ref:
        # an interrupted pull's partial download is kept to resume with; finishing the pull uses it up
        cp = docker(d, "pull", c.registry_ref, check=False, timeout=180)
        if cp.returncode != 0:
            c.problems.append(f"end: the final pull failed: {cp.stderr.strip()}")
    c.problems += [f"end: container check: {p}" for p in settle(lambda: container_problems(c))]
    c.problems += [f"end: {p}" for p in remove_everything(d)]
    assert_responsive(d)
    d.proc.send_signal(signal.SIGTERM)  # only the daemon: the fixture's stop() would also clean up
    try:
        d.proc.wait(30)
    except subprocess.TimeoutExpired:
        c.problems.append("end: berthd did not stop within 30 s of SIGTERM")
        d.kill9()
    time.sleep(0.5)
    for what, paths in litter(c, cgroups_before).items():
        paths = [_annotate(c, p) for p in paths]
        shown = paths[:15] + ([f"... and {len(paths) - 15} more"] if len(paths) > 15 else [])
        c.problems.append(f"end: {what} left after removing everything and stopping the daemon:\n    "
                          + "\n    ".join(shown))
