"""Running ``mistersmith`` in tests: ``serve`` as a subprocess, client commands in-process or not.

Nothing here sleeps to synchronise: readiness is the ``ready`` line ``serve
--json`` prints once the node is up, and exits are waited on with timeouts.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mistersmith.cli import main

WAIT_S = 60.0
"""Upper bound of every wait here; a healthy run never gets near it."""

HERE = Path(__file__).resolve().parent


def cli_argv(*args: str) -> list[str]:
    """How to run the command as a user would (the console script when installed)."""
    script = Path(sys.executable).parent / "mistersmith"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "mistersmith.cli", *args]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout_s: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(*args), capture_output=True, text=True, timeout=timeout_s, cwd=cwd,
                          env={**os.environ, **(env or {})})


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def call(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """``main(args)`` in this process; its exit code and what it printed."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def children(pid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == pid]


def processes_using(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (embedded servers in a data dir)."""
    found = []
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and alive(int(entry.name)) and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


class Served:
    """``mistersmith serve --json`` in a subprocess, on free ports, in ``data_dir``."""

    def __init__(self, data_dir: Path, *args: str, cwd: Path | None = None) -> None:
        self.data_dir = data_dir
        self.args = args
        self.cwd = cwd
        self.stderr_path = data_dir.parent / f"{data_dir.name}-serve.stderr"
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self.lines: queue.Queue[str | None] = queue.Queue()

    def start(self) -> Served:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        stderr = open(self.stderr_path, "w")  # noqa: SIM115 - the child owns it from here
        self.proc = subprocess.Popen(
            cli_argv("serve", "--data-dir", str(self.data_dir), "--http-port", "0", "--json", *self.args),
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=self.cwd,
        )
        stderr.close()
        threading.Thread(target=self._read, name="serve-stdout", daemon=True).start()
        try:
            line = self.next_line()
            assert line is not None, f"serve exited before it was ready:\n{self.stderr()}"
            self.ready = json.loads(line)
            assert self.ready["event"] == "ready", line
        except BaseException:
            self.proc.kill()  # never leave a node behind
            self.proc.wait(WAIT_S)
            raise
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self, timeout_s: float = WAIT_S) -> str | None:
        return self.lines.get(timeout=timeout_s)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = WAIT_S) -> int:
        """Send ``sig`` and wait for the exit; its code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = WAIT_S) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT_S)
            raise AssertionError(f"serve did not exit within {timeout_s} s:\n{self.stderr()}") from None

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop(signal.SIGTERM)
