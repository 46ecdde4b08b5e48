"""The history package is supervision logic: it imports no store and no edge."""

from __future__ import annotations

import ast
from pathlib import Path

import mistersmith.history

HISTORY = Path(mistersmith.history.__file__).parent
EDGES = ("mistersmith.journal", "mistersmith.bridge", "mistersmith.web", "mistersmith.embedded")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names.append(node.module)
    return names


def test_history_imports_no_edge_and_no_database_driver() -> None:
    modules = sorted(HISTORY.glob("*.py"))
    assert {p.name for p in modules} >= {"projection.py", "plan.py"}
    wrong = [
        f"{path.name}: {name}" for path in modules for name in _imports(path)
        if name.startswith(EDGES) or name.split(".")[0] in ("psycopg", "psycopg_pool", "nats")
    ]
    assert wrong == []
