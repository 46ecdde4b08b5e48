"""`mistersmith completion bash|zsh`: scripts generated from the parser, that the shells accept and
that complete commands, options and choices; and `--help` links to docs that exist outside a checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from _cli_helpers import WAIT_S, call

from mistersmith.bench import SUITES
from mistersmith.cli import EXIT_OK, EXIT_USAGE, build_parser
from mistersmith.cli._main import docs_link

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    return list(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def _complete(script: str, *words: str) -> list[str]:
    """What bash offers for the command line ``words`` (the last one being completed)."""
    line = " ".join(f"'{w}'" for w in ("mistersmith", *words))
    probe = f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}; _mistersmith; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True,
                          timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    return [w for w in done.stdout.splitlines() if w]


def test_the_bash_script_is_valid_and_completes_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "completion", "bash")
    assert done.code == EXIT_OK
    script = done.out
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=WAIT_S)
    assert checked.returncode == 0, checked.stderr
    commands = _commands()
    assert {"nats-url", "psql", "completion"} <= set(commands)
    assert [c for c in commands if c not in script] == []
    assert _complete(script, "") == commands
    assert _complete(script, "re") == ["restart", "rebalance", "replay"]
    assert _complete(script, "spawn", "--re") == ["--restart"]
    assert _complete(script, "spawn", "--restart", "t") == ["transient", "temporary"]
    assert _complete(script, "spawn", "--du") == ["--durable"] and _complete(script, "spawn", "--no-") == ["--no-durable"]
    assert _complete(script, "st") == ["stop", "state"] and _complete(script, "state", "--v") == ["--version"]
    assert _complete(script, "replay", "--st") == ["--states"]
    suites = [*SUITES, "all"]  # every suite mistersmith.bench has, whatever it holds now
    assert {"runtime", "journal", "nats", "http"} <= set(suites)
    assert _complete(script, "--data-dir", "/nowhere", "bench", "") == suites
    assert "--allow-remote-shutdown" in _complete(script, "serve", "--")
    assert _complete(script, "completion", "") == ["bash", "zsh"]


def test_the_zsh_script_names_every_command_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "completion", "zsh")
    assert done.code == EXIT_OK
    script = done.out
    assert script.startswith("#compdef mistersmith\n")
    for command in _commands():
        assert f"\n        '{command}:" in script and f"\n                {command})\n" in script, command
    assert "'--restart[restart type]:RESTART:(permanent transient temporary)'" in script
    assert "'(--durable --no-durable)'{--durable,--no-durable}'[keep its self.state" in script
    assert "'--data-dir[" in script and ":DIR:_files -/'" in script
    if shutil.which("zsh") is not None:  # not every machine has zsh; bash -n above is the hard check
        checked = subprocess.run(["zsh", "-n"], input=script, capture_output=True, text=True, timeout=WAIT_S)
        assert checked.returncode == 0, checked.stderr


def test_completion_wants_a_known_shell(capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "completion", "fish")
    assert done.code == EXIT_USAGE and "invalid choice: 'fish'" in done.err


def test_help_links_to_the_installed_documentation(capsys: pytest.CaptureFixture[str]) -> None:
    expected = docs_link()
    assert Path(expected).is_file() and expected.endswith("reference/cli.md"), expected
    assert Path(expected).read_text() == (ROOT / "docs" / "reference" / "cli.md").read_text()
    for args in (("--help",), ("serve", "--help"), ("psql", "--help")):
        done = call(capsys, *args)
        assert done.code == EXIT_OK
        assert done.out.rstrip().endswith(f"Docs: {expected}"), done.out[-300:]
