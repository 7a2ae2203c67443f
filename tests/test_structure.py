"""The structure docs/design.md describes, checked: short files, no import cycles among module-level imports, a base
layer that imports nothing of the package, gating names compared only in the gating module, docs cited inside the
project."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "agent3d"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def top_level_imports(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports at module level (what runs when it is imported)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agent3d"):
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("agent3d")]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != "agent3d":
                found.add(name)
    return found


def test_no_file_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_module_level_imports_have_no_cycle_and_the_base_imports_nothing_of_the_package():
    known = modules()
    graph = {name: top_level_imports(path, set(known)) - {name} for name, path in known.items()}
    assert graph["agent3d.base"] == set()
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for child in graph[name]:
            assert state.get(child) != 1, " -> ".join([*trail, name, child])
            if child not in state:
                visit(child, [*trail, name])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_gating_names_are_compared_only_in_the_gating_module():
    pattern = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](llm|learned|saliency|random|all)["']""")
    offenders = [f"{p.relative_to(PACKAGE)}:{n}" for p in PACKAGE.rglob("*.py") if p.name != "gating.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders


def test_docs_are_cited_inside_the_project():
    assert not [p for p in PACKAGE.rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert (PACKAGE.parent / "docs" / "design.md").is_file()
