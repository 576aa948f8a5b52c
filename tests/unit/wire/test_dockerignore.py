from __future__ import annotations

import itertools

import pytest

from berth.errors import InvalidArgument
from berth.wire import dockerignore


def excluded(text: str, path: str) -> bool:
    return dockerignore.parse(text).excluded(path)


# Docker's documented example .dockerignore
DOCS_EXAMPLE = """\
# comment
*/temp*
*/*/temp*
temp?
"""


@pytest.mark.parametrize("path,want", [
    ("somedir/temporary.txt", True),  # */temp*
    ("somedir/temp", True),
    ("somedir/temp/inner.txt", True),  # under an excluded directory
    ("somedir/subdir/temporary.txt", True),  # */*/temp*
    ("tempa", True),  # temp?
    ("tempb", True),
    ("temp", False),
    ("tempab", False),
    ("temporary.txt", False),  # */temp* needs one directory level
    ("a/b/c/temp", False),
    ("# comment", False),
    ("somedir/other.txt", False),
])
def test_documented_example(path: str, want: bool) -> None:
    assert excluded(DOCS_EXAMPLE, path) is want


@pytest.mark.parametrize("path,want", [
    ("main.go", True),
    ("cmd/tool/main.go", True),
    ("main.go.txt", False),
    ("go", False),
])
def test_double_star_any_depth(path: str, want: bool) -> None:
    assert excluded("**/*.go", path) is want


@pytest.mark.parametrize("text,path,want", [
    # *.md with an exception for README.md
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    ("*.md\n!README.md", "docs/guide.md", False),  # *.md is not recursive
    # the last matching line wins
    ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-public.md", False),
    ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),
    ("*.md\nREADME-secret.md\n!README*.md", "other.md", True),
])
def test_exceptions_and_last_match_wins(text: str, path: str, want: bool) -> None:
    assert excluded(text, path) is want


@pytest.mark.parametrize("pattern,path,want", [
    ("foo", "foo", True),
    ("foo", "foo/bar/baz", True),  # a directory excludes everything below it
    ("foo", "foobar", False),
    ("foo", "x/foo", False),  # patterns are anchored at the context root
    ("/foo", "foo/x", True),  # a leading slash is ignored
    ("./foo/", "foo", True),  # cleaned like filepath.Clean
    ("foo/../bar", "bar", True),
    ("foo//bar/", "foo/bar", True),
    ("foo/*", "foo/a", True),
    ("foo/*", "foo", False),
    ("foo/*", "foo/a/b", True),  # via parent foo/a
    ("*", "anything/at/all", True),
    ("?", "a", True),
    ("?", "ab", False),
    ("a?c", "a/c", False),  # ? does not match /
    ("a*c", "a/c", False),  # * does not match /
    ("**", "x/y/z", True),
    ("**/", "x", True),
    ("**/foo", "foo", True),
    ("**/foo", "a/b/foo", True),
    ("**/foo", "a/b/foo/c", True),
    ("**/foo", "a/xfoo", False),
    ("foo/**", "foo/a/b", True),
    ("foo/**", "foo", False),
    ("foo/**/bar", "foo/bar", True),
    ("foo/**/bar", "foo/a/b/bar", True),
    ("foo/**/bar", "foo/a/b/barx", False),
    ("a/**/*.txt", "a/b/c.txt", True),
    ("a/**/*.txt", "b/c.txt", False),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "dx", False),
    ("[^a-c]x", "dx", True),
    ("[^a-c]x", "ax", False),
    ("[!]x", "!x", True),  # only ^ negates
    ("[\\]]x", "]x", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("a.b", "axb", False),  # regex characters are literal
    ("a+(b)|{c}$", "a+(b)|{c}$", True),
    ("a+*", "a+x", True),
    ("ünï*", "ünïcode", True),
])
def test_pattern_matching(pattern: str, path: str, want: bool) -> None:
    assert excluded(pattern, path) is want


def test_paths_are_cleaned() -> None:
    pats = dockerignore.parse("foo")
    assert pats.excluded("./foo/x")
    assert pats.excluded("/foo")
    assert pats.excluded("foo/")


def test_comments_blank_lines_and_whitespace() -> None:
    text = "\ufeff# comment\n\n   \n  bar  \r\n # not a comment\n!  keep\n"
    pats = dockerignore.parse(text)
    assert [(p.text, p.exclusion) for p in pats.patterns] == [
        ("bar", False), ("# not a comment", False), ("keep", True)]
    assert pats.exclusions


def test_empty_file() -> None:
    pats = dockerignore.parse("")
    assert pats.patterns == ()
    assert not pats.excluded("anything")
    assert not pats.dir_excluded_entirely("anything")


@pytest.mark.parametrize("text", ["!", "  !  ", "a[", "[]a", "[-a]", "[a-]", "[z-a]", "foo\\", "[a"])
def test_bad_patterns(text: str) -> None:
    with pytest.raises(InvalidArgument):
        dockerignore.parse(text)


def test_compile_patterns() -> None:
    pats = dockerignore.compile_patterns(["*.log", " !keep.log ", "", "!/./x"])
    assert [(p.text, p.exclusion) for p in pats.patterns] == [("*.log", False), ("keep.log", True), ("/x", True)]
    assert pats.excluded("a.log") and not pats.excluded("keep.log")


@pytest.mark.parametrize("text,directory,want", [
    ("node_modules", "node_modules", True),
    ("node_modules", "src", False),  # not excluded at all
    ("node_modules\n!node_modules/keep.txt", "node_modules", False),
    ("node_modules\n!node_modules/keep.txt", "node_modules/sub", True),
    ("node_modules\n!node_modules/*/keep.txt", "node_modules/sub", False),
    ("node_modules\n!node_modules/*/keep.txt", "node_modules/sub/deeper", True),
    ("*\n!src", "docs", True),
    ("*\n!*.md", "docs", True),  # *.md never reaches below a top-level directory
    ("*\n!*/README.md", "docs", False),
    ("*\n!src/**", "docs", True),
    ("*\n!src/**", "src", False),  # not excluded: the exception re-includes it... below
    ("*\n!**/keep", "docs", False),
    ("build\n!build/[a-c]*/x", "build", False),
    ("build\n!build/[a-c]*/x", "build/d", True),
    ("build\n!build/[a-c]*/x", "build/b", False),
    ("build\n!other/x", "build", True),
])
def test_dir_excluded_entirely(text: str, directory: str, want: bool) -> None:
    assert dockerignore.parse(text).dir_excluded_entirely(directory) is want


TREE = [
    "a", "a/b", "a/b/c.txt", "a/b/keep", "a/keep", "a/x.md", "a/d/e/keep", "src", "src/main.go",
    "src/vendor", "src/vendor/lib.go", "docs", "docs/README.md", "docs/x/y.md", "README.md",
]


@pytest.mark.parametrize("text", [
    "a", "a\n!a/keep", "*\n!**/keep", "**/*.go\n!src/vendor", "*\n!src", "a/*\n!a/b/keep",
    "*\n!*/README.md", "docs\n!docs/*/*.md", "src/vendor\n!src/vendor/**",
])
def test_skipping_directories_never_changes_the_verdict(text: str) -> None:
    """Whenever dir_excluded_entirely says skip, every path below is indeed excluded."""
    pats = dockerignore.parse(text)
    for d, p in itertools.product(TREE, TREE):
        if p.startswith(d + "/") and pats.dir_excluded_entirely(d):
            assert pats.excluded(p), (text, d, p)
