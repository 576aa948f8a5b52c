"""Health checks: Docker's HEALTHCHECK probes, run as execs in running containers.

Strategy: the configuration is pure data. `check_config` validates a create
request's `Config.Healthcheck` with Docker's wording, `merge` lays it over the
image's field by field (as Docker's create does), and `probe_of` turns a
container's merged Config into a `Probe` (None: no check, or `["NONE"]`). The
state (`State.Health` in the container record: Status, FailingStreak, the last
five Log entries) changes only through `record`, a pure function of one
result, so the rules are testable without a container:

- a success makes the container healthy and resets the streak;
- a failure adds to the streak, unless the container is still `starting` and
  the probe began inside the start period; `retries` failures in a row make it
  unhealthy;
- the next probe comes `StartInterval` after the last one while the container
  is starting inside its start period, `Interval` otherwise (`delay`).

`Health` drives it: `started(c)` (a start, a restart, a daemon that found the
container running) resets the status to `starting` and starts one asyncio task
for the container; `stopped(c)` cancels it. A container without a check costs
nothing: no task, no timer. Each probe is the runtime's exec command (runc,
runsc or the VM's exec client) with the container's own process spec, stdout
and stderr on one pipe kept to 4 KiB. Its timeout counts from the moment the
process has started (the runtime wrote its pid file), as Docker's does; a probe
past it is killed through the runtime (`Runtime.kill_exec`) and recorded as
"Health check exceeded timeout (…)". A probe that cannot start (no such
command) is a failure with the runtime's message, never a daemon error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Protocol

from berth import timefmt
from berth.errors import BerthError, InvalidArgument
from berth.host import proc
from berth.runtime.base import Runtime
from berth.services.records import Container

log = logging.getLogger(__name__)

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MIN_DURATION = 1_000_000  # 1 ms: a duration that is not 0 may not be shorter
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096  # bytes of a probe's output kept in its Log entry (Docker's limit)
EXEC_START_TIMEOUT = 30.0  # s for a probe's process to start; not part of its timeout
OUTPUT_GRACE = 1.0  # s to read what is left in the pipe after the probe ended (a child it left may hold it)

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
FILTER_VALUES = (STARTING, HEALTHY, UNHEALTHY, NONE)
DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")
TEST_TYPES = ("NONE", "CMD", "CMD-SHELL")
DEFAULT_SHELL = ("/bin/sh", "-c")


# ------------------------------------------------------------------------------------------
# Configuration (pure)

def check_config(hc: Any) -> None:
    """Docker's checks of a create request's `Config.Healthcheck`.

    Raises:
        InvalidArgument: a wrong type, an unknown test type, a command missing after CMD or
            CMD-SHELL, a duration under 1ms that is not 0, or negative retries; the message
            names the field.
    """
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise InvalidArgument(f"json: cannot unmarshal {_json_type(hc)} into Config.Healthcheck (expected an object)")
    test = hc.get("Test")
    if isinstance(test, str):  # a Go strslice: one string is a list of one
        test = [test]
    if test is not None:
        if not isinstance(test, list) or not all(isinstance(a, str) for a in test):
            raise InvalidArgument("Config.Healthcheck.Test: expected an array of strings, "
                                  'e.g. ["CMD-SHELL", "curl -f http://localhost/"]')
        if test and test[0] not in TEST_TYPES:
            raise InvalidArgument(f"Config.Healthcheck.Test: unknown type {test[0]!r}: "
                                  "use NONE, CMD (then the command and its arguments) or CMD-SHELL (then a command line)")
        if test and test[0] != "NONE" and (len(test) < 2 or not test[1]):
            raise InvalidArgument(f"Config.Healthcheck.Test: {test[0]} needs a command after it")
    for key in DURATIONS:
        value = hc.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"json: cannot unmarshal {_json_type(value)} into Config.Healthcheck.{key} "
                                  "(expected an integer: nanoseconds)")
        if value != 0 and value < MIN_DURATION:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    retries = hc.get("Retries")
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise InvalidArgument(f"json: cannot unmarshal {_json_type(retries)} into Config.Healthcheck.Retries "
                                  "(expected an integer)")
        if retries < 0:
            raise InvalidArgument("Retries in Healthcheck cannot be negative")


def for_api_version(body: Any, api_version: str) -> None:
    """Drop what an older client cannot have meant: StartInterval came with API 1.44 (Docker ignores it below)."""
    major, _, minor = api_version.partition(".")
    try:
        older = (int(major), int(minor)) < (1, 44)
    except ValueError:
        return
    hc = body.get("Healthcheck") if isinstance(body, dict) else None
    if older and isinstance(hc, dict):
        hc.pop("StartInterval", None)


def _json_type(value: Any) -> str:
    return {bool: "bool", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def merge(container: dict[str, Any] | None, image: dict[str, Any] | None) -> dict[str, Any] | None:
    """The container's Healthcheck: its own fields, each one that is empty or 0 taken from the image's.

    No check in the request means the image's, whole; `{"Test": ["NONE"]}` (`--no-healthcheck`)
    keeps its NONE, which turns the image's check off.
    """
    if container is None:
        return dict(image) if image else None
    out = dict(container)
    if isinstance(out.get("Test"), str):  # a Go strslice: one string is a list of one
        out["Test"] = [out["Test"]]
    if not image:
        return out
    if not out.get("Test"):
        out["Test"] = image.get("Test")
    for key in (*DURATIONS, "Retries"):
        if not out.get(key) and image.get(key):
            out[key] = image[key]
    return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Probe:
    """What a running container's check does. Durations are nanoseconds, defaults applied."""

    argv: tuple[str, ...]
    interval: int = DEFAULT_INTERVAL
    timeout: int = DEFAULT_TIMEOUT
    start_period: int = DEFAULT_START_PERIOD
    start_interval: int = DEFAULT_START_INTERVAL
    retries: int = DEFAULT_RETRIES


