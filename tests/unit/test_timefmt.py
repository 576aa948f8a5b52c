"""Tests for berth.timefmt: RFC 3339 with nanoseconds, and Docker's since/until values."""

from __future__ import annotations

import datetime
import time

import pytest

from berth import timefmt

# A fixed "now" for durations: 2023-11-14T22:13:20Z.
NOW = 1_700_000_000 * 10**9 + 123_456_789


@pytest.mark.parametrize("ns,text", [
    (0, "1970-01-01T00:00:00.000000000Z"),
    (1, "1970-01-01T00:00:00.000000001Z"),
    (1_704_164_645_123_456_789, "2024-01-02T03:04:05.123456789Z"),
    (1_704_164_645_000_000_000, "2024-01-02T03:04:05.000000000Z"),
    (1_709_208_000_999_999_999, "2024-02-29T12:00:00.999999999Z"),
    (4_102_444_799_000_000_001, "2099-12-31T23:59:59.000000001Z"),
])
def test_format_and_parse(ns: int, text: str) -> None:
    assert timefmt.format_ns(ns) == text
    assert timefmt.parse_ns(text) == ns


@pytest.mark.parametrize("ns", [1, 999_999_999, 1_000_000_000, 1_700_000_000_000_000_001,
                                1_700_000_000_123_456_789, 2_000_000_000_987_654_321])
def test_round_trip_nanoseconds(ns: int) -> None:
    assert timefmt.parse_ns(timefmt.format_ns(ns)) == ns


def test_now_is_current_and_parses() -> None:
    before = time.time_ns()
    text = timefmt.now()
    after = time.time_ns()
    assert text.endswith("Z")
    assert before <= timefmt.parse_ns(text) <= after


@pytest.mark.parametrize("text,utc", [
    ("2024-01-02T03:04:05.123456789+00:00", "2024-01-02T03:04:05.123456789Z"),
    ("2024-01-02T04:04:05.123456789+01:00", "2024-01-02T03:04:05.123456789Z"),
    ("2024-01-01T19:04:05.5-08:00", "2024-01-02T03:04:05.500000000Z"),
    ("2024-01-02T08:34:05+05:30", "2024-01-02T03:04:05.000000000Z"),
    ("2024-01-02T00:00:00-00:00", "2024-01-02T00:00:00.000000000Z"),
    ("2024-01-01T23:00:00.000000001-04:00", "2024-01-02T03:00:00.000000001Z"),
])
def test_time_zones_with_offsets(text: str, utc: str) -> None:
    assert timefmt.parse_ns(text) == timefmt.parse_ns(utc)
    assert timefmt.format_ns(timefmt.parse_ns(text)) == utc


@pytest.mark.parametrize("text,ns", [
    ("2024-01-02T03:04:05Z", 1_704_164_645_000_000_000),
    ("2024-01-02T03:04:05.1Z", 1_704_164_645_100_000_000),
    ("2024-01-02T03:04:05.000123Z", 1_704_164_645_000_123_000),
    # Go writes up to 9 digits; more are truncated, not rounded.
    ("2024-01-02T03:04:05.1234567899Z", 1_704_164_645_123_456_789),
    ("  2024-01-02T03:04:05Z\n", 1_704_164_645_000_000_000),
])
def test_fractions(text: str, ns: int) -> None:
    assert timefmt.parse_ns(text) == ns


def test_docker_zero_time_is_zero() -> None:
    assert timefmt.ZERO == "0001-01-01T00:00:00Z"
    assert timefmt.parse_ns(timefmt.ZERO) == 0


def test_agrees_with_datetime() -> None:
    dt = datetime.datetime(2031, 7, 9, 14, 15, 16, 654321, tzinfo=datetime.timezone.utc)
    ns = (int(dt.replace(microsecond=0).timestamp()) * 10**9) + 654321 * 1000
    assert timefmt.format_ns(ns) == "2031-07-09T14:15:16.654321000Z"


@pytest.mark.parametrize("text", [
    "", "yesterday", "2024-01-02", "2024-01-02 03:04:05Z", "2024-01-02T03:04:05",
    "2024-13-02T03:04:05Z", "2024-01-02T25:04:05Z", "2024-01-02T03:04:05+0100",
    "2024-01-02T03:04:05.Z", "1700000000",
])
def test_parse_ns_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        timefmt.parse_ns(text)


# --------------------------------------------------------------------------- #
# parse_since


@pytest.mark.parametrize("text,ns", [
    ("1700000000", 1_700_000_000_000_000_000),
    ("1700000000.5", 1_700_000_000_500_000_000),
    ("1700000000.000000001", 1_700_000_000_000_000_001),
    ("1700000000.123456789999", 1_700_000_000_123_456_789),
    ("0", 0),
    ("", 0),
    ("  ", 0),
])
def test_since_unix_seconds(text: str, ns: int) -> None:
    assert timefmt.parse_since(text, now_ns=NOW) == ns


@pytest.mark.parametrize("text", [
    "2024-01-02T03:04:05.123456789Z",
    "2024-01-02T04:04:05.123456789+01:00",
])
def test_since_rfc3339(text: str) -> None:
    assert timefmt.parse_since(text, now_ns=NOW) == 1_704_164_645_123_456_789


@pytest.mark.parametrize("text,ago", [
    ("10m", 600 * 10**9),
    ("1h30m", 5400 * 10**9),
    ("500ms", 500 * 10**6),
    ("1h", 3600 * 10**9),
    ("45s", 45 * 10**9),
    ("1.5h", 5400 * 10**9),
    ("2m30s", 150 * 10**9),
    ("250us", 250_000),
    ("7ns", 7),
    ("0s", 0),
])
def test_since_durations(text: str, ago: int) -> None:
    assert timefmt.parse_since(text, now_ns=NOW) == NOW - ago


def test_since_duration_defaults_to_now() -> None:
    before = time.time_ns()
    got = timefmt.parse_since("10m")
    after = time.time_ns()
    assert before - 600 * 10**9 <= got <= after - 600 * 10**9


@pytest.mark.parametrize("text,ago", [
    ("4.1s", 4_100_000_000), ("1.7us", 1700), ("0.009m", 540_000_000), ("1m1s1ms1us1ns", 61_001_001_001)])
def test_since_fractional_durations_are_exact(text: str, ago: int) -> None:
    assert timefmt.parse_since(text, now_ns=NOW) == NOW - ago


@pytest.mark.parametrize("text", ["10", "10x", "m10", "1h-5m", "-10m", "ten minutes", "1.2.3"])
def test_since_rejects(text: str) -> None:
    if text == "10":  # bare numbers are unix seconds, not a duration
        assert timefmt.parse_since(text, now_ns=NOW) == 10 * 10**9
        return
    with pytest.raises(ValueError):
        timefmt.parse_since(text, now_ns=NOW)
