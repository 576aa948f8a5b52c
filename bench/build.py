#!/usr/bin/env python3
"""The build benchmark: one Dockerfile built by Debian's dockerd and by berthd, side by side.

    .venv/bin/python bench/build.py [--cold 7] [--cached 15] [--mib 50] [--out BENCHMARKS.md]

Strategy: reuse bench/run.py's machinery (Engine, the busybox tarball, summaries,
cleanup) and bench/net.py's care for the host (berthd gets a bridge name and a
subnet of its own, deleted by name at the end), and change only what building
needs. Both daemons get the same busybox image (`docker import` of one tarball)
and build the same context directory: a Dockerfile of five small RUN steps and a
COPY of N MiB of random bytes (incompressible, written once, so both engines
receive exactly the same context). The docker CLI drives both with the classic
builder (`DOCKER_BUILDKIT=0`) and `--network none` (run.py's dockerd has no
bridge). Three builds are timed, as the wall clock of the CLI process, with the
engines interleaved (docker, berth, docker, berth, ...):

1. cold: `docker build --no-cache`; one untimed warm-up per engine first, and
   the image is removed (`docker rmi`, untimed) before each run, so every run
   starts from the same store.
2. fully cached: the same build without --no-cache, after one build that fills
   the cache and one untimed cached build.
3. the floor: a Dockerfile of FROM alone, from the same context: the CLI, the
   context upload and its intake, with no step to run or look up; it tells how
   much of the cached build is the context and how much the cache lookups.

Every timed build's output is read (the classic builder's "Step N/M", "Using
cache" and "Successfully built" lines): a cold run must hit the cache for no
step, a cached run for every step, cached and floor runs must end at the same
image each time, or the sample is refused and the engine's failure recorded. At the end a container
from each engine's image checks the copied file's sha256 and what each RUN
step wrote, so a fast build that built the wrong thing cannot pass.

Traffic: none leaves the machine. The builds run with --network none; the CLI
talks to the daemons over Unix sockets. Everything started is stopped and
removed at the end, also on Ctrl-C or SIGTERM.

The results go between the build markers of BENCHMARKS.md (bench/run.py keeps
that section when it rewrites the file) and, raw, to bench/results/build-<stamp>.json,
with each engine's first build output of each kind in the log directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
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

BEGIN = "<!-- build benchmark: begin -->"
END = "<!-- build benchmark: end -->"

TAG = "bench-build"
FLOOR_TAG = "bench-floor"
BLOB = "blob.bin"
BUILD_TIMEOUT = 600  # seconds for one build; a cold build here takes a few

# The Dockerfile both engines build. Five RUN steps write small files; the COPY
# brings the random blob; the last RUN runs on top of the copied layer.
DOCKERFILE = f"""\
FROM busybox
RUN echo one > /step1
RUN mkdir -p /app/etc && echo two > /app/etc/step2
RUN seq 1 1000 > /app/numbers
RUN ln -s numbers /app/numbers.link && chmod 600 /app/etc/step2
COPY {BLOB} /app/{BLOB}
RUN ls -l /app/{BLOB} | awk '{{print $5}}' > /app/blob.size
"""

# The floor: a build of the same context that does nothing but name the base image.
# It costs what any build of this context costs (the CLI's tar stream of the blob,
# the daemon receiving and unpacking it) and nothing else.
FLOOR_DOCKERFILE = "FROM busybox\n"

# What a container from the built image prints, one value per line (see expected_check).
CHECK = ["run", "--rm", "--network", "none", TAG, "sh", "-c",
         f"sha256sum /app/{BLOB} | cut -d' ' -f1; cat /step1 /app/etc/step2 /app/blob.size; "
         "wc -l < /app/numbers.link; stat -c %a /app/etc/step2"]


# --------------------------------------------------------------------------- pure parts


def dockerfile_steps(text: str) -> int:
    """How many steps the classic builder counts in *text*: its instruction lines."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