def probe_of(config: dict[str, Any]) -> Probe | None:
    """The probe of a container's merged Config, or None (no check, `NONE`, or an unknown type)."""
    hc = config.get("Healthcheck")
    if not isinstance(hc, dict):
        return None
    test = hc.get("Test") or []
    if len(test) < 2 or test[0] not in ("CMD", "CMD-SHELL"):
        return None
    if test[0] == "CMD":
        argv = tuple(test[1:])
    else:
        shell = config.get("Shell") or DEFAULT_SHELL
        argv = (*shell, *test[1:])

    def positive(key: str, default: int) -> int:
        value = hc.get(key)
        return value if isinstance(value, int) and value > 0 else default
    return Probe(argv, positive("Interval", DEFAULT_INTERVAL), positive("Timeout", DEFAULT_TIMEOUT),
                 positive("StartPeriod", DEFAULT_START_PERIOD), positive("StartInterval", DEFAULT_START_INTERVAL),
                 positive("Retries", DEFAULT_RETRIES))


# ------------------------------------------------------------------------------------------
# State (pure)

def reset(health: Any) -> dict[str, Any]:
    """State.Health for a (re)started container: `starting`, no streak; the Log is kept, as Docker keeps it."""
    entries: list[Any] = []
    if isinstance(health, dict) and isinstance(health.get("Log"), list):
        entries = health["Log"][-MAX_LOG_ENTRIES:]
    return {"Status": STARTING, "FailingStreak": 0, "Log": list(entries)}


def delay(probe: Probe, since_start_ns: int, status: str) -> float:
    """Seconds until the next probe: StartInterval while starting inside the start period, else Interval."""
    if since_start_ns < probe.start_period and status == STARTING:
        return probe.start_interval / SECOND
    return probe.interval / SECOND


def record(health: dict[str, Any], result: dict[str, Any], retries: int, in_start_period: bool) -> bool:
    """Apply one probe's result (Start, End, ExitCode, Output) to State.Health; True if Status changed.

    *in_start_period*: the probe began inside the container's start period.
    """
    before = health.get("Status") or STARTING
    entries = [*(health.get("Log") or []), result][-MAX_LOG_ENTRIES:]
    health["Log"] = entries
    if result["ExitCode"] == 0:
        health["FailingStreak"] = 0
        health["Status"] = HEALTHY
    elif not (before == STARTING and in_start_period):
        health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
        if health["FailingStreak"] >= max(retries, 1):
            health["Status"] = UNHEALTHY
    health.setdefault("Status", before)
    health.setdefault("FailingStreak", 0)
    return bool(health["Status"] != before)


def status_of(state: dict[str, Any]) -> str:
    """The container's health as `docker ps --filter health=` sees it: none when it has no check."""
    health = state.get("Health")
    if isinstance(health, dict) and health.get("Status"):
        return str(health["Status"])
    return NONE


def status_suffix(state: dict[str, Any]) -> str:
    """What `docker ps` adds to "Up 3 seconds" for a running container with a check."""
    status = status_of(state)
    if status == NONE:
        return ""
    return " (health: starting)" if status == STARTING else f" ({status})"


def check_filter(values: list[str]) -> None:
    """Raises InvalidArgument on a `health=` filter value Docker does not know."""
    for value in values:
        if value not in FILTER_VALUES:
            raise InvalidArgument(f"Unrecognised filter value for health: {value} "
                                  f"(use {', '.join(FILTER_VALUES)})")


