"""An async LLM agent: it streams tokens as they come, and stops the moment it is cancelled.

The kind below (``Llm``) calls a (fake) LLM server over HTTP from an ``async
def`` handler and reports each token with ``self.progress``. Run as a script,
this example starts that fake server, a node serving the kind
(``mistersmith serve --kind llm=llm_agent:Llm``), and then, as a user would:

1. ``mistersmith send a1 complete ... --stream`` prints the tokens as they come;
2. the same with a prompt that makes the LLM stall, then Ctrl-C (SIGINT):
   the command is cancelled in the agent (its HTTP call is closed), and the
   agent is free at once;
3. the official MCP SDK's ``progress_callback`` gets the tokens of a
   ``send_command``; a call whose task is cancelled stops the agent's work.

Run it: ``python examples/llm_agent.py``.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from mistersmith import Agent, command


class Llm(Agent):
    """Completes a prompt by streaming from an LLM server (``config.url``)."""

    kind = "llm"
    concurrency = 4          # up to 4 completions at once; they start in order, finish in any order
    idle_timeout_s = 30.0    # a completion that streams nothing for 30 s fails with `timeout`

    @command("complete")
    async def complete(self, prompt: str) -> dict[str, Any]:
        url = urllib.parse.urlsplit(self.config["url"])
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:  # a real agent would use httpx.AsyncClient or an async LLM SDK here, just the same
            query = urllib.parse.urlencode({"prompt": prompt})
            writer.write(f"GET /v1/stream?{query} HTTP/1.0\r\nHost: llm\r\n\r\n".encode())
            await writer.drain()
            while (await reader.readline()).strip():  # the response head
                pass
            tokens = []
            async for line in reader:  # one token per line, as the server produces them
                token = line.decode().rstrip("\n")
                tokens.append(token)
                self.progress(token, done=len(tokens))
            return {"text": " ".join(tokens), "tokens": len(tokens)}
        finally:  # cancelled or done: the connection is closed either way
            writer.close()


# -- the rest runs the example: a fake LLM, a node, the CLI and an MCP client ----------------


class FakeLlm(http.server.ThreadingHTTPServer):
    """Streams a prompt back one word every 20 ms; a prompt with "stall" stops after the first word."""

    daemon_threads = True

    def __init__(self) -> None:
        server = self
        self.closed = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                prompt = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["prompt"][0]
                self.send_response(200)
                self.end_headers()
                for i, word in enumerate(prompt.split()):
                    try:
                        self.wfile.write(word.encode() + b"\n")
                        self.wfile.flush()
                    except OSError:  # the agent closed the call: it was cancelled
                        server.closed.set()
                        return
                    if "stall" in prompt and i == 0:
                        self.connection.settimeout(60)
                        if self.connection.recv(1) == b"":  # blocks until the agent closes the call
                            server.closed.set()
                        return
                    time.sleep(0.02)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def mistersmith(*args: str) -> list[str]:
    return [sys.executable, "-m", "mistersmith", *args]


def start_node(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    log = open(data_dir.parent / "serve.log", "w")  # noqa: SIM115 - the node's logs, out of our way
    proc = subprocess.Popen(mistersmith("serve", "--data-dir", str(data_dir), "--http-port", "0", "--json",
                                        "--kind", "llm=llm_agent:Llm"),
                            stdout=subprocess.PIPE, stderr=log, text=True, cwd=Path(__file__).parent)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit(f"the node did not start:\n{(data_dir.parent / 'serve.log').read_text()}")
    return proc, json.loads(line)


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(mistersmith("--data-dir", str(data_dir), *args), capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"mistersmith {' '.join(args)} failed: {done.stderr}")
    return done


def ctrl_c_after_first_token(data_dir: Path, llm: FakeLlm) -> None:
    proc = subprocess.Popen(mistersmith("--data-dir", str(data_dir), "send", "a1", "complete",
                                        '{"prompt": "stall here please"}', "--stream"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    print("  first token  ->", proc.stdout.readline().strip())
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    said = "; ".join(line for line in err.splitlines() if line)
    print(f"  Ctrl-C       -> exit {proc.returncode}: {said}")
    if proc.returncode != 130 or not llm.closed.wait(10):
        raise SystemExit("the command was not cancelled")


async def with_mcp(mcp_url: str, llm: FakeLlm) -> None:
    import mcp  # the official SDK (in the dev extra)

    tokens: list[str] = []
    stalled = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        tokens.append(message or "")
        if message == "stall":
            stalled.set()

    async with mcp.Client(mcp_url) as client:
        done = await client.call_tool("send_command", {"agent_id": "a1", "command": "complete",
                                                       "payload": {"prompt": "streamed over MCP"}},
                                      progress_callback=on_progress)
        print("  progress     ->", tokens)
        print("  result       ->", (done.structured_content or {}).get("result"))
        llm.closed.clear()
        call = asyncio.ensure_future(client.call_tool("send_command", {
            "agent_id": "a1", "command": "complete", "payload": {"prompt": "stall over MCP"}},
            progress_callback=on_progress))
        await asyncio.wait_for(stalled.wait(), 30)  # its first token came: it runs in the agent
        call.cancel()
        try:
            await call
        except asyncio.CancelledError:
            pass
        if not await asyncio.to_thread(llm.closed.wait, 10):
            raise SystemExit("the MCP call was not cancelled in the agent")
        print("  cancelled    -> the agent closed its LLM call")


def main() -> None:
    llm = FakeLlm()
    threading.Thread(target=llm.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{llm.server_address[1]}"
    with tempfile.TemporaryDirectory(prefix="ms-llm-") as tmp:
        os.chmod(tmp, 0o711)  # the embedded PostgreSQL may run as another user under root
        data_dir = Path(tmp) / "node"
        node, ready = start_node(data_dir)
        try:
            cli(data_dir, "spawn", "llm", "--id", "a1", "--config", json.dumps({"url": url}))
            print("1. mistersmith send a1 complete '{\"prompt\": ...}' --stream")
            streamed = cli(data_dir, "send", "a1", "complete", '{"prompt": "hello from a streaming agent"}',
                           "--stream")
            for line in streamed.stdout.splitlines():
                print("  ", line)
            print("2. the same, then Ctrl-C while the LLM stalls")
            ctrl_c_after_first_token(data_dir, llm)
            print("  the agent is free: ping ->", json.loads(cli(data_dir, "send", "a1", "ping").stdout))
            print("3. over MCP, with the official SDK")
            asyncio.run(with_mcp(ready["http_url"] + "/mcp", llm))
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(60)
            llm.shutdown()
            llm.server_close()


if __name__ == "__main__":
    main()
