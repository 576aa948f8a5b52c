from __future__ import annotations

import textwrap

import pytest

from berth.builder import dockerfile as d
from berth.errors import InvalidArgument


def parse(text: str) -> d.Dockerfile:
    return d.parse(textwrap.dedent(text).lstrip("\n"))


def only(text: str) -> d.Instruction:
    """The single instruction after `FROM scratch`."""
    df = d.parse("FROM scratch\n" + textwrap.dedent(text).lstrip("\n"))
    assert len(df.stages) == 1 and len(df.stages[0].instructions) == 1
    return df.stages[0].instructions[0]


def error(text: str) -> d.DockerfileError:
    with pytest.raises(d.DockerfileError) as info:
        d.parse(textwrap.dedent(text).lstrip("\n"))
    return info.value


# ---------------------------------------------------------------- structure


def test_stages_meta_args_and_lines() -> None:
    df = parse("""
        # a comment
        ARG BASE=alpine
        ARG TAG

        FROM --platform=$BUILDPLATFORM ${BASE}:${TAG} AS Build
        RUN make
        FROM build
        COPY --from=build /out /out
        CMD ["/out"]
    """)
    assert [a.original for a in df.meta_args] == ["ARG BASE=alpine", "ARG TAG"]
    assert [a.line for a in df.meta_args] == [2, 3]
    first, second = df.stages
    assert (first.index, first.name, first.base, first.platform, first.line) == (
        0, "build", "${BASE}:${TAG}", "$BUILDPLATFORM", 5)
    assert [i.cmd for i in first.instructions] == ["RUN"]
    assert first.from_instruction is not None
    assert first.from_instruction.original == "FROM --platform=$BUILDPLATFORM ${BASE}:${TAG} AS Build"
    assert (second.name, second.base, second.platform, second.line) == (None, "build", None, 7)
    assert [i.cmd for i in second.instructions] == ["COPY", "CMD"]
    assert df.escape == "\\"
    assert df.stage("BUILD") is first
    assert df.stage("1") is second
    assert df.stage(0) is first
    assert df.stage("nope") is None
    assert df.stage("7") is None


def test_instructions_are_case_insensitive() -> None:
    df = parse("""
        from alpine as base
        run echo hi
        Copy a b
    """)
    assert df.stages[0].name == "base"
    assert [(i.cmd, i.args) for i in df.stages[0].instructions] == [
        ("RUN", ["echo hi"]), ("COPY", ["a b"])]
    assert df.stages[0].instructions[0].original == "run echo hi"


def test_shell_and_exec_forms() -> None:
    run = only("RUN echo hello   world")
    assert (run.args, run.json) == (["echo hello   world"], False)
    cmd = only('CMD ["echo", "hi there"]')
    assert (cmd.args, cmd.json) == (["echo", "hi there"], True)
    spaced = only('ENTRYPOINT   [ "a" ,"b" ]  ')
    assert (spaced.args, spaced.json) == (["a", "b"], True)
    empty = only("ENTRYPOINT []")
    assert (empty.args, empty.json) == ([], True)
    # not JSON: single quotes, trailing text, unclosed
    for text in ("CMD ['a']", 'CMD ["a"] b', 'CMD ["a"'):
        ins = only(text)
        assert (ins.args, ins.json) == ([text[4:]], False)
    # a CMD with nothing after it is accepted, as Docker does
    assert only("CMD").args == []


def test_json_array_must_hold_strings() -> None:
    err = error('FROM x\nCMD ["a", 1]\n')
    assert err.line == 2
    assert "arrays must be comprised of strings only" in str(err)


def test_words_splits_shell_form_on_whitespace() -> None:
    assert only("COPY  a   b\tc/ ").words() == ["a", "b", "c/"]
    assert only('COPY ["a b", "c"]').words() == ["a b", "c"]
    assert only("EXPOSE 80 443/tcp").words() == ["80", "443/tcp"]
    assert only("VOLUME /a /b").words() == ["/a", "/b"]


# ---------------------------------------------------------------- lines


def test_continuation_joins_lines_and_skips_comments_and_blanks() -> None:
    df = parse("""
        FROM alpine
        RUN apk add \\
        # a comment inside
              curl \\

          && echo done
        RUN next
    """)
    run, nxt = df.stages[0].instructions
    assert run.args == ["apk add       curl   && echo done"]
    assert run.original == "RUN apk add       curl   && echo done"
    assert run.line == 2
    assert nxt.line == 7


