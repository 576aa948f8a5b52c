"""Units the docker CLI speaks: byte sizes, CPU counts, durations, timestamps.

Strategy: pure functions, no I/O; `now` is always a parameter so that tests
pin it. Sizes typed by users are binary (1k = 1024, docker's RAMInBytes); sizes
shown to users are decimal with three significant digits (docker's HumanSize);
"ago" wording follows docker's HumanDuration.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from berth.errors import InvalidArgument
from berth.timefmt import human_duration

_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """Parse a memory size like docker's RAMInBytes ("512m", "1.5g", "100", "2kb"), with its error words."""
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise InvalidArgument(f"invalid size: '{text}'")
    number, suffix = (text[:sep + 1], text[sep + 1:]) if text[sep] != " " else (text[:sep], text[sep + 1:])
    try:
        size = float(number)
        if not re.fullmatch(r"[0-9.eE+-]+", number):
            raise ValueError(number)
    except ValueError:
        raise InvalidArgument(f'strconv.ParseFloat: parsing "{number}": invalid syntax') from None
    if size < 0:
        raise InvalidArgument(f"invalid size: '{text}'")
    sfx = suffix.lower()
    if not sfx or sfx == "b":
        return int(size)
    if len(sfx) > 3 or sfx[0] not in _BINARY or sfx[0] == "" or (len(sfx) == 2 and sfx[1] != "b") \
            or (len(sfx) == 3 and sfx[1:] != "ib"):
        raise InvalidArgument(f"invalid suffix: '{sfx}'")
    return int(size * _BINARY[sfx[0]])


def parse_cpus(text: str) -> int:
    """Parse `--cpus` (a decimal number of CPUs) into NanoCPUs."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidArgument(f"failed to parse {text} as a rational number") from None
    if not value.is_finite():
        raise InvalidArgument(f"failed to parse {text} as a rational number")
    nano = value * 1_000_000_000
    if nano != nano.to_integral_value():
        raise InvalidArgument("value is too precise")
    return int(nano)


_DECIMAL_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]


def _fmt_g3(value: float) -> str:
    text = f"{value:.3g}"
    if "e" in text:  # only for absurd sizes; keep it readable
        text = f"{value:.0f}"
    return text


def human_size(size: float) -> str:
    """Decimal size with 3 significant digits: 1990000 -> "1.99MB"."""
    value = float(size)
    i = 0
    while value >= 1000 and i < len(_DECIMAL_UNITS) - 1:
        value /= 1000
        i += 1
    return f"{_fmt_g3(value)}{_DECIMAL_UNITS[i]}"


def human_size4(size: float) -> str:
    """Decimal size with 4 significant digits (docker's units.HumanSize): 1234567 -> "1.235MB"."""
    value = float(size)
    i = 0
    while value >= 1000 and i < len(_DECIMAL_UNITS) - 1:
        value /= 1000
        i += 1
    return f"{value:.4g}{_DECIMAL_UNITS[i]}"


_BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def bytes_size(size: float) -> str:
    """Binary size with 4 significant digits (docker's units.BytesSize): 1572864 -> "1.5MiB"."""
    value = float(size)
    i = 0
    while value >= 1024 and i < len(_BINARY_UNITS) - 1:
        value /= 1024
        i += 1
    return f"{value:.4g}{_BINARY_UNITS[i]}"


def ago(then: float, now: float) -> str:
    return f"{human_duration(max(0.0, now - then))} ago"


_GO_DURATION = re.compile(r"^([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}


def parse_go_duration(text: str) -> float | None:
    """Parse a Go duration ("10m", "1h30m", "1.5s") into seconds, or None."""
    m = _GO_DURATION.match(text)
    if not m:
        return None
    total = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    return -total if m.group(1) == "-" else total


_DATE_FORMATS = [
    "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H",
    "%Y-%m-%d",
]


def parse_timestamp(text: str, now: float) -> str:
    """Turn a `--since`/`--until` value into the API's "seconds[.nanos]" form.

    Accepts a Go duration (relative to now, in the past), a Unix timestamp, or an
    RFC 3339 / ISO date (without a zone it means local time, like docker).
    """
    value = text.strip()
    if not value:
        return ""
    dur = parse_go_duration(value)
    if dur is not None:
        t = now - dur
        secs = int(t)
        return f"{secs}.{int(round((t - secs) * 1e9)):09d}"
    if re.fullmatch(r"\d+(\.\d{1,9})?", value):
        return value
    iso = value[:-1] + "+00:00" if value.endswith("Z") else value
    iso = re.sub(r"(\.\d{6})\d+", r"\1", iso)  # Python parses microseconds only
    for fmt in _DATE_FORMATS:
        try:
            dt = datetime.strptime(iso, fmt)
        except ValueError:
            continue
        if dt.tzinfo is None:
            dt = dt.astimezone()  # local time, like docker
        ts = dt.timestamp()
        secs = int(ts)
        frac = _fraction_nanos(value)
        return f"{secs}.{frac:09d}"
    raise InvalidArgument(
        f'failed to parse value as time or duration: "{text}"')


def _fraction_nanos(value: str) -> int:
    m = re.search(r"T[\d:]+\.(\d{1,9})", value)
    if not m:
        return 0
    return int(m.group(1).ljust(9, "0"))


def format_nano_time(nanos: int) -> str:
    """RFC 3339 with 9 fractional digits, in local time (Z when local is UTC)."""
    secs, frac = divmod(int(nanos), 1_000_000_000)
    dt = datetime.fromtimestamp(secs, tz=timezone.utc).astimezone()
    offset = dt.utcoffset() or timedelta(0)
    zone = "Z" if offset == timedelta(0) else dt.strftime("%z")
    if zone != "Z":
        zone = zone[:3] + ":" + zone[3:]
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}" + zone


def parse_api_time(text: str) -> float | None:
    """Parse the daemon's RFC 3339 nano timestamps; None for empty or the zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    value = text[:-1] + "+00:00" if text.endswith("Z") else text
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
