"""Services speak typed values: no public function or method under berth/services takes or returns an
untyped JSON object (`dict[str, Any]`, `Mapping[str, Any]`, a bare `dict`). Docker's JSON is parsed and
rendered in api/ (DESIGN.md, "The container record"); the database rows are private to their store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "src" / "berth" / "services"
UNTYPED = ("dict[str, Any]", "Mapping[str, Any]", "MutableMapping[str, Any]", "dict[str, object]")


def _public_signatures(tree: ast.Module) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
            continue
        args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
        notes = [ast.unparse(a.annotation) for a in args if a.annotation is not None]
        if node.returns is not None:
            notes.append(ast.unparse(node.returns))
        out.append((f"{node.name} (line {node.lineno})", notes))
    return out


@pytest.mark.parametrize("module", sorted(p.name for p in SERVICES.glob("*.py")))
def test_public_signatures_are_typed(module: str) -> None:
    tree = ast.parse((SERVICES / module).read_text())
    bad = [f"{name}: {note}" for name, notes in _public_signatures(tree) for note in notes
           if any(u in note for u in UNTYPED) or note == "dict"]
    assert not bad, f"services/{module} passes untyped JSON: {bad} (type it, or parse/render it in api/)"


def test_the_check_sees_an_offender() -> None:
    tree = ast.parse("def inspect(ref: str) -> dict[str, Any]: ...\ndef _private(x: dict[str, Any]) -> None: ...")
    assert [(name, notes) for name, notes in _public_signatures(tree)] == [("inspect (line 1)", ["str", "dict[str, Any]"])]
