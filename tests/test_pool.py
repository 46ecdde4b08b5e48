"""The agent pool: a node hosts at most max_agents agents; slots never leak."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mistersmith import AgentFailedError, FakeClock, PoolFullError, Runtime, SupervisorSpec


@pytest.fixture
def pooled(clock: FakeClock) -> Iterator[Runtime]:
    rt = Runtime(clock=clock, max_agents=3, root=SupervisorSpec("root", intensity=100))
    try:
        yield rt
    finally:
        rt.close()


def test_spawning_past_the_limit_fails_with_pool_full(pooled: Runtime) -> None:
    for i in range(3):
        pooled.spawn("echo", agent_id=f"e{i}")
    with pytest.raises(PoolFullError) as err:
        pooled.spawn("echo", agent_id="e3")
    assert err.value.code == "pool_full" and err.value.limit == 3
    assert "e3" not in {a["id"] for a in pooled.list_agents()}


def test_stopped_and_temporary_crashed_agents_free_their_slots(pooled: Runtime) -> None:
    pooled.spawn("echo", agent_id="keep")
    pooled.spawn("echo", agent_id="stopme")
    pooled.spawn("echo", agent_id="temp", restart="temporary")
    pooled.stop("stopme")
    pooled.spawn("echo", agent_id="n1")
    with pooled.subscribe(agent_id="temp", event_types=["stopped"]) as sub:
        with pytest.raises(AgentFailedError):
            pooled.ask("temp", "fail", timeout=5)
        sub.get(timeout_s=5)  # the supervisor decided: not restarted, removed
    # root handles the spawn below after it finished removing "temp" (one mailbox, in order)
    assert pooled.spawn("echo", agent_id="n2") == "n2"
    with pytest.raises(PoolFullError):
        pooled.spawn("echo")


def test_a_restarting_agent_keeps_its_slot(pooled: Runtime) -> None:
    for i in range(3):
        pooled.spawn("echo", agent_id=f"e{i}")
    with pytest.raises(AgentFailedError):
        pooled.ask("e0", "fail", timeout=5)
    assert pooled.ask("e0", "ping", timeout=5)["pong"] is True
    with pytest.raises(PoolFullError):
        pooled.spawn("echo")
