"""Client patterns in linear time: what a hostile filter cannot do to the daemon."""

import pytest

from berth.api.views.containers import name_matches
from berth.services.patterns import go_regex, reference_matches


def test_name_filter_takes_gos_syntax_and_anchors():
    assert name_matches("^/web$", "/web")
    assert name_matches("we", "/web")
    assert not name_matches("^web$", "/web")


def test_a_pattern_re2_refuses_matches_nothing_and_says_nothing():
    assert go_regex("(?<=x)y") is None
    assert not name_matches("(?<=x)y", "/xy")
    assert name_matches("(?<=x)y", "(?<=x)y")  # equality still holds, as Docker's filter does


@pytest.mark.timeout(60)  # Python's re would need exponential time here (hours); RE2 is linear
def test_catastrophic_backtracking_patterns_stay_linear():
    assert not name_matches("^(a+)+$", "a" * 5000 + "!")
    assert not name_matches("^(a|a)*$", "a" * 5000 + "!")
    assert not reference_matches(["*a*a*a*a*a*a*a*a*a*a*b"], "a" * 120 + ":latest")


def test_reference_globs_still_match_as_go_path_match():
    assert reference_matches(["busy*"], "busybox:latest")
    assert reference_matches(["busybox:1.3?"], "busybox:1.36")
    assert not reference_matches(["busy*"], "library/busybox:latest")
    assert reference_matches(["[ab]usybox"], "busybox:latest")
