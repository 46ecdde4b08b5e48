"""Agent ids across a cluster (``PgOwners``), takeover of a down node's units (``takeover.py``)
and handoffs between nodes (``handoff.py``), against a real PostgreSQL.

The lost node ``L`` is built as its journal would have left it: registry rows
(``agents``), the ids it owned (``agent_owners``, with its run) and its
``nodes`` row, declared down. The survivors ``S1`` and ``S2`` are up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from mistersmith.errors import AgentExistsError, StateUnavailableError
from mistersmith.history import AgentRecord
from mistersmith.journal.handoff import done_handoffs, hand_over, pending_from, take_handoffs
from mistersmith.journal.owners import PgOwners
from mistersmith.journal.registry import load_node, upsert_records
from mistersmith.journal.takeover import Adoption, Unit, claim_unit, lost_units, up_nodes

WAIT_S = 10.0
L, RUN_L = "L", "run-L"
_AT = datetime(2024, 1, 1, tzinfo=timezone.utc)


def record(path: str, seq: int, *, node: str = L, kind: str = "echo", restart: str = "permanent",
           desired: str = "running", state: str = "running", reason: str | None = None,
           spec: dict[str, Any] | None = None) -> AgentRecord:
    supervisor, _, agent_id = path.rpartition("/")
    return AgentRecord(
        node_id=node, supervisor=supervisor, agent_id=agent_id, kind=kind, restart=restart,
        spec=spec if spec is not None else {"restart": restart}, desired_state=desired, state=state,
        incarnation=0, reason=reason, last_event="stopped" if state == "stopped" else "started",
        last_seq=seq, started_seq=seq, updated_at=_AT,
    )


LOST = (
    record("root", 1, kind="supervisor"),
    record("root/tasks", 2, kind="supervisor", spec={"strategy": "one_for_one"}),
    record("root/tasks/task-echo-0", 3),
    record("root/perm", 4),
    record("root/trans_run", 5, restart="transient"),
    record("root/trans_done", 6, restart="transient", state="stopped", reason="shutdown: node stopping"),
    record("root/temp", 7, restart="temporary"),
    record("root/off", 8, desired="stopped", state="stopped", reason="shutdown: stopped on request"),
    record("root/sup", 9, kind="supervisor", spec={"strategy": "one_for_one"}),
    record("root/sup/c1", 10),
    record("root/sup/c2", 11, restart="transient"),
)
"""A lost node's registry: every kind of child slot the takeover must tell apart."""

OWNED = {  # agent id -> released
    "task-echo-0": False, "perm": False, "trans_run": False, "trans_done": False, "temp": False,
    "off": True,  # stopped on purpose: its id was given up then
    "c1": False, "c2": False,
}


def sql(conn: psycopg.Connection[Any], query: str, params: Any = ()) -> list[tuple[Any, ...]]:
    cur = conn.execute(query, params)
    return cur.fetchall() if cur.description else []


def add_node(conn: psycopg.Connection[Any], node_id: str, state: str, *, run_id: str | None = None,
             agents: int = 0, max_agents: int | None = None, lease: str = "1 hour") -> None:
    sql(conn, "INSERT INTO nodes (node_id, run_id, host, pid, version, lease_until, state, agents, max_agents) "
              "VALUES (%s, %s, 'h', 1, 'test', now() + %s::interval, %s, %s, %s)",
        (node_id, run_id or f"run-{node_id}", lease, state, agents, max_agents))


def build_cluster(conn: psycopg.Connection[Any]) -> None:
    """``L`` down with its registry and ids; ``S1`` (2 agents) and ``S2`` (5 agents) up."""
    add_node(conn, L, "down", run_id=RUN_L, lease="-10 s")
    add_node(conn, "S1", "up", agents=2)
    add_node(conn, "S2", "up", agents=5)
    with conn.cursor() as cur:
        upsert_records(cur, LOST)
    for agent_id, released in OWNED.items():
        sql(conn, "INSERT INTO agent_owners (agent_id, node_id, epoch, run_id, released) VALUES (%s, %s, 3, %s, %s)",
            (agent_id, L, RUN_L, released))


