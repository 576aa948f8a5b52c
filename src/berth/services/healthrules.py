"""Health-check rules, as pure functions: Docker's HEALTHCHECK configuration and the State.Health it drives.

Strategy: the configuration is pure data. `check_config` validates a create
request's `Config.Healthcheck` with Docker's wording; `Healthcheck` is that
object typed (read from a request, an image's config or a container's Config
with `Healthcheck.from_doc`, written back with `to_doc`), `merge` lays the
container's over the image's field by field (as Docker's create does), and
`probe_of` turns the merged one into a `Probe` (None: no check, or `["NONE"]`).
The state (`HealthState`, State.Health in the container record: Status,
FailingStreak, the last five Log entries) is a value that changes only through
`reset` and `record`, pure functions (one result in, the next state out), so
the rules are testable without a container:

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
from typing import Any, TypedDict

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


class HealthcheckDoc(TypedDict, total=False):
    """Config.Healthcheck as JSON (Docker's HealthConfig; durations in nanoseconds)."""

    Test: list[str]
    Interval: int
    Timeout: int
    StartPeriod: int
    StartInterval: int
    Retries: int


@dataclass(frozen=True, slots=True)
class Healthcheck:
    """Config.Healthcheck as given (by a request, an image, a container's Config): None where a field is
    left out, which `merge` tells apart from 0. Durations are nanoseconds."""

    test: tuple[str, ...] | None = None
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    start_interval: int | None = None
    retries: int | None = None

    @classmethod
    def from_doc(cls, doc: object) -> Healthcheck | None:
        """The check in a JSON value: None if it is not an object; a field of the wrong type is left out
        (a request's were checked by `check_config`; an image's or a record's are taken as they are)."""
        if not isinstance(doc, dict):
            return None
        test = doc.get("Test")
        if isinstance(test, str):  # a Go strslice: one string is a list of one
            test = [test]
        return cls(test=tuple(test) if isinstance(test, list) and all(isinstance(a, str) for a in test) else None,
                   interval=_int_or_none(doc.get("Interval")), timeout=_int_or_none(doc.get("Timeout")),
                   start_period=_int_or_none(doc.get("StartPeriod")),
                   start_interval=_int_or_none(doc.get("StartInterval")),
                   retries=_int_or_none(doc.get("Retries")))

    def to_doc(self) -> HealthcheckDoc:
        """The JSON object, without the fields left out."""
        doc: HealthcheckDoc = {}
        if self.test is not None:
            doc["Test"] = list(self.test)
        if self.interval is not None:
            doc["Interval"] = self.interval
        if self.timeout is not None:
            doc["Timeout"] = self.timeout
        if self.start_period is not None:
            doc["StartPeriod"] = self.start_period
        if self.start_interval is not None:
            doc["StartInterval"] = self.start_interval
        if self.retries is not None:
            doc["Retries"] = self.retries
        return doc


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def merge(container: Healthcheck | None, image: Healthcheck | None) -> Healthcheck | None:
    """The container's Healthcheck: its own fields, each one that is empty or 0 taken from the image's.

    No check in the request means the image's, whole (none if the image's is empty); `Test: ["NONE"]`
    (`--no-healthcheck`) keeps its NONE, which turns the image's check off.
    """
    if image == Healthcheck():
        image = None  # an empty check in the image is none
    if container is None or image is None:
        return container or image

    def pick(mine: int | None, theirs: int | None) -> int | None:
        return theirs if not mine and theirs else mine
    return Healthcheck(test=container.test if container.test else image.test,
                       interval=pick(container.interval, image.interval),
                       timeout=pick(container.timeout, image.timeout),
                       start_period=pick(container.start_period, image.start_period),
                       start_interval=pick(container.start_interval, image.start_interval),
                       retries=pick(container.retries, image.retries))


@dataclass(frozen=True, slots=True)
class Probe:
    """What a running container's check does. Durations are nanoseconds, defaults applied."""

    argv: tuple[str, ...]
    interval: int = DEFAULT_INTERVAL
    timeout: int = DEFAULT_TIMEOUT
    start_period: int = DEFAULT_START_PERIOD
    start_interval: int = DEFAULT_START_INTERVAL
    retries: int = DEFAULT_RETRIES


def probe_of(check: Healthcheck | None, shell: tuple[str, ...] = DEFAULT_SHELL) -> Probe | None:
    """The probe of a container's merged check, or None (no check, `NONE`, or an unknown type).

    *shell*: the container's Config.Shell, which runs a CMD-SHELL test.
    """
    test = (check.test if check is not None else None) or ()
    if check is None or len(test) < 2 or test[0] not in ("CMD", "CMD-SHELL"):
        return None
    argv = tuple(test[1:]) if test[0] == "CMD" else (*(shell or DEFAULT_SHELL), *test[1:])

    def positive(value: int | None, default: int) -> int:
        return value if value is not None and value > 0 else default
    return Probe(argv, positive(check.interval, DEFAULT_INTERVAL), positive(check.timeout, DEFAULT_TIMEOUT),
                 positive(check.start_period, DEFAULT_START_PERIOD),
                 positive(check.start_interval, DEFAULT_START_INTERVAL), positive(check.retries, DEFAULT_RETRIES))


# ------------------------------------------------------------------------------------------
# State (pure)

class HealthLogDoc(TypedDict):
    """One entry of State.Health.Log as JSON."""

    Start: str
    End: str
    ExitCode: int
    Output: str


class HealthDoc(TypedDict):
    """State.Health as JSON (the record's stored form)."""

    Status: str
    FailingStreak: int
    Log: list[HealthLogDoc]


@dataclass(frozen=True, slots=True)
class HealthLogEntry:
    """One probe's result: when it ran (RFC 3339 times), its exit code (-1: it could not run or timed
    out) and the start of its output."""

    start: str
    end: str
    exit_code: int
    output: str

    def to_doc(self) -> HealthLogDoc:
        return {"Start": self.start, "End": self.end, "ExitCode": self.exit_code, "Output": self.output}

    @classmethod
    def from_doc(cls, doc: object) -> HealthLogEntry | None:
        if not isinstance(doc, dict):
            return None
        code = doc.get("ExitCode")
        return cls(str(doc.get("Start") or ""), str(doc.get("End") or ""),
                   code if isinstance(code, int) and not isinstance(code, bool) else 0, str(doc.get("Output") or ""))


@dataclass(frozen=True, slots=True)
class HealthState:
    """State.Health: the status (starting, healthy, unhealthy; "" in a record that never said), the
    failures in a row, and the last MAX_LOG_ENTRIES results, oldest first."""

    status: str = STARTING
    failing_streak: int = 0
    log: tuple[HealthLogEntry, ...] = ()

    def to_doc(self) -> HealthDoc:
        """The stored form (Docker's State.Health)."""
        return {"Status": self.status, "FailingStreak": self.failing_streak,
                "Log": [entry.to_doc() for entry in self.log]}

    @classmethod
    def from_doc(cls, doc: object) -> HealthState | None:
        """The stored form read back; None if it is not an object (a record without a check)."""
        if not isinstance(doc, dict):
            return None
        log = doc.get("Log")
        entries = [HealthLogEntry.from_doc(e) for e in log] if isinstance(log, list) else []
        streak = doc.get("FailingStreak")
        return cls(str(doc.get("Status") or ""),
                   streak if isinstance(streak, int) and not isinstance(streak, bool) else 0,
                   tuple(e for e in entries if e is not None))


def reset(health: HealthState | None) -> HealthState:
    """State.Health for a (re)started container: `starting`, no streak; the Log is kept, as Docker keeps it."""
    return HealthState(STARTING, 0, health.log[-MAX_LOG_ENTRIES:] if health is not None else ())


def delay(probe: Probe, since_start_ns: int, status: str) -> float:
    """Seconds until the next probe: StartInterval while starting inside the start period, else Interval."""
    if since_start_ns < probe.start_period and status == STARTING:
        return probe.start_interval / SECOND
    return probe.interval / SECOND


def record(health: HealthState, result: HealthLogEntry, retries: int, in_start_period: bool) -> HealthState:
    """State.Health after one probe's *result*.

    *in_start_period*: the probe began inside the container's start period.
    """
    before = health.status or STARTING
    log = (*health.log, result)[-MAX_LOG_ENTRIES:]
    if result.exit_code == 0:
        return HealthState(HEALTHY, 0, log)
    if before == STARTING and in_start_period:
        return HealthState(before, health.failing_streak, log)
    streak = health.failing_streak + 1
    return HealthState(UNHEALTHY if streak >= max(retries, 1) else before, streak, log)


def status_of(health: HealthState | None) -> str:
    """The container's health (State.Health) as `docker ps --filter health=` sees it: none without a check."""
    return health.status if health is not None and health.status else NONE


def status_suffix(health: HealthState | None) -> str:
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
