"""``process``: an agent that wraps a command-line program.

Made for CLIs such as ``claude --print --output-format json``: each ``prompt``
runs the program once, with the prompt on stdin, and returns its parsed
stdout. Config:

- ``command``: a list of arguments (or one string, split like a shell would);
- ``cwd``, ``env`` (added to the node's environment);
- ``timeout_s`` (default 300): past it the whole process group is killed;
- ``output``: ``json`` (default) or ``text``.

A non-zero exit, a timeout or unparsable JSON is an agent failure (the
supervisor decides); the error carries the exit code and stderr.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from typing import Any

import orjson

from ._agent import Agent
from ._command import command

__all__ = ["ProcessAgent", "ProcessFailed"]

_SLICE_S = 0.2  # how often a running program is checked against cancellation


class ProcessFailed(RuntimeError):
    """The wrapped program exited non-zero, timed out, or printed bad JSON."""

    def __init__(self, message: str, *, exit_code: int | None, stderr: str) -> None:
        tail = stderr.strip()[-2000:]
        super().__init__(f"{message}; stderr: {tail}" if tail else message)
        self.exit_code = exit_code
        self.stderr = stderr


class ProcessAgent(Agent):
    """Runs its configured program once per ``prompt``."""

    kind = "process"

    def on_start(self) -> None:
        """Validate the config (in the agent's thread); a bad one fails the start."""
        cfg = self.config
        cmd = cfg.get("command")
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
            raise ValueError(f"config command={cmd!r} is not allowed; use a list of strings or a string")
        self.argv: list[str] = cmd
        env = cfg.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise ValueError(f"config env={env!r} is not allowed; use an object of strings")
        self.env = {**os.environ, **env}
        cwd = cfg.get("cwd")
        if cwd is not None and not (isinstance(cwd, str) and os.path.isdir(cwd)):
            raise ValueError(f"config cwd={cwd!r} is not allowed; use an existing directory")
        self.cwd: str | None = cwd
        timeout = cfg.get("timeout_s", 300.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"config timeout_s={timeout!r} is not allowed; use a number of seconds > 0")
        self.timeout_s = float(timeout)
        output = cfg.get("output", "json")
        if output not in ("json", "text"):
            raise ValueError(f"config output={output!r} is not allowed; use 'json' or 'text'")
        self.output: str = output

    @command("prompt")
    def prompt(self, prompt: str) -> dict[str, Any]:
        """Run the program with ``prompt`` on stdin; return its parsed stdout."""
        started = time.monotonic()
        proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=self.cwd, env=self.env, start_new_session=True,
        )
        deadline = started + self.timeout_s
        data: bytes | None = prompt.encode()
        while True:
            try:
                out, err = proc.communicate(data, timeout=max(0.0, min(_SLICE_S, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                data = None
                if time.monotonic() >= deadline or self.cancelled.is_set():
                    _kill_group(proc)
                    _, err = proc.communicate()
                    why = "was cancelled" if self.cancelled.is_set() else f"timed out after {self.timeout_s} s"
                    raise ProcessFailed(f"{self.argv[0]} {why}", exit_code=None,
                                        stderr=err.decode(errors="replace")) from None
        stderr = err.decode(errors="replace")
        if proc.returncode != 0:
            raise ProcessFailed(f"{self.argv[0]} exited with code {proc.returncode}",
                                exit_code=proc.returncode, stderr=stderr)
        text = out.decode(errors="replace")
        result: Any = text
        if self.output == "json":
            try:
                result = orjson.loads(out)
            except orjson.JSONDecodeError as exc:
                raise ProcessFailed(f"{self.argv[0]} printed invalid JSON ({exc})", exit_code=0,
                                    stderr=stderr) from None
        return {"output": result, "stderr": stderr, "duration_s": round(time.monotonic() - started, 6)}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
