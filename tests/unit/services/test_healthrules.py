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
    Healthcheck,
    HealthLogEntry,
    HealthState,
    Output,
    Probe,
    check_config,
    delay,
    go_duration,
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


def merge(container: object, image: object) -> dict | None:
    """healthrules.merge of two Config.Healthcheck objects, as JSON."""
    merged = healthrules.merge(Healthcheck.from_doc(container), Healthcheck.from_doc(image))
    return None if merged is None else dict(merged.to_doc())


def probe(cfg: dict) -> Probe | None:
    """The probe of a container's Config (its Healthcheck and Shell), as services.health reads it."""
    shell = cfg.get("Shell")
    return probe_of(Healthcheck.from_doc(cfg.get("Healthcheck")), tuple(shell) if shell else healthrules.DEFAULT_SHELL)


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


def test_merge_keeps_zeros_the_image_does_not_fill_and_the_request_alone():
    assert merge({"Test": ["CMD", "true"], "Timeout": 0}, IMAGE) == {
        "Test": ["CMD", "true"], "Interval": 10 * SECOND, "Timeout": 0, "Retries": 5}
    assert merge({"Test": "CMD-SHELL true"}, None) == {"Test": ["CMD-SHELL true"]}  # a strslice's one string
    assert merge({}, None) == {}
    assert merge({"Test": []}, {"Interval": SECOND}) == {"Interval": SECOND}  # no test on either side


def test_no_healthcheck_overrides_the_image():
    merged = merge({"Test": ["NONE"]}, IMAGE)
    assert merged is not None and merged["Test"] == ["NONE"]
    assert probe({"Healthcheck": merged}) is None


@pytest.mark.parametrize("doc, want", [
    (None, None), ("CMD true", None), ([], None), ({}, Healthcheck()),
    ({"Test": ["CMD", "true"], "Interval": 1, "Timeout": 2, "StartPeriod": 3, "StartInterval": 4, "Retries": 5},
     Healthcheck(("CMD", "true"), 1, 2, 3, 4, 5)),
    ({"Test": [1], "Interval": "30s", "Retries": True}, Healthcheck()),  # wrong types: left out
])
def test_healthcheck_from_json(doc, want):
    assert Healthcheck.from_doc(doc) == want


# --------------------------------------------------------------------------- probes

def test_probe_defaults():
    assert probe({"Healthcheck": {"Test": ["CMD", "true"]}}) == Probe(
        ("true",), DEFAULT_INTERVAL, DEFAULT_TIMEOUT, 0, DEFAULT_START_INTERVAL, DEFAULT_RETRIES)


def test_probe_shell_form_uses_the_container_shell():
    assert probe({"Healthcheck": {"Test": ["CMD-SHELL", "exit 1"]}}).argv == ("/bin/sh", "-c", "exit 1")
    cfg = {"Healthcheck": {"Test": ["CMD-SHELL", "exit 1"]}, "Shell": ["/bin/bash", "-ec"]}
    assert probe(cfg).argv == ("/bin/bash", "-ec", "exit 1")


@pytest.mark.parametrize("cfg", [
    {}, {"Healthcheck": None}, {"Healthcheck": {}}, {"Healthcheck": {"Test": ["NONE"]}},
    {"Healthcheck": {"Test": []}}, {"Healthcheck": {"Test": ["CMD"]}}, {"Healthcheck": {"Test": ["BOGUS", "x"]}},
])
def test_no_probe(cfg):
    assert probe(cfg) is None


def test_probe_values_taken_when_positive():
    p = probe({"Healthcheck": {"Test": ["CMD", "a", "b"], "Interval": SECOND, "Timeout": 2 * SECOND,
                               "StartPeriod": 3 * SECOND, "StartInterval": 4 * SECOND, "Retries": 1}})
    assert p == Probe(("a", "b"), SECOND, 2 * SECOND, 3 * SECOND, 4 * SECOND, 1)
    assert probe({"Healthcheck": {"Test": ["CMD", "a"], "Interval": 0, "Retries": -1}}) == Probe(("a",))


def test_delay_uses_start_interval_only_while_starting_in_the_start_period():
    p = Probe(("true",), interval=30 * SECOND, start_period=10 * SECOND, start_interval=2 * SECOND)
    assert delay(p, 0, STARTING) == 2
    assert delay(p, 9 * SECOND, STARTING) == 2
    assert delay(p, 10 * SECOND, STARTING) == 30
    assert delay(p, SECOND, HEALTHY) == 30  # a success ends the start period's quick probing
    assert delay(Probe(("true",)), 0, STARTING) == 30  # no start period: Interval from the first


# --------------------------------------------------------------------------- transitions

def result(code: int, n: int = 0) -> HealthLogEntry:
    return HealthLogEntry(f"s{n}", f"e{n}", code, f"out{n}")


def test_success_makes_healthy_and_resets_streak():
    h = record(healthrules.reset(None), result(1), 3, False)
    assert (h.status, h.failing_streak) == (STARTING, 1)
    h = record(h, result(0), 3, False)
    assert (h.status, h.failing_streak) == (HEALTHY, 0)