def test_continuation_with_trailing_whitespace_and_escaped_escape() -> None:
    df = d.parse("FROM a\nRUN echo a \\  \n  b\nRUN echo c \\\\\nRUN d\n")
    a, c, e = df.stages[0].instructions
    assert a.args == ["echo a   b"]
    assert c.args == ["echo c \\\\"]  # an escaped backslash does not continue the line
    assert e.args == ["d"]


def test_continuation_at_end_of_file() -> None:
    assert d.parse("FROM a\nRUN x \\").stages[0].instructions[0].args == ["x"]


def test_crlf_bom_and_indentation() -> None:
    df = d.parse("\ufeffFROM a\r\n   RUN echo \\\r\n b\r\n\tCMD x\r\n")
    run, cmd = df.stages[0].instructions
    assert run.args == ["echo  b"]
    assert cmd.args == ["x"]
    assert cmd.line == 4


def test_comment_needs_hash_first_on_the_line_but_may_be_indented() -> None:
    df = d.parse("FROM a\n   # indented comment\nRUN echo # not a comment\n")
    assert df.stages[0].instructions[0].args == ["echo # not a comment"]


# ---------------------------------------------------------------- directives


def test_escape_directive_backtick() -> None:
    df = parse("""
        # escape=`

        FROM microsoft/nanoserver
        COPY testfile.txt c:\\
        RUN dir c:\\
        RUN echo a `
            b
    """)
    assert df.escape == "`"
    assert df.directives == {"escape": "`"}
    copy, run, joined = df.stages[0].instructions
    assert copy.words() == ["testfile.txt", "c:\\"]
    assert run.args == ["dir c:\\"]
    assert joined.args == ["echo a     b"]


@pytest.mark.parametrize("head", [
    "#directive=value\n# escape=`",
    "# syntax=docker/dockerfile:1\n#escape=`",
    "# escape =`",
    "#\tescape= `",
    "# escape = ` ",
    "#  EsCaPe=`",
    "  # escape=`",
])
def test_directive_spellings(head: str) -> None:
    if head.startswith("#directive"):
        # an unknown directive ends the directive block, so escape is a plain comment
        assert d.parse(head + "\nFROM a\n").escape == "\\"
    else:
        assert d.parse(head + "\nFROM a\n").escape == "`"


@pytest.mark.parametrize("head", [
    "# comment\n# escape=`",  # after a comment that is not a directive
    "\n# escape=`",  # after an empty line
    "FROM a\n# escape=`",  # after an instruction
])
def test_directives_only_at_the_very_top(head: str) -> None:
    df = d.parse(head + "\nFROM a\n")
    assert df.escape == "\\"


def test_syntax_directive_is_recorded_and_otherwise_ignored() -> None:
    df = d.parse("# syntax=docker/dockerfile:1.4\nFROM a\n")
    assert df.directives == {"syntax": "docker/dockerfile:1.4"}


def test_directive_errors() -> None:
    err = error("# escape=`\n# escape=\\\nFROM a\n")
    assert err.line == 2 and "only one escape parser directive" in str(err)
    err = error("# escape=x\nFROM a\n")
    assert err.line == 1 and "invalid escape token" in str(err)


# ---------------------------------------------------------------- flags


def test_flags() -> None:
    copy = only("COPY --from=build --chown=1000:1000 --chmod=755 --link src/ /dst/")
    assert copy.flags == {"from": "build", "chown": "1000:1000", "chmod": "755", "link": "true"}
    assert copy.args == ["src/ /dst/"]
    assert copy.original == "COPY --from=build --chown=1000:1000 --chmod=755 --link src/ /dst/"
    run = only("RUN --mount=type=cache,target=/a --mount=type=secret,id=x --network=none make")
    assert run.flags == {"mount": "type=secret,id=x", "network": "none"}
    assert run.flag_values("mount") == ["type=cache,target=/a", "type=secret,id=x"]
    assert run.args == ["make"]
    quoted = only('COPY --chown="a b" --link=False x y')
    assert quoted.flags == {"chown": "a b", "link": "false"}
    # `--` ends the flags
    assert only("RUN -- --not-a-flag").args == ["--not-a-flag"]


