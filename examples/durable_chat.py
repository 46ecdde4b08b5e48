"""A durable conversation agent: it keeps its history across crashes and a node's kill -9, and
calls its (fake) LLM through ``effect``, so no call is ever repeated.

Two things in one file:

- the kind, ``Chat`` (serve it with ``mistersmith serve --kind chat=durable_chat:Chat``);
- run as a script, the whole story with nothing but nats-py and the ``mistersmith``
  command: start a node, spawn ``c1`` durable, talk to it, crash it, ``kill -9``
  the node, start it again, and find the conversation intact and the LLM called
  once per turn.

Run it: ``python examples/durable_chat.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mistersmith import Agent, command


def fake_llm(log: str, history: list[dict[str, str]], text: str) -> str:
    """Stands in for a real LLM call (slow, billed, not idempotent): it logs every call it gets."""
    with open(log, "a") as calls:
        calls.write(f"{text}\n")
        calls.flush()
        os.fsync(calls.fileno())
    return f"you said {text!r} (turn {len(history) + 1})"


class Chat(Agent):
    kind = "chat"
    durable = True  # self.state survives restarts; every successful command commits it

    @command("say")
    def say(self, text: str) -> dict[str, Any]:
        history = self.state.setdefault("history", [])
        turn = len(history)
        # Once per turn, ever: a retry after a crash gets the recorded reply, not a second call.
        reply = self.effect(f"turn-{turn}", fake_llm, self.config.get("llm_log", "llm-calls.log"), history, text)
        history.append({"user": text, "assistant": reply})
        return {"reply": reply, "turns": turn + 1}

    @command("history")
    def history(self) -> dict[str, Any]:
        return {"history": self.state.get("history", [])}

    @command("crash")
    def crash(self) -> None:
        raise RuntimeError("crashed on purpose")


# -- the story, as a user would run it --------------------------------------------------


def start_node(data_dir: Path, cwd: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}  # so the node imports this file
    log = open(cwd / "serve.log", "a")  # noqa: SIM115 - the node's logs, kept out of our output
    proc = subprocess.Popen(
        [sys.executable, "-m", "mistersmith", "serve", "--data-dir", str(data_dir), "--http-port", "0", "--json",
         "--kind", "chat=durable_chat:Chat"],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=cwd, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the ready line, once the node (and its recovery) is up
    if not line:
        proc.wait()
        raise SystemExit(f"the node did not start:\n{(cwd / 'serve.log').read_text()}")
    return proc, json.loads(line)


async def request(ready: dict[str, Any], subject: str, body: dict[str, Any]) -> dict[str, Any]:
    import nats

    creds = json.loads(Path(ready["nats_credentials"]).read_text())
    nc = await nats.connect(ready["nats_url"], user=creds["user"], password=creds["password"])
    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
        reply: dict[str, Any] = json.loads(msg.data)
        return reply
    finally:
        await nc.close()


async def say_when_back(ready: dict[str, Any], text: str) -> dict[str, Any]:
    """``say``, once the agent is back from its restart (``restarting`` replies say how long to wait)."""
    while True:
        reply = await request(ready, "agents.c1.commands.say", {"text": text})
        if reply["ok"] or reply["error"]["code"] != "restarting":
            return reply
        await asyncio.sleep(reply["error"].get("retry_after_s") or 0.1)


def cli(data_dir: Path, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "mistersmith", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, check=True).stdout


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="mistersmith-durable-"))
    base.chmod(0o711)  # under root, the embedded PostgreSQL's own user must get through
    data_dir, calls = base / "node", base / "llm-calls.log"

    proc, ready = start_node(data_dir, base)
    try:
        spawned = asyncio.run(request(ready, "system.control.spawn",
                                      {"kind": "chat", "agent_id": "c1", "durable": True,
                                       "config": {"llm_log": str(calls)}}))
        print("spawn  ->", spawned)
        for text in ("Hello", "What is a supervisor?"):
            print("say    ->", asyncio.run(request(ready, "agents.c1.commands.say", {"text": text}))["result"])
        print("crash  ->", asyncio.run(request(ready, "agents.c1.commands.crash", {}))["error"]["code"])
        print("say    ->", asyncio.run(say_when_back(ready, "And a durable agent?"))["result"])
    finally:
        proc.send_signal(signal.SIGKILL)  # kill -9: no goodbye, no flush
        proc.wait()
    print("node   -> killed with SIGKILL")

    proc, ready = start_node(data_dir, base)  # recovery brings c1 back with its last committed state
    try:
        history = asyncio.run(request(ready, "agents.c1.commands.history", {}))["result"]["history"]
        print("history->", [turn["user"] for turn in history])
        llm_calls = calls.read_text().splitlines()
        print("llm    ->", len(llm_calls), "calls for", len(history), "turns")
        assert [t["user"] for t in history] == ["Hello", "What is a supervisor?", "And a durable agent?"]
        assert llm_calls == [t["user"] for t in history], "an LLM call was repeated or lost"
        state = asyncio.run(request(ready, "system.control.state", {"agent_id": "c1"}))["result"]
        print("state  -> version", state["version"], "epoch", state["epoch"], f"({state['bytes']} bytes)")
        print(cli(data_dir, "replay", "--agent", "c1", "--type", "state_restored,recovered").rstrip())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


if __name__ == "__main__":
    main()
