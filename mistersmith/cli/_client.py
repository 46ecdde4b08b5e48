"""The client commands that talk to a running node over NATS.

``spawn``, ``agents``, ``stop``, ``restart``, ``state``, ``tree``,
``health``, ``shutdown`` and ``kinds``: each opens one connection (see
``_nats``), makes its requests on ``system.control.*`` or
``agents.{id}.commands.{cmd}``, prints, and closes it. (``send`` is in ``_send``.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client as NATS

from mistersmith.bridge import subjects
from mistersmith.bridge.door import CLI_DOOR, DOOR_HEADER
from mistersmith.crossing import run_in_thread
from mistersmith.config import Settings
from mistersmith.ids import ID_RULE, is_id

from ._errors import EXIT_FAILED, EXIT_OK, CliError, failed, unreachable, usage
from ._locate import data_dir, nats_urls, read_node_file
from ._nats import connected, request
from ._output import Output, stamp, table
from ._settings import load
from ._tree import render_tree

__all__ = ["CLIENT_COMMANDS", "json_object", "state_text"]

T = TypeVar("T")


def json_object(text: str | None, what: str) -> dict[str, Any] | None:
    """A JSON object from the command line: inline, ``@file`` or ``-`` (stdin); exit 2 if it is not one."""
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise usage(f"{what}: cannot read {text[1:]!r}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise usage(f"{what}: not JSON ({exc.msg} at column {exc.colno}): {text[:60]!r}") from None
    if not isinstance(value, dict):
        raise usage(f"{what}: use a JSON object such as '{{\"key\": 1}}', not {type(value).__name__}")
    return value


def _token(value: str | None, what: str) -> str | None:
    if value is not None and not is_id(value):
        raise usage(f"{what} {value!r}: {ID_RULE}")
    return value


def _with_nats(args: argparse.Namespace, body: Callable[[NATS, Settings], Awaitable[T]]) -> T:
    settings = load(args)
    urls, user = nats_urls(settings)

    async def run() -> T:
        async with connected(settings, urls, args.timeout, **user) as nc:
            return await body(nc, settings)

    return asyncio.run(run())


async def _control(nc: NATS, action: str, payload: dict[str, Any], timeout_s: float) -> Any:
    missing = unreachable("no MisterSmith node answers system.control on this NATS; is `mistersmith serve` running?")
    return await request(nc, subjects.control(action), payload, timeout_s, no_responders=missing)


# -- commands ---------------------------------------------------------------------------


def run_spawn(args: argparse.Namespace, out: Output) -> int:
    payload: dict[str, Any] = {"kind": _token(args.kind, "kind")}
    for key, value in (("agent_id", _token(args.id, "--id")), ("node", _token(args.node, "--node")),
                       ("restart", args.restart), ("config", json_object(args.agent_config, "--config")),
                       ("durable", args.durable)):
        if value is not None:
            payload[key] = value

    result = _with_nats(args, lambda nc, _: _control(nc, "spawn", payload, args.timeout))
    out.result(result, f"spawned {result.get('agent_id')} ({args.kind}) on node {result.get('node')}")
    return 0


_DETAILS_AT_ONCE = 32


async def _with_details(nc: NATS, agents: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Each agent's ``get`` answer (restart count, mailbox depth...) merged into its list entry.

    ``list`` describes agents without those; an agent gone meanwhile keeps its entry as it was.
    """
    limit = asyncio.Semaphore(_DETAILS_AT_ONCE)

    async def one(agent: dict[str, Any]) -> dict[str, Any]:
        async with limit:
            try:
                info = await _control(nc, "get", {"agent_id": agent.get("id")}, timeout_s)
            except CliError:
                return agent
        return {**agent, **info} if isinstance(info, dict) else agent

    return list(await asyncio.gather(*(one(a) for a in agents)))


def _agent_rows(agents: list[dict[str, Any]], long: bool) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for a in agents:
        row: tuple[Any, ...] = (a.get("id"), a.get("kind"), a.get("state"), a.get("supervisor"), a.get("node_id"))
        if long:
            row += (a.get("restart_count"), a.get("mailbox_depth"), ",".join(a.get("commands") or ()))
        rows.append(row)
    return rows