@pytest.mark.parametrize("text,needle", [
    ("COPY --frm=a b c", "unknown flag: --frm"),
    ("WORKDIR --x=1 /a", "unknown flag: --x"),
    ("RUN --help", "unknown flag: --help"),
    ("COPY --from a b", "missing a value on flag --from"),
    ("COPY --from=a --from=b c d", "duplicate flag specified: --from"),
    ("COPY --link=maybe a b", "expecting boolean value for flag --link"),
])
def test_flag_errors(text: str, needle: str) -> None:
    err = error(f"FROM a\n{text}\n")
    assert err.line == 2
    assert needle in str(err)


# ---------------------------------------------------------------- per instruction


def test_from_forms() -> None:
    assert parse("FROM alpine:3.19").stages[0].name is None
    assert parse("FROM alpine AS x.y-z_1").stages[0].name == "x.y-z_1"
    for text, needle in [
        ("FROM", "FROM requires either one or three arguments"),
        ("FROM a b", "FROM requires either one or three arguments"),
        ("FROM a AS b c", "FROM requires either one or three arguments"),
        ("FROM a AS 1st", "invalid name for build stage"),
        ("FROM a AS b$c", "invalid name for build stage"),
    ]:
        err = error(text + "\n")
        assert err.line == 1 and needle in str(err), text


def test_duplicate_stage_name() -> None:
    err = error("FROM a AS x\nFROM b AS X\n")
    assert err.line == 2 and "duplicate stage name 'x'" in str(err)


@pytest.mark.parametrize("text,needle", [
    ("COPY x", "COPY requires at least two arguments"),
    ('COPY ["x"]', "COPY requires at least two arguments"),
    ("ADD x", "ADD requires at least two arguments"),
    ("COPY --from=a", "COPY requires at least two arguments"),
    ("WORKDIR", "WORKDIR requires exactly one argument"),
    ("USER", "USER requires exactly one argument"),
    ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
    ("MAINTAINER", "MAINTAINER requires exactly one argument"),
    ("EXPOSE", "EXPOSE requires at least one argument"),
    ("VOLUME", "VOLUME requires at least one argument"),
    ('VOLUME ["/a", " "]', "VOLUME specified can not be an empty string"),
    ("ENV", "ENV requires at least one argument"),
    ("ENV A", "ENV must have two arguments"),
    ("ENV a=b c", "can't find = in 'c'"),
    ("ENV =x", "ENV names can not be blank"),
    ("LABEL", "LABEL requires at least one argument"),
    ("ARG", "ARG requires at least one argument"),
    ("ARG =x", "ARG names can not be blank"),
    ("SHELL /bin/sh -c", "SHELL requires the arguments to be in JSON form"),
    ("SHELL []", "SHELL requires at least one argument"),
    ("ONBUILD", "ONBUILD requires at least one argument"),
    ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD"),
    ("ONBUILD FROM a", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("ONBUILD BOGUS x", "unknown instruction: BOGUS"),
    ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
    ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK CHECK x", 'Unknown type "CHECK" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK --interval=5 CMD x", "invalid duration"),
    ("HEALTHCHECK --timeout=1us CMD x", "cannot be less than 1ms"),
    ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative"),
    ("HEALTHCHECK --retries=x CMD x", "--retries must be a whole number"),
    ("COPY <<EOF <<OUT\nhi\nEOF\n", "COPY cannot accept a heredoc as a destination"),
])
def test_missing_or_bad_arguments(text: str, needle: str) -> None:
    err = error(f"FROM a\n{text}\n")
    assert err.line == 2, str(err)
    assert needle in str(err)
    assert str(err).startswith("Dockerfile parse error line 2: ")


def test_single_argument_instructions_keep_the_whole_rest() -> None:
    assert only("WORKDIR /a b").args == ["/a b"]
    assert only("USER app:app").args == ["app:app"]
    assert only("STOPSIGNAL SIGKILL").args == ["SIGKILL"]
    assert only("MAINTAINER Jane <j@example.org>").args == ["Jane <j@example.org>"]


def test_env_label_arg_keep_the_raw_text() -> None:
    env = only('ENV A=1 B="two words"')
    assert (env.args, env.json) == (['A=1 B="two words"'], False)
    assert only("LABEL version=1.0").args == ["version=1.0"]
    assert only("ARG A B=2").args == ["A B=2"]


