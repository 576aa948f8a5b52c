"""The import contract: DESIGN.md's layer table, checked against every module's imports.

The table is written once, in DESIGN.md ("The layer table"); this test parses it, parses each
module under src/berth with ast (imports inside functions count too: a lazy import is still a
dependency), and fails on an import that goes up or sideways, and on a cycle between modules of
one package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "berth"

# Imports the table allows by name, each with its reason (DESIGN.md says the same).
EXCEPTIONS = {
    ("berth.cli.commands_volumes", "image"): "berth cp extracts into the user's file system with image/archive.py",
}


def _packages(text: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", text)


def _table() -> dict[str, set[str]]:
    """package -> the packages it may import, from DESIGN.md's layer table."""
    design = (ROOT / "DESIGN.md").read_text()
    section = design.split("### The layer table", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            rows.append((int(cells[0]), _packages(cells[1]), cells[2]))
    assert rows, "DESIGN.md has no layer table"
    tier_of = {p: t for t, pkgs, _ in rows for p in pkgs}

    def tiers(spec: str) -> set[str]:
        out: set[str] = set()
        for lo, hi in re.findall(r"tiers? (\d)(?:–(\d))?", spec):
            span = range(int(lo), int(hi or lo) + 1)
            out |= {p for p, t in tier_of.items() if t in span}
        return out

    allowed: dict[str, set[str]] = {}
    for _, pkgs, spec in rows:
        main, _, extra = spec.partition("(")
        for p in pkgs:
            if main.strip().startswith("*only*"):
                named = set(_packages(main)) | tiers(main)
            elif "standard library" in main:
                named = set(_packages(main))
            else:
                named = tiers(main)
            allowed[p] = named | {p}
    # the composition root: the parenthesised clause of the api row
    api_row = next(spec for _, pkgs, spec in rows if "api" in pkgs)
    allowed["api.wiring"] = tiers(api_row.partition("(")[2]) | {"api"}
    return allowed


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every berth module *path* imports (absolute and relative, at any depth, for type checking too)."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("berth.")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base == "berth":  # from berth import x: x is a package or a constant of berth/__init__
                out |= {f"berth.{a.name}" for a in node.names if (SRC / a.name).exists()
                        or (SRC / f"{a.name}.py").exists()}
            elif base.startswith("berth."):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def test_every_package_is_in_the_table():
    table = _table()
    packages = {_package(m) for m in MODULES if m != "berth"}
    assert packages - set(table) == set(), "add these packages to DESIGN.md's layer table"


def _wrong(module: str, targets: set[str], table: dict[str, set[str]]) -> list[str]:
    src = _package(module)
    may = table["api.wiring"] if module == "berth.api.wiring" else table[src]
    out = []
    for target in sorted(targets):
        dst = _package(target)
        if dst in may or (module, dst) in EXCEPTIONS:
            continue
        if (SRC / dst).exists() or (SRC / f"{dst}.py").exists():
            out.append(f"{module} imports {target} ({src} may import {sorted(may - {src})})")
    return out


def test_no_import_goes_up_or_sideways():
    table = _table()
    wrong = [w for module, path in MODULES.items() if module != "berth"
             for w in _wrong(module, _imports(path, module), table)]
    assert wrong == [], "\n".join(wrong)


def test_no_cycle_between_modules_of_a_package():
    """No two modules of a package import each other, not even for annotations: a collaborator
    is named by a small protocol instead (vm.boot.SavedVM, services.health.ProbeHost)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {t for t in _imports(path, module) if t in MODULES and t != module}
        graph[module] = {t for t in targets if _package(t) == _package(module) and not module.endswith("__init__")
                         and MODULES[t].name != "__init__.py"}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack
                              else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == [], "\n".join(cycles)


@pytest.mark.parametrize(("module", "target", "refused"), [
    ("berth.host.fs", "berth.services.records", True),          # up
    ("berth.vm.boot", "berth.builder.context", True),          # sideways
    ("berth.api.handlers.system", "berth.runtime.oci", True),  # the API reaches past services
    ("berth.api.wiring", "berth.runtime.oci", False),          # the composition root may
    ("berth.cli.main", "berth.image.archive", True),           # the user side reaches into the engine
    ("berth.cli.main", "berth.cli.gotemplate", False),
    ("berth.runtime.vm", "berth.vm.boot", False),              # down
])
def test_the_check_refuses_what_the_table_does_not_allow(module, target, refused):
    assert bool(_wrong(module, {target}, _table())) is refused
