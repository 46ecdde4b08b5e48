"""AuditLog on a real PostgreSQL: recorded entries land in audit_log exactly once, oldest first, read back
with filters; the table refuses updates and deletes but the retention prune's; a restart re-ships its
spool without duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from mistersmith.audit import AuditEntry
from mistersmith.journal.audit import AuditLog
from mistersmith.journal.audit_read import read_audit


def _entry(n: int, **over: object) -> AuditEntry:
    fields: dict[str, object] = {"node_id": "n1", "actor": "ops", "door": "mcp", "action": "spawn",
                                 "target": f"a{n}", "outcome": "ok", "detail": "echo"}
    fields.update(over)
    return AuditEntry(**fields)  # type: ignore[arg-type]


def _open(tmp_path: Path, url: str, **options: object) -> AuditLog:
    return AuditLog(tmp_path / "audit", url, retention_s=None, fsync=False, **options).open()  # type: ignore[arg-type]


def test_recorded_entries_land_once_and_read_back_filtered(tmp_path: Path, journal_db: str) -> None:
    log = _open(tmp_path, journal_db)
    try:
        for n in range(5):
            log.record(_entry(n, actor="ops" if n % 2 else "ci", action="spawn" if n < 3 else "stop"))
        log.record(_entry(9, door="nats", actor="nats", action="command", detail="echo\ttab", trace_id="ab" * 16))
        assert log.flush(10.0)
    finally:
        log.close()
    entries = read_audit(journal_db)
    assert [e["target"] for e in entries] == ["a0", "a1", "a2", "a3", "a4", "a9"]
    assert entries[-1]["detail"] == "echo\ttab" and entries[-1]["trace_id"] == "ab" * 16
    assert [e["target"] for e in read_audit(journal_db, actor="ops")] == ["a1", "a3"]
    assert [e["target"] for e in read_audit(journal_db, action="stop", actor="ci")] == ["a4"]
    assert [e["target"] for e in read_audit(journal_db, door="nats")] == ["a9"]
    assert read_audit(journal_db, since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert len(read_audit(journal_db, limit=2)) == 2


def test_a_restart_reships_the_spool_without_duplicates(tmp_path: Path, journal_db: str) -> None:
    log = _open(tmp_path, journal_db)
    entries = [_entry(n) for n in range(20)]
    for e in entries:
        log.record(e)
    assert log.flush(10.0)
    log.close()
    (tmp_path / "audit" / "shipped.pos").unlink()  # as after a crash before the checkpoint moved: all again
    again = _open(tmp_path, journal_db)
    try:
        again.record(_entry(99))
        assert again.flush(10.0)
    finally:
        again.close()
    assert again.shipper.stats()["duplicates_skipped"] == 20  # shipped again, and recognised
    ids = [e["audit_id"] for e in read_audit(journal_db)]
    assert len(ids) == len(set(ids)) == 21


def test_the_table_is_append_only_but_for_the_retention_prune(tmp_path: Path, journal_db: str) -> None:
    log = _open(tmp_path, journal_db)
    try:
        log.record(_entry(1, at=datetime.now(UTC) - timedelta(days=100)))
        log.record(_entry(2))
        assert log.flush(10.0)
    finally:
        log.close()
    with psycopg.connect(journal_db, autocommit=True) as conn:
        for statement in ("UPDATE audit_log SET outcome = 'forged'", "DELETE FROM audit_log",
                          "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    pruning = AuditLog(tmp_path / "audit", journal_db, retention_s=90 * 86400.0)
    assert pruning.prune() == 1
    assert [e["target"] for e in read_audit(journal_db)] == ["a2"]