def test_shell() -> None:
    ins = only('SHELL ["/bin/bash", "-o", "pipefail", "-c"]')
    assert (ins.args, ins.json) == (["/bin/bash", "-o", "pipefail", "-c"], True)


def test_healthcheck_forms() -> None:
    none = only("HEALTHCHECK none")
    assert (none.args, none.json) == (["none"], False)
    assert d.healthcheck(none) == {"Test": ["NONE"]}
    shell = only("HEALTHCHECK --interval=5m --timeout=3s CMD  curl -f http://localhost/ || exit 1")
    assert (shell.args, shell.json) == (["CMD  curl -f http://localhost/ || exit 1"], False)
    assert shell.flags == {"interval": "5m", "timeout": "3s"}
    assert d.healthcheck(shell) == {
        "Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
        "Interval": 300_000_000_000, "Timeout": 3_000_000_000}
    exec_form = only('healthcheck --start-period=1m30s --start-interval=500ms --retries=3 cmd ["pg_isready"]')
    assert (exec_form.args, exec_form.json) == (["pg_isready"], True)
    assert d.healthcheck(exec_form) == {
        "Test": ["CMD", "pg_isready"], "StartPeriod": 90_000_000_000,
        "StartInterval": 500_000_000, "Retries": 3}


@pytest.mark.parametrize("text,ns", [
    ("0", 0), ("1ns", 1), ("1us", 1_000), ("1µs", 1_000), ("2ms", 2_000_000), ("1.5s", 1_500_000_000),
    ("1m30s", 90_000_000_000), ("2h", 7_200_000_000_000), (".5m", 30_000_000_000), ("-1s", -1_000_000_000),
])
def test_duration_ns(text: str, ns: int) -> None:
    assert d.duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1s2", "--1s"])
def test_duration_ns_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        d.duration_ns(text)


def test_onbuild_wraps_an_instruction() -> None:
    ins = only("ONBUILD COPY --chown=app . /src")
    assert (ins.cmd, ins.sub, ins.args, ins.json, ins.flags) == (
        "ONBUILD", "COPY", [". /src"], False, {"chown": "app"})
    inner = ins.inner()
    assert (inner.cmd, inner.args, inner.flags, inner.line) == ("COPY", [". /src"], {"chown": "app"}, 2)
    assert inner.original == "COPY --chown=app . /src"
    assert ins.onbuild_trigger() == "COPY --chown=app . /src"
    exec_form = only('onbuild run ["make"]').inner()
    assert (exec_form.cmd, exec_form.args, exec_form.json) == ("RUN", ["make"], True)
    with pytest.raises(InvalidArgument):
        only("RUN x").inner()


def test_unknown_instruction() -> None:
    err = error("FROM a\nFOO bar\n")
    assert err.line == 2
    assert str(err).startswith("Dockerfile parse error line 2: unknown instruction: FOO")
    assert "did you mean COPY?" in str(error("FROM a\nCOPPY a b\n"))


def test_instruction_before_from() -> None:
    err = error("# hi\nRUN echo\nFROM a\n")
    assert err.line == 2
    assert "RUN comes before the first FROM" in str(err)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "# escape=`\n\n  \n"])
def test_empty_dockerfile(text: str) -> None:
    with pytest.raises(d.DockerfileError, match="the Dockerfile is empty"):
        d.parse(text)


def test_only_args_no_from() -> None:
    err = error("ARG A=1\n")
    assert "has no FROM instruction" in str(err)


def test_dockerfile_error_is_invalid_argument() -> None:
    err = error("FROM a\nCOPY x\n")
    assert isinstance(err, InvalidArgument)
    assert err.reason.startswith("COPY requires")


# ---------------------------------------------------------------- heredocs


