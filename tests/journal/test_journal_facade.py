"""``Journal``: choosing the database, the pool, settings, closing, asyncio, a failing disk."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mistersmith import Runtime
from mistersmith.errors import BlockingCallError, SpecError
from mistersmith.journal import (
    DATABASE_URL_ENV,
    DatabaseNotConfiguredError,
    DatabaseUnreachableError,
    Journal,
    JournalClosedError,
    JournalConfig,
    PoolConfig,
)
from mistersmith.journal import segment_writer
from mistersmith.supervisors import EventBus


def small(**overrides: Any) -> JournalConfig:
    options: dict[str, Any] = dict(pool=PoolConfig(min_size=1, max_size=3), retry_max_s=0.2)
    options.update(overrides)
    return JournalConfig(**options)


def test_pool_defaults_are_the_designs() -> None:
    pool = PoolConfig()
    assert (pool.max_size, pool.min_size, pool.connect_timeout_s, pool.idle_timeout_s, pool.max_lifetime_s) == (
        30, 5, 10.0, 300.0, 3600.0
    )
    assert JournalConfig().recover is True


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: JournalConfig(batch_max_events=0), "batch_max_events"),
        (lambda: JournalConfig(sync_timeout_s=float("nan")), "sync_timeout_s"),
        (lambda: JournalConfig(retry_min_s=1.0, retry_max_s=0.5), "retry_max_s"),
        (lambda: PoolConfig(min_size=10, max_size=5), "pool.min_size"),
        (lambda: JournalConfig(recover="yes"), "recover"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_name_the_key(build: Any, key: str) -> None:
    with pytest.raises(SpecError) as caught:
        build()
    assert caught.value.key == key


def test_no_database_url_is_a_clear_error_and_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal never starts a server (the node starts the embedded one: tests/test_node.py)."""
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    with pytest.raises(DatabaseNotConfiguredError) as caught:
        Journal.open(tmp_path / "node", small())
    assert "MISTERSMITH_DATABASE_URL" in caught.value.message and "EmbeddedPostgres" in caught.value.message
    assert not (tmp_path / "node").exists(), "nothing was started or created"


def test_database_url_from_the_environment(tmp_path: Path, journal_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, journal_db)
    with Journal.open(tmp_path / "node", small()) as journal:
        assert journal.conninfo == journal_db
        assert sorted(p.name for p in (tmp_path / "node").iterdir()) == ["journal"], "no embedded server"


def test_pool_checks_connections_on_checkout(journal: Journal) -> None:
    assert journal.tree_at().records == ()
    stats = journal.stats()["pool"]
    assert (stats["min_size"], stats["max_size"]) == (1, 4)
    with psycopg.connect(journal.conninfo, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'mistersmith-journal' AND datname = current_database()"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    assert journal.tree_at().records == (), "a dead pooled connection is replaced, not handed out"


def test_closed_journal_refuses_reads_and_drops_late_events(tmp_path: Path, journal_db: str) -> None:
    journal = Journal.open(tmp_path / "node", small(database_url=journal_db))
    journal.close()
    journal.close()  # harmless
    with pytest.raises(JournalClosedError, match="replay"):
        journal.replay()
    bus = EventBus("n-late")
    bus.add_sink(journal.sink)
    bus.emit("started", supervisor="root", agent_id="late", kind="echo")  # must not raise into the runtime
    assert journal.sink.stats()["dropped_after_close"] == 1


def test_asyncio_programs(tmp_path: Path, journal_db: str) -> None:
    async def main() -> tuple[list[str], list[str]]:
        journal = await Journal.aopen(tmp_path / "node", small(database_url=journal_db))
        try:
            with pytest.raises(BlockingCallError, match="atree_at"):
                journal.tree_at()
            async with Runtime(node_id="n-async", sinks=[journal.sink]) as rt:
                await rt.aspawn("echo", "a1")
                assert await journal.aflush(10)
                tree = await journal.atree_at()
                report = await journal.arecover(rt)
            return [r.agent_id for r in tree.agents()], report.already_running
        finally:
            await journal.aclose()

    agents, already = asyncio.run(main())
    assert agents == ["a1"] and already == ["root/a1"]


def test_a_failing_disk_delays_events_but_loses_none(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures = {"left": 3}
    real = os.fdatasync
    lock = threading.Lock()

    def flaky(fd: int) -> None:
        with lock:
            if failures["left"]:
                failures["left"] -= 1
                raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr(segment_writer.os, "fdatasync", flaky)
    bus = EventBus("n-disk")
    bus.add_sink(journal.sink)
    events = [bus.emit("started", supervisor="root", agent_id=f"a{i}", kind="echo") for i in range(5)]
    assert failures["left"] == 0
    assert journal.spool.stats()["write_errors"] == 3
    assert journal.flush(10)
    assert [e.event_id for e in journal.replay()] == [e.event_id for e in events]
    assert any("cannot write" in r.getMessage() for r in caplog.records)


def test_sync_gives_up_after_its_timeout_and_the_event_still_lands(
    tmp_path: Path, journal_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal.open(tmp_path / "node", small(database_url=journal_db, sync_timeout_s=0.05))
    try:
        broken = threading.Event()
        broken.set()
        real = os.fdatasync

        def stuck(fd: int) -> None:
            if broken.is_set():
                raise OSError(5, "Input/output error")
            real(fd)

        monkeypatch.setattr(segment_writer.os, "fdatasync", stuck)
        bus = EventBus("n-stuck")
        bus.add_sink(journal.sink)
        first = bus.emit("started", supervisor="root", agent_id="a1", kind="echo")
        assert journal.sink.stats()["sync_timeouts"] == 1, "the emitter went on after sync_timeout_s"
        broken.clear()
        second = bus.emit("started", supervisor="root", agent_id="a2", kind="echo")
        assert journal.flush(10)
        assert [e.event_id for e in journal.replay()] == [first.event_id, second.event_id]
    finally:
        journal.close()


def test_unreachable_database_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://someone:s3cret@127.0.0.1:1/nowhere?connect_timeout=2"
    with pytest.raises(DatabaseUnreachableError) as caught:
        Journal.open(tmp_path / "node", small(database_url=url))
    assert caught.value.target == "127.0.0.1:1/nowhere"
    assert "s3cret" not in caught.value.message
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    assert not (tmp_path / "node" / "journal").exists(), "nothing was opened"
