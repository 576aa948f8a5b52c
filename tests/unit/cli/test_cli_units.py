from __future__ import annotations

import pytest

from berth.cli import units
from berth.errors import InvalidArgument


@pytest.mark.parametrize("text,expected", [
    ("0", 0), ("100", 100), ("100b", 100), ("1k", 1024), ("1K", 1024), ("1kb", 1024),
    ("512m", 512 * 1024**2), ("512M", 512 * 1024**2), ("1g", 1024**3), ("1.5g", 1536 * 1024**2),
    ("2GiB", 2 * 1024**3), ("1t", 1024**4), ("10 m", 10 * 1024**2),
])
def test_ram_in_bytes(text: str, expected: int) -> None:
    assert units.ram_in_bytes(text) == expected


@pytest.mark.parametrize("text,error", [
    ("", "invalid size: ''"), ("1x", "invalid suffix: 'x'"), ("m", "invalid size: 'm'"),
    ("-1", "invalid size: '-1'"), ("1.2.3.g4", 'strconv.ParseFloat: parsing "1.2.3.g4": invalid syntax'),
    ("abc", "invalid size: 'abc'"), ("1mm", "invalid suffix: 'mm'"), ("1KB", None), ("3 MiB", None),
    ("2kib", None), ("1kbb", "invalid suffix: 'kbb'"), ("1bb", "invalid suffix: 'bb'"),
])
def test_ram_in_bytes_invalid(text: str, error: str | None) -> None:
    """docker's words (go-units' RAMInBytes) for each malformed size."""
    if error is None:
        assert units.ram_in_bytes(text) > 0
        return
    with pytest.raises(InvalidArgument) as info:
        units.ram_in_bytes(text)
    assert str(info.value) == error


@pytest.mark.parametrize("text,nano", [("1", 10**9), ("0.5", 5 * 10**8), ("2.25", 2_250_000_000),
                                       ("0.000000001", 1)])
def test_parse_cpus(text: str, nano: int) -> None:
    assert units.parse_cpus(text) == nano


@pytest.mark.parametrize("text", ["abc", "1.2.3", "0.0000000001"])
def test_parse_cpus_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument):
        units.parse_cpus(text)


@pytest.mark.parametrize("size,text", [
    (0, "0B"), (123, "123B"), (1000, "1kB"), (12345, "12.3kB"), (1_990_000, "1.99MB"),
    (1_985_232, "1.99MB"), (5_000_000_000, "5GB"),
])
def test_human_size(size: int, text: str) -> None:
    assert units.human_size(size) == text


@pytest.mark.parametrize("secs,text", [
    (0, "Less than a second"), (0.9, "Less than a second"), (1, "1 second"), (3, "3 seconds"),
    (59, "59 seconds"), (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
    (3599, "59 minutes"), (3600, "About an hour"), (2 * 3600, "2 hours"), (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"), (15 * 86400, "2 weeks"), (70 * 86400, "2 months"),
    (800 * 86400, "2 years"),
])
def test_human_duration(secs: float, text: str) -> None:
    assert units.human_duration(secs) == text


def test_ago() -> None:
    assert units.ago(100, 220) == "2 minutes ago"


def test_parse_timestamp() -> None:
    now = 1_700_000_000.0
    assert units.parse_timestamp("10m", now) == "1699999400.000000000"
    assert units.parse_timestamp("1h30m", now) == "1699994600.000000000"
    assert units.parse_timestamp("1700000000", now) == "1700000000"
    assert units.parse_timestamp("1700000000.5", now) == "1700000000.5"
    assert units.parse_timestamp("2023-11-14T22:13:20Z", now) == "1700000000.000000000"
    assert units.parse_timestamp("2023-11-14T22:13:20.25Z", now) == "1700000000.250000000"
    assert units.parse_timestamp("2023-11-14T23:13:20+01:00", now) == "1700000000.000000000"
    with pytest.raises(InvalidArgument):
        units.parse_timestamp("yesterday", now)


def test_go_duration() -> None:
    assert units.parse_go_duration("1.5s") == 1.5
    assert units.parse_go_duration("250ms") == 0.25
    assert units.parse_go_duration("5") is None


def test_format_nano_time_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time
    time.tzset()
    assert units.format_nano_time(1_700_000_000_000_000_123) == "2023-11-14T22:13:20.000000123Z"


def test_parse_api_time() -> None:
    assert units.parse_api_time("0001-01-01T00:00:00Z") is None
    assert units.parse_api_time("") is None
    assert units.parse_api_time("2023-11-14T22:13:20.123456789Z") == pytest.approx(1_700_000_000.123456)
