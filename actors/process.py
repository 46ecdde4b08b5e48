"""``ProcessAgent``: an agent that wraps a command-line program.

Made for CLIs such as ``claude --print --output-format json``: each ``prompt``
runs the program once, with the prompt on stdin, and returns its parsed
stdout. Config (checked when the agent is spawned, and again at each start):

- ``command``: a list of arguments (or one string, split like a shell would);
  the program must be found (a path, or a name on ``PATH``);
- ``cwd``; ``env``: variables set for the program;
- ``inherit_env``: the names of the node's own variables the program gets
  (default ``DEFAULT_INHERITED_ENV``: ``PATH``, ``HOME``, locale and the
  like). Nothing else of the node's environment reaches the program, so its
  tokens, database URL and NATS passwords stay in the node;
- ``timeout_s`` (default 300): past it the whole process group is killed;
- ``output``: ``json`` (default), ``text`` or ``jsonl``: each stdout line is
  a JSON value and a progress item as it is printed (``claude -p
  --output-format stream-json``); a line ``{"type": "result", ...}``, or
  else the last line, is the result. A ``jsonl`` prompt runs on the agent's
  loop, so a cancel or a stop ends the program at once;
- ``prompt_template``: what goes to stdin, with ``{prompt}`` replaced by the
  prompt (default ``"{prompt}"``).

The command is the caller's choice, so this class is for embedders, who pick
it in code. A node never registers it for remote callers unless its operator
sets ``node.allow_arbitrary_process``; it serves named kinds instead
(``ProcessKind``), whose command comes from the node's configuration.

``env`` values are redacted (keys kept) wherever the agent is described or
journaled (``redact_config``): a recovered agent gets them back only from a
``ProcessKind``, never from the journal.

A non-zero exit, a timeout or unparsable JSON is an agent failure (the
supervisor decides); the error carries the exit code and stderr. A cancelled
prompt (its caller cancelled it, or the agent is stopping) kills the whole
process group and answers as any cancelled command: the agent lives on.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from mistersmith.errors import SpecError

from ._agent import Agent
from ._command import command

__all__ = ["DEFAULT_INHERITED_ENV", "REDACTED", "ProcessAgent", "ProcessFailed", "ProcessSettings"]

_SLICE_S = 0.2  # how often a running program is checked against cancellation
_LINE_LIMIT = 16 << 20  # the longest stdout line a ``jsonl`` program may print (bytes)
_WATCHDOG_MARGIN_S = 10.0  # command_timeout_s past timeout_s: killing the program and replying take a moment

DEFAULT_INHERITED_ENV: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ",
    "TMPDIR", "TERM",
)
"""The node's variables a program gets unless its config names others (``inherit_env``)."""

REDACTED = "***"
"""What an ``env`` value shows as outside the agent."""

CONFIG_KEYS: tuple[str, ...] = ("command", "cwd", "env", "inherit_env", "timeout_s", "output", "prompt_template")