HEREDOCS = """\
FROM alpine
RUN <<EMPTY
EMPTY
RUN 3<<FD
FD
RUN "<<NOHEREDOC"
RUN <<INDENT
\tfoo
\tbar
INDENT
RUN <<-UNINDENT
\tbaz
\t\tquux
\tUNINDENT
RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND
RUN <<COMMENT
# internal comment
echo hello # trailing
COMMENT
RUN --mount=type=cache,target=/c <<MOUNT
echo hi
MOUNT
COPY <<FILE1 <<FILE2 /dest/
content 1
FILE1
content 2
FILE2
COPY <<X <<Y /dest
Y
X
X
Y
RUN <<COMPLEX python3
print('hello')
COMPLEX
RUN <<eo'f'
echo foo
eof
RUN <<eo\\'f
echo foo
eo'f
RUN << EOF
spaced
EOF
RUN << -EOF
dash
-EOF
RUN ["<<EOF"]
ONBUILD RUN <<EOF
inner
EOF
CMD done
"""


def test_heredocs() -> None:
    ins = d.parse(HEREDOCS).stages[0].instructions
    got = [(i.cmd, [(h.name, h.content, h.chomp, h.expand, h.fd) for h in i.heredocs]) for i in ins]
    assert got == [
        ("RUN", [("EMPTY", "", False, True, 0)]),
        ("RUN", [("FD", "", False, True, 3)]),
        ("RUN", []),
        ("RUN", [("INDENT", "\tfoo\n\tbar\n", False, True, 0)]),
        ("RUN", [("UNINDENT", "baz\nquux\n", True, True, 0)]),
        ("RUN", [("NOEXPAND", "don't expand $NAME\n", True, False, 0)]),
        ("RUN", [("COMMENT", "# internal comment\necho hello # trailing\n", False, True, 0)]),
        ("RUN", [("MOUNT", "echo hi\n", False, True, 0)]),
        ("COPY", [("FILE1", "content 1\n", False, True, 0), ("FILE2", "content 2\n", False, True, 0)]),
        ("COPY", [("X", "Y\n", False, True, 0), ("Y", "X\n", False, True, 0)]),
        ("RUN", [("COMPLEX", "print('hello')\n", False, True, 0)]),
        ("RUN", [("eof", "echo foo\n", False, False, 0)]),
        ("RUN", [("eo'f", "echo foo\n", False, True, 0)]),
        ("RUN", [("EOF", "spaced\n", False, True, 0)]),
        ("RUN", [("-EOF", "dash\n", False, True, 0)]),
        ("RUN", []),
        ("ONBUILD", [("EOF", "inner\n", False, True, 0)]),
        ("CMD", []),
    ]
    assert ins[1].line == 4 and ins[2].line == 6
    assert ins[8].args == ["<<FILE1 <<FILE2 /dest/"]
    assert ins[8].words() == ["<<FILE1", "<<FILE2", "/dest/"]
    assert ins[16].onbuild_trigger() == "RUN <<EOF\ninner\nEOF"


def test_heredoc_keeps_crlf_and_missing_final_newline() -> None:
    df = d.parse("FROM a\r\nRUN <<EOF\r\nline\r\nEOF\r\n")
    assert df.stages[0].instructions[0].heredocs[0].content == "line\r\n"


def test_unterminated_heredoc() -> None:
    err = error("FROM a\nRUN <<EOF\necho\n")
    assert err.line == 2 and "unterminated heredoc" in str(err)


def test_heredoc_words_not_taken_for_user() -> None:
    err = error("FROM a\nUSER <<INVALID\nINVALID\n")
    assert err.line == 3 and "unknown instruction: INVALID" in str(err)


# ---------------------------------------------------------------- expand


@pytest.mark.parametrize("word,want", [
    ("plain", "plain"),
    ("$FOO", "/bar"),
    ("${FOO}", "/bar"),
    ("${FOO}/baz", "/bar/baz"),
    ("$FOO_x", ""),  # the name runs on over letters, digits and _
    ("${FOO}_x", "/bar_x"),
    ("\\$FOO", "$FOO"),
    ("'$FOO'", "$FOO"),
    ('"$FOO"', "/bar"),
    ('"\\$FOO"', "$FOO"),
    ('"a\\b"', "a\\b"),  # in double quotes the escape only escapes " $ and itself
    ('"a\\"b"', 'a"b'),
    ("he'll'o", "hello"),
    ("he\\'llo", "he'llo"),
    ("a\\ b", "a b"),
    ("x\\", "x"),
    ("${UNSET}", ""),
    ("$UNSET-x", "-x"),
    ("${UNSET:-default}", "default"),
    ("${EMPTY:-default}", "default"),
    ("${EMPTY-default}", ""),
    ("${UNSET-default}", "default"),
    ("${FOO:-default}", "/bar"),
    ("${FOO:+alt}", "alt"),
    ("${FOO+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET:+alt}", ""),
    ("${UNSET:-${FOO}x}", "/barx"),
    ("${UNSET:-'a b'}", "a b"),
    ("$", "$"),
    ("a$ b", "a$ b"),
    ("$1", ""),
    ("keep   spaces", "keep   spaces"),
    ("${FOO#/}", "bar"),
    ("${PATHY%/*}", "/a/b"),
    ("${PATHY%%/*}", ""),
    ("${PATHY##*/}", "c"),
    ("${PATHY/b/x}", "/a/x/c"),
    ("${REPEAT//o/0}", "f00"),
])
def test_expand(word: str, want: str) -> None:
    env = {"FOO": "/bar", "EMPTY": "", "PATHY": "/a/b/c", "REPEAT": "foo"}
    assert d.expand(word, env) == want


