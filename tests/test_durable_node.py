"""Durable agents on a whole node and on PostgreSQL: the promises checked against real servers.

- **kill -9 mid-burst.** ``mistersmith serve`` runs as a child process on a nats-server and a
  database the test owns (so they outlive it). 20 durable ``Ledger`` agents get a burst of 1,000
  ``apply`` requests, 200 in flight at a time, and the node is killed with SIGKILL from the reply
  handler that counts the 300th ok reply. Every reply is recorded (Jepsen-style), the node is
  restarted on the same data dir and database, and the invariants are checked over the whole
  history: every acknowledged op is in its agent's recovered state, no op is in a state twice,
  and no recorded effect ran twice (each recorded key has exactly one line in the effects file).
- **Two Runtimes, one agent, one database.** The second activation fences the first: the first's
  next write is refused (``fenced``) and its agent is gone; the second carries on from everything
  committed.
- **PostgreSQL stopped under a durable agent.** A command that must commit fails ``unavailable``
  after ``state_timeout_s``, the agent is not restarted, and what failed is never applied.

Nothing sleeps to synchronise. The end of the burst's history is a barrier: the node's NATS
subscriptions are gone (a probe gets no-responders), so every reply it sent was already queued
to us, and a sentinel published after that arrives after all of them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from _durable_kinds import Ledger
from _helpers import end_incarnation
from cli._cli_helpers import Served
from mistersmith import MisterSmithError, Runtime, SupervisorSpec
from mistersmith.bridge import subjects
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.embedded.postgres import EmbeddedPostgres
from mistersmith.envelope import decode_reply, encode_json
from mistersmith.journal import PgStateStore
from mistersmith.journal.migrate import migrate

HERE = Path(__file__).resolve().parent
WAIT_S = 30.0
"""Upper bound of every wait here; a healthy run never gets near it."""

AGENTS = 20
OPS = 1000
WINDOW = 200  # requests in flight at once
KILL_AFTER = 300  # ok replies before the SIGKILL
ROOT = SupervisorSpec("root", intensity=1000, backoff=None)


def agent_ids() -> list[str]:
    return [f"ledger-{i:02d}" for i in range(AGENTS)]


async def request(nc: NATS, subject: str, payload: dict[str, Any]) -> Any:
    """One request; the reply's result (its error raised as ``RemoteError``)."""
    msg = await nc.request(subject, encode_json(payload), timeout=WAIT_S)
    return decode_reply(msg.data).unwrap()


# -- 1. kill -9 mid-burst ---------------------------------------------------------------------


