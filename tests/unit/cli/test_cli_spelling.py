"""Usage lines and errors name the command as the user spelled it (`berth container ls`), and
help lists a command's other spellings, as docker's CLI does."""

from __future__ import annotations

import pytest

from berth.cli import main
from berth.cli.aliases import aliases
from berth.cli.parser import Parser, spelled


def test_group_sub_verb_errors_name_the_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.run(["container", "ls", "--bogus"]) == 125
    err = capsys.readouterr().err
    assert "Usage:  berth container ls [OPTIONS]" in err and "'berth container ls --help'" in err
    assert main.run(["container", "list", "--bogus"]) == 125  # an alias shows the sub-verb's own name
    assert "Usage:  berth container ls [OPTIONS]" in capsys.readouterr().err
    assert main.run(["ps", "--bogus"]) == 125
    assert "Usage:  berth ps [OPTIONS]" in capsys.readouterr().err
    assert main.run(["image", "remove"]) == 1
    assert "'berth image rm' requires at least 1 argument" in capsys.readouterr().err


def test_only_the_commands_own_parser_takes_the_spelling() -> None:
    with spelled("container inspect"):
        first, second = Parser("inspect", "X"), Parser("pull", "Y")
    assert (first.prog, second.prog) == ("berth container inspect", "berth pull")
    assert first.command == "inspect"


def test_help_lists_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    assert aliases("ps") == "berth container ls, berth container list, berth container ps, berth ps"
    assert aliases("version") == ""
    assert main.run(["image", "ls", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage:  berth image ls [OPTIONS] [REPOSITORY[:TAG]]\n\nList images\n\n"
                          "Aliases:\n  berth image ls, berth image list, berth images\n\nOptions:\n")


def test_flags_may_follow_arguments_except_before_a_command() -> None:
    p = Parser("rm", "X", min_args=1)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(["a", "-f", "b"])
    assert (ns.args, ns.force) == (["a", "b"], True)
    import argparse

    run = Parser("exec", "X")
    run.add_argument("-i", action="store_true")
    run.add_argument("container")
    run.add_argument("command", nargs=argparse.REMAINDER)
    ns = run.parse(["c", "ls", "-i"])  # -i after the command is the command's
    assert (ns.i, ns.command) == (False, ["ls", "-i"])


def test_only_tables_are_aligned() -> None:
    from berth.cli.gotemplate import render_rows

    rows = [{"A": "x", "B": "1"}, {"A": "longer", "B": "2"}]
    assert render_rows("{{.A}}\t{{.B}}", rows) == "x\t1\nlonger\t2\n"
    assert render_rows("table {{.A}}\t{{.B}}", rows, {"A": "A", "B": "B"}).splitlines()[1] == "x         1"


def test_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.run(["--help"]) == 0
    text = capsys.readouterr().out
    assert [verb for verb in main.COMMANDS if f"\n  {verb} " not in text] == []
