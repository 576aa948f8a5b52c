"""Modules stay small: none over 500 lines but the parsers whose size is their grammar (named in DESIGN.md,
"Module sizes"), and the two services every request goes through under 400."""

from __future__ import annotations

from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "berth"
LIMIT = 500
GRAMMARS = {
    "builder/dockerfile.py": "the Dockerfile language: instructions, quoting, variables, heredocs, directives",
    "cli/gotemplate.py": "Go's text/template language: lexer, parser and evaluator for --format",
}
TIGHTER = {"services/containers.py": 400, "services/images.py": 400}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


@pytest.mark.parametrize("module", sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")))
def test_module_is_small(module: str) -> None:
    if module in GRAMMARS:
        return
    limit = TIGHTER.get(module, LIMIT)
    lines = _lines(SRC / module)
    assert lines <= limit, f"{module} has {lines} lines (limit {limit}): split it along a seam (DESIGN.md)"


def test_grammar_exceptions_still_exist_and_are_written_down() -> None:
    design = (SRC.parents[1] / "DESIGN.md").read_text()
    for module in GRAMMARS:
        assert (SRC / module).is_file(), module
        assert f"`{module}`" in design, f"DESIGN.md does not name the exception {module}"