@dataclass
class Burst:
    """Every request sent and every reply got, by request number."""

    ops: list[tuple[str, str]]  # request n: (agent_id, op_id)
    sent: set[int] = field(default_factory=set)
    replies: dict[int, tuple[str, Any]] = field(default_factory=dict)  # n: ("ok", result) | (code, message)
    ok_count: int = 0

    def acked(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {a: set() for a in agent_ids()}
        for n, (outcome, _) in self.replies.items():
            if outcome == "ok":
                agent_id, op_id = self.ops[n]
                out[agent_id].add(op_id)
        return out

    def outcomes(self) -> Counter[str]:
        counts = Counter(outcome for outcome, _ in self.replies.values())
        counts["sent, no reply (in flight at the kill)"] = len(self.sent - set(self.replies))
        counts["never sent"] = len(self.ops) - len(self.sent)
        return counts


async def run_burst(nats_url: str, node: Served, effects: Path) -> Burst:
    nc = await nats.connect(nats_url)
    try:
        for agent_id in agent_ids():
            await request(nc, subjects.control("spawn"), {
                "kind": "ledger", "agent_id": agent_id, "durable": True, "config": {"effects_path": str(effects)},
            })
        burst = Burst([(agent_ids()[n % AGENTS], f"op-{n:04d}") for n in range(OPS)])
        inbox = nc.new_inbox()
        sentinel = f"{inbox}.end"
        replies = await nc.subscribe(f"{inbox}.*")
        window = asyncio.Semaphore(WINDOW)
        killed = asyncio.Event()

        async def consume() -> None:
            try:
                await record_replies()
            finally:
                for _ in range(WINDOW):
                    window.release()  # the publisher wakes, sees the kill (or this task's end) and stops

        async def record_replies() -> None:
            # The only reader of ``replies``: it records each one before it awaits again.
            while True:
                msg: Msg = await replies.next_msg(timeout=WAIT_S)
                if msg.subject == sentinel:
                    return
                n = int(msg.subject.rpartition(".")[2])
                if msg.headers and msg.headers.get("Status") == "503":
                    burst.replies[n] = ("no_responders", None)
                else:
                    reply = decode_reply(msg.data)
                    if reply.ok:
                        assert reply.result["op_id"] == burst.ops[n][1]
                        burst.replies[n] = ("ok", reply.result)
                        burst.ok_count += 1
                        if burst.ok_count == KILL_AFTER:
                            os.kill(node.pid, signal.SIGKILL)
                            killed.set()
                            for _ in range(WINDOW):
                                window.release()  # the publisher wakes, sees the kill and stops
                    else:
                        assert reply.error is not None
                        burst.replies[n] = (reply.error.code, reply.error.message)
                window.release()

        consumer = asyncio.create_task(consume())
        for n, (agent_id, op_id) in enumerate(burst.ops):
            await window.acquire()
            if killed.is_set() or consumer.done():
                break
            burst.sent.add(n)
            await nc.publish(subjects.command(agent_id, "apply"), encode_json({"op_id": op_id}), reply=f"{inbox}.{n}")
        if consumer.done():
            consumer.result()  # raises what ended it
        assert killed.is_set(), "a window of requests is in flight until the kill"
        assert node.proc is not None
        assert await asyncio.to_thread(node.proc.wait, WAIT_S) == -signal.SIGKILL
        await until_nobody_answers(nc, subjects.command(agent_ids()[0], "get"))
        await nc.flush()
        await nc.publish(sentinel, b"")  # after every reply the dead node had sent
        await asyncio.wait_for(consumer, WAIT_S)
        await replies.unsubscribe()
        return burst
    finally:
        await nc.close()


async def until_nobody_answers(nc: NATS, subject: str) -> None:
    """Until the server has dropped the dead node's subscriptions (a probe gets no-responders)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            await nc.request(subject, b"{}", timeout=0.5)
        except NoRespondersError:
            return
        except NatsTimeoutError:
            continue  # sent to the dead connection before the server noticed: ask again
    raise AssertionError(f"{subject} still had a responder {WAIT_S} s after the node was killed")


async def read_back(nats_url: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each agent's committed ops (``system.control.state``) and what the live agent answers (``get``)."""
    nc = await nats.connect(nats_url)
    try:
        committed, live = {}, {}
        for agent_id in agent_ids():
            live[agent_id] = (await request(nc, subjects.command(agent_id, "get"), {}))["ops"]
            got = await request(nc, subjects.control("state"), {"agent_id": agent_id})
            committed[agent_id] = got["state"].get("ops", [])
        return committed, live
    finally:
        await nc.close()


def recorded_effects(conninfo: str) -> set[tuple[str, str]]:
    with psycopg.connect(conninfo) as conn:
        return {(str(a), str(k)) for a, k in conn.execute("SELECT agent_id, key FROM agent_effects")}


def test_kill_9_mid_burst_loses_no_acknowledged_op_and_runs_no_recorded_effect_twice(
    node_dir: Path, own_nats: EmbeddedNats, journal_db: str, tmp_path: Path,
) -> None:
    effects = tmp_path / "effects.log"
    args = ("--nats-url", own_nats.url, "--database-url", journal_db, "--node-id", "n1",
            "--kind", "ledger=_durable_kinds:Ledger", "--no-entry-points")
    first = Served(node_dir / "node", *args, cwd=HERE).start()
    try:
        burst = asyncio.run(run_burst(own_nats.url, first, effects))
    finally:
        assert first.proc is not None
        first.proc.kill()  # a no-op on success: it is dead already
        first.proc.wait(WAIT_S)

    with Served(node_dir / "node", *args, cwd=HERE):  # ready: recovery has run
        committed, live = asyncio.run(read_back(own_nats.url))
    effect_keys = recorded_effects(journal_db)
    lines = Counter(effects.read_text().splitlines())

    acked = burst.acked()
    sent_ops = {burst.ops[n] for n in burst.sent}
    assert KILL_AFTER <= burst.ok_count < OPS, "the kill came mid-burst"
    assert len(burst.sent - set(burst.replies)) > 0, "requests were in flight at the kill"
    unacked_committed = 0
    for agent_id in agent_ids():
        ops = committed[agent_id]
        assert live[agent_id] == ops, f"{agent_id} runs from its last commit"
        assert len(ops) == len(set(ops)), f"an op applied twice in {agent_id}: {ops}"
        assert acked[agent_id] <= set(ops), f"acknowledged ops lost by {agent_id}: {acked[agent_id] - set(ops)}"
        assert {(agent_id, op) for op in ops} <= sent_ops, "only ops sent to this agent"
        keys = {k for a, k in effect_keys if a == agent_id}
        assert set(ops) <= keys, "an op's effect is recorded before the op is committed"
        unacked_committed += len(set(ops) - acked[agent_id])
    for agent_id, key in effect_keys:
        assert lines[f"{agent_id} {key}"] == 1, f"recorded effect {agent_id}/{key} ran {lines[f'{agent_id} {key}']} times"
    assert all(count == 1 for count in lines.values()), "no effect ran twice, recorded or not"
    window_runs = len(set(lines) - {f"{a} {k}" for a, k in effect_keys})

    outcomes = burst.outcomes()
    lost = len(burst.sent) - outcomes["ok"] - unacked_committed
    print(f"\nkill -9 mid-burst: {dict(outcomes)}; committed but unacknowledged: {unacked_committed}; "
          f"sent, unacknowledged and not committed: {lost}; effects recorded: {len(effect_keys)}, "
          f"ran without a record (the window): {window_runs}")


# -- 2. two Runtimes, one agent, one database ----------------------------------------------------------


@pytest.fixture
def two_stores(journal_db: str) -> Iterator[tuple[PgStateStore, PgStateStore]]:
    a, b = PgStateStore(journal_db, connect_timeout_s=2.0), PgStateStore(journal_db, connect_timeout_s=2.0)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def note(rt: Runtime, agent_id: str, tag: str) -> list[str]:
    return list(rt.ask(agent_id, "note", {"tag": tag}, timeout=WAIT_S))


def test_the_second_runtime_takes_over_and_the_first_is_fenced_on_its_next_write(
    two_stores: tuple[PgStateStore, PgStateStore], journal_db: str, tmp_path: Path,
) -> None:
    config = {"effects_path": str(tmp_path / "effects.log")}
    a = Runtime(node_id="na", root=ROOT, kinds={"ledger": Ledger}, state_store=two_stores[0])
    try:
        b = Runtime(node_id="nb", root=ROOT, kinds={"ledger": Ledger}, state_store=two_stores[1])
        try:
            a.spawn("ledger", "x", config=config)
            assert note(a, "x", "a1") == ["a1"]
            assert note(a, "x", "a2") == ["a1", "a2"]
            assert a.get_state("x")["epoch"] == 1

            b.spawn("ledger", "x", config=config)  # takes epoch 2
            assert note(b, "x", "b1") == ["a1", "a2", "b1"]

            errors: list[MisterSmithError] = []

            def write_in_a() -> None:
                try:
                    note(a, "x", "a3")
                except MisterSmithError as exc:
                    errors.append(exc)

            with a.subscribe(agent_id="x", event_types=["fenced"]) as sub:
                end_incarnation(a, "x", write_in_a)  # returns once A's supervisor handled the exit
                fenced = sub.get(WAIT_S)
            assert [e.code for e in errors] == ["fenced"]
            assert fenced.data["epoch"] == 1
            assert "x" not in [info["id"] for info in a.list_agents()]
            assert a.history(agent_id="x", event_types=["restarted"]) == []

            assert note(b, "x", "b2") == ["a1", "a2", "b1", "b2"]  # A's refused write changed nothing
            got = b.get_state("x")
            assert (got["state"], got["epoch"], got["node_id"]) == ({"notes": ["a1", "a2", "b1", "b2"]}, 2, "nb")
            assert b.history(agent_id="x", event_types=["fenced"]) == []
            with psycopg.connect(journal_db) as conn:
                assert conn.execute("SELECT node_id, epoch FROM agent_owners WHERE agent_id = 'x'").fetchall() == [
                    ("nb", 2)]
        finally:
            b.close()
    finally:
        a.close()


# -- 3. PostgreSQL outage during commits -------------------------------------------------------------


def test_while_postgresql_is_down_commands_fail_unavailable_the_agent_lives_and_nothing_failed_lands(
    own_pg: EmbeddedPostgres, tmp_path: Path,
) -> None:
    conninfo = own_pg.conninfo()
    migrate(conninfo)
    store = PgStateStore(conninfo, connect_timeout_s=1.0)
    try:
        rt = Runtime(node_id="n1", root=ROOT, kinds={"ledger": Ledger}, state_store=store)
        try:
            rt.spawn("ledger", "x", config={"effects_path": str(tmp_path / "effects.log")}, state_timeout_s=1.0)
            assert note(rt, "x", "before-1") == ["before-1"]
            assert note(rt, "x", "before-2") == ["before-1", "before-2"]
            restarts = rt.get_agent("x")["restart_count"]

            own_pg.stop()
            for tag in ("during-1", "during-2"):
                started = time.monotonic()
                with pytest.raises(MisterSmithError) as caught:
                    note(rt, "x", tag)
                took = time.monotonic() - started
                assert caught.value.code == "unavailable", caught.value
                assert 0.9 <= took < 3.0, f"failed after {took:.2f} s, not about state_timeout_s (1 s)"
                # The agent went back to its last commit, in the same incarnation (reads need no store).
                assert rt.ask("x", "get_notes", timeout=WAIT_S) == ["before-1", "before-2"]
            assert rt.history(agent_id="x", event_types=["restarted"]) == []
            assert rt.get_agent("x")["restart_count"] == restarts

            own_pg.start()
            assert store.wait_for(lambda s: s["connected"], WAIT_S), store.stats()
            assert note(rt, "x", "after") == ["before-1", "before-2", "after"]
            got = rt.get_state("x")
            assert got["state"] == {"notes": ["before-1", "before-2", "after"]}
            assert (got["version"], got["epoch"]) == (3, 1)
            assert rt.history(agent_id="x", event_types=["restarted"]) == []
        finally:
            rt.close()
    finally:
        store.close()
