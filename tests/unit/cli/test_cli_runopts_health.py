"""`berth run` health flags: --health-* and --no-healthcheck as the docker CLI maps them."""

from __future__ import annotations

from typing import Any

import pytest

from berth.cli.parser import Parser, UsageError
from berth.cli.runopts import add_create_flags, build_create
from berth.errors import InvalidArgument

SECOND = 1_000_000_000


def create(argv: list[str]) -> Any:
    p = Parser("run", "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    add_create_flags(p, run=True)
    return build_create(p.parse(argv), environ={})


def test_no_flags_no_healthcheck() -> None:
    assert "Healthcheck" not in create(["busybox"]).body


def test_all_health_flags() -> None:
    body = create(["--health-cmd", "wget -q -O- localhost", "--health-interval", "1s", "--health-timeout",
                   "500ms", "--health-retries", "2", "--health-start-period", "1m30s",
                   "--health-start-interval", "1.5s", "busybox"]).body
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- localhost"], "Interval": SECOND,
                                   "Timeout": SECOND // 2, "StartPeriod": 90 * SECOND,
                                   "StartInterval": 3 * SECOND // 2, "Retries": 2}


def test_settings_without_command_keep_the_image_test() -> None:
    assert create(["--health-interval", "2s", "busybox"]).body["Healthcheck"] == {"Interval": 2 * SECOND}


def test_no_healthcheck() -> None:
    assert create(["--no-healthcheck", "busybox"]).body["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(InvalidArgument, match="--no-healthcheck conflicts with --health-\\* options"):
        create(["--no-healthcheck", "--health-cmd", "true", "busybox"])


@pytest.mark.parametrize("argv, words", [
    (["--health-interval=-1s"], "--health-interval cannot be negative"),
    (["--health-retries", "-1"], "--health-retries cannot be negative"),
    (["--health-start-period=-5s"], "--health-start-period cannot be negative"),
])
def test_negative_values(argv: list[str], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        create([*argv, "busybox"])


def test_bad_duration() -> None:
    with pytest.raises(UsageError, match='invalid argument "soon" for "--health-timeout" flag: time: invalid duration'):
        create(["--health-timeout", "soon", "busybox"])