def run_agents(args: argparse.Namespace, out: Output) -> int:
    filters = {k: v for k, v in (("kind", _token(args.kind, "--kind")), ("node", _token(args.node, "--node")),
                                 ("command", _token(args.command, "--command"))) if v is not None}

    async def body(nc: NATS, _: Settings) -> dict[str, Any]:
        result: dict[str, Any] = await _control(nc, "list", filters, args.timeout)
        if args.long:
            result["agents"] = await _with_details(nc, result.get("agents") or [], args.timeout)
        return result

    result = _with_nats(args, body)

    def human() -> str:
        agents = result.get("agents") or []
        nodes = result.get("nodes") or []
        head: tuple[str, ...] = ("ID", "KIND", "STATE", "SUPERVISOR", "NODE")
        if args.long:
            head += ("RESTARTS", "MAILBOX", "COMMANDS")
        text = table(head, _agent_rows(agents, args.long))
        text += f"\n{len(agents)} agent(s) on {len(nodes)} node(s)"
        if result.get("missing"):
            text += f"; no answer from: {', '.join(result['missing'])}"
        return text

    out.result(result, human)
    return 0


def _agent_action(action: str, done: str) -> Callable[[argparse.Namespace, Output], int]:
    def run(args: argparse.Namespace, out: Output) -> int:
        payload: dict[str, Any] = {"agent_id": _token(args.agent_id, "agent id")}
        if getattr(args, "reset_state", False):
            payload["reset_state"] = True
        result = _with_nats(args, lambda nc, _: _control(nc, action, payload, args.timeout))
        reset = ", its state reset" if result.get("state_reset") else ""
        out.result(result, f"{done} {args.agent_id} (node {result.get('node')}{reset})")
        return 0

    return run


def state_text(doc: Mapping[str, Any]) -> str:
    """``mistersmith state``: what the version is, then the state itself as indented JSON."""
    committed = doc.get("committed_at")
    try:
        when = stamp(datetime.fromisoformat(committed)) if isinstance(committed, str) else None
    except ValueError:
        when = committed
    facts = (("agent", doc.get("agent_id")), ("version", doc.get("version")), ("epoch", doc.get("epoch")),
             ("bytes", doc.get("bytes")), ("node", doc.get("node_id")),
             ("committed_at", when or "never (nothing committed yet)"))
    lines = [f"{name:<12}  {'-' if value is None else value}" for name, value in facts]
    lines.append("state")
    lines.append(json.dumps(doc.get("state"), indent=2, ensure_ascii=False))
    return "\n".join(lines)


def run_state(args: argparse.Namespace, out: Output) -> int:
    payload: dict[str, Any] = {"agent_id": _token(args.agent_id, "agent id")}
    if args.version is not None:
        if args.version < 0:
            raise usage(f"--version {args.version}: use a version >= 0 (omit it for the last one)")
        payload["version"] = args.version
    result = _with_nats(args, lambda nc, _: _control(nc, "state", payload, args.timeout))
    out.result(result, lambda: state_text(result))
    return EXIT_OK


def run_tree(args: argparse.Namespace, out: Output) -> int:
    payload = {"node": v for v in (_token(args.node, "--node"),) if v is not None}
    result: dict[str, Any] = _with_nats(args, lambda nc, _: _control(nc, "tree", payload, args.timeout))
    trees: dict[str, Any] = result.get("trees") or {}
    missing: list[str] = result.get("missing") or []
    doc = {"trees": dict(sorted(trees.items())), "nodes": result.get("nodes") or sorted(trees), "missing": missing}

    def human() -> str:
        parts = [f"node {node_id}\n{render_tree(tree)}" for node_id, tree in sorted(trees.items())]
        if missing:
            parts.append(f"no answer from: {', '.join(missing)}")
        return "\n\n".join(parts) or "no nodes answered"

    out.result(doc, human)
    return 0


