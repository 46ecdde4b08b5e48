"""Each MCP tool through /mcp: what it calls on the Runtime or a port, and what it answers.
Every structured result is checked against the tool's own outputSchema."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from _web import Served, call
from jsonschema import Draft202012Validator

from mistersmith.web import TOOLS


def _ok(served: Served, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    result = call(served, tool, arguments)
    assert result["isError"] is False, result
    structured: dict[str, Any] = result["structuredContent"]
    Draft202012Validator(TOOLS[tool].output_schema).validate(structured)
    assert orjson.loads(result["content"][0]["text"]) == structured
    return structured


def _error(served: Served, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    result = call(served, tool, arguments)
    assert result["isError"] is True, result
    error: dict[str, Any] = orjson.loads(result["content"][0]["text"])["error"]
    return error


def test_agent_lifecycle(serve: Callable[..., Served]) -> None:
    served = serve()
    spawned = _ok(served, "spawn_agent", {"kind": "echo", "agent_id": "t1", "config": {"colour": "blue"},
                                          "restart": "transient"})
    assert spawned["agent"]["config"] == {"colour": "blue"} and spawned["agent"]["restart"] == "transient"
    auto = _ok(served, "spawn_agent", {"kind": "echo"})["agent_id"]
    assert auto.startswith("echo-")
    listed = _ok(served, "list_agents")
    assert [a["id"] for a in listed["agents"]] == sorted(["t1", auto]) and listed["count"] == 2
    assert _ok(served, "list_agents", {"kind": "nope"})["count"] == 0
    assert _ok(served, "get_agent", {"agent_id": "t1"})["agent"]["kind"] == "echo"
    restarted = _ok(served, "restart_agent", {"agent_id": "t1"})
    assert restarted["agent"]["restart_count"] == 1
    assert _ok(served, "stop_agent", {"agent_id": "t1"}) == {"agent_id": "t1", "stopped": True}
    assert [a["id"] for a in served.runtime.list_agents()] == [auto]


def test_restart_agent_resets_a_durable_agent_s_state_and_refuses_a_plain_one(serve: Callable[..., Served]) -> None:
    served = serve()
    _ok(served, "spawn_agent", {"kind": "echo", "agent_id": "kept", "durable": True})
    _ok(served, "spawn_agent", {"kind": "echo", "agent_id": "plain"})
    reset = _ok(served, "restart_agent", {"agent_id": "kept", "reset_state": True})
    assert reset["state_reset"] is True and reset["agent"]["restart_count"] == 1
    assert served.runtime.history(agent_id="kept", event_types=["state_restored"]) == []  # nothing was committed
    assert _ok(served, "restart_agent", {"agent_id": "kept"})["state_reset"] is False
    refused = _error(served, "restart_agent", {"agent_id": "plain", "reset_state": True})
    assert refused["code"] == "invalid_spec" and "not durable" in refused["message"]
    assert served.runtime.get_agent("plain")["restart_count"] == 0
    assert call(served, "restart_agent", {"agent_id": "kept", "reset_state": "yes"})["isError"] is True


def test_supervision_tree_shows_supervisors_and_children_in_start_order(serve: Callable[..., Served]) -> None:
    from mistersmith import SupervisorSpec

    served = serve()
    served.runtime.spawn("echo", "first")
    path = served.runtime.add_supervisor(SupervisorSpec("workers", strategy="rest_for_one", intensity=4, period_s=30))
    served.runtime.spawn("echo", "w1", supervisor=path)
    answer = _ok(served, "supervision_tree")
    assert answer["node_id"] == served.runtime.node_id
    root = answer["tree"]
    assert root["id"] == "root" and [c["id"] for c in root["children"]] == ["first", "workers"]
    workers = root["children"][1]
    assert (workers["strategy"], workers["intensity"], workers["period_s"]) == ("rest_for_one", 4, 30)
    assert [c["id"] for c in workers["children"]] == ["w1"] and workers["children"][0]["kind"] == "echo"


def test_agent_errors_are_tool_errors_with_their_wire_codes(serve: Callable[..., Served]) -> None:
    served = serve()
    served.runtime.spawn("echo", "dup")
    assert _error(served, "spawn_agent", {"kind": "echo", "agent_id": "dup"})["code"] == "already_exists"
    assert _error(served, "spawn_agent", {"kind": "no_such_kind"})["code"] == "invalid_spec"
    assert _error(served, "stop_agent", {"agent_id": "ghost"})["code"] == "unknown_agent"
    assert _error(served, "get_agent", {"agent_id": "ghost"})["code"] == "unknown_agent"
    assert _error(served, "send_command", {"agent_id": "dup", "command": "nope"})["code"] == "unknown_command"
    assert _error(served, "send_command", {"agent_id": "dup", "command": "fail"})["code"] == "agent_failed"
    assert _error(served, "spawn_agent", {"kind": "echo", "agent_id": "bad id!"})["code"] == "invalid_arguments"
    assert _error(served, "spawn_agent", {"kind": "echo", "colour": 1})["code"] == "invalid_arguments"


def test_send_command_returns_the_handler_result(serve: Callable[..., Served]) -> None:
    served = serve()
    served.runtime.spawn("echo", "e")
    out = _ok(served, "send_command", {"agent_id": "e", "command": "echo", "payload": {"a": [1, 2]}, "timeout_s": 5})
    assert out == {"agent_id": "e", "command": "echo", "result": {"a": [1, 2]}}
    assert _ok(served, "send_command", {"agent_id": "e", "command": "ping"})["result"] is not None
    timed_out = _error(served, "send_command", {"agent_id": "e", "command": "hang", "timeout_s": 0.2})
    assert timed_out["code"] == "timeout"


def test_replay_events_from_memory_with_filters(serve: Callable[..., Served]) -> None:
    served = serve()
    served.runtime.spawn("echo", "r1")
    served.runtime.spawn("echo", "r2")
    served.runtime.restart("r1")
    everything = _ok(served, "replay_events")
    assert everything["source"] == "memory"
    seqs = [e["seq"] for e in everything["events"]]
    assert seqs == sorted(seqs)
    r1 = _ok(served, "replay_events", {"agent_id": "r1"})["events"]
    assert {e["agent_id"] for e in r1} == {"r1"}
    assert "restarted" in [e["event_type"] for e in r1] or "started" in [e["event_type"] for e in r1]
    started = _ok(served, "replay_events", {"event_types": ["started"], "limit": 2})
    assert started["count"] == 2 and {e["event_type"] for e in started["events"]} == {"started"}
    since = _ok(served, "replay_events", {"since": seqs[-1]})
    assert [e["seq"] for e in since["events"]] == [seqs[-1]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert _ok(served, "replay_events", {"since": future})["count"] == 0
    assert _error(served, "replay_events", {"since": "yesterday"})["code"] == "invalid_spec"
    assert _error(served, "replay_events", {"event_types": ["exploded"]})["code"] == "invalid_arguments"


class _History:
    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    async def replay_events(self, *, agent_id: str | None, since: int | datetime | None,
                            event_types: Any, limit: int) -> list[dict[str, Any]]:
        self.asked.append({"agent_id": agent_id, "since": since, "event_types": event_types, "limit": limit})
        return [{"seq": 41, "occurred_at": "2026-01-01T00:00:00+00:00", "event_type": "failed", "agent_id": agent_id}]


def test_replay_events_asks_the_history_port_when_wired(serve: Callable[..., Served]) -> None:
    history = _History()
    served = serve(backends={"history": history})
    out = _ok(served, "replay_events", {"agent_id": "x", "since": "2026-01-01T00:00:00+00:00",
                                        "event_types": ["failed"], "limit": 5})
    assert out["source"] == "journal" and out["events"][0]["seq"] == 41
    assert history.asked == [{"agent_id": "x", "since": datetime(2026, 1, 1, tzinfo=UTC),
                              "event_types": ["failed"], "limit": 5}]


def test_share_and_query_discoveries(serve: Callable[..., Served]) -> None:
    served = serve()
    first = _ok(served, "share_discovery", {"agent_id": "a1", "agent_role": "scout", "discovery_type": "anomaly",
                                            "content": "disk filling", "confidence": 0.9})["discovery"]
    assert first["seq"] == 1 and first["related_to"] is None
    _ok(served, "share_discovery", {"agent_id": "a2", "agent_role": "fixer", "discovery_type": "solution",
                                    "content": "rotate logs", "confidence": 0.6, "related_to": first["id"]})
    everything = _ok(served, "query_discoveries")
    assert [d["seq"] for d in everything["discoveries"]] == [1, 2] and everything["last_seq"] == 2
    assert _ok(served, "query_discoveries", {"types": ["solution"]})["discoveries"][0]["related_to"] == first["id"]
    assert _ok(served, "query_discoveries", {"min_confidence": 0.8})["count"] == 1
    assert _ok(served, "query_discoveries", {"agent_id": "a1", "exclude_self": True})["discoveries"][0]["agent_id"] == "a2"
    assert _ok(served, "query_discoveries", {"after_seq": 1, "limit": 1})["last_seq"] == 2
    assert _ok(served, "query_discoveries", {"after_seq": 5})["last_seq"] == 5


@pytest.mark.parametrize(("arguments", "code"), [
    ({"agent_id": "a", "agent_role": "r", "discovery_type": "rumour", "content": "c", "confidence": 0.5},
     "invalid_arguments"),
    ({"agent_id": "a", "agent_role": "r", "discovery_type": "insight", "content": "c", "confidence": 1.5},
     "invalid_arguments"),
    ({"agent_id": "a", "agent_role": "r", "discovery_type": "insight", "content": "   ", "confidence": 0.5},
     "invalid_spec"),
    ({"agent_id": "a", "agent_role": "r", "discovery_type": "insight", "confidence": 0.5}, "invalid_arguments"),
])
def test_share_discovery_validates(serve: Callable[..., Served], arguments: dict[str, Any], code: str) -> None:
    served = serve()
    assert _error(served, "share_discovery", arguments)["code"] == code
    assert served.hub is not None and served.hub.stats()["total"] == 0


def test_discovery_and_task_tools_without_their_ports_say_unavailable(serve: Callable[..., Served]) -> None:
    served = serve(hub=False)
    share = {"agent_id": "a", "agent_role": "r", "discovery_type": "insight", "content": "c", "confidence": 0.5}
    assert _error(served, "share_discovery", share)["code"] == "unavailable"
    assert _error(served, "query_discoveries")["code"] == "unavailable"
    assert _error(served, "submit_task", {"task_type": "crawl"})["code"] == "unavailable"
    assert _error(served, "get_task", {"task_id": "t"})["code"] == "unavailable"


class _Tasks:
    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}

    async def submit(self, *, task_type: str, payload: Mapping[str, Any], agent_id: str | None,
                     timeout_s: float, command: str = "run") -> dict[str, Any]:
        task_id = f"task-{len(self.tasks) + 1}"
        self.tasks[task_id] = {"task_id": task_id, "status": "queued", "task_type": task_type,
                               "payload": dict(payload), "agent_id": agent_id, "timeout_s": timeout_s,
                               "command": command}
        return self.tasks[task_id]

    async def get(self, task_id: str) -> dict[str, Any] | None:
        return self.tasks.get(task_id)


def test_task_tools_call_the_tasks_port(serve: Callable[..., Served]) -> None:
    tasks = _Tasks()
    served = serve(backends={"tasks": tasks})
    submitted = _ok(served, "submit_task", {"task_type": "crawl", "payload": {"url": "x"}, "timeout_s": 5})["task"]
    assert submitted["task_id"] == "task-1" and submitted["status"] == "queued"
    assert tasks.tasks["task-1"]["payload"] == {"url": "x"} and tasks.tasks["task-1"]["timeout_s"] == 5
    assert _ok(served, "get_task", {"task_id": "task-1"})["task"]["task_type"] == "crawl"
    assert _error(served, "get_task", {"task_id": "task-9"})["code"] == "invalid_spec"
    assert tasks.tasks["task-1"]["command"] == "run"
    _ok(served, "submit_task", {"task_type": "echo", "command": "echo"})
    assert tasks.tasks["task-2"]["command"] == "echo"


def test_system_health_tool(serve: Callable[..., Served]) -> None:
    served = serve()
    health = _ok(served, "system_health")
    assert health["status"] == "ok" and health["components"]["supervisor_tree"]["agents"] == 0


def test_every_tool_schema_is_valid_and_closed() -> None:
    assert len(TOOLS) == 16
    for tool in TOOLS.values():
        described = tool.describe()
        assert described["inputSchema"]["type"] == "object"
        assert described["inputSchema"]["additionalProperties"] is False
        assert described["outputSchema"]["type"] == "object"
        assert described["annotations"]["readOnlyHint"] == tool.read_only


@pytest.mark.parametrize("agent_id", ["abc\n", "abc\r\n", "\nabc", "ab\nc", "a" * 129, ""])
def test_an_id_with_a_newline_or_out_of_bounds_is_refused(serve: Callable[..., Served], agent_id: str) -> None:
    served = serve()
    served.runtime.spawn("echo", "abc")
    for tool in ("spawn_agent", "get_agent", "stop_agent"):
        arguments = {"agent_id": agent_id, **({"kind": "echo"} if tool == "spawn_agent" else {})}
        error = _error(served, tool, arguments)
        assert error["code"] == "invalid_arguments", (tool, error)
    assert [a["id"] for a in served.runtime.list_agents()] == ["abc"]
