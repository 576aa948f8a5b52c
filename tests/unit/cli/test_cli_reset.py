"""berth system reset's command line: the confirmation, and the refusals that need no host state."""

from __future__ import annotations

import io

import pytest

from berth.cli import main
from berth.cli.reset import confirm


@pytest.mark.parametrize(("answer", "yes"), [("y\n", True), ("YES\n", True), (" y \n", True), ("\n", False),
                                             ("n\n", False), ("", False), ("yes please\n", False)])
def test_confirm(answer: str, yes: bool) -> None:
    out = io.StringIO()
    assert confirm("Sure? [y/N] ", io.StringIO(answer), out) is yes
    assert out.getvalue() == "Sure? [y/N] "


def test_system_directory_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.run(["system", "reset", "--root", "/etc", "--force"]) == 1
    assert "system directory" in capsys.readouterr().err


def test_not_a_data_root_refused(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious").write_text("x")
    assert main.run(["system", "reset", "--root", str(tmp_path), "--force"]) == 1
    assert "does not look like a berth data root" in capsys.readouterr().err
    assert (tmp_path / "precious").exists()


def test_symlinked_root_refused(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "berth.db").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert main.run(["system", "reset", "--root", str(tmp_path / "link"), "--force"]) == 1
    assert "symbolic link" in capsys.readouterr().err
    assert (tmp_path / "real" / "berth.db").exists()


def test_unknown_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.run(["system", "frobnicate"]) == 1
    assert "unknown command" in capsys.readouterr().err
