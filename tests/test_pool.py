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


def test_a_kind_with_a_pool_size_is_limited_on_its_own_naming_its_setting(tmp_path: object) -> None:
    import sys

    from mistersmith import ProcessKind

    kind = ProcessKind("tool", [sys.executable, "-c", "print('{}')"], max_agents=2)
    with Runtime(kinds={"tool": kind.agent_class()}, max_agents=50) as rt:
        rt.spawn("tool", "t1")
        rt.spawn("tool", "t2")
        with pytest.raises(PoolFullError) as err:
            rt.spawn("tool", "t3")
        assert err.value.kind == "tool" and err.value.limit == 2
        assert "process.kinds.tool.max_agents" in str(err.value)
        rt.spawn("echo", "e1")  # other kinds are not held back by it
        rt.stop("t1")
        rt.spawn("tool", "t3")  # a stopped agent frees its kind's slot


def test_pool_full_names_the_setting_as_a_user_types_it() -> None:
    with Runtime(max_agents=1, max_agents_setting="--max-agents / node.max_agents") as rt:
        rt.spawn("echo")
        with pytest.raises(PoolFullError, match="raise --max-agents / node.max_agents"):
            rt.spawn("echo")
