"""Timestamps as the Docker API writes them (RFC 3339 with nanoseconds, UTC)."""

from __future__ import annotations

import datetime
import re
import time
from fractions import Fraction

ZERO = "0001-01-01T00:00:00Z"
UNIT_NS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def format_ns(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, e.g. 2024-01-02T03:04:05.123456789Z."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def now() -> str:
    return format_ns(time.time_ns())


def parse_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (0 for Docker's zero time)."""
    m = _ISO.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    base, frac, zone = m.groups()
    tz = datetime.timezone.utc if zone == "Z" else datetime.datetime.strptime(zone.replace(":", ""), "%z").tzinfo
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=tz)
    secs = int(dt.timestamp())
    return max(0, secs * 1_000_000_000 + int((frac or "0")[:9].ljust(9, "0")))


def parse_since(text: str, now_ns: int | None = None) -> int:
    """Docker's since/until values: unix seconds (with fraction), RFC 3339, or a duration like 10m."""
    text = text.strip()
    if not text:
        return 0
    if re.fullmatch(r"\d+(\.\d+)?", text):
        whole, _, frac = text.partition(".")
        return int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, "0") if frac else 0)
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:h|m|s|ms|us|ns))+)", text)
    if m:
        total = Fraction(0)
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)", text):
            total += Fraction(num) * UNIT_NS[unit]
        return (now_ns if now_ns is not None else time.time_ns()) - int(total)
    return parse_ns(text)


def human_duration(seconds: float) -> str:
    """docker's HumanDuration: "Less than a second", "3 seconds", "About a minute"..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600 / 24 / 365)} years"
