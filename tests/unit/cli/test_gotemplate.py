from __future__ import annotations

import pytest

from berth.cli import gotemplate as gt

DATA = {
    "Id": "abc",
    "Name": "/web",
    "State": {"ExitCode": 3, "Running": False, "Status": "exited"},
    "Config": {"Labels": {"b": "2", "a": "1"}, "Env": ["A=1", "B=2"], "Tty": True},
    "Names": "web",
    "Null": None,
    "Count": 0,
    "Ratio": 0.5,
    "Big": 1000000.0,
    "Label": lambda key: {"a": "1"}.get(key, ""),
}

CASES = [
    ("{{.Id}}", "abc"),
    ("id={{.Id}}!", "id=abc!"),
    ("{{.State.ExitCode}}", "3"),
    ("{{.State.Running}}", "false"),
    ("{{.Config.Tty}}", "true"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Missing}}", "<no value>"),
    ("{{.State.Missing}}", "<no value>"),
    ("{{.Null}}", "<nil>"),
    ("{{.Ratio}} {{.Big}}", "0.5 1e+06"),
    ("{{json .State}}", '{"ExitCode":3,"Running":false,"Status":"exited"}'),
    ("{{json .Config.Env}}", '["A=1","B=2"]'),
    ("{{json .Null}}", "null"),
    ('{{index .Config.Labels "a"}}', "1"),
    ('{{index .Config.Labels "zz"}}', ""),
    ("{{index .Config.Env 1}}", "B=2"),
    ("{{.Names}}", "web"),
    ("{{range .Config.Env}}<{{.}}>{{end}}", "<A=1><B=2>"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}", "a=1,b=2,"),
    ("{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}", "0:A=1 1:B=2 "),
    ("{{range .Nothing}}x{{else}}empty{{end}}", "empty"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "down"),
    ("{{if .Config.Tty}}tty{{end}}", "tty"),
    ("{{if .Count}}a{{else if .Id}}b{{else}}c{{end}}", "b"),
    ("{{if not .State.Running}}stopped{{end}}", "stopped"),
    ("{{if eq .State.ExitCode 3}}three{{end}}", "three"),
    ('{{if and .Id (eq .Name "/web")}}both{{end}}', "both"),
    ("{{with .State}}{{.Status}}{{end}}", "exited"),
    ("{{upper .Id}} {{lower \"ABC\"}}", "ABC abc"),
    ("{{.Id | upper}}", "ABC"),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ('{{split "a:b" ":"}}', "[a b]"),
    ("{{println .Id}}", "abc\n"),
    ("{{println}}", "\n"),
    ("{{len .Config.Env}}", "2"),
    ('{{printf "%s=%d" .Id .State.ExitCode}}', "abc=3"),
    ('{{.Label "a"}}', "1"),
    ("{{$n := .Name}}{{$n}}", "/web"),
    ("{{$.Id}}", "abc"),
    ("  {{- .Id -}}  \n", "abc"),
    ("{{/* a comment */}}x", "x"),
    ("{{(index .Config.Env 0)}}", "A=1"),
    ('{{"quoted \\"x\\""}}', 'quoted "x"'),
    ("{{`raw`}}", "raw"),
    ("{{true}} {{1}}", "true 1"),
]


@pytest.mark.parametrize("src,expected", CASES)
def test_execute(src: str, expected: str) -> None:
    assert gt.execute(src, DATA) == expected


@pytest.mark.parametrize("src", [
    "{{.Id",
    "{{if .Id}}x",
    "{{end}}",
    "{{nosuchfunc .Id}}",
    "{{.Id.Deeper}}",
    "{{template \"x\"}}",
])
def test_errors(src: str) -> None:
    with pytest.raises(gt.TemplateError):
        gt.execute(src, DATA)


def test_go_quote() -> None:
    assert gt.go_quote('sh -c "x"\n') == '"sh -c \\"x\\"\\n"'
    assert gt.go_quote("a…") == '"a…"'


TABWRITE_CASES = [
    # Go's tabwriter with minwidth 10, padding 3: cells padded, the last cell not
    ("a\tb\n", "a         b\n"),
    ("CONTAINER ID\tIMAGE\n0123\tbusybox\n", "CONTAINER ID   IMAGE\n0123           busybox\n"),
    ("x\ty\tz\nlonger-cell\tq\tr\n", "x             y         z\nlonger-cell   q         r\n"),
    # a line without tabs breaks the column block
    ("a\tb\nplain\nlonger-than-ten\tc\n", "a         b\nplain\nlonger-than-ten   c\n"),
    ("a\t\tb\n", "a                   b\n"),
]


@pytest.mark.parametrize("text,expected", TABWRITE_CASES)
def test_tabwrite(text: str, expected: str) -> None:
    assert gt.tabwrite(text, minwidth=10, padding=3) == expected


def test_render_rows_table_header_and_escapes() -> None:
    rows = [{"ID": "abc", "Image": "busybox"}, {"ID": "0123456789ab", "Image": "x"}]
    out = gt.render_rows("table {{.ID}}\\t{{.Image}}", rows, {"ID": "CONTAINER ID"})
    assert out == ("CONTAINER ID   IMAGE\n"
                   "abc            busybox\n"
                   "0123456789ab   x\n")


def test_render_rows_plain_format_has_no_header() -> None:
    out = gt.render_rows("{{.ID}}:{{.Image}}", [{"ID": "a", "Image": "b"}])
    assert out == "a:b\n"


def test_render_rows_table_with_no_rows_prints_header() -> None:
    assert gt.render_rows("table {{.ID}}", [], {"ID": "CONTAINER ID"}) == "CONTAINER ID\n"
