"""`berth search`'s output, checked against what the docker CLI (28.2.2) printed for the same results.

The expected texts were produced by running `docker search` against a search server that answered
these results (docker's table lays cells out by terminal columns: wide characters count 2).
"""

from __future__ import annotations

import pytest

from berth.cli.commands_search import ellipsis, filters_of, render
from berth.cli.gotemplate import display_width

RESULTS = [
    {"name": "busy/one", "description": "A short one", "star_count": 5, "is_official": True, "is_automated": False},
    {"name": "busy/two", "description": "A description that is much longer than forty-five characters, really long",
     "star_count": 2, "is_official": False, "is_automated": False},
    {"name": "busy/three", "description": "line\nbreak\rcr", "star_count": 3, "is_official": False,
     "is_automated": False},
    {"name": "busy/four", "description": "ünïcödé ❤ wide " + "漢字" * 19, "star_count": 100, "is_official": True,
     "is_automated": False},
]

DOCKER_TABLE = (
    "NAME         DESCRIPTION                                     STARS     OFFICIAL\n"
    "busy/one     A short one                                     5         [OK]\n"
    "busy/two     A description that is much longer than forty…   2         \n"
    "busy/three   line break cr                                   3         \n"
    "busy/four    ünïcödé ❤ wide 漢字漢字漢字漢字漢字漢字漢字…    100       [OK]\n")

DOCKER_NO_TRUNC = (
    "NAME         DESCRIPTION                                                                                   STARS     OFFICIAL\n"
    "busy/one     A short one                                                                                   5         [OK]\n"
    "busy/two     A description that is much longer than forty-five characters, really long                     2         \n"
    "busy/three   line break cr                                                                                 3         \n"
    "busy/four    ünïcödé ❤ wide 漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字   100       [OK]\n")

DOCKER_JSON = (
    '{"Description":"A short one","IsOfficial":"true","Name":"busy/one","StarCount":"5"}\n'
    '{"Description":"A description that is much longer than forty…","IsOfficial":"false","Name":"busy/two",'
    '"StarCount":"2"}\n'
    '{"Description":"line break cr","IsOfficial":"false","Name":"busy/three","StarCount":"3"}\n'
    '{"Description":"ünïcödé ❤ wide 漢字漢字漢字漢字漢字漢字漢字…","IsOfficial":"true","Name":"busy/four",'
    '"StarCount":"100"}\n')

WIDE = [
    {"name": "a/combining", "description": "e\u0301e\u0301e\u0301 combining marks", "star_count": 1},
    {"name": "a/emoji", "description": "😀😀😀 emoji", "star_count": 1},
    {"name": "a/plain", "description": "x", "star_count": 1},
    {"name": "a/ambig", "description": "±±±§§§ ambiguous", "star_count": 1},
    {"name": "a/cjklong", "description": "漢" * 30, "star_count": 1},
    {"name": "a/html", "description": "<b>&amp;</b>", "star_count": 1},
]

DOCKER_WIDE = (
    "NAME          DESCRIPTION                                     STARS     OFFICIAL\n"
    "a/combining   e\u0301e\u0301e\u0301 combining marks                             1         \n"
    "a/emoji       😀😀😀 emoji                                    1         \n"
    "a/plain       x                                               1         \n"
    "a/ambig       ±±±§§§ ambiguous                                1         \n"
    "a/cjklong     漢漢漢漢漢漢漢漢漢漢漢漢漢漢漢漢漢漢漢漢漢漢…   1         \n"
    "a/html        <b>&amp;</b>                                    1         \n")


@pytest.mark.parametrize("fmt, trunc, expected", [
    (None, True, DOCKER_TABLE),
    ("table", True, DOCKER_TABLE),
    (None, False, DOCKER_NO_TRUNC),
    ("json", True, DOCKER_JSON),
    ("{{.Name}}|{{.StarCount}}|{{.IsOfficial}}|{{.Description}}", True,
     "busy/one|5|[OK]|A short one\nbusy/two|2||A description that is much longer than forty…\n"
     "busy/three|3||line break cr\nbusy/four|100|[OK]|ünïcödé ❤ wide 漢字漢字漢字漢字漢字漢字漢字…\n"),
    ("table {{.Name}}\\t{{.StarCount}}", True,
     "NAME         STARS\nbusy/one     5\nbusy/two     2\nbusy/three   3\nbusy/four    100\n"),
])
def test_output_is_dockers(fmt: str | None, trunc: bool, expected: str) -> None:
    assert render(RESULTS, fmt, trunc) == expected


def test_wide_and_combining_characters_align_as_dockers_table() -> None:
    assert render(WIDE, None, True) == DOCKER_WIDE


def test_html_in_json_is_escaped_as_go_does() -> None:
    assert '"Description":"\\u003cb\\u003e\\u0026amp;\\u003c/b\\u003e"' in render(WIDE, "json", True)


def test_no_results_is_the_header_alone_or_nothing() -> None:
    assert render([], None, True) == "NAME      DESCRIPTION   STARS     OFFICIAL\n"
    assert render([], "json", True) == ""


@pytest.mark.parametrize("text, width, expected", [
    ("short", 45, "short"),
    ("x" * 45, 45, "x" * 45),
    ("x" * 46, 45, "x" * 44 + "…"),
    ("漢" * 30, 45, "漢" * 22 + "…"),
    ("ab漢", 3, "ab…"),
    ("anything", 0, ""),
])
def test_ellipsis_counts_columns_as_docker(text: str, width: int, expected: str) -> None:
    assert ellipsis(text, width) == expected


def test_display_width() -> None:
    assert display_width("abc") == 3
    assert display_width("漢字") == 4
    assert display_width("e\u0301") == 1
    assert display_width("😀") == 2


def test_filters_are_sent_as_docker_sends_them() -> None:
    assert filters_of(["IS-OFFICIAL= true", "stars=2", "stars=4"]) == {"is-official": ["true"], "stars": ["2", "4"]}
