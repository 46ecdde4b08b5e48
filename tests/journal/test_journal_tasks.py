"""PgTaskStore: claims and settling on real PostgreSQL.

Only the attempt holding a task's claim settles it, and a done or dead task
never changes again, whoever writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mistersmith.journal import PoolConfig
from mistersmith.journal.pool import open_pool
from mistersmith.journal.tasks import PgTaskStore


def _run(journal_db: str, scenario: Any) -> Any:
    async def main() -> Any:
        pool = await open_pool(journal_db, PoolConfig(min_size=1, max_size=2))
        try:
            return await scenario(PgTaskStore(pool))
        finally:
            await pool.close()

    return asyncio.run(main())


def test_only_the_claim_holder_settles_and_done_is_final(journal_db: str) -> None:
    async def scenario(store: PgTaskStore) -> None:
        await store.record("t1", {"status": "queued", "kind": "k", "priority": "normal", "payload": {"n": 1}})
        assert await store.claim("t1", "token-1", {"status": "running", "kind": "k", "agent_id": "w1",
                                                  "node": "node-a", "attempt": 1})
        running = await store.get("t1")
        assert running is not None and running["status"] == "running" and running["node"] == "node-a"
        assert "claim" not in running and "claim_token" not in running  # never shown

        assert not await store.settle("t1", "guessed", {"status": "done", "result": {"forged": True}})
        assert await store.get("t1") == running
        assert await store.settle("t1", "token-1", {"status": "done", "result": {"n": 1}, "attempt": 1})
        done = await store.get("t1")
        assert done is not None and (done["status"], done["result"], done["kind"]) == ("done", {"n": 1}, "k")
        await store.record("t1", {"status": "dead", "error": {"code": "x", "message": "too late"}})
        await store.record("t1", {"status": "queued", "kind": "other"})
        assert await store.get("t1") == done

    _run(journal_db, scenario)


def test_a_redelivery_takes_the_claim_over(journal_db: str) -> None:
    async def scenario(store: PgTaskStore) -> None:
        first = {"status": "running", "kind": "k", "agent_id": "w1", "node": "node-a", "attempt": 1}
        second = {"status": "running", "kind": "k", "agent_id": "w2", "node": "node-b", "attempt": 2}
        assert await store.claim("t2", "token-1", first)  # no queued row yet: a task published straight to JetStream
        assert await store.claim("t2", "token-2", second)  # ack_wait passed: JetStream gave it to node b
        assert not await store.settle("t2", "token-1", {"status": "done", "result": {"by": "a"}})  # too late
        assert await store.settle("t2", "token-2", {"status": "done", "result": {"by": "b"}, "agent_id": "w2",
                                                    "attempt": 2})
        done = await store.get("t2")
        assert done is not None
        assert (done["status"], done["result"], done["node"], done["attempts"]) == ("done", {"by": "b"}, "node-b", 2)
        # Final: no claim, settle or record changes it, and a claim says so (the worker acks and skips).
        assert not await store.claim("t2", "token-3", first)
        assert not await store.settle("t2", "token-2", {"status": "dead", "error": {"code": "x", "message": "m"}})
        await store.record("t2", {"status": "dead", "error": {"code": "x", "message": "m"}, "node": "node-x"})
        assert await store.get("t2") == done

    _run(journal_db, scenario)


def test_retrying_under_the_claim_then_a_new_claim(journal_db: str) -> None:
    async def scenario(store: PgTaskStore) -> None:
        assert await store.claim("t3", "token-1", {"status": "running", "kind": "k", "agent_id": "w1",
                                                  "node": "node-a", "attempt": 1})
        error = {"code": "agent_failed", "message": "boom"}
        assert await store.settle("t3", "token-1", {"status": "retrying", "attempt": 1, "error": error})
        retrying = await store.get("t3")
        assert retrying is not None and retrying["status"] == "retrying" and retrying["error"] == error
        assert await store.claim("t3", "token-2", {"status": "running", "kind": "k", "agent_id": "w1",
                                                  "node": "node-a", "attempt": 2})
        assert not await store.settle("t3", "token-1", {"status": "dead", "error": error})
        assert await store.settle("t3", "token-2", {"status": "done", "result": [1, 2], "attempt": 2})
        final = await store.get("t3")
        assert final is not None and (final["status"], final["result"], final["attempts"]) == ("done", [1, 2], 2)

    _run(journal_db, scenario)