@dataclass(frozen=True)
class Kind:
    """One kind of timed build: how it is asked for and what its output must show."""

    name: str  # "cold", "cached", "floor": the key in the results
    no_cache: bool
    dockerfile: str  # its file name in the context
    tag: str
    steps: int  # "Step N/M": M
    cache_hits: int  # "Using cache" lines a valid sample prints

    def args(self, context: Path) -> list[str]:
        """The docker CLI arguments (DOCKER_BUILDKIT=0 is in the environment)."""
        return ["build", *(["--no-cache"] if self.no_cache else []), "--network", "none",
                *(["-f", str(context / self.dockerfile)] if self.dockerfile != "Dockerfile" else []),
                "-t", self.tag, str(context)]


_STEPS = dockerfile_steps(DOCKERFILE)
COLD = Kind("cold", True, "Dockerfile", TAG, _STEPS, 0)
CACHED = Kind("cached", False, "Dockerfile", TAG, _STEPS, _STEPS - 1)
FLOOR = Kind("floor", False, "Dockerfile.floor", FLOOR_TAG, dockerfile_steps(FLOOR_DOCKERFILE), 0)
KINDS = (COLD, CACHED, FLOOR)


def expected_check(sha256: str, size: int) -> list[str]:
    """The lines CHECK prints for an image built right from a blob of *size* bytes with digest *sha256*."""
    return [sha256, "one", "two", str(size), "1000", "600"]


@dataclass(frozen=True)
class BuildReport:
    """What one classic-builder run printed."""

    steps: int  # the highest N of "Step N/M" seen
    total: int  # M
    cache_hits: int  # " ---> Using cache" lines
    image_id: str  # from "Successfully built ID", "" if absent
    tagged: bool  # "Successfully tagged TAG" seen


_STEP = re.compile(r"^Step (\d+)/(\d+) : ")
_BUILT = re.compile(r"^Successfully built ([0-9a-f]{12,64})\s*$")


def parse_build(output: str, tag: str = TAG) -> BuildReport:
    """Read the classic builder's progress lines from the CLI's output."""
    steps = total = hits = 0
    image_id, tagged = "", False
    for raw in output.splitlines():
        line = raw.rstrip()
        m = _STEP.match(line)
        if m:
            steps, total = max(steps, int(m.group(1))), int(m.group(2))
            continue
        if line.strip() == "---> Using cache":
            hits += 1
            continue
        m = _BUILT.match(line)
        if m:
            image_id = m.group(1)
            continue
        if line.startswith("Successfully tagged ") and line.split()[-1] in (tag, f"{tag}:latest"):
            tagged = True
    return BuildReport(steps, total, hits, image_id, tagged)


def judge(report: BuildReport, kind: Kind, image_id: str = "") -> str:
    """Why *report* is not a valid sample of *kind* ("" if it is).

    Every step must have run (a cold build hitting the cache for none, a cached
    build for every step after FROM) and, if *image_id* is given, the build
    must have ended at that image.
    """
    if report.total != kind.steps or report.steps != kind.steps:
        return f"printed Step {report.steps}/{report.total}, expected {kind.steps}/{kind.steps}"
    if not report.image_id or not report.tagged:
        return f"did not print `Successfully built ID` and `Successfully tagged {kind.tag}:latest`"
    if report.cache_hits != kind.cache_hits:
        return (f"used the cache for {report.cache_hits} of {kind.steps - 1} steps, expected {kind.cache_hits} "
                f"(a {kind.name} build)")
    if image_id and report.image_id != image_id[:len(report.image_id)]:
        return f"ended at image {report.image_id}, not at {image_id} as the build before did"
    return ""


def replace_section(text: str, section: str) -> str:
    """*text* with this benchmark's marked section replaced by (or, without one, appended as) *section*."""
    replaced: str = net.replace_section(text, section, BEGIN, END)
    return replaced


def _s(r: dict[str, Any] | None, key: str) -> str:
    return "—" if not r else f"{r[key] / 1000:.2f} s"


