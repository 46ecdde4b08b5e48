"""The MCP tools: a schema for each one's arguments and result, and a thin handler.

A handler validates nothing itself (its ``inputSchema`` did), calls the
Runtime or a port, and shapes the reply. ``call_tool`` turns what goes wrong
inside a tool into an ``isError`` result the model can read; what is wrong
with the call itself (an unknown tool, arguments that are not an object) is
a JSON-RPC error (-32602) raised to the protocol layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from mistersmith.audit import ACTIONS, DOORS
from mistersmith import tracing
from mistersmith.discovery import Discovery, DiscoveryFilter
from mistersmith.errors import MisterSmithError, SpecError
from mistersmith.supervisors import RESTARTS

from mistersmith.ports import RemoteCommands
from mistersmith.scopes import tool_refusal

from .backends import Backends, check_health
from .identity import record_refusal, request_identity
from .jsonrpc import INVALID_PARAMS, RpcError
from .tool_calls import ToolCall, current_call
from .schemas import (
    AGENT,
    DISCOVERY,
    DISCOVERY_IN,
    DISCOVERY_TYPE_LIST,
    EVENT,
    EVENT_TYPE_LIST,
    ID,
    LIMIT,
    MAX_COMMAND_TIMEOUT_S,
    obj,
)

__all__ = ["TOOLS", "Tool", "call_tool"]

logger = logging.getLogger("mistersmith.web.tools")

Handler = Callable[[Backends, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    handler: Handler
    read_only: bool = False
    destructive: bool = False
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        Draft202012Validator.check_schema(self.input_schema)
        Draft202012Validator.check_schema(self.output_schema)
        object.__setattr__(self, "validator", Draft202012Validator(self.input_schema))

    def describe(self) -> dict[str, Any]:
        """The ``tools/list`` entry."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "outputSchema": self.output_schema,
            "annotations": {"title": self.title, "readOnlyHint": self.read_only,
                            "destructiveHint": self.destructive, "openWorldHint": False},
        }

    def argument_error(self, arguments: dict[str, Any]) -> str | None:
        error = best_match(self.validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "arguments"
        return f"invalid arguments: {where}: {error.message}"


def _text(value: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": orjson.dumps(value).decode()}]


def _failure(error: dict[str, Any]) -> dict[str, Any]:
    return {"content": _text({"error": error}), "isError": True}


async def call_tool(tools: dict[str, Tool], backends: Backends, params: dict[str, Any]) -> dict[str, Any]:
    """The ``tools/call`` result for ``params`` (``{"name", "arguments"}``)."""
    name = params.get("name")
    if not isinstance(name, str):
        raise RpcError(INVALID_PARAMS, 'Invalid params: "name" must be the name of a tool')
    tool = tools.get(name)
    if tool is None:
        raise RpcError(INVALID_PARAMS, f"Unknown tool: {name!r}; tools/list names them", {"name": name})
    arguments = params.get("arguments", {})
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise RpcError(INVALID_PARAMS, 'Invalid params: "arguments" must be an object')
    forbidden = tool_refusal(request_identity(), name, arguments)  # its scope, its agents glob (mistersmith.scopes)
    if forbidden is not None:
        record_refusal(backends.runtime, name, arguments)  # in the audit trail, as "forbidden"
        return _failure(forbidden)
    problem = tool.argument_error(arguments)
    if problem is not None:
        return _failure({"code": "invalid_arguments", "message": problem})
    try:
        with tracing.span(f"mcp.tool {name}", attributes={"mistersmith.tool": name}):
            structured = await tool.handler(backends, arguments)
    except MisterSmithError as exc:
        return _failure(exc.to_dict())
    except Exception as exc:
        logger.exception("tool %s failed", name)
        return _failure({"code": "internal", "message": f"{type(exc).__name__}: {exc}"})
    return {"content": _text(structured), "structuredContent": structured, "isError": False}


# -- agents -----------------------------------------------------------------------------


async def _spawn_agent(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    options = {k: a[k] for k in ("durable", "idle_timeout_s") if k in a}
    agent_id = await b.runtime.aspawn(a["kind"], a.get("agent_id"), a.get("config"), a.get("restart"),
                                      a.get("supervisor", "root"), **options)
    return {"agent_id": agent_id, "agent": b.runtime.get_agent(agent_id)}


async def _get_agent_state(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    return {"state": await b.runtime.aget_state(a["agent_id"], a.get("version"))}


async def _stop_agent(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    await b.runtime.astop(a["agent_id"])
    return {"agent_id": a["agent_id"], "stopped": True}


async def _restart_agent(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    reset = bool(a.get("reset_state", False))
    await b.runtime.arestart(a["agent_id"], reset_state=reset)
    return {"agent_id": a["agent_id"], "restarted": True, "state_reset": reset,
            "agent": b.runtime.get_agent(a["agent_id"])}


async def _list_agents(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    agents = [x for x in b.runtime.list_agents()
              if ("kind" not in a or x.get("kind") == a["kind"]) and ("state" not in a or x.get("state") == a["state"])]
    agents.sort(key=lambda x: str(x["id"]))
    return {"agents": agents, "count": len(agents)}


async def _get_agent(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    return {"agent": b.runtime.get_agent(a["agent_id"])}


async def _supervision_tree(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    return {"node_id": b.runtime.node_id, "tree": b.runtime.tree()}


async def _send_command(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    """The command's result; its progress goes to the call's ``notifications/progress`` when the client asked
    for them, and a cancelled call cancels the command in the agent too."""
    agent_id, name, timeout = a["agent_id"], a["command"], a.get("timeout_s", 10.0)
    call = current_call()
    cid = call.correlation_id if call is not None else None
    if b.remote is not None and agent_id not in b.runtime.system.agents:  # on another node: over NATS
        return {"agent_id": agent_id, "command": name, "result": await _send_remote(b.remote, a, call)}
    try:
        if call is None or not call.wants_progress:
            result = await b.runtime.aask(agent_id, name, a.get("payload"), timeout=timeout, correlation_id=cid)
        else:
            stream = b.runtime.astream(agent_id, name, a.get("payload"), timeout=timeout, correlation_id=cid)
            try:
                async for item in stream:
                    call.report(item.data, item.done, item.total)
            except MisterSmithError:
                pass  # result() raises it again
            result = await stream.result()
    except asyncio.CancelledError:
        if cid is not None:
            b.runtime.cancel(agent_id, cid)
        raise
    return {"agent_id": agent_id, "command": name, "result": result}


async def _send_remote(remote: RemoteCommands, a: dict[str, Any], call: ToolCall | None) -> Any:
    agent_id, cid = a["agent_id"], call.correlation_id if call is not None else None
    progress = call.report if call is not None and call.wants_progress else None
    try:
        return await remote.remote_ask(agent_id, a["command"], a.get("payload"), timeout_s=a.get("timeout_s", 10.0),
                                       correlation_id=cid, progress=progress)
    except asyncio.CancelledError:
        if cid is not None:
            await asyncio.shield(remote.remote_cancel(agent_id, cid))
        raise


# -- tasks ------------------------------------------------------------------------------


async def _submit_task(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    more = {"command": a["command"]} if "command" in a else {}  # the port's default: "run"
    task = await b.need_tasks().submit(task_type=a["task_type"], payload=a.get("payload", {}),
                                       agent_id=a.get("agent_id"), timeout_s=a.get("timeout_s", 60.0), **more)
    return {"task": task}


async def _get_task(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    task = await b.need_tasks().get(a["task_id"])
    if task is None:
        raise SpecError(None, "task_id", a["task_id"], "name a task that submit_task returned")
    return {"task": task}


# -- discoveries and history ------------------------------------------------------------


async def _share_discovery(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    stored = await b.need_discoveries().share(Discovery.from_dict(a))
    return {"discovery": stored.to_dict()}


def _filter(a: dict[str, Any]) -> DiscoveryFilter:
    types = a.get("types")
    return DiscoveryFilter(agent_id=a.get("agent_id"), types=frozenset(types) if types else None,
                           min_confidence=a.get("min_confidence", 0.0), exclude_self=a.get("exclude_self", False))


async def _query_discoveries(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    found = await b.need_discoveries().query(_filter(a), after_seq=a.get("after_seq", 0), limit=a.get("limit", 100))
    last = found[-1].seq if found else a.get("after_seq", 0)
    return {"discoveries": [d.to_dict() for d in found], "count": len(found), "last_seq": last}


def _since(value: Any) -> int | datetime | None:
    if value is None or isinstance(value, int):
        return value
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise SpecError(None, "since", value, "use a journal seq or an ISO 8601 time with a UTC offset")
    return when


async def _replay_events(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    since = _since(a.get("since"))
    limit = a.get("limit", 100)
    types = a.get("event_types")
    if b.history is not None:
        events = await b.history.replay_events(agent_id=a.get("agent_id"), since=since, event_types=types,
                                               limit=limit)
        return {"events": events, "count": len(events), "source": "journal"}
    kept = b.runtime.history(agent_id=a.get("agent_id"), event_types=types)
    if isinstance(since, int):
        kept = [e for e in kept if e.seq >= since]
    elif since is not None:
        kept = [e for e in kept if e.occurred_at >= since]
    events = [e.to_dict() for e in kept[:limit]]
    return {"events": events, "count": len(events), "source": "memory"}


async def _system_health(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    return await check_health(b)


async def _list_nodes(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    return {"node_id": b.runtime.node_id, "nodes": await b.need_cluster().nodes()}


async def _audit_log(b: Backends, a: dict[str, Any]) -> dict[str, Any]:
    since = _since(a.get("since"))
    if isinstance(since, int):
        raise SpecError(None, "since", since, "use an ISO 8601 time with a UTC offset")
    entries = await b.need_audit().audit_entries(since=since, actor=a.get("actor"), action=a.get("action"),
                                                 door=a.get("door"), limit=a.get("limit", 100))
    return {"entries": entries, "count": len(entries)}


_AGENT_ID = obj({"agent_id": ID}, ("agent_id",))
_STATE = obj({"agent_id": {"type": "string"}, "version": {"type": "integer"}, "epoch": {"type": ["integer", "null"]},
              "state": {"type": "object"}, "bytes": {"type": "integer"}, "node_id": {"type": "string"},
              "committed_at": {"type": ["string", "null"]}}, ("agent_id", "version", "state"))
_TIME = {"type": ["string", "null"]}
_NODE = obj({"node_id": {"type": "string"}, "state": {"type": "string", "enum": ["up", "draining", "down"]},
             "agents": {"type": "integer"}, "max_agents": {"type": ["integer", "null"]}, "last_seen": _TIME,
             "lease_until": _TIME, "expired": {"type": "boolean"}, "http_url": _TIME, "nats_url": _TIME},
            ("node_id", "state", "agents"), closed=False)
_TASK = obj({"task_id": {"type": "string"}, "status": {"type": "string"}}, ("task_id", "status"), closed=False)

TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("spawn_agent", "Spawn an agent",
         "Start an agent of a registered kind under a supervisor (root by default); returns once it is up. "
         "durable: keep its state across restarts (default: its kind decides). idle_timeout_s: a command that "
         "reports no progress for that long fails with timeout (default: its kind decides).",
         obj({"kind": ID, "agent_id": ID, "config": {"type": "object"},
              "restart": {"type": "string", "enum": list(RESTARTS)},
              "supervisor": {"type": "string", "minLength": 1}, "durable": {"type": "boolean"},
              "idle_timeout_s": {"type": "number", "exclusiveMinimum": 0}}, ("kind",)),
         obj({"agent_id": {"type": "string"}, "agent": AGENT}, ("agent_id", "agent")), _spawn_agent),
    Tool("stop_agent", "Stop an agent", "Stop an agent for good (within its shutdown bound) and forget it.",
         _AGENT_ID, obj({"agent_id": {"type": "string"}, "stopped": {"type": "boolean"}}, ("agent_id", "stopped")),
         _stop_agent, destructive=True),
    Tool("restart_agent", "Restart an agent",
         "Stop an agent and start a new incarnation now (not counted in the restart intensity). reset_state: "
         "a durable agent starts again from an empty state, committed as its next version (a fresh start: "
         "its earlier versions are dropped); refused with invalid_spec for an agent that is not durable.",
         obj({"agent_id": ID, "reset_state": {"type": "boolean"}}, ("agent_id",)),
         obj({"agent_id": {"type": "string"}, "restarted": {"type": "boolean"}, "state_reset": {"type": "boolean"},
              "agent": AGENT}, ("agent_id", "restarted", "agent")), _restart_agent, destructive=True),
    Tool("list_agents", "List agents", "Every agent on this node (not supervisors), optionally by kind or state.",
         obj({"kind": ID, "state": {"type": "string"}}),
         obj({"agents": {"type": "array", "items": AGENT}, "count": {"type": "integer"}}, ("agents", "count")),
         _list_agents, read_only=True),
    Tool("get_agent", "Get an agent", "One agent's status: state, restarts, mailbox depth, config.",
         _AGENT_ID, obj({"agent": AGENT}, ("agent",)), _get_agent, read_only=True),
    Tool("get_agent_state", "Get an agent's durable state",
         "A durable agent's last committed state (or an older version, if kept): version, epoch, size, "
         "the state itself and when and where it was committed.",
         obj({"agent_id": ID, "version": {"type": "integer", "minimum": 0}}, ("agent_id",)),
         obj({"state": _STATE}, ("state",)), _get_agent_state, read_only=True),
    Tool("supervision_tree", "Supervision tree",
         "This node's live supervision tree: each supervisor with its strategy and restart intensity, "
         "its children in start order, each agent's state and restart count.",
         obj({}), obj({"node_id": {"type": "string"}, "tree": {"type": "object"}}, ("node_id", "tree")),
         _supervision_tree, read_only=True),
    Tool("send_command", "Send a command",
         "Send a command to an agent and wait for its result (at most timeout_s, default 10). With "
         "_meta.progressToken, the agent's progress comes as notifications/progress; cancelling the request "
         "cancels the command in the agent.",
         obj({"agent_id": ID, "command": {"type": "string", "minLength": 1, "maxLength": 128},
              "payload": {"type": "object"},
              "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_COMMAND_TIMEOUT_S}},
             ("agent_id", "command")),
         obj({"agent_id": {"type": "string"}, "command": {"type": "string"}, "result": {}},
             ("agent_id", "command", "result")), _send_command),
    Tool("submit_task", "Submit a task",
         "Queue a task: command (default run) of any agent of kind task_type, on whichever node serves that "
         "kind (needs the NATS bridge; refused when no node serves it). Follow it with get_task.",
         obj({"task_type": {"type": "string", "minLength": 1, "maxLength": 128}, "payload": {"type": "object"},
              "command": {"type": "string", "minLength": 1, "maxLength": 128},
              "agent_id": ID, "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}},
             ("task_type",)),
         obj({"task": _TASK}, ("task",)), _submit_task),
    Tool("get_task", "Get a task", "A submitted task's status and, once done, its result or error.",
         obj({"task_id": {"type": "string", "minLength": 1, "maxLength": 128}}, ("task_id",)),
         obj({"task": _TASK}, ("task",)), _get_task, read_only=True),
    Tool("share_discovery", "Share a discovery",
         "Store a discovery, deliver it to every subscriber and publish it on discoveries.{agent_id}.{discovery_type}.",
         obj(DISCOVERY_IN, ("agent_id", "agent_role", "discovery_type", "content", "confidence")),
         obj({"discovery": DISCOVERY}, ("discovery",)), _share_discovery),
    Tool("query_discoveries", "Query discoveries",
         "Stored discoveries after a seq, oldest first. With exclude_self, agent_id names the reader and its "
         "own discoveries are left out; otherwise agent_id selects that agent's discoveries.",
         obj({"agent_id": ID, "types": DISCOVERY_TYPE_LIST, "min_confidence": {"type": "number", "minimum": 0,
              "maximum": 1}, "exclude_self": {"type": "boolean"}, "after_seq": {"type": "integer", "minimum": 0},
              "limit": LIMIT}),
         obj({"discoveries": {"type": "array", "items": DISCOVERY}, "count": {"type": "integer"},
              "last_seq": {"type": "integer"}}, ("discoveries", "count", "last_seq")),
         _query_discoveries, read_only=True),
    Tool("replay_events", "Replay supervision events",
         "Supervision events, oldest first, from the journal (or the node's memory without one). since is "
         "inclusive: a seq, or an ISO 8601 time with a UTC offset.",
         obj({"agent_id": ID, "since": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]},
              "event_types": EVENT_TYPE_LIST, "limit": LIMIT}),
         obj({"events": {"type": "array", "items": EVENT}, "count": {"type": "integer"},
              "source": {"type": "string", "enum": ["journal", "memory"]}}, ("events", "count", "source")),
         _replay_events, read_only=True),
    Tool("system_health", "System health", "The health of each component: supervisor tree, NATS, database.",
         obj({}),
         obj({"status": {"type": "string", "enum": ["ok", "degraded", "down"]}, "node_id": {"type": "string"},
              "components": {"type": "object", "additionalProperties": obj(
                  {"status": {"type": "string"}}, ("status",), closed=False)}},
             ("status", "node_id", "components")),
         _system_health, read_only=True),
    Tool("list_nodes", "List the cluster's nodes",
         "Every node sharing this node's PostgreSQL, from the membership table: state (up, draining, down), "
         "agents hosted, max_agents, last_seen, lease_until, expired (its lease ran out, not yet marked down), "
         "http_url, nats_url. node_id: the node answering.",
         obj({}),
         obj({"node_id": {"type": "string"}, "nodes": {"type": "array", "items": _NODE}}, ("node_id", "nodes")),
         _list_nodes, read_only=True),
    Tool("audit_log", "Read the audit log",
         "Control actions recorded from every door (spawn, stop, restart, drain, shutdown, cancel, state_reset, "
         "command), oldest first: time, actor, door, action, target, outcome, trace id. Needs the admin scope.",
         obj({"since": {"type": "string"}, "actor": {"type": "string", "minLength": 1},
              "action": {"type": "string", "enum": list(ACTIONS)}, "door": {"type": "string", "enum": list(DOORS)},
              "limit": LIMIT}),
         obj({"entries": {"type": "array", "items": {"type": "object"}}, "count": {"type": "integer"}},
             ("entries", "count")),
         _audit_log, read_only=True),
)}
