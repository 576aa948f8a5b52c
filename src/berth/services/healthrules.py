"""Health-check rules, as pure functions: Docker's HEALTHCHECK configuration and the State.Health it drives.

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

services.health runs the probes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument

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


def status_of(health: Any) -> str:
    """The container's health (State.Health) as `docker ps --filter health=` sees it: none without a check."""
    if isinstance(health, dict) and health.get("Status"):
        return str(health["Status"])
    return NONE


def status_suffix(health: Any) -> str:
    """What `docker ps` adds to "Up 3 seconds" for a running container with a check (State.Health)."""
    status = status_of(health)
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
