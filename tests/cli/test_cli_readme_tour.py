"""The README's tour is a real run: each command in it runs against a real `mistersmith serve`, and
prints what the README shows (node ids, times and the backoff's jitter aside)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from _cli_helpers import Served, call

README = Path(__file__).resolve().parents[2] / "README.md"

_VARYING = [
    (re.compile(r"node-[0-9a-f]{12}"), "node-<id>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\.\d+(Z|\+00:00)"), "<time>"),
    (re.compile(r"backoff 0\.1\d\d s"), "backoff 0.1xx s"),  # 0.1 s plus up to 20 % jitter
]


def _normal(text: str) -> str:
    for pattern, shown in _VARYING:
        text = pattern.sub(shown, text)
    return text.rstrip()


def _tour() -> list[tuple[list[str], str]]:
    """The tour's ``mistersmith`` commands (comments dropped) and the output the README shows for each."""
    text = README.read_text()
    block = text[text.index("## A 30-second tour"):]
    block = block[block.index("```console\n") + len("```console\n"):]
    block = block[:block.index("```\n")]
    steps: list[tuple[list[str], list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            argv = shlex.split(line[2:], comments=True)
            steps.append((argv, []))
        elif steps:
            steps[-1][1].append(line)
    return [(argv[1:], "\n".join(out)) for argv, out in steps if argv and argv[0] == "mistersmith"]


def test_the_readme_tour_matches_a_real_run(node_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steps = _tour()
    assert [s[0][0] for s in steps] == ["spawn", "send", "send", "tree", "replay", "replay"]
    data_dir = node_dir / ".mistersmith"
    with Served(data_dir):
        for argv, shown in steps:
            if argv == ["tree"]:  # a person types slower than the 0.1 s backoff: wait for the restart
                assert call(capsys, "--data-dir", str(data_dir), "replay", "--agent", "a1", "--type",
                            "restarted", "--follow", "--limit", "1").code == 0
            done = call(capsys, "--data-dir", str(data_dir), *argv)
            assert _normal(done.out + done.err) == _normal(shown), f"mistersmith {' '.join(argv)}"