def test_unhealthy_after_retries_failures_in_a_row():
    h = healthrules.reset(None)
    statuses = []
    for i in range(3):
        h = record(h, result(1, i), 3, False)
        statuses.append(h.status)
    assert statuses == [STARTING, STARTING, UNHEALTHY] and h.failing_streak == 3
    h = record(h, result(1, 4), 3, False)  # stays unhealthy, the streak grows
    assert (h.status, h.failing_streak) == (UNHEALTHY, 4)
    assert record(h, result(0, 5), 3, False).status == HEALTHY


def test_failures_in_the_start_period_do_not_count_while_starting():
    h = healthrules.reset(None)
    for i in range(5):
        h = record(h, result(1, i), 1, True)
    assert (h.status, h.failing_streak) == (STARTING, 0)
    h = record(h, result(0), 1, True)
    assert h.status == HEALTHY
    # once healthy, a failure counts even inside the start period
    h = record(h, result(1), 1, True)
    assert (h.status, h.failing_streak) == (UNHEALTHY, 1)


def test_a_failure_below_retries_keeps_healthy():
    h = record(HealthState(HEALTHY, 0, ()), result(1), 3, False)
    assert (h.status, h.failing_streak) == (HEALTHY, 1)


def test_timeout_and_start_errors_are_failures():
    assert record(healthrules.reset(None), result(-1), 1, False).status == UNHEALTHY


def test_retries_zero_means_at_least_one():
    assert record(healthrules.reset(None), result(1), 0, False).status == UNHEALTHY


def test_log_keeps_the_last_five_oldest_first():
    h = healthrules.reset(None)
    for i in range(8):
        h = record(h, result(i % 2, i), 3, False)
    assert [e.start for e in h.log] == ["s3", "s4", "s5", "s6", "s7"]


def test_record_does_not_change_its_argument():
    h = healthrules.reset(None)
    record(h, result(0), 3, False)
    assert h == HealthState(STARTING, 0, ())


def test_reset_keeps_the_log_and_starts_over():
    h = HealthState(UNHEALTHY, 7, tuple(result(1, i) for i in range(9)))
    fresh = healthrules.reset(h)
    assert (fresh.status, fresh.failing_streak) == (STARTING, 0)
    assert len(fresh.log) == 5 and fresh.log[-1].start == "s8"
    assert healthrules.reset(None) == HealthState(STARTING, 0, ())


# --------------------------------------------------------------------------- stored form

STORED = {"Status": "healthy", "FailingStreak": 0,
          "Log": [{"Start": "2024-01-01T00:00:00.1Z", "End": "2024-01-01T00:00:00.2Z", "ExitCode": 0,
                   "Output": "ok\n"}]}


def test_health_state_round_trips_its_stored_json():
    import json
    state = HealthState.from_doc(json.loads(json.dumps(STORED)))
    assert state == HealthState(HEALTHY, 0, (HealthLogEntry("2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00.2Z",
                                                            0, "ok\n"),))
    assert state is not None and json.dumps(state.to_doc()) == json.dumps(STORED)  # the same bytes


@pytest.mark.parametrize("doc, want", [
    (None, None), ("junk", None), ([], None),
    ({}, HealthState("", 0, ())),                          # never said: status_of reads it as none
    ({"Status": "starting", "FailingStreak": "x", "Log": ["junk", {"ExitCode": 1}]},
     HealthState(STARTING, 0, (HealthLogEntry("", "", 1, ""),))),
])
def test_health_state_from_odd_records(doc, want):
    assert HealthState.from_doc(doc) == want


def test_a_container_record_keeps_its_health():
    import json

    from berth.services import containerrows

    def stored(state: dict) -> dict:
        record = containerrows.decode(json.dumps({"Id": "c" * 64, "State": state}))
        assert record.state.health is None or record.state.health.status == HEALTHY
        return json.loads(containerrows.encode(record))["State"]

    assert stored({"Status": "running", "Running": True, "Health": STORED})["Health"] == STORED
    assert "Health" not in stored({"Status": "exited"})


# --------------------------------------------------------------------------- views

def test_status_words_for_ps_and_filter():
    assert healthrules.status_of(None) == "none"
    assert healthrules.status_of(HealthState("", 0, ())) == "none"
    assert healthrules.status_suffix(None) == ""
    assert healthrules.status_suffix(HealthState(STARTING)) == " (health: starting)"
    assert healthrules.status_suffix(HealthState(HEALTHY)) == " (healthy)"
    assert healthrules.status_suffix(HealthState(UNHEALTHY)) == " (unhealthy)"
    healthrules.check_filter(["healthy", "unhealthy", "starting", "none"])
    with pytest.raises(InvalidArgument, match="Unrecognised filter value for health: sick"):
        healthrules.check_filter(["sick"])


def test_ps_status_text_shows_health():
    from berth import timefmt
    from berth.api.views import containers as views
    from berth.services.records import ContainerState

    state = ContainerState(status="running", running=True, started_at=timefmt.now(),
                           health=HealthState(STARTING))
    assert views.status_text(state).endswith(" (health: starting)")
    state.health = HealthState(HEALTHY)
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