_UNITS = ((3_600 * SECOND, "h"), (60 * SECOND, "m"))


def go_duration(ns: int) -> str:
    """A duration as Go prints it (time.Duration.String): 1s, 1.5s, 1m30s, 500ms, 2h0m0s."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < SECOND:
        for size, unit in ((1_000_000, "ms"), (1_000, "µs"), (1, "ns")):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3_600 * SECOND)
    minutes, rest = divmod(rest, 60 * SECOND)
    seconds = _decimal(rest, SECOND) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


class Output:
    """A probe's output: the first MAX_OUTPUT bytes, "..." after them if there was more."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        self._limit = limit
        self._data = bytearray()
        self.truncated = False

    def feed(self, data: bytes) -> None:
        room = self._limit - len(self._data)
        if room > 0:
            self._data += data[:room]
        if len(data) > max(room, 0):
            self.truncated = True

    def text(self) -> str:
        return self._data.decode(errors="replace") + ("..." if self.truncated else "")


_LOGRUS_MSG = re.compile(r'level=(?:error|fatal)\s+msg="((?:[^"\\]|\\.)*)"')


def start_error(text: str) -> str:
    """The message of a probe that could not start, from what the runtime printed.

    runc logs `time=... level=error msg="exec failed: ..."`: its msg is taken, as Docker's
    "OCI runtime exec failed: ..." carries it; other runtimes' words are kept as they are.
    """
    found = [m.group(1).replace('\\"', '"').replace("\\\\", "\\") for m in _LOGRUS_MSG.finditer(text)]
    if found:
        return "OCI runtime exec failed: " + "; ".join(found)
    return text.strip() or "the health check's process did not start"


def timeout_output(timeout_ns: int, output: str) -> str:
    message = f"Health check exceeded timeout ({go_duration(timeout_ns)})"
    return f"{message}: {output}" if output else message


# ------------------------------------------------------------------------------------------
# Probing (the driver)

ProcessOf = Callable[[Container, list[str]], dict[str, Any]]


class ProbeHost(Protocol):
    """What the health checker needs of the container service (berth.services.containers.Containers)."""

    def runtime_of(self, c: Container) -> Runtime: ...

    def event(self, c: Container, action: str, **attributes: str) -> None: ...

    def save(self, c: Container) -> None: ...