def test_expand_docker_documented_example() -> None:
    # Docker's "Environment replacement" example
    env: dict[str, str] = {}
    env.update(d.parse_kv("FOO=/bar", env=env))
    assert d.expand("${FOO}", env) == "/bar"
    assert d.expand("$FOO", env) == "/bar"
    assert d.expand("\\$FOO", env) == "$FOO"
    # ENV abc=hello / ENV abc=bye def=$abc / ENV ghi=$abc
    env = dict(d.parse_kv("abc=hello", env=env))
    env.update(d.parse_kv("abc=bye def=$abc", env=env))
    assert env["def"] == "hello"
    env.update(d.parse_kv("ghi=$abc", env=env))
    assert env["ghi"] == "bye"


def test_expand_with_backtick_escape() -> None:
    assert d.expand("c:\\dir\\$FOO", {"FOO": "x"}, escape="`") == "c:\\dir\\x"
    assert d.expand("`$FOO", {"FOO": "x"}, escape="`") == "$FOO"


@pytest.mark.parametrize("word,needle", [
    ("'open", "matching single-quote"),
    ('"open', "matching double-quote"),
    ("${", "missing '}'"),
    ("${FOO", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:-x}", "bad substitution"),
    ("${FOO:-x", "missing '}'"),
    ("${FOO=x}", "unsupported modifier"),
    ("${UNSET?must be set}", "UNSET: must be set"),
    ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
])
def test_expand_errors(word: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        d.expand(word, {"FOO": "x", "EMPTY": ""})
    assert needle in str(info.value)


# ---------------------------------------------------------------- split_words


@pytest.mark.parametrize("text,env,want", [
    ("80 443/tcp", None, ["80", "443/tcp"]),
    ('a "b c" d', None, ["a", "b c", "d"]),
    ("a\\ b c", None, ["a b", "c"]),
    ("'$X' $X", None, ["$X", "$X"]),
    ("$X", {"X": "1 2"}, ["1", "2"]),
    ('"$X"', {"X": "1 2"}, ["1 2"]),
    ("${X:-8080}", {}, ["8080"]),
    ('""', None, []),
    ("  ", None, []),
])
def test_split_words(text: str, env: dict[str, str] | None, want: list[str]) -> None:
    assert d.split_words(text, env=env) == want


# ---------------------------------------------------------------- parse_kv / parse_arg


@pytest.mark.parametrize("raw,want", [
    ("a=b", [("a", "b")]),
    ('a=b c="d e" f=g\\ h', [("a", "b"), ("c", "d e"), ("f", "g h")]),
    ("myName John Doe", [("myName", "John Doe")]),
    ("myDog Rex The  Dog", [("myDog", "Rex The  Dog")]),
    ('key "quoted value"', [("key", "quoted value")]),
    ('"com.example.vendor"="ACME Incorporated"', [("com.example.vendor", "ACME Incorporated")]),
    ("multi.label1=value1 multi.label2=value2", [("multi.label1", "value1"), ("multi.label2", "value2")]),
    ("empty= other=''", [("empty", ""), ("other", "")]),
    ("A B=C", [("A", "B=C")]),
])
def test_parse_kv(raw: str, want: list[tuple[str, str]]) -> None:
    assert d.parse_kv(raw) == want


def test_parse_kv_expands_with_env_and_keeps_dollars_without() -> None:
    assert d.parse_kv("PATH=$PATH:/x", env={"PATH": "/bin"}) == [("PATH", "/bin:/x")]
    assert d.parse_kv("PATH=$PATH:/x") == [("PATH", "$PATH:/x")]
    assert d.parse_kv("v='$X'", env={"X": "1"}) == [("v", "$X")]


def test_parse_kv_arg_semantics() -> None:
    assert d.parse_kv("A B=2 C=", legacy_allowed=False, what="ARG") == [("A", ""), ("B", "2"), ("C", "")]
    assert d.parse_arg("A B=2 C=") == [("A", None), ("B", "2"), ("C", "")]
    assert d.parse_arg("V=${BASE}-x", env={"BASE": "b"}) == [("V", "b-x")]


@pytest.mark.parametrize("raw", ["", "onlykey", "a=b c", "=v"])
def test_parse_kv_errors(raw: str) -> None:
    with pytest.raises(InvalidArgument):
        d.parse_kv(raw)


def test_parse_kv_backtick_escape() -> None:
    assert d.parse_kv("a=x` y b=1", escape="`") == [("a", "x y"), ("b", "1")]


# ---------------------------------------------------------------- stages


MULTI = """\
ARG GO=1.22
ARG SRC=builder
FROM golang:${GO} AS builder
RUN go build
FROM alpine AS tools
RUN apk add git
FROM tools AS unused
FROM scratch AS final
COPY --from=builder /app /app
COPY --from=1 /usr/bin/git /git
COPY --from=nginx:latest /etc/nginx /etc/nginx
COPY --from=$SRC /b /b
"""


def test_needed_stages() -> None:
    df = d.parse(MULTI)
    assert d.needed_stages(df, None) == [0, 1, 3]
    assert d.needed_stages(df, "final") == [0, 1, 3]
    assert d.needed_stages(df, "unused") == [1, 2]
    assert d.needed_stages(df, "builder") == [0]
    assert d.needed_stages(df, "2") == [1, 2]
    assert d.stage_deps(df, 3) == [0, 1]
    assert d.stage_deps(df, 2) == [1]


def test_needed_stages_unknown_target() -> None:
    with pytest.raises(InvalidArgument, match="failed to reach build target nope"):
        d.needed_stages(d.parse(MULTI), "nope")


def test_needed_stages_from_names_only_earlier_stages() -> None:
    # `FROM alpine AS alpine` refers to the image, not to itself
    df = d.parse("FROM alpine AS alpine\nFROM alpine\nRUN x\n")
    assert d.needed_stages(df, None) == [0, 1]
    assert d.needed_stages(df, "alpine") == [0]


def test_needed_stages_copy_from_later_stage_and_cycles() -> None:
    df = d.parse("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nFROM c\nCOPY --from=one /y /y\n")
    assert d.needed_stages(df, None) == [1, 0, 2]
    cyc = d.parse("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nCOPY --from=one /y /y\n")
    with pytest.raises(InvalidArgument, match="circular dependency"):
        d.needed_stages(cyc, None)
    me = d.parse("FROM a AS me\nCOPY --from=me /x /y\n")
    with pytest.raises(InvalidArgument, match="circular dependency detected on stage: me"):
        d.needed_stages(me, None)


def test_needed_stages_expand_meta_args_with_build_args() -> None:
    df = d.parse("ARG BASE=one\nFROM a AS one\nFROM b AS two\nFROM ${BASE}\n")
    assert d.needed_stages(df, None) == [0, 2]
    assert d.needed_stages(df, None, {"BASE": "two"}) == [1, 2]


def test_resolve_meta_args() -> None:
    df = d.parse("ARG A=1\nARG B=${A}2 C\nARG D\nFROM x\n")
    assert d.resolve_meta_args(df) == {"A": "1", "B": "12"}
    assert d.resolve_meta_args(df, {"A": "9", "C": "c", "Z": "z"}) == {"A": "9", "B": "92", "C": "c"}


def test_parse_instructions_for_onbuild_triggers() -> None:
    triggers = ["RUN echo one", "COPY . /app"]
    ins, escape, directives = d.parse_instructions("\n".join(triggers), escape="\\")
    assert [i.original for i in ins] == triggers
    assert (escape, directives) == ("\\", {})
