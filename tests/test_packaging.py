"""The wheel installs only the `mistersmith` import package, with every subpackage and the SQL.

Tests run against an editable install, which finds subpackages by path; this
test builds the real wheel so that a package missing from pyproject's list
(or a migration missing from the package data) fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"mistersmith": ROOT / "mistersmith", "mistersmith/actors": ROOT / "actors",
           "mistersmith/supervisors": ROOT / "supervisors", "mistersmith/migrations": ROOT / "migrations"}


def test_wheel_holds_every_module_under_mistersmith(tmp_path: Path) -> None:
    # Build from a copy: setuptools writes build/ and *.egg-info into the source tree.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".mypy_cache", ".pytest_cache", ".hypothesis"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next(tmp_path.glob("mistersmith-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"mistersmith"}, f"the wheel installs more than mistersmith: {sorted(top)}"
    expected: set[str] = set()
    for prefix, folder in SOURCES.items():
        for path in folder.rglob("*"):
            if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
                rel = path.relative_to(folder).as_posix()
                if prefix == "mistersmith" and rel.split("/")[0] in ("actors", "supervisors", "migrations"):
                    continue
                expected.add(f"{prefix}/{rel}")
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel (add the package to pyproject's list?): {missing}"
    assert "mistersmith/py.typed" in names
    # the console ships whole: its page, styles and scripts (no build step, no CDN)
    ui = {f"mistersmith/web/ui/{p.name}" for p in (ROOT / "mistersmith" / "web" / "ui").iterdir() if p.is_file()}
    assert "mistersmith/web/ui/index.html" in ui and not sorted(ui - names), sorted(ui - names)
    assert any(n.startswith("mistersmith/migrations/") and n.endswith(".sql") for n in names)
    # the docs ship too, so `mistersmith --help` can name a reference that exists outside a checkout
    docs = {f"mistersmith/docs/{p.relative_to(ROOT / 'docs').as_posix()}" for p in (ROOT / "docs").rglob("*.md")}
    assert docs and not sorted(docs - names), sorted(docs - names)
