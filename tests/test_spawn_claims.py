"""A spawn claims its agent id across the cluster in the caller's thread, never in the supervisor's.

Against a real PostgreSQL (``own_pg``, stopped for real): while a spawn waits
for the database, its supervisor still restarts a crashed sibling, and the
spawn is then refused with ``unavailable``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from _helpers import WAIT_S, Worker, end_incarnation, settle, token
from mistersmith import MisterSmithError, Runtime, SupervisorSpec
from mistersmith.embedded.postgres import EmbeddedPostgres
from mistersmith.journal.migrate import migrate
from mistersmith.journal.owners import PgOwners

ROOT = SupervisorSpec("root", intensity=1000, backoff=None)
CLAIM_WAIT_S = 5.0  # the owners pool's wait for a connection while PostgreSQL is away


class Watched(PgOwners):
    """``PgOwners`` that says when a claim began (the claim itself is the real one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claiming = threading.Event()
        self.threads: list[str] = []

    def claim(self, agent_id: str) -> None:
        self.threads.append(threading.current_thread().name)
        self.claiming.set()
        super().claim(agent_id)


def _crash(rt: Runtime, agent_id: str) -> None:
    with pytest.raises(MisterSmithError):
        rt.ask(agent_id, "exit", {"how": "crash"}, timeout=WAIT_S)


@pytest.fixture
def owned(own_pg: EmbeddedPostgres, tmp_path: Path) -> Any:
    migrate(own_pg.conninfo())
    owners = Watched(own_pg.conninfo(), "n1", connect_timeout_s=CLAIM_WAIT_S)
    rt = Runtime(node_id="n1", root=ROOT, kinds={"worker": Worker}, owners=owners)
    try:
        yield rt, owners
    finally:
        rt.close()
        owners.close()


def test_a_spawn_waiting_on_postgresql_holds_up_no_restart_of_a_sibling(
    owned: tuple[Runtime, Watched], own_pg: EmbeddedPostgres,
) -> None:
    rt, owners = owned
    rt.spawn("worker", "sib")
    before = token(rt, "sib")
    own_pg.stop()
    owners.claiming.clear()
    outcome: list[BaseException | str] = []

    def spawn_late() -> None:
        try:
            outcome.append(rt.spawn("worker", "late"))
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome.append(exc)

    spawner = threading.Thread(target=spawn_late, name="late-spawner")
    spawner.start()
    try:
        assert owners.claiming.wait(WAIT_S)
        end_incarnation(rt, "sib", lambda: _crash(rt, "sib"))
        settle(rt)  # a round trip through the root: it is not waiting on PostgreSQL
        assert token(rt, "sib") != before  # restarted, while the spawn still waits
        assert spawner.is_alive() and outcome == []
    finally:
        spawner.join(WAIT_S + CLAIM_WAIT_S)
    [refused] = outcome
    assert isinstance(refused, MisterSmithError) and refused.code == "unavailable", refused
    assert "late" not in rt.system.agents
    assert owners.threads[-1] == "late-spawner"  # claimed in the caller's thread

    own_pg.start()
    assert rt.spawn("worker", "late") == "late"  # claimed once PostgreSQL is back


def test_aspawn_claims_off_the_event_loop(owned: tuple[Runtime, Watched]) -> None:
    rt, owners = owned

    async def main() -> str:
        return await rt.aspawn("worker", "from-loop")

    assert asyncio.run(main()) == "from-loop"
    assert owners.threads[-1].startswith("asyncio_")  # the loop's executor: neither the loop nor the supervisor waits


def test_an_id_owned_by_another_node_is_refused_before_the_supervisor_sees_it(
    owned: tuple[Runtime, Watched], own_pg: EmbeddedPostgres,
) -> None:
    rt, _ = owned
    other = PgOwners(own_pg.conninfo(), "n2")
    try:
        other.claim("theirs")
    finally:
        other.close()
    with pytest.raises(MisterSmithError) as caught:
        rt.spawn("worker", "theirs")
    assert caught.value.code == "already_exists" and "n2" in str(caught.value)
    assert "theirs" not in rt.system.agents