class ProcessFailed(RuntimeError):
    """The wrapped program exited non-zero, timed out, or printed bad JSON."""

    def __init__(self, message: str, *, exit_code: int | None, stderr: str) -> None:
        tail = stderr.strip()[-2000:]
        super().__init__(f"{message}; stderr: {tail}" if tail else message)
        self.exit_code = exit_code
        self.stderr = stderr


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    """A process agent's config, checked: what ``prompt`` runs and how."""

    argv: tuple[str, ...]
    program: str  # argv[0] as found on PATH
    cwd: str | None
    env: Mapping[str, str]
    inherit_env: tuple[str, ...]
    timeout_s: float
    output: str
    prompt_template: str

    @classmethod
    def parse(cls, config: Mapping[str, Any], child: str | None = None, *, prefix: str = "config.",
              find_program: bool = True) -> ProcessSettings:
        """Check ``config``; ``SpecError`` naming the key (``prefix`` + name), the value and what is
        allowed. ``find_program``: look the program up on ``PATH`` too (at spawn and start, not in
        an operator's file, where it need not exist yet)."""
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise SpecError(child, f"{prefix}{unknown[0]}", config[unknown[0]], f"use: {', '.join(CONFIG_KEYS)}")
        cmd = config.get("command")
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        if not _strings(cmd) or not cmd:
            raise SpecError(child, f"{prefix}command", cmd, "use a non-empty list of strings, or a string")
        env = config.get("env") or {}
        if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise SpecError(child, f"{prefix}env", env, "use an object of strings")
        redacted = sorted(k for k, v in env.items() if v == REDACTED)
        if redacted:
            raise SpecError(child, f"{prefix}env.{redacted[0]}", REDACTED,
                            "give the value itself (a journaled or described env shows values as ***, so a "
                            "recovered agent cannot get it back: declare it in a process kind instead)")
        inherit = config.get("inherit_env", list(DEFAULT_INHERITED_ENV))
        if not _strings(inherit):
            raise SpecError(child, f"{prefix}inherit_env", inherit, "use a list of variable names")
        cwd = config.get("cwd")
        if cwd is not None and not (isinstance(cwd, str) and os.path.isdir(cwd)):
            raise SpecError(child, f"{prefix}cwd", cwd, "use an existing directory")
        timeout = config.get("timeout_s", 300.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise SpecError(child, f"{prefix}timeout_s", timeout, "use a number of seconds > 0")
        output = config.get("output", "json")
        if output not in ("json", "text", "jsonl"):
            raise SpecError(child, f"{prefix}output", output, "use 'json', 'text' or 'jsonl'")
        template = config.get("prompt_template", "{prompt}")
        if not isinstance(template, str) or "{prompt}" not in template:
            raise SpecError(child, f"{prefix}prompt_template", template, "use a string that contains {prompt}")
        child_env = {name: os.environ[name] for name in inherit if name in os.environ}
        child_env.update(env)
        path = child_env.get("PATH", os.defpath)
        name = cmd[0]
        if "/" in name and cwd is not None and not os.path.isabs(name):
            name = os.path.join(cwd, name)  # as Popen resolves it
        program = shutil.which(name, path=path) if find_program else name
        if program is None:
            raise SpecError(child, f"{prefix}command", cmd[0],
                            f"name a program that exists and is executable; searched PATH={path}")
        return cls(tuple(cmd), program, cwd, child_env, tuple(inherit), float(timeout), str(output), template)


class ProcessAgent(Agent):
    """Runs its configured program once per ``prompt``.

    ``effective_config(config)`` turns a spawn's config into the config the program
    runs with; here it is the config itself (subclasses made by a
    ``ProcessKind`` merge it into theirs).
    """

    kind = "process"
    pool_size: ClassVar[int | None] = 10  # each agent may run a program (a CLI such as claude) at once
    pool_size_setting: ClassVar[str | None] = "ProcessAgent.pool_size (a subclass's)"

    @classmethod
    def effective_config(cls, config: Mapping[str, Any], child: str | None = None) -> Mapping[str, Any]:
        """The config the program runs with, given a spawn's ``config``."""
        return config

    @classmethod
    def check_config(cls, config: Mapping[str, Any], child: str | None = None) -> None:
        """Refuse a bad config when the agent is spawned (``SpecError``); any thread."""
        ProcessSettings.parse(cls.effective_config(config, child), child)

    @classmethod
    def command_timeout_for(cls, config: Mapping[str, Any]) -> float | None:
        """Longer than the program may run (``timeout_s``), so the watchdog never abandons a
        ``prompt`` that is still within it: the program's own timeout ends it first."""
        timeout = cls.effective_config(config).get("timeout_s", 300.0)
        return float(timeout) + _WATCHDOG_MARGIN_S if isinstance(timeout, (int, float)) else None

    @classmethod
    def redact_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` with ``env`` values shown as ``***`` (keys kept)."""
        out = dict(config)
        env = out.get("env")
        if isinstance(env, Mapping):
            out["env"] = {k: REDACTED for k in env}
        return out

    def on_start(self) -> None:
        """Check the config again (in the agent's thread): the program may have gone meanwhile."""
        self.settings = ProcessSettings.parse(self.effective_config(self.config, self.agent_id), self.agent_id)

    @command("prompt")
    def prompt(self, prompt: str) -> Any:
        """Run the program with ``prompt`` on stdin; return its parsed stdout (``jsonl``: stream it)."""
        s = self.settings
        if s.output == "jsonl":
            return self._stream_lines(prompt)  # a coroutine: awaited on this incarnation's loop
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [s.program, *s.argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=s.cwd, env=dict(s.env), start_new_session=True,
            )
        except OSError as exc:
            raise ProcessFailed(f"cannot run {s.argv[0]} ({s.program}): {exc.strerror or exc}", exit_code=None,
                                stderr="") from exc
        deadline = started + s.timeout_s
        data: bytes | None = s.prompt_template.replace("{prompt}", prompt).encode()
        while True:
            try:
                out, err = proc.communicate(data, timeout=max(0.0, min(_SLICE_S, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                data = None
                if time.monotonic() >= deadline or self.cancelled.is_set():
                    _kill_group(proc)
                    _, err = proc.communicate()
                    if self.cancelled.is_set():  # its caller cancelled it, or the agent stops: no failure
                        raise asyncio.CancelledError(f"{s.argv[0]} was cancelled")
                    raise ProcessFailed(f"{s.argv[0]} timed out after {s.timeout_s} s", exit_code=None,
                                        stderr=err.decode(errors="replace")) from None
        stderr = err.decode(errors="replace")
        if proc.returncode != 0:
            raise ProcessFailed(f"{s.argv[0]} exited with code {proc.returncode}",
                                exit_code=proc.returncode, stderr=stderr)
        result: Any = out.decode(errors="replace")
        if s.output == "json":
            try:
                result = orjson.loads(out)
            except orjson.JSONDecodeError as exc:
                raise ProcessFailed(f"{s.argv[0]} printed invalid JSON ({exc})", exit_code=0,
                                    stderr=stderr) from None
        return {"output": result, "stderr": stderr, "duration_s": round(time.monotonic() - started, 6)}


    async def _stream_lines(self, prompt: str) -> dict[str, Any]:
        """``output = "jsonl"``: each stdout line is progress; the ``"type": "result"`` line (else the last)
        is the result. Cancelled (``CancelledError``): the process group is killed before it returns."""
        s = self.settings
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                s.program, *s.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=s.cwd, env=dict(s.env), start_new_session=True, limit=_LINE_LIMIT)
        except OSError as exc:
            raise ProcessFailed(f"cannot run {s.argv[0]} ({s.program}): {exc.strerror or exc}", exit_code=None,
                                stderr="") from exc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        errors = asyncio.ensure_future(proc.stderr.read())
        last: Any = None
        result: Any = None
        try:
            proc.stdin.write(s.prompt_template.replace("{prompt}", prompt).encode())
            proc.stdin.close()
            async with asyncio.timeout(s.timeout_s):
                async for raw in proc.stdout:
                    if not raw.strip():
                        continue
                    try:
                        last = orjson.loads(raw)
                    except orjson.JSONDecodeError as exc:
                        raise ProcessFailed(f"{s.argv[0]} printed a line that is not JSON ({exc}): {raw[:200]!r}",
                                            exit_code=None, stderr="") from None
                    if isinstance(last, dict) and last.get("type") == "result":
                        result = last
                    else:
                        self.progress(last)
                code = await proc.wait()
                stderr = (await errors).decode(errors="replace")
        except TimeoutError:
            raise ProcessFailed(f"{s.argv[0]} timed out after {s.timeout_s} s", exit_code=None, stderr="") from None
        finally:
            if proc.returncode is None:  # cancelled, timed out or failed: the whole group goes
                _kill_group(proc)
                await proc.wait()
            errors.cancel()
        if code != 0:
            raise ProcessFailed(f"{s.argv[0]} exited with code {code}", exit_code=code, stderr=stderr)
        return {"output": result if result is not None else last, "stderr": stderr,
                "duration_s": round(time.monotonic() - started, 6)}


def _kill_group(proc: subprocess.Popen[bytes] | asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
