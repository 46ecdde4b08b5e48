"""A pipeline of ``process`` agents: command-line programs run as supervised agents.

The ``process`` kind wraps a CLI the way MisterSmith wraps ``claude --print
--output-format json``: each ``prompt`` runs the program once with the prompt
on stdin and returns its parsed stdout. Here ``examples/bin/fake_claude.py``
stands in for the real CLI, so the example runs anywhere:

1. three "writer" agents answer three prompts in parallel (JSON output);
2. an "editor" agent (a plain text program) rewrites each answer;
3. a "flaky" agent whose program exits non-zero: the error carries the exit
   code and stderr, and the supervisor restarts the agent;
4. a "slow" agent whose program hangs: past ``timeout_s`` its whole process
   group (the program and the child it started) is killed, and that too is a
   failure the supervisor handles.

Run it: ``python examples/process_pipeline.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mistersmith import AgentFailedError, ProcessAgent, Runtime, SupervisorSpec

FAKE_CLAUDE = str(Path(__file__).resolve().parent / "bin" / "fake_claude.py")
EDITOR = "import sys; text = sys.stdin.read().strip(); print(text.replace('You said:', 'Editor:').upper())"


def claude(*flags: str) -> list[str]:
    """The command line of the stand-in; with the real CLI: ["claude", "--print", "--output-format", "json"]."""
    return [sys.executable, FAKE_CLAUDE, *flags]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def main() -> None:
    # a root that tolerates a few crashes: two of our stages fail on purpose
    # ProcessAgent runs whatever command its config names: an embedder registers it
    # (a node serves named kinds whose command its operator configured instead).
    with Runtime(root=SupervisorSpec("root", intensity=10, period_s=5), kinds={"process": ProcessAgent}) as rt:
        writers = [rt.spawn("process", f"writer-{i}", {"command": claude(), "timeout_s": 30}) for i in range(3)]
        editor = rt.spawn("process", "editor", {"command": [sys.executable, "-c", EDITOR], "output": "text"})

        prompts = ["summarise the design", "list the risks", "draft the release notes"]
        with ThreadPoolExecutor(len(writers)) as pool:
            answers = list(pool.map(lambda wp: rt.ask(wp[0], "prompt", {"prompt": wp[1]}, timeout=30),
                                    zip(writers, prompts, strict=True)))
        for prompt, answer in zip(prompts, answers, strict=True):
            draft = answer["output"]["result"]  # fake_claude answers like `claude --output-format json`
            edited = rt.ask(editor, "prompt", {"prompt": draft}, timeout=30)["output"].strip()
            print(f"{prompt!r}: {draft!r} -> {edited!r} ({answer['duration_s']:.2f} s)")

        flaky = rt.spawn("process", "flaky", {"command": claude("--fail")})
        with rt.subscribe(agent_id=flaky, event_types=["restarted"]) as restarts:
            try:
                rt.ask(flaky, "prompt", {"prompt": "will you?"}, timeout=30)
            except AgentFailedError as exc:
                print("flaky failed:", exc.reason)
            restarts.get(10)
        print("flaky was restarted by its supervisor: restart_count =", rt.get_agent(flaky)["restart_count"])

        with tempfile.TemporaryDirectory() as tmp:
            pidfile = Path(tmp) / "pids"
            slow = rt.spawn("process", "slow", {"command": claude("--hang"), "timeout_s": 1.0,
                                                "env": {"PIDFILE": str(pidfile)}})
            started = time.monotonic()
            try:
                rt.ask(slow, "prompt", {"prompt": "think forever"}, timeout=30)
            except AgentFailedError as exc:
                print(f"slow failed after {time.monotonic() - started:.1f} s:", exc.reason)
            pids = [int(p) for p in pidfile.read_text().split()]
            deadline = time.monotonic() + 5
            while not all(gone(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            print("its program and grandchild", pids, "are gone:", all(gone(p) for p in pids))

        print("events:", ", ".join(f"{e.agent_id}:{e.event_type}" for e in rt.history()
                                   if e.event_type in ("failed", "restarted")))


if __name__ == "__main__":
    main()