def owners(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, int, str | None, bool]]:
    """agent id -> (node, epoch, run_id, released)."""
    return {a: (n, e, r, rel) for a, n, e, r, rel in
            sql(conn, "SELECT agent_id, node_id, epoch, run_id, released FROM agent_owners")}


def paths(records: Any) -> list[str]:
    return [r.path for r in records]


def registry(conn: psycopg.Connection[Any], node_id: str) -> list[str]:
    return paths(load_node(conn, node_id))


@pytest.fixture
def conn(journal_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(journal_db, autocommit=True) as opened:
        yield opened


@pytest.fixture
def cluster(conn: psycopg.Connection[Any]) -> dict[str, Unit]:
    build_cluster(conn)
    return {u.path: u for u in lost_units(conn)}


class Both:
    """Run two calls at the same moment (a barrier), each in its own thread; their results or errors."""

    def __init__(self, *calls: Callable[[], Any]) -> None:
        self.results: list[Any] = [None] * len(calls)
        barrier = threading.Barrier(len(calls), timeout=WAIT_S)

        def run(i: int, call: Callable[[], Any]) -> None:
            barrier.wait()
            try:
                self.results[i] = call()
            except BaseException as exc:  # reported by the test, not lost in the thread
                self.results[i] = exc

        threads = [threading.Thread(target=run, args=(i, c), name=f"claimer-{i}") for i, c in enumerate(calls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
            assert not t.is_alive()


# -- PgOwners ----------------------------------------------------------------------------------------


class OwnersFactory:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.made: list[PgOwners] = []

    def __call__(self, node_id: str, *, run: Any = None, conninfo: str | None = None,
                 connect_timeout_s: float = 5.0) -> PgOwners:
        made = PgOwners(conninfo or self.conninfo, node_id, run=run or SimpleNamespace(run_id=f"run-{node_id}"),
                        connect_timeout_s=connect_timeout_s)
        self.made.append(made)
        return made


@pytest.fixture
def make_owners(journal_db: str) -> Iterator[OwnersFactory]:
    factory = OwnersFactory(journal_db)
    try:
        yield factory
    finally:
        for made in factory.made:
            made.close()


def test_an_id_claimed_by_one_node_is_refused_to_another_naming_the_owner(
    conn: psycopg.Connection[Any], make_owners: OwnersFactory
) -> None:
    add_node(conn, "A", "up")
    a, b = make_owners("A"), make_owners("B")
    a.claim("x")
    assert owners(conn) == {"x": ("A", 0, "run-A", False)}
    with pytest.raises(AgentExistsError) as refused:
        b.claim("x")
    assert (refused.value.agent_id, refused.value.node) == ("x", "A")
    assert str(refused.value) == "an agent with id 'x' already exists on node 'A'; choose another id or omit it"
    assert owners(conn) == {"x": ("A", 0, "run-A", False)}, "the refused claim changed nothing"


@pytest.mark.parametrize("state", ["down", "draining"])
def test_the_refusal_says_the_owners_state_when_it_is_not_up(
    conn: psycopg.Connection[Any], make_owners: OwnersFactory, state: str
) -> None:
    add_node(conn, "A", state)
    make_owners("A").claim("x")
    with pytest.raises(AgentExistsError) as refused:
        make_owners("B").claim("x")
    assert refused.value.node == "A"
    assert f"on node 'A' ({state}: until it is taken over or released)" in str(refused.value)


def test_a_released_id_may_be_claimed_by_another_node(
    conn: psycopg.Connection[Any], make_owners: OwnersFactory
) -> None:
    a, b = make_owners("A"), make_owners("B")
    a.claim("x")
    a.release("x")
    assert owners(conn)["x"] == ("A", 0, "run-A", True)
    b.claim("x")
    assert owners(conn)["x"] == ("B", 0, "run-B", False)
    with pytest.raises(AgentExistsError):
        a.claim("x")


def test_releasing_an_id_another_node_owns_changes_nothing(
    conn: psycopg.Connection[Any], make_owners: OwnersFactory
) -> None:
    a, b = make_owners("A"), make_owners("B")
    a.claim("x")
    b.release("x")
    assert owners(conn)["x"] == ("A", 0, "run-A", False)
    b.release("never-claimed")
    assert "never-claimed" not in owners(conn)


def test_a_node_claims_its_own_id_again_under_its_current_run_epoch_untouched(
    conn: psycopg.Connection[Any], make_owners: OwnersFactory
) -> None:
    run = SimpleNamespace(run_id="run-1")
    a = make_owners("A", run=run)
    a.claim("x")
    sql(conn, "UPDATE agent_owners SET epoch = 5 WHERE agent_id = 'x'")
    a.claim("x")  # a restart of the agent
    run.run_id = "run-2"  # the node joined again as a new run (the run is read at each claim)
    a.claim("x")
    assert owners(conn)["x"] == ("A", 5, "run-2", False)


def test_claims_with_postgresql_unreachable_raise_state_unavailable(
    pg_tmp: Any, make_owners: OwnersFactory
) -> None:
    nowhere = f"host={pg_tmp} port=1 user=postgres dbname=x"  # a socket directory with no server in it
    owners_ = make_owners("A", conninfo=nowhere, connect_timeout_s=0.3)
    with pytest.raises(StateUnavailableError) as caught:
        owners_.claim("x")
    assert caught.value.agent_id == "x" and "claiming its id" in str(caught.value)
    with pytest.raises(StateUnavailableError):
        owners_.release("x")


# -- lost units ---------------------------------------------------------------------------------------


def test_lost_units_are_the_top_level_children_of_a_down_node_but_its_task_pools(
    conn: psycopg.Connection[Any], cluster: dict[str, Unit]
) -> None:
    assert sorted(cluster) == ["root/off", "root/perm", "root/sup", "root/temp", "root/trans_done",
                               "root/trans_run"]
    assert {(u.node_id, u.run_id) for u in cluster.values()} == {(L, RUN_L)}
    respawn = {path: paths(u.respawn) for path, u in cluster.items()}
    assert respawn == {
        "root/perm": ["root/perm"],
        "root/trans_run": ["root/trans_run"],
        "root/sup": ["root/sup", "root/sup/c1", "root/sup/c2"],
        "root/trans_done": [], "root/temp": [], "root/off": [],
    }
    leave = {path: [(r.path, why) for r, why in u.leave] for path, u in cluster.items() if u.leave}
    assert leave == {
        "root/trans_done": [("root/trans_done", "not restarted (restart=transient, it was shut down normally) "
                                                "after the node restarted")],
        "root/temp": [("root/temp", "not restarted (restart=temporary) after the node restarted")],
        "root/off": [("root/off", "stopped on purpose")],
    }
    assert {path: u.agents for path, u in cluster.items()} == {
        "root/perm": 1, "root/trans_run": 1, "root/sup": 2, "root/trans_done": 0, "root/temp": 0, "root/off": 0}


def test_only_nodes_marked_down_have_lost_units(conn: psycopg.Connection[Any]) -> None:
    add_node(conn, "up", "up")
    add_node(conn, "expired", "up", lease="-10 s")  # expired, but nobody declared it down yet
    add_node(conn, "draining", "draining")
    with conn.cursor() as cur:
        upsert_records(cur, [record("root", 1, node=n, kind="supervisor") for n in ("up", "expired", "draining")]
                       + [record("root/a", 2, node=n) for n in ("up", "expired", "draining")])
    assert lost_units(conn) == []
    sql(conn, "UPDATE nodes SET state = 'down' WHERE node_id = 'expired'")
    assert [(u.node_id, u.path) for u in lost_units(conn)] == [("expired", "root/a")]


def test_up_nodes_are_those_up_with_a_live_lease_least_loaded_first(conn: psycopg.Connection[Any]) -> None:
    add_node(conn, "S3", "up", agents=2, max_agents=4)
    add_node(conn, "S1", "up", agents=2)
    add_node(conn, "S2", "up", agents=0)
    add_node(conn, "old", "up", lease="-1 s")
    add_node(conn, "drain", "draining")
    add_node(conn, L, "down")
    assert up_nodes(conn) == [("S2", 0, None), ("S1", 2, None), ("S3", 2, 4)]


# -- claiming a unit -----------------------------------------------------------------------------------


def test_a_claim_moves_the_units_rows_and_ids_to_the_claimer(
    conn: psycopg.Connection[Any], cluster: dict[str, Unit]
) -> None:
    before = owners(conn)
    adoption = claim_unit(conn, cluster["root/sup"], "S1", "run-S1")
    assert isinstance(adoption, Adoption)
    assert (adoption.from_node, adoption.path, adoption.leave) == (L, "root/sup", ())
    assert paths(adoption.respawn) == ["root/sup", "root/sup/c1", "root/sup/c2"]
    assert {r.node_id for r in adoption.respawn} == {"S1"}
    assert adoption.epochs == {"c1": 4, "c2": 4}

    after = owners(conn)
    assert after["c1"] == after["c2"] == ("S1", 4, "run-S1", False)
    assert {a: o for a, o in after.items() if a not in ("c1", "c2")} == {
        a: o for a, o in before.items() if a not in ("c1", "c2")}, "no other id moved"
    assert registry(conn, "S1") == ["root/sup", "root/sup/c1", "root/sup/c2"]
    assert [p for p in registry(conn, L) if p.startswith("root/sup")] == []
    assert "root/sup" not in {u.path for u in lost_units(conn)}
    assert claim_unit(conn, cluster["root/sup"], "S2", "run-S2") is None, "claimed once, never twice"
    assert owners(conn) == after


def test_ids_that_do_not_come_back_are_released_and_their_rows_dropped(
    conn: psycopg.Connection[Any], cluster: dict[str, Unit], make_owners: OwnersFactory
) -> None:
    for path in ("root/temp", "root/trans_done", "root/off"):
        adoption = claim_unit(conn, cluster[path], "S1", "run-S1")
        assert adoption is not None
        assert (adoption.respawn, adoption.epochs) == ((), {})
        assert paths(r for r, _ in adoption.leave) == [path]
    after = owners(conn)
    assert {a: after[a] for a in ("temp", "trans_done", "off")} == {
        a: (L, 3, RUN_L, True) for a in ("temp", "trans_done", "off")}
    assert registry(conn, "S1") == []
    assert not {"root/temp", "root/trans_done", "root/off"} & set(registry(conn, L))
    make_owners("S2").claim("temp")  # free again: any node may take it
    assert owners(conn)["temp"] == ("S2", 3, "run-S2", False)


def test_claiming_every_unit_leaves_only_the_task_pools_with_the_lost_node(
    conn: psycopg.Connection[Any], cluster: dict[str, Unit]
) -> None:
    taken = {path: claim_unit(conn, unit, "S2", "run-S2") for path, unit in cluster.items()}
    assert all(a is not None for a in taken.values())
    assert lost_units(conn) == []
    assert registry(conn, L) == ["root", "root/tasks", "root/tasks/task-echo-0"]
    assert registry(conn, "S2") == ["root/perm", "root/trans_run", "root/sup", "root/sup/c1", "root/sup/c2"]
    after = owners(conn)
    assert {a: o for a, o in after.items() if o[0] == "S2"} == {
        a: ("S2", 4, "run-S2", False) for a in ("perm", "trans_run", "c1", "c2")}
    assert after["task-echo-0"] == (L, 3, RUN_L, False), "a node's task pools never move"


def test_two_survivors_claiming_the_same_unit_at_once_one_gets_it(journal_db: str) -> None:
    """Run many times: each round, a fresh lost node and two claimers released by a barrier."""
    with psycopg.connect(journal_db, autocommit=True) as setup, \
            psycopg.connect(journal_db, autocommit=True) as one, psycopg.connect(journal_db, autocommit=True) as two:
        for attempt in range(15):
            sql(setup, "DELETE FROM agents; DELETE FROM agent_owners; DELETE FROM nodes")
            build_cluster(setup)
            unit = next(u for u in lost_units(setup) if u.path == "root/sup")
            both = Both(lambda: claim_unit(one, unit, "S1", "run-S1"), lambda: claim_unit(two, unit, "S2", "run-S2"))
            errors = [r for r in both.results if isinstance(r, BaseException)]
            assert errors == [], f"attempt {attempt}: {errors!r}"
            won = [(node, r) for node, r in zip(("S1", "S2"), both.results) if r is not None]
            assert len(won) == 1, f"attempt {attempt}: {both.results!r}"
            winner, adoption = won[0]
            assert adoption.epochs == {"c1": 4, "c2": 4}
            after = owners(setup)
            assert after["c1"] == after["c2"] == (winner, 4, f"run-{winner}", False)
            assert registry(setup, winner) == ["root/sup", "root/sup/c1", "root/sup/c2"]
            loser = "S2" if winner == "S1" else "S1"
            assert registry(setup, loser) == []


def test_a_unit_another_survivor_is_claiming_is_skipped_not_waited_for(
    journal_db: str, conn: psycopg.Connection[Any], cluster: dict[str, Unit]
) -> None:
    """Another claimer holds one of the unit's rows (its ``FOR UPDATE SKIP LOCKED`` got there first)."""
    before = (owners(conn), registry(conn, L))
    with psycopg.connect(journal_db) as other:
        sql(other, "SELECT 1 FROM agents WHERE node_id = %s AND agent_id = 'c1' FOR UPDATE", (L,))
        sql(conn, "SET statement_timeout = '3s'")  # a claim that waited would fail the test, not hang it
        try:
            assert claim_unit(conn, cluster["root/sup"], "S1", "run-S1") is None
        finally:
            other.rollback()
            sql(conn, "RESET statement_timeout")
    assert (owners(conn), registry(conn, L)) == before
    assert registry(conn, "S1") == []
    assert claim_unit(conn, cluster["root/sup"], "S1", "run-S1") is not None, "free again: claimed"


def test_a_lost_node_that_came_back_under_a_new_run_keeps_its_unit(
    conn: psycopg.Connection[Any], cluster: dict[str, Unit]
) -> None:
    # L rejoined (a new run) and its recovery claimed c1 again before the survivor got to the unit.
    sql(conn, "UPDATE agent_owners SET run_id = 'new', since = now() WHERE agent_id = 'c1'")
    before = (owners(conn), registry(conn, L))
    assert claim_unit(conn, cluster["root/sup"], "S1", "run-S1") is None
    assert (owners(conn), registry(conn, L)) == before, "rolled back: c2 did not move either"
    assert registry(conn, "S1") == []


def test_an_id_owned_elsewhere_now_is_not_taken_and_its_stale_row_is_dropped(
    conn: psycopg.Connection[Any], cluster: dict[str, Unit]
) -> None:
    sql(conn, "UPDATE agent_owners SET node_id = 'S2', run_id = 'run-S2', epoch = 9 WHERE agent_id = 'perm'")
    adoption = claim_unit(conn, cluster["root/perm"], "S1", "run-S1")
    assert adoption is not None and (adoption.respawn, adoption.epochs) == ((), {})
    assert owners(conn)["perm"] == ("S2", 9, "run-S2", False)
    assert "root/perm" not in registry(conn, L) and registry(conn, "S1") == []


def test_an_id_never_owned_is_taken_at_epoch_zero(conn: psycopg.Connection[Any], cluster: dict[str, Unit]) -> None:
    sql(conn, "DELETE FROM agent_owners WHERE agent_id = 'trans_run'")
    adoption = claim_unit(conn, cluster["root/trans_run"], "S1", "run-S1")
    assert adoption is not None and adoption.epochs == {"trans_run": 0}
    assert owners(conn)["trans_run"] == ("S1", 0, "run-S1", False)
    assert registry(conn, "S1") == ["root/trans_run"]


# -- handoffs ------------------------------------------------------------------------------------------


@pytest.fixture
def giver(conn: psycopg.Connection[Any]) -> None:
    """``G`` (draining) runs ``root/sup`` (c1, c2) and ``root/solo``; ``T`` is up."""
    add_node(conn, "G", "draining")
    add_node(conn, "T", "up")
    how = "shutdown: handed over to node T"  # the giver stopped the unit: wanted still, state stopped
    with conn.cursor() as cur:
        upsert_records(cur, [record("root", 1, node="G", kind="supervisor"),
                             record("root/sup", 2, node="G", kind="supervisor", state="stopped", reason=how),
                             record("root/sup/c1", 3, node="G", state="stopped", reason=how),
                             record("root/sup/c2", 4, node="G", state="stopped", reason=how),
                             record("root/solo", 5, node="G")])
    for agent_id in ("c1", "c2", "solo"):
        sql(conn, "INSERT INTO agent_owners (agent_id, node_id, epoch, run_id) VALUES (%s, 'G', 1, 'run-G')",
            (agent_id,))


@pytest.mark.usefixtures("giver")
def test_hand_over_moves_the_rows_and_ids_and_names_the_unit(conn: psycopg.Connection[Any]) -> None:
    assert hand_over(conn, "root/sup", "G", "T") == 3
    assert registry(conn, "T") == ["root/sup", "root/sup/c1", "root/sup/c2"]
    assert registry(conn, "G") == ["root", "root/solo"]
    after = owners(conn)
    assert after["c1"] == after["c2"] == ("T", 2, None, False)
    assert after["solo"] == ("G", 1, "run-G", False)
    assert sql(conn, "SELECT path, from_node, to_node FROM handoffs") == [("root/sup", "G", "T")]
    assert (pending_from(conn, "G"), pending_from(conn, "T")) == (1, 0)


@pytest.mark.usefixtures("giver")
def test_handing_over_a_unit_that_is_not_there_does_nothing(conn: psycopg.Connection[Any]) -> None:
    before = owners(conn)
    assert hand_over(conn, "root/nothing", "G", "T") == 0
    assert hand_over(conn, "root/sup", "T", "G") == 0, "T holds no such unit"
    assert sql(conn, "SELECT count(*) FROM handoffs") == [(0,)]
    assert owners(conn) == before and registry(conn, "T") == []


@pytest.mark.usefixtures("giver")
def test_the_taker_takes_its_handoffs_once_and_no_other_node_does(conn: psycopg.Connection[Any]) -> None:
    hand_over(conn, "root/sup", "G", "T")
    hand_over(conn, "root/solo", "G", "T")
    assert pending_from(conn, "G") == 2
    assert take_handoffs(conn, "G") == [] and take_handoffs(conn, "S1") == []
    assert pending_from(conn, "G") == 2

    taken = sorted(take_handoffs(conn, "T"), key=lambda a: a.path)
    assert [(a.from_node, a.path) for a in taken] == [("G", "root/solo"), ("G", "root/sup")]
    solo, sup = taken
    assert (paths(solo.respawn), solo.epochs) == (["root/solo"], {"solo": 2})
    assert paths(sup.respawn) == ["root/sup", "root/sup/c1", "root/sup/c2"]
    assert sup.epochs == {"c1": 2, "c2": 2}
    assert {r.node_id for a in taken for r in a.respawn} == {"T"}
    assert pending_from(conn, "G") == 2, "the giver waits until the taker has started them"
    done_handoffs(conn, "T", ["root/solo", "root/sup"])
    assert pending_from(conn, "G") == 0
    assert sql(conn, "SELECT count(*) FROM handoffs") == [(0,)]
    assert take_handoffs(conn, "T") == []


@pytest.mark.usefixtures("giver")
def test_a_transient_agent_handed_over_comes_back_on_the_taker(conn: psycopg.Connection[Any]) -> None:
    """The giver stopped c2 (transient) with ``shutdown: handed over to node T``: the projection
    keeps it wanted (desired ``running``) but records state ``stopped``, and ``plan_recovery``
    reads a transient agent in state ``stopped`` as shut down normally, so ``take_handoffs`` leaves
    it: the unit comes back without it. (Takeover after ``drop_all`` has the same gap.)"""
    sql(conn, "UPDATE agents SET restart = 'transient' WHERE node_id = 'G' AND agent_id = 'c2'")
    hand_over(conn, "root/sup", "G", "T")
    (adoption,) = take_handoffs(conn, "T")
    assert paths(adoption.respawn) == ["root/sup", "root/sup/c1", "root/sup/c2"]
    assert adoption.leave == ()