def _http_health(settings: Settings, node_id: str, timeout_s: float) -> dict[str, Any] | None:
    """The node's ``/health`` report, when the data directory's node.json is that node's."""
    info = read_node_file(data_dir(settings))
    if info is None or info.get("node_id") != node_id or not info.get("http_url"):
        return None
    try:
        with urllib.request.urlopen(f"{info['http_url']}/health", timeout=timeout_s) as resp:  # noqa: S310
            report: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503: down, with the report as its body
        try:
            report = json.loads(exc.read())
        except ValueError:
            return {"status": "down", "error": f"HTTP {exc.code}"}
    except (OSError, ValueError) as exc:
        return {"status": "down", "error": f"{info['http_url']}/health: {exc}"}
    return report


def run_health(args: argparse.Namespace, out: Output) -> int:
    payload = {"node": v for v in (_token(args.node, "--node"),) if v is not None}

    async def body(nc: NATS, settings: Settings) -> dict[str, Any]:
        ping = await _control(nc, "ping", payload, args.timeout)
        node = str(ping.get("node"))
        http = await run_in_thread(lambda: _http_health(settings, node, args.timeout), "mistersmith-cli-health")
        status = http.get("status", "down") if http is not None else "ok"
        return {"status": status, "node": ping.get("node"), "ping": ping, "http": http}

    doc = _with_nats(args, body)

    def human() -> str:
        ping = doc["ping"]
        nodes = ping.get("nodes") or []
        lines = [f"node {doc['node']}: {doc['status']}  ({ping.get('agents')} agents, up {ping.get('uptime_s')} s, "
                 f"{len(nodes)} node(s) on the bus)"]
        components = (doc["http"] or {}).get("components") or {}
        width = max((len(n) for n in components), default=0)
        for name, comp in sorted(components.items()):
            detail = comp.get("error") or comp.get("detail") or comp.get("url") or ""
            lines.append(f"  {name.ljust(width)}  {comp.get('status')}  {detail}".rstrip())
        if doc["http"] is None:
            lines.append("  (component checks need the node's HTTP endpoint; run this in its data directory)")
        return "\n".join(lines)

    out.result(doc, human)
    return EXIT_OK if doc["status"] == "ok" else EXIT_FAILED


def run_shutdown(args: argparse.Namespace, out: Output) -> int:
    async def body(nc: NATS, _: Settings) -> Any:
        node = _token(args.node, "--node")
        if node is None:
            node = (await _control(nc, "ping", {}, args.timeout)).get("node")
        # Straight to the node's own subject: no-responders then means "no such node".
        missing = unreachable(f"no node {node!r} answers on this NATS")
        return await request(nc, subjects.node_control(str(node), "shutdown"), {"node": node}, args.timeout,
                             no_responders=missing)

    result = _with_nats(args, body)
    out.result(result, f"node {result.get('node')} is shutting down")
    return 0


def kinds_text(doc: dict[str, Any]) -> str:
    """``mistersmith kinds``: each kind, its commands and their parameters (``?``: optional)."""
    lines = [f"node {doc.get('node')}"]
    for name, info in sorted((doc.get("kinds") or {}).items()):
        process = info.get("process")
        lines.append(f"{name}" + (f"  runs {' '.join(process['command'])}" if process else ""))
        if process and process.get("overridable"):
            lines.append(f"  a spawn may set: {', '.join(process['overridable'])}")
        for cmd, spec in sorted((info.get("commands") or {}).items()):
            params = [f"{p}{'' if v.get('required') else '?'}: {v.get('type')}"
                      for p, v in sorted((spec.get("params") or {}).items())]
            if spec.get("more_params"):
                params.append("...")
            lines.append(f"  {cmd}({', '.join(params)})")
    return "\n".join(lines)


def run_kinds(args: argparse.Namespace, out: Output) -> int:
    payload = {"node": v for v in (_token(args.node, "--node"),) if v is not None}

    async def body(nc: NATS, _: Settings) -> Any:
        return await _control(nc, "kinds", payload, args.timeout)

    doc = _with_nats(args, body)
    out.result(doc, lambda: kinds_text(doc))
    return EXIT_OK


CLIENT_COMMANDS: dict[str, Callable[[argparse.Namespace, Output], int]] = {
    "spawn": run_spawn,
    "agents": run_agents,
    "stop": _agent_action("stop", "stopped"),
    "restart": _agent_action("restart", "restarted"),
    "state": run_state,
    "tree": run_tree,
    "health": run_health,
    "shutdown": run_shutdown,
    "kinds": run_kinds,
}