def render(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md section, markers included."""
    m, cfg = res["machine"], res["config"]
    L = [BEGIN, "## Build: berth vs Docker (classic builder)\n",
         "Generated by `bench/build.py` (bench/run.py keeps this section when it rewrites the file); "
         "do not edit by hand. Rerun to refresh.\n"]
    L.append(f"- Date: {res['date']}; CPU: {m['nproc']} × {m['cpu']}; memory {m['mem_total_mib']} MiB; "
             f"kernel {m['kernel']}; client: {m['docker_cli']}")
    L.append(f"- Docker: {res['versions'].get('docker', 'not started')}; dockerd as bench/run.py starts it "
             "(own network namespace, `--bridge none --iptables=false`)")
    L.append(f"- berth: {res['versions'].get('berth', 'not started')}; default bridge `{cfg['berth_bridge']}` "
             f"{cfg['berth_bip']} (unused: the builds run with `--network none`)")
    L.append(f"- Load average at start / end: {m['loadavg_start']} / {res.get('loadavg_end', '?')}\n")

    mib = cfg["mib"]
    L.append(f"The Dockerfile, built from a context of itself and `{BLOB}`, {mib} MiB from `os.urandom` "
             "(incompressible; one file, the same bytes for both engines), onto the same `busybox` image "
             "imported into both:\n")
    L.append("```dockerfile\n" + cfg["dockerfile"].rstrip("\n") + "\n```\n")
    L.append("Wall clock of the docker CLI process, start to exit, with `DOCKER_BUILDKIT=0` (the classic "
             "builder on both), engines interleaved docker, berth, docker, berth, …\n")
    L.append("| build | engine | runs | median | p10 | p90 | berth / docker (median) |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    rows = (("cold", f"cold: `docker build --no-cache --network none -t {TAG} .`"),
            ("cached", f"fully cached: `docker build --network none -t {TAG} .`"),
            ("floor", f"floor: `docker build --network none -f {FLOOR.dockerfile} -t {FLOOR_TAG} .`"))
    for key, label in rows:
        t = res["timings"].get(key, {})
        d = t.get("docker")
        for name in ("docker", "berth"):
            r = t.get(name)
            ratio = f"{r['median_ms'] / d['median_ms']:.2f}" if d and r and name != "docker" else ""
            L.append(f"| {label} | {name} | {r['n'] if r else 0} | {_s(r, 'median_ms')} | {_s(r, 'p10_ms')} | "
                     f"{_s(r, 'p90_ms')} | {ratio} |")
    L.append("")
    first = ", ".join(f"{n} {ms / 1000:.2f} s" for n, ms in sorted(res["first_cold_ms"].items()))
    L.append(f"- Cold: one untimed warm-up build per engine{f' ({first})' if first else ''}, then "
             f"{res['cold_runs']} timed runs each; before every run the previous image is removed "
             f"(`docker rmi {TAG}`, untimed).")
    L.append(f"- Fully cached: one build to fill the cache and one untimed cached build per engine, then "
             f"{res['cached_runs']} timed runs each. The CLI still sends the whole context ({mib} MiB and "
             "the Dockerfiles, as a tar stream) on every build, and the daemon must checksum the COPY's "
             "source to know it is unchanged.")
    L.append(f"- Floor: `{FLOOR.dockerfile}` is `{FLOOR_DOCKERFILE.strip()}` alone, built from the same "
             f"context: the CLI, the {mib} MiB upload and the daemon taking the context in, with no step to "
             f"run or look up; one untimed build, then {res['cached_runs']} timed runs each.")
    above = []
    for name in ("docker", "berth"):
        c, f = res["timings"].get("cached", {}).get(name), res["timings"].get("floor", {}).get(name)
        if c and f:
            above.append(f"{name} {(c['median_ms'] - f['median_ms']) / 1000:+.2f} s")
    if above:
        L.append("- What the cache lookups add above the floor (medians, fully cached minus floor): "
                 + ", ".join(above) + ".")
    L.append(f"- Checks: every timed build's output must show all its steps (`Step N/{cfg['steps']}`); a cold "
             "build may not print `Using cache`, a fully cached one must print it for each of the "
             f"{cfg['steps'] - 1} steps after FROM, and cached and floor builds must end at the same image "
             "every time. After the runs a container from each engine's image prints the copied file's "
             "sha256 and what the RUN steps wrote: "
             + (", ".join(f"{n} {'right' if ok else 'WRONG'}" for n, ok in sorted(res["verified"].items()))
                or "not checked") + ".")
    L.append("")
    L.append("### Against the target\n")
    for key, label in (("cold", "cold"), ("cached", "fully cached")):
        t = res["timings"].get(key, {})
        if t.get("docker") and t.get("berth"):
            r = t["berth"]["median_ms"] / t["docker"]["median_ms"]
            L.append(f"- berth faster than Docker, {label}: {r:.2f} × Docker's median "
                     f"({'met' if r < 1 else 'not met'}).")
        else:
            L.append(f"- {label}: not measured for both engines in this run.")
    L.append("")
    if res["errors"]:
        L.append("### Failures in this run\n")
        for what, msg in res["errors"].items():
            L.append(f"- **{what}**:\n\n  ```\n  " + msg.replace("\n", "\n  ") + "\n  ```")
        L.append("")
    L.append("### How to reproduce\n")
    L.append("As root, with what bench/run.py needs (Debian's `docker.io`, `runc`, `conmon`, the docker CLI) "
             "and `nft` for berthd, from the repository root:\n")
    L.append(f"```\n.venv/bin/python bench/build.py --cold {res['cold_runs']} --cached {res['cached_runs']} "
             f"--mib {mib}\n```\n")
    raw = res.get("raw")
    L.append("Raw durations, image ids and each engine's first build output of each kind are kept in "
             "`bench/results/` (git-ignored)" + (f"; this section was written from `{raw}`." if raw else "."))
    L.append(END)
    return "\n".join(L)


def write_section(out: Path, section: str) -> None:
    text = out.read_text() if out.exists() else ""
    out.write_text(replace_section(text, section))


# --------------------------------------------------------------------------- context


def make_context(directory: Path, mib: int) -> tuple[str, int]:
    """Write the Dockerfile and *mib* MiB of random bytes into *directory*; the blob's sha256 and size."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / COLD.dockerfile).write_text(DOCKERFILE)
    (directory / FLOOR.dockerfile).write_text(FLOOR_DOCKERFILE)
    digest = hashlib.sha256()
    with open(directory / BLOB, "wb") as f:
        for _ in range(mib):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest(), mib << 20


# --------------------------------------------------------------------------- builds


@dataclass
class Outputs:
    """Where the first build output of each kind and engine is kept, and which were kept."""

    logdir: Path
    kept: set[str]

    def keep(self, eng: Engine, kind: str, cp: Any) -> None:
        key = f"{eng.name}-{kind}"
        if key in self.kept:
            return
        self.kept.add(key)
        (self.logdir / f"build-{key}.txt").write_text(
            f"$ docker {' '.join(cp.args[3:])}\n--- stdout\n{cp.stdout}\n--- stderr\n{cp.stderr}\n")


def build_once(eng: Engine, context: Path, kind: Kind, outputs: Outputs,
               image_id: str = "") -> tuple[float, BuildReport]:
    """One timed build; its seconds and report, or BenchError if it failed or was not the kind of build asked for."""
    args = kind.args(context)
    t0 = time.perf_counter()
    cp = eng.docker(args, timeout=BUILD_TIMEOUT, check=False)
    elapsed = time.perf_counter() - t0
    outputs.keep(eng, kind.name, cp)
    if cp.returncode != 0:
        raise BenchError(eng.failure(args, cp))
    report = parse_build(cp.stdout, kind.tag)
    why = judge(report, kind, image_id)
    if why:
        tail = "\n".join(cp.stdout.strip().splitlines()[-12:])
        raise BenchError(f"{eng.name}: `docker {' '.join(args)}` {why}; its output ended:\n{tail}")
    return elapsed, report


def remove_image(eng: Engine, errors: dict[str, str]) -> None:
    cp = eng.docker(["rmi", TAG], timeout=120, check=False)
    if cp.returncode != 0 and "No such image" not in (cp.stderr or "") and "not found" not in (cp.stderr or ""):
        errors.setdefault(f"{eng.name}: rmi between cold runs", eng.failure(["rmi", TAG], cp))
        log(f"WARNING: {eng.failure(['rmi', TAG], cp)}")


def interleaved(engines: list[Engine], once: Callable[[Engine], tuple[float, BuildReport]], runs: int,
                label: str, errors: dict[str, str],
                before: Callable[[Engine], None] | None = None) -> dict[str, list[tuple[float, BuildReport]]]:
    """Run docker, berth, docker, berth, ... *runs* times each; an engine that fails drops out."""
    live = list(engines)
    samples: dict[str, list[tuple[float, BuildReport]]] = {e.name: [] for e in live}
    for i in range(runs):
        for eng in list(live):
            try:
                if before is not None:
                    before(eng)
                secs, report = once(eng)
                samples[eng.name].append((secs, report))
                log(f"{label} [{eng.name}] {i + 1}/{runs}: {secs:.2f} s")
            except BenchError as e:
                errors[f"{eng.name}: {label}"] = str(e)
                log(f"FAILED: {e}")
                live.remove(eng)
    return {n: s for n, s in samples.items() if s}


def summary(samples: list[tuple[float, BuildReport]]) -> dict[str, Any]:
    out: dict[str, Any] = base.summarize([s for s, _ in samples])
    out["image_ids"] = [r.image_id for _, r in samples]
    return out


def verify(eng: Engine, want: list[str]) -> tuple[bool, str]:
    """Run CHECK from the engine's image; whether it printed *want*, and what it printed."""
    cp = eng.docker(CHECK, timeout=120, check=False)
    got = cp.stdout.split()
    return cp.returncode == 0 and got == want, (cp.stdout + cp.stderr).strip()[:1000]


# --------------------------------------------------------------------------- main


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def measure(args: argparse.Namespace, res: dict[str, Any], launched: list[Engine], dirs: list[Path],
            objects: Any, scratch: Path, logdir: Path, env: dict[str, str]) -> None:
    from berth.api.wiring import nft_table  # the venv's berth
    from berth.testing.rootfs import write_rootfs_tar

    errors: dict[str, str] = res["errors"]
    rng = random.Random()
    (bip_net,) = net.free_subnets(net.host_networks(), 1, rng)
    bridge = f"bbb{rng.randrange(16 ** 6):06x}"  # 9 characters, under IFNAMSIZ
    res["config"].update(berth_bridge=bridge, berth_bip=f"{next(bip_net.hosts())}/{bip_net.prefixlen}")

    context = scratch / "context"
    sha, size = make_context(context, args.mib)
    res["config"].update(blob_sha256=sha, blob_bytes=size, steps=COLD.steps)
    log(f"context {context}: Dockerfile ({COLD.steps} steps) and {BLOB}, {size >> 20} MiB, sha256 {sha[:16]}…")
    tarball = write_rootfs_tar(scratch / "busybox.tar")

    ready: list[Engine] = []
    for name in args.engines.split(","):
        d = Path(tempfile.mkdtemp(prefix=f"bb{name[0]}-", dir="/tmp"))
        dirs.append(d)
        try:
            if name == "docker":
                eng = base.start_docker(d, logdir, env, launched)
            elif name == "berth":
                objects.bridges.append(bridge)
                objects.nft_table = nft_table(f"{d}/root")
                eng = base.start_berth(d, logdir, env, launched, "berth",
                                       ("--bridge", bridge, "--bip", res["config"]["berth_bip"]))
            else:
                raise BenchError(f"unknown engine {name!r}: --engines takes docker and/or berth")
            res["versions"][name] = base.engine_version(eng)
            if name == "berth":
                res["versions"][name] += base.source_state()
            base.import_image(eng, tarball)
            ready.append(eng)
        except BenchError as e:
            errors[f"{name}: start/import"] = str(e)
            log(f"FAILED {name}: {e}")
    outputs = Outputs(logdir, set())

    # cold: one warm-up each, then interleaved runs, each from a store without the last run's image
    warm: list[Engine] = []
    for eng in ready:
        try:
            secs, _ = build_once(eng, context, COLD, outputs)
            res["first_cold_ms"][eng.name] = round(secs * 1000, 1)
            log(f"cold warm-up [{eng.name}]: {secs:.2f} s")
            warm.append(eng)
        except BenchError as e:
            errors[f"{eng.name}: cold warm-up"] = str(e)
            log(f"FAILED: {e}")
    cold = interleaved(warm, lambda e: build_once(e, context, COLD, outputs), args.cold_runs,
                       "cold build", errors, before=lambda e: remove_image(e, errors))
    res["timings"]["cold"] = {n: summary(s) for n, s in cold.items()}

    # fully cached, then the floor: one untimed build of each kind first (the cached one
    # after a build that fills the cache), then interleaved runs that must end at the same image
    for kind in (CACHED, FLOOR):
        ends: dict[str, str] = {}
        for eng in warm:
            try:
                if kind is CACHED:
                    eng.docker(kind.args(context), timeout=BUILD_TIMEOUT)
                _, report = build_once(eng, context, kind, outputs)
                ends[eng.name] = report.image_id
            except BenchError as e:
                errors[f"{eng.name}: {kind.name} warm-up"] = str(e)
                log(f"FAILED: {e}")

        def once(e: Engine, k: Kind = kind, ends: dict[str, str] = ends) -> tuple[float, BuildReport]:
            return build_once(e, context, k, outputs, ends[e.name])

        samples = interleaved([e for e in warm if e.name in ends], once, args.cached_runs,
                              f"{kind.name} build", errors)
        res["timings"][kind.name] = {n: summary(s) for n, s in samples.items()}
    for key, per in res["timings"].items():
        for n, r in per.items():
            log(f"{key} [{n}]: median {r['median_ms'] / 1000:.2f} s, p10 {r['p10_ms'] / 1000:.2f}, "
                f"p90 {r['p90_ms'] / 1000:.2f} (n={r['n']})")

    want = expected_check(sha, size)
    for eng in warm:
        ok, printed = verify(eng, want)
        res["verified"][eng.name] = ok
        if not ok:
            errors[f"{eng.name}: image check"] = (f"`docker {' '.join(CHECK[:5])} …` printed:\n{printed}\n"
                                                  f"expected the lines: {' '.join(want)}")
        log(f"{eng.name}: built image {'checked' if ok else 'WRONG: ' + printed[:200]}")


def main() -> int:
    ap = argparse.ArgumentParser(description="docker vs berthd build benchmark (classic builder)")
    ap.add_argument("--cold", dest="cold_runs", type=int, default=7,
                    help="timed --no-cache builds per engine (default 7; the brief's floor is 5)")
    ap.add_argument("--cached", dest="cached_runs", type=int, default=15,
                    help="timed fully cached builds per engine (default 15; the brief's floor is 10)")
    ap.add_argument("--mib", type=int, default=50, help="MiB of random bytes the COPY brings (default 50)")
    ap.add_argument("--engines", default="docker,berth", help="comma list, default docker,berth")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--from-json", type=Path, help="only rewrite the section of --out from an earlier run's JSON")
    args = ap.parse_args()
    if args.from_json:
        write_section(args.out, render(json.loads(args.from_json.read_text())))
        return 0
    if os.geteuid() != 0:
        print("run as root (dockerd, runc and berthd's bridge need it)", file=sys.stderr)
        return 2
    if args.cold_runs < 1 or args.cached_runs < 1 or args.mib < 1:
        print("--cold, --cached and --mib must be at least 1", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background

    session = base.new_session("build", "bbx-", DOCKER_BUILDKIT="0")
    stamp, logdir, scratch, env = session.stamp, session.logdir, session.scratch, session.env
    dirs = [scratch]

    launched: list[Engine] = []
    objects = net.BerthObjects([], "")
    res: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "cold_runs": args.cold_runs,
        "cached_runs": args.cached_runs, "machine": base.machine_info(), "versions": {},
        "config": {"mib": args.mib, "dockerfile": DOCKERFILE, "berth_bridge": "?", "berth_bip": "?"},
        "first_cold_ms": {}, "timings": {}, "verified": {}, "errors": {}}
    interrupted = False
    try:
        measure(args, res, launched, dirs, objects, scratch, logdir, env)
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
            base.cleanup(launched, dirs)
            if objects.nft_table:
                net.delete_berth_objects(objects)
        finally:
            signal.signal(signal.SIGINT, old)
    if interrupted:
        return 130
    res["logs"] = str(logdir.relative_to(REPO))
    raw = RESULTS / f"build-{stamp}.json"
    res["raw"] = str(raw.relative_to(REPO))
    raw.write_text(json.dumps(res, indent=2, default=lambda o: asdict(o)) + "\n")
    write_section(args.out, render(res))
    log(f"wrote {args.out} and {raw}")
    if res["errors"]:
        log("errors:\n" + "\n".join(f"  {k}: {v.splitlines()[0] if v else ''}" for k, v in res["errors"].items()))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
