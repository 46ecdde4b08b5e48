"""Fault 5: fuzzed NATS payloads and fuzzed ``/mcp`` bodies against a ``serve`` child.

Hypothesis, grammar-based: JSON text built from fragments, so that what a
JSON library would never emit is in it too: valid JSON-RPC (and command
envelopes) with wrong types, ids past 64 bits, nesting thousands deep,
invalid UTF-8 inside strings, truncated text. Every request waits for its
answer (NATS: a reply on the request's inbox within ``WAIT_S``; HTTP: a
status in the documented set, and a JSON-RPC body for 200/400). The node's
RSS (``/proc/<pid>/status``) is read after a warm-up of ``warmup`` examples
and at the end: its growth is the figure (target <= 10 %). A crash is the
node's exit, or a request left unanswered.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mistersmith.crossing import LoopThread

from ._fault_node import ServeChild, connect

__all__ = ["FUZZ_ENV", "FuzzResult", "FuzzSizes", "fuzz", "rss_kib"]

FUZZ_ENV = {"MISTERSMITH_NODE_ROOT_INTENSITY": "1000000", "MISTERSMITH_NODE_RESTART_BACKOFF_MAX_S": "0.05",
            "MISTERSMITH_HTTP_RATE_LIMIT_PER_S": "1000000", "MISTERSMITH_HTTP_RATE_LIMIT_BURST": "1000000"}
"""``fail`` crashes the agent on purpose; the rate limit is not what is fuzzed (fault 6 is)."""

WAIT_S = 10.0
HTTP_STATUSES = frozenset({200, 202, 400, 404, 413})

_scalar = st.one_of(
    st.sampled_from(["null", "true", "false", "0", "-1", "1e309", "-0.0", '""', '"2.0"']),
    st.integers(-(2**70), 2**70).map(str),  # past 64 bits too
    st.integers(10**30, 10**60).map(str),  # huge
    st.text(max_size=12).map(lambda t: orjson.dumps(t).decode()),
)


def _array(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")


def _object(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    keys = st.sampled_from(["id", "jsonrpc", "method", "params", "name", "arguments", "op", "payload", "x"]) | st.text(
        max_size=6)
    return st.dictionaries(keys, children, max_size=4).map(
        lambda d: "{" + ",".join(f"{orjson.dumps(k).decode()}:{v}" for k, v in d.items()) + "}")


_value = st.recursive(_scalar, lambda c: _array(c) | _object(c), max_leaves=10)
_deep = st.integers(100, 5_000).flatmap(lambda d: st.sampled_from(["[" * d + "]" * d, '{"a":' * d + "1" + "}" * d,
                                                                   "[" * d]))
_wild = _value | _deep
_bad_utf8 = st.binary(min_size=1, max_size=8).filter(lambda b: not _utf8(b))


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _message(methods: list[str], names: list[str]) -> st.SearchStrategy[bytes]:
    method = st.sampled_from(methods).map(lambda m: orjson.dumps(m).decode()) | _wild
    params = st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(names).map(lambda n: orjson.dumps(n).decode()) | _wild,
        "arguments": _wild}).map(lambda d: "{" + ",".join(f'"{k}":{v}' for k, v in d.items()) + "}") | _wild
    fields = st.fixed_dictionaries({"jsonrpc": st.just('"2.0"') | _wild, "method": method},
                                   optional={"id": _scalar | _wild, "params": params})
    text = fields.map(lambda d: ("{" + ",".join(f'"{k}":{v}' for k, v in d.items()) + "}").encode())
    broken = st.tuples(text, _bad_utf8).map(lambda t: t[0].replace(b'"2.0"', b'"2.0' + t[1] + b'"', 1))
    truncated = st.tuples(text, st.integers(1, 40)).map(lambda t: t[0][: -t[1]])
    return st.one_of(text, text, broken, truncated, _wild.map(str.encode), st.binary(max_size=64))


MCP_BODIES = _message(["initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read", "nope"],
                      ["spawn_agent", "send_command", "list_agents", "get_agent", "replay_events", "x"])
NATS_BODIES = _message(["command"], ["add"]) | _object(_wild).map(str.encode)
NATS_SUBJECTS = st.sampled_from(["agents.fz.commands.add", "agents.fz.commands.get", "agents.fz.commands.fail",
                                 "agents.fz.commands.nope", "system.control.list",
                                 "system.control.get", "system.control.ping"])


@dataclass(frozen=True, slots=True)
class FuzzSizes:
    nats: int
    mcp: int
    warmup: int


@dataclass
class FuzzResult:
    nats_sent: int = 0
    nats_unanswered: list[str] = field(default_factory=list)
    mcp_sent: int = 0
    mcp_bad: list[str] = field(default_factory=list)
    rss_warm_kib: int = 0
    rss_end_kib: int = 0
    alive: bool = False

    @property
    def rss_growth(self) -> float:
        return self.rss_end_kib / self.rss_warm_kib - 1 if self.rss_warm_kib else 0.0

    def problems(self) -> list[str]:
        found = []
        if not self.alive:
            found.append("the node died")
        if self.nats_unanswered:
            found.append(f"{len(self.nats_unanswered)} NATS requests unanswered: {self.nats_unanswered[:3]}")
        if self.mcp_bad:
            found.append(f"{len(self.mcp_bad)} /mcp answers out of spec: {self.mcp_bad[:3]}")
        if self.rss_growth > 0.10:
            found.append(f"RSS grew {self.rss_growth:.1%} ({self.rss_warm_kib} -> {self.rss_end_kib} KiB)")
        return found


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _run(n: int, strategy: st.SearchStrategy[Any], fn: Any) -> None:
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(example: Any) -> None:
        fn(example)

    one()


def _mcp_check(conn: http.client.HTTPConnection, body: bytes) -> str | None:
    conn.request("POST", "/mcp", body, {"content-type": "application/json",
                                        "accept": "application/json, text/event-stream"})
    response = conn.getresponse()
    raw = response.read()
    if response.status not in HTTP_STATUSES:
        return f"{response.status} for {body[:80]!r}"
    if response.status in (200, 400):
        answer = orjson.loads(raw)
        if answer.get("jsonrpc") != "2.0" or ("result" in answer) == ("error" in answer):
            return f"not JSON-RPC: {raw[:120]!r} for {body[:80]!r}"
        if "error" in answer and answer["error"].get("code") == -32603:
            return f"internal error: {raw[:200]!r} for {body[:80]!r}"
    return None


def fuzz(node: ServeChild, nats_url: str, sizes: FuzzSizes) -> FuzzResult:
    """Fuzz the running ``node`` (an agent ``fz`` of kind ``tally`` is spawned first)."""
    result = FuzzResult()
    loop = LoopThread("mistersmith-bench-fuzz")
    try:
        nc = loop.run(connect(nats_url), WAIT_S)
        loop.run(nc.request("system.control.spawn", orjson.dumps({"kind": "tally", "agent_id": "fz"}),
                            timeout=WAIT_S), WAIT_S)

        def nats_one(example: tuple[str, bytes]) -> None:
            subject, body = example
            result.nats_sent += 1
            try:
                loop.run(nc.request(subject, body, timeout=WAIT_S), WAIT_S + 1)
            except Exception as exc:  # no reply: a crash, or a request dropped
                result.nats_unanswered.append(f"{subject} {body[:60]!r}: {exc!r}")
            if result.nats_sent == sizes.warmup:
                result.rss_warm_kib = rss_kib(node.pid)

        host, port = node.ready["http_url"].removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)

        def mcp_one(body: bytes) -> None:
            nonlocal conn
            result.mcp_sent += 1
            try:
                problem = _mcp_check(conn, body)
            except (http.client.HTTPException, OSError) as exc:
                conn.close()  # the server may close a connection after an error answer: a fresh one
                conn = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)
                problem = f"{exc!r} for {body[:80]!r}" if isinstance(exc, TimeoutError) else _mcp_check(conn, body)
            if problem is not None:
                result.mcp_bad.append(problem)

        _run(sizes.nats, st.tuples(NATS_SUBJECTS, NATS_BODIES), nats_one)
        _run(sizes.mcp, MCP_BODIES, mcp_one)
        conn.close()
        loop.run(nc.flush(), WAIT_S)
        result.rss_end_kib = rss_kib(node.pid)
        result.alive = node.proc is not None and node.proc.poll() is None and node.http("/health") is not None
        loop.run(nc.close(), WAIT_S)
    finally:
        loop.stop()
    return result