class Health:
    """Runs the probes of running containers: one task per container that has a check.

    Args:
        containers: the container service (runtime_of, event, save).
        process_of: the OCI process object of a command run in a container as a probe
            (the container's own env, user and working directory); it reads files, so it
            is called in a worker thread.
    """

    def __init__(self, containers: ProbeHost, process_of: ProcessOf) -> None:
        self._containers = containers
        self._process_of = process_of
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def started(self, c: Container) -> None:
        """*c* started (or restarted, or was found running by a new daemon): probe it from `starting`."""
        self.stopped(c)
        probe = probe_of(c.doc["Config"])
        if probe is None:
            return
        c.state["Health"] = reset(c.state.get("Health"))
        task = asyncio.get_running_loop().create_task(self._monitor(c, probe), name=f"health {c.id[:12]}")
        self._tasks[c.id] = task
        task.add_done_callback(lambda t: self._tasks.pop(c.id, None) if self._tasks.get(c.id) is t else None)

    def stopped(self, c: Container) -> None:
        """*c* stopped or is being removed: stop probing it (a probe under way is killed)."""
        task = self._tasks.pop(c.id, None)
        if task is not None:
            task.cancel()

    async def _monitor(self, c: Container, probe: Probe) -> None:
        try:
            started_ns = timefmt.parse_ns(c.state["StartedAt"])
        except (KeyError, ValueError):
            started_ns = time.time_ns()
        while True:
            health = c.state.get("Health") or {}
            await asyncio.sleep(delay(probe, time.time_ns() - started_ns, health.get("Status", STARTING)))
            if not c.running or c.removed or c.removing:
                return
            if c.state.get("Paused"):
                continue  # Docker stops probing a paused container; the next tick looks again
            began = time.time_ns()
            try:
                result = await self._run(c, probe)
            except Exception as exc:  # noqa: BLE001 - a probe's trouble is its result, never the daemon's
                log.warning("health check of %s: %s", c.id[:12], exc, exc_info=not isinstance(exc, BerthError))
                result = {"Start": timefmt.format_ns(began), "End": timefmt.now(), "ExitCode": -1, "Output": str(exc)}
            if not c.running or c.removed or c.removing:
                return  # it stopped meanwhile: the result says nothing about it any more
            health = c.state.setdefault("Health", reset(None))
            changed = record(health, result, probe.retries, began - started_ns < probe.start_period)
            self._containers.save(c)
            if changed:
                self._containers.event(c, "health_status: " + health["Status"])

    async def _run(self, c: Container, probe: Probe) -> dict[str, Any]:
        start = timefmt.now()
        exec_id = secrets.token_hex(32)
        command = " ".join(probe.argv)
        self._containers.event(c, "exec_create: " + command, execID=exec_id)
        workdir = await asyncio.to_thread(tempfile.mkdtemp, prefix="berth-probe-")
        try:
            code, output = await self._exec(c, probe, exec_id, command, workdir)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        return {"Start": start, "End": timefmt.now(), "ExitCode": code, "Output": output}

    async def _exec(self, c: Container, probe: Probe, exec_id: str, command: str, workdir: str) -> tuple[int, str]:
        try:
            process = await asyncio.to_thread(self._process_of, c, list(probe.argv))
        except (BerthError, OSError, ValueError) as exc:  # its user is unknown, its config.json is gone...
            return -1, str(exc)
        spec, pid_file = os.path.join(workdir, "process.json"), os.path.join(workdir, "pid")
        await asyncio.to_thread(_write_new, spec, json.dumps(process).encode())  # a private directory of ours
        runtime = self._containers.runtime_of(c)
        self._containers.event(c, "exec_start: " + command, execID=exec_id)
        # stdout and stderr share one pipe of ours (not asyncio's): a process the probe leaves behind in
        # the container may hold its write end for ever, and our end is closed all the same.
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        try:
            child = await proc.spawn(runtime.exec_argv(c.id, spec, pid_file), stdin=asyncio.subprocess.DEVNULL,
                                     stdout=wfd, stderr=wfd, die_with_parent=True)
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        out = Output()
        pipe = os.fdopen(rfd, "rb", buffering=0)
        reader = asyncio.ensure_future(_drain(pipe, out))
        exited = asyncio.ensure_future(child.wait())
        try:
            if not await _until_started(exited, pid_file):
                if not exited.done():
                    await self._kill(c, pid_file, child, exited)
                    return -1, f"timed out starting health check for container {c.id}"
                await _finish_reading(reader)
                return -1, start_error(out.text())
            done, _ = await asyncio.wait({exited}, timeout=probe.timeout / SECOND)
            if not done:
                await self._kill(c, pid_file, child, exited)
                await _finish_reading(reader)
                return -1, timeout_output(probe.timeout, out.text())
            await _finish_reading(reader)
            return child.returncode if child.returncode is not None else -1, out.text()
        finally:
            if not exited.done():  # cancelled: the container stopped, or the check was stopped
                with contextlib.suppress(BaseException):
                    await self._kill(c, pid_file, child, exited)
            reader.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({reader})
            pipe.close()  # (the reader closed it, unless it was cancelled before it began)
            if exited.done():
                code = child.returncode if child.returncode is not None else -1
                self._containers.event(c, "exec_die", execID=exec_id,
                                       exitCode=str(128 - code if code < 0 else code))

    async def _kill(self, c: Container, pid_file: str, child: asyncio.subprocess.Process,
                    exited: asyncio.Future[int]) -> None:
        """Kill the probe's process in the container, then the runtime's exec command."""
        with contextlib.suppress(BerthError, OSError):
            await self._containers.runtime_of(c).kill_exec(c.id, pid_file, child.pid)
        if not exited.done():
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGKILL)
        await asyncio.wait({exited}, timeout=30)


def _write_new(path: str, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)


async def _drain(pipe: BinaryIO, out: Output) -> None:
    """Read *pipe* into *out* until its end, and close it (also when cancelled)."""
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=65536)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
    try:
        while data := await stream.read(65536):
            out.feed(data)
    finally:
        transport.close()


async def _finish_reading(reader: asyncio.Future[None]) -> None:
    """Let the reader take what is left in the pipe; a process the probe left behind may keep it open."""
    await asyncio.wait({reader}, timeout=OUTPUT_GRACE)


async def _until_started(exited: asyncio.Future[int], pid_file: str) -> bool:
    """True once the runtime has written the probe's pid file; False if its command ended first,
    or did not start the process within EXEC_START_TIMEOUT (then it is still running)."""
    deadline = time.monotonic() + EXEC_START_TIMEOUT
    pause = 0.005
    while True:
        if await asyncio.to_thread(os.path.exists, pid_file):
            return True
        if exited.done():
            return bool(await asyncio.to_thread(os.path.exists, pid_file))
        if time.monotonic() >= deadline:
            return False
        await asyncio.wait({exited}, timeout=pause)
        pause = min(pause * 2, 0.1)
