from __future__ import annotations

import pytest

from mistersmith import AgentFailedError, Runtime


def test_echo_round_trip_and_restart(real_runtime: Runtime) -> None:
    # the README's first program: the default root restarts the agent after a short backoff,
    # and the ping right after the crash waits for it (the stash) instead of failing
    runtime = real_runtime
    agent = runtime.spawn("echo")
    assert runtime.ask(agent, "echo", {"x": 1}, timeout=5) == {"x": 1}
    with pytest.raises(AgentFailedError):
        runtime.ask(agent, "fail", timeout=5)
    assert runtime.ask(agent, "ping", timeout=5) == {"pong": True, "agent_id": agent}
    assert runtime.get_agent(agent)["restart_count"] == 1
    types = [e.event_type for e in runtime.history(agent_id=agent)]
    assert types == ["started", "failed", "restart_scheduled", "restarted"]
