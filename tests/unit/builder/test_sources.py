"""Tests for berth.builder.sources: which paths COPY/ADD source patterns name (globs, escapes, missing files).

The patterns are matched against a real build context (the `src` fixture of this folder's conftest).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from berth_builder_conftest import names

from berth.builder import sources
from berth.builder.sources import find_sources
from berth.errors import InvalidArgument


def test_literal_sources_and_dot(src: Path) -> None:
    assert names(src, ["a.txt"]) == ["a.txt"]
    assert names(src, ["/a.txt", "./dir/", "dir/sub/../x.txt"]) == ["a.txt", "dir", "dir/x.txt"]
    assert names(src, ["."]) == ["."]
    assert names(src, ["toplink"]) == ["toplink"]  # returned as named, resolved when copied


@pytest.mark.parametrize("pattern,expected", [
    ("*.txt", ["a.txt", "b.txt", "star*.txt", "weird[1].txt"]),
    ("?.txt", ["a.txt", "b.txt"]),
    ("[ab].txt", ["a.txt", "b.txt"]),
    ("[^a].txt", ["b.txt"]),
    ("[a-b].txt", ["a.txt", "b.txt"]),
    ("dir/*.txt", ["dir/x.txt"]),
    ("*/*.txt", ["dir/x.txt"]),
    ("dir/*/*", ["dir/sub/y.txt"]),
    (".h*", [".hidden"]),
    ("sta?\\*.txt", ["star*.txt"]),
    ("weird\\[1\\].t?t", ["weird[1].txt"]),
    ("*", [".hidden", "a.txt", "abslink", "b.txt", "dir", "outlink", "run.sh", "star*.txt", "toplink",
           "weird[1].txt"]),
])
def test_globs_follow_go_filepath_match(src: Path, pattern: str, expected: list[str]) -> None:
    assert names(src, [pattern]) == expected


def test_escapes_only_count_in_globs(src: Path) -> None:
    # Docker: without an unescaped wildcard the path is literal, backslash included
    with pytest.raises(InvalidArgument, match="file not found"):
        find_sources(src, ["star\\*.txt"])
    assert names(src, ["star*.txt"]) == ["star*.txt"]  # a glob matching itself


def test_glob_does_not_descend_through_symlinks(src: Path) -> None:
    with pytest.raises(InvalidArgument, match="file not found"):
        find_sources(src, ["abslink/*.txt"])


def test_segment_regex_rules() -> None:
    assert sources.segment_regex("a*").fullmatch("abc") and sources.segment_regex("[!x]").fullmatch("!")
    for bad in ("[", "[]", "a\\", "[a-", "[^"):
        with pytest.raises(ValueError):
            sources.segment_regex(bad)
    assert sources.segment_regex("[z-a]x").fullmatch("zx") is None  # an empty range never matches
    assert sources.has_wildcards("a*") and not sources.has_wildcards("a\\*b") and sources.has_wildcards("[x]")


def test_bad_glob_is_reported(src: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a valid pattern"):
        find_sources(src, ["a[.txt"])


@pytest.mark.parametrize("pattern", ["../x", "/../x", "dir/../../x", "../*.txt"])
def test_paths_outside_the_context_are_forbidden(src: Path, pattern: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        find_sources(src, [pattern])
    assert str(err.value) == f"COPY failed: forbidden path outside the build context: {pattern}"


@pytest.mark.parametrize("pattern", ["nope", "nope*.txt", "dir/nope", "a.txt/x"])
def test_missing_sources(src: Path, pattern: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        find_sources(src, ["a.txt", pattern])
    assert str(err.value) == ("COPY failed: file not found in build context or excluded by .dockerignore: "
                              f"stat {pattern}: file does not exist")
