"""Tests for berth.services.healthrules: config validation and merge, probes, status transitions, output."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.services import healthrules
from berth.services.healthrules import (
    DEFAULT_INTERVAL,
    DEFAULT_RETRIES,
    DEFAULT_START_INTERVAL,
    DEFAULT_TIMEOUT,
    HEALTHY,
    SECOND,
    STARTING,
    UNHEALTHY,
    Output,
    Probe,
    check_config,
    delay,
    go_duration,
    merge,
    probe_of,
    record,
)

MS = 1_000_000


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("hc", [
    None, {}, {"Test": ["NONE"]}, {"Test": ["CMD", "true"]}, {"Test": ["CMD-SHELL", "exit 0"]},
    {"Test": "NONE"}, {"Test": [], "Interval": SECOND},  # no test: the image's, with another interval
    {"Test": ["CMD", "true"], "Interval": 0, "Timeout": MS, "StartPeriod": 5 * SECOND,
     "StartInterval": SECOND, "Retries": 0},
    {"Test": ["CMD", "true"], "Interval": None, "Retries": None},
])
def test_valid_configs(hc):
    check_config(hc)


@pytest.mark.parametrize("hc, words", [
    ({"Test": ["CMD", "true"], "Interval": MS - 1}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Timeout": -SECOND}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "StartPeriod": 1}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "StartInterval": -1}, "StartInterval in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Test": ["CMD", "true"], "Interval": "30s"}, "Config.Healthcheck.Interval"),
    ({"Test": ["CMD", "true"], "Interval": 1.5e9}, "Config.Healthcheck.Interval"),
    ({"Test": ["CMD", "true"], "Retries": True}, "Config.Healthcheck.Retries"),
    ({"Test": ["CMD"]}, "CMD needs a command"),
    ({"Test": ["CMD-SHELL", ""]}, "CMD-SHELL needs a command"),
    ({"Test": ["SHELL", "true"]}, "unknown type 'SHELL'"),
    ({"Test": [1, 2]}, "Config.Healthcheck.Test"),
    ({"Test": {"CMD": "x"}}, "Config.Healthcheck.Test"),
    ("curl localhost", "Config.Healthcheck"),
])
def test_bad_configs_name_the_field(hc, words):
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_config(hc)


def test_start_interval_is_dropped_below_api_1_44():
    body = {"Healthcheck": {"Test": ["CMD", "true"], "StartInterval": SECOND}}
    healthrules.for_api_version(body, "1.43")
    assert body["Healthcheck"] == {"Test": ["CMD", "true"]}
    body = {"Healthcheck": {"Test": ["CMD", "true"], "StartInterval": SECOND}}
    healthrules.for_api_version(body, "1.44")
    assert body["Healthcheck"]["StartInterval"] == SECOND
    healthrules.for_api_version("not a body", "1.41")  # no crash on junk: validation answers it later


# --------------------------------------------------------------------------- merge

IMAGE = {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 10 * SECOND, "Retries": 5}


def test_merge_without_container_check_takes_the_image_one():
    assert merge(None, IMAGE) == IMAGE
    assert merge(None, None) is None
    assert merge(None, {}) is None


def test_merge_field_by_field():
    merged = merge({"Interval": 2 * SECOND, "Timeout": SECOND}, IMAGE)
    assert merged == {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 2 * SECOND, "Timeout": SECOND,
                      "Retries": 5}
    assert merge({"Test": ["CMD", "true"], "Retries": 0}, IMAGE) == {
        "Test": ["CMD", "true"], "Interval": 10 * SECOND, "Retries": 5}


def test_no_healthcheck_overrides_the_image():
    merged = merge({"Test": ["NONE"]}, IMAGE)
    assert merged is not None and merged["Test"] == ["NONE"]
    assert probe_of({"Healthcheck": merged}) is None


def test_merge_does_not_change_its_arguments():
    container = {"Interval": SECOND}
    image = dict(IMAGE)
    merge(container, image)
    assert container == {"Interval": SECOND} and image == IMAGE


# --------------------------------------------------------------------------- probes

def test_probe_defaults():
    assert probe_of({"Healthcheck": {"Test": ["CMD", "true"]}}) == Probe(
        ("true",), DEFAULT_INTERVAL, DEFAULT_TIMEOUT, 0, DEFAULT_START_INTERVAL, DEFAULT_RETRIES)


def test_probe_shell_form_uses_the_container_shell():
    assert probe_of({"Healthcheck": {"Test": ["CMD-SHELL", "exit 1"]}}).argv == ("/bin/sh", "-c", "exit 1")
    cfg = {"Healthcheck": {"Test": ["CMD-SHELL", "exit 1"]}, "Shell": ["/bin/bash", "-ec"]}
    assert probe_of(cfg).argv == ("/bin/bash", "-ec", "exit 1")


@pytest.mark.parametrize("cfg", [
    {}, {"Healthcheck": None}, {"Healthcheck": {}}, {"Healthcheck": {"Test": ["NONE"]}},
    {"Healthcheck": {"Test": []}}, {"Healthcheck": {"Test": ["CMD"]}}, {"Healthcheck": {"Test": ["BOGUS", "x"]}},
])
def test_no_probe(cfg):
    assert probe_of(cfg) is None


def test_probe_values_taken_when_positive():
    p = probe_of({"Healthcheck": {"Test": ["CMD", "a", "b"], "Interval": SECOND, "Timeout": 2 * SECOND,
                                  "StartPeriod": 3 * SECOND, "StartInterval": 4 * SECOND, "Retries": 1}})
    assert p == Probe(("a", "b"), SECOND, 2 * SECOND, 3 * SECOND, 4 * SECOND, 1)


def test_delay_uses_start_interval_only_while_starting_in_the_start_period():
    p = Probe(("true",), interval=30 * SECOND, start_period=10 * SECOND, start_interval=2 * SECOND)
    assert delay(p, 0, STARTING) == 2
    assert delay(p, 9 * SECOND, STARTING) == 2
    assert delay(p, 10 * SECOND, STARTING) == 30
    assert delay(p, SECOND, HEALTHY) == 30  # a success ends the start period's quick probing
    assert delay(Probe(("true",)), 0, STARTING) == 30  # no start period: Interval from the first


# --------------------------------------------------------------------------- transitions

def result(code: int, n: int = 0) -> dict:
    return {"Start": f"s{n}", "End": f"e{n}", "ExitCode": code, "Output": f"out{n}"}


def test_success_makes_healthy_and_resets_streak():
    h = healthrules.reset(None)
    assert record(h, result(1), 3, False) is False
    assert h["FailingStreak"] == 1 and h["Status"] == STARTING
    assert record(h, result(0), 3, False) is True
    assert h["Status"] == HEALTHY and h["FailingStreak"] == 0


def test_unhealthy_after_retries_failures_in_a_row():
    h = healthrules.reset(None)
    changes = [record(h, result(1, i), 3, False) for i in range(3)]
    assert changes == [False, False, True]
    assert h["Status"] == UNHEALTHY and h["FailingStreak"] == 3
    assert record(h, result(1, 4), 3, False) is False  # stays unhealthy, the streak grows
    assert h["FailingStreak"] == 4
    assert record(h, result(0, 5), 3, False) is True and h["Status"] == HEALTHY


def test_failures_in_the_start_period_do_not_count_while_starting():
    h = healthrules.reset(None)
    for i in range(5):
        record(h, result(1, i), 1, True)
    assert h["Status"] == STARTING and h["FailingStreak"] == 0
    record(h, result(0), 1, True)
    assert h["Status"] == HEALTHY
    # once healthy, a failure counts even inside the start period
    assert record(h, result(1), 1, True) is True
    assert h["Status"] == UNHEALTHY and h["FailingStreak"] == 1


def test_timeout_and_start_errors_are_failures():
    h = healthrules.reset(None)
    record(h, result(-1), 1, False)
    assert h["Status"] == UNHEALTHY


def test_retries_zero_means_at_least_one():
    h = healthrules.reset(None)
    assert record(h, result(1), 0, False) is True and h["Status"] == UNHEALTHY


def test_log_keeps_the_last_five_oldest_first():
    h = healthrules.reset(None)
    for i in range(8):
        record(h, result(i % 2, i), 3, False)
    assert [e["Start"] for e in h["Log"]] == ["s3", "s4", "s5", "s6", "s7"]


def test_reset_keeps_the_log_and_starts_over():
    h = {"Status": UNHEALTHY, "FailingStreak": 7, "Log": [result(1, i) for i in range(9)]}
    fresh = healthrules.reset(h)
    assert fresh["Status"] == STARTING and fresh["FailingStreak"] == 0
    assert len(fresh["Log"]) == 5 and fresh["Log"][-1]["Start"] == "s8"
    assert healthrules.reset("junk") == {"Status": STARTING, "FailingStreak": 0, "Log": []}


# --------------------------------------------------------------------------- views

def test_status_words_for_ps_and_filter():
    assert healthrules.status_of(None) == "none"
    assert healthrules.status_suffix(None) == ""
    assert healthrules.status_suffix({"Status": STARTING}) == " (health: starting)"
    assert healthrules.status_suffix({"Status": HEALTHY}) == " (healthy)"
    assert healthrules.status_suffix({"Status": UNHEALTHY}) == " (unhealthy)"
    healthrules.check_filter(["healthy", "unhealthy", "starting", "none"])
    with pytest.raises(InvalidArgument, match="Unrecognised filter value for health: sick"):
        healthrules.check_filter(["sick"])


def test_ps_status_text_shows_health():
    from berth import timefmt
    from berth.api.views import containers as views
    from berth.services.records import ContainerState

    state = ContainerState(status="running", running=True, started_at=timefmt.now(),
                           health={"Status": STARTING, "FailingStreak": 0, "Log": []})
    assert views.status_text(state).endswith(" (health: starting)")
    state.health = {"Status": HEALTHY, "FailingStreak": 0, "Log": []}
    assert views.status_text(state).endswith(" (healthy)")
    state.paused = True
    assert views.status_text(state).endswith("(Paused)")


# --------------------------------------------------------------------------- output and messages

@pytest.mark.parametrize("ns, text", [
    (0, "0s"), (SECOND, "1s"), (30 * SECOND, "30s"), (1_500 * MS, "1.5s"), (500 * MS, "500ms"),
    (90 * SECOND, "1m30s"), (60 * SECOND, "1m0s"), (2 * 3600 * SECOND, "2h0m0s"), (1_500, "1.5µs"),
    (7, "7ns"), (-SECOND, "-1s"), (1_250_000, "1.25ms"),
])
def test_go_duration(ns, text):
    assert go_duration(ns) == text


def test_output_bounded_to_4k_with_ellipsis():
    out = Output()
    out.feed(b"a" * 4000)
    out.feed(b"b" * 200)
    out.feed(b"c" * 10)
    text = out.text()
    assert text == "a" * 4000 + "b" * 96 + "..."
    small = Output()
    small.feed(b"ok\n")
    assert small.text() == "ok\n"
    bad = Output()
    bad.feed(b"\xff\xfe")
    assert bad.text() == "\ufffd\ufffd"


def test_timeout_message():
    assert healthrules.timeout_output(SECOND, "") == "Health check exceeded timeout (1s)"
    assert healthrules.timeout_output(30 * SECOND, "partial") == "Health check exceeded timeout (30s): partial"


def test_start_error_from_runc_log_line():
    runc = ('time="2026-01-01T00:00:00Z" level=error msg="exec failed: unable to start container process: '
            'exec: \\"nope\\": executable file not found in $PATH"\n')
    assert healthrules.start_error(runc) == ('OCI runtime exec failed: exec failed: unable to start container '
                                        'process: exec: "nope": executable file not found in $PATH')
    assert healthrules.start_error("error finding executable \"nope\" in PATH\n") == \
        'error finding executable "nope" in PATH'
    assert healthrules.start_error("") == "the health check's process did not start"
