"""`mypy --strict` over the package as it installs (actors/ and supervisors/ mapped in)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = {"mistersmith": "", "actors": "actors", "supervisors": "supervisors", "migrations": "migrations"}


def test_mypy_strict(tmp_path: Path) -> None:
    if shutil.which("mypy") is None and subprocess.run(
        [sys.executable, "-m", "mypy", "--version"], capture_output=True
    ).returncode != 0:
        pytest.fail("mypy is not installed; it is part of the dev extra")
    package = tmp_path / "mistersmith"
    for source, target in LAYOUT.items():
        shutil.copytree(ROOT / source, package / target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "mistersmith"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
