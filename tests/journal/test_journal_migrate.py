"""The migrations runner against a real PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from mistersmith.errors import MisterSmithError
from mistersmith.journal.errors import MigrationChecksumError, MigrationError
from mistersmith.journal.migrate import load_migrations, migrate

LOG_TABLE = "CREATE TABLE IF NOT EXISTS applied_log (n serial PRIMARY KEY, file text NOT NULL);\n"


def write(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text(LOG_TABLE + f"INSERT INTO applied_log (file) VALUES ('{name}');\n" + body)


def log(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [r[0] for r in conn.execute("SELECT file FROM applied_log ORDER BY n")]


def versions(conninfo: str) -> list[tuple[int, str]]:
    with psycopg.connect(conninfo) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT version, name FROM schema_versions ORDER BY version")]


def test_packaged_migrations_apply_once_and_record_versions(fresh_db: str) -> None:
    shipped = load_migrations()
    assert [m.filename for m in shipped][0] == "001_supervision_journal.sql"
    applied = migrate(fresh_db)
    assert [m.version for m in applied] == [m.version for m in shipped]
    assert migrate(fresh_db) == []
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute("SELECT version, name, checksum, applied_at FROM schema_versions").fetchall()
        assert [(r[0], r[1], r[2]) for r in rows] == [(m.version, m.name, m.checksum) for m in shipped]
        assert all(r[3] is not None for r in rows)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"supervision_events", "agents", "schema_versions"} <= tables


def test_files_apply_in_version_order_with_function_bodies_whole(fresh_db: str, tmp_path: Path) -> None:
    write(tmp_path, "010_third.sql", "SELECT 1;")
    write(tmp_path, "001_first.sql", """
        CREATE FUNCTION twice(x int) RETURNS int LANGUAGE plpgsql AS $$
        BEGIN
            x := x * 2;  -- a ';' inside a body must not split the file
            RETURN x;
        END;
        $$;""")
    write(tmp_path, "002_second.sql", "SELECT twice(21);")
    (tmp_path / "README.txt").write_text("not a migration")
    applied = migrate(fresh_db, tmp_path)
    assert [m.filename for m in applied] == ["001_first.sql", "002_second.sql", "010_third.sql"]
    assert log(fresh_db) == ["001_first.sql", "002_second.sql", "010_third.sql"]
    assert versions(fresh_db) == [(1, "first"), (2, "second"), (10, "third")]
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT twice(4)").fetchone() == (8,)


def test_changed_applied_file_is_refused_naming_it(fresh_db: str, tmp_path: Path) -> None:
    write(tmp_path, "001_first.sql", "SELECT 1;")
    migrate(fresh_db, tmp_path)
    write(tmp_path, "001_first.sql", "SELECT 2;")
    write(tmp_path, "002_second.sql", "SELECT 3;")
    with pytest.raises(MigrationChecksumError) as caught:
        migrate(fresh_db, tmp_path)
    assert caught.value.filename == "001_first.sql"
    assert "001_first.sql" in str(caught.value)
    assert isinstance(caught.value, MisterSmithError)
    assert versions(fresh_db) == [(1, "first")], "nothing runs after a checksum refusal"


def test_failing_migration_rolls_back_and_names_file_and_error(fresh_db: str, tmp_path: Path) -> None:
    write(tmp_path, "001_good.sql", "CREATE TABLE kept (a int);")
    write(tmp_path, "002_bad.sql", "CREATE TABLE half_done (a int);\nSELECT no_such_column FROM kept;")
    write(tmp_path, "003_after.sql", "CREATE TABLE never (a int);")
    with pytest.raises(MigrationError) as caught:
        migrate(fresh_db, tmp_path)
    error = caught.value
    assert error.filename == "002_bad.sql"
    assert "no_such_column" in error.message and "002_bad.sql" in error.message
    assert isinstance(error.__cause__, psycopg.errors.UndefinedColumn)
    assert versions(fresh_db) == [(1, "good")]
    assert log(fresh_db) == ["001_good.sql"]
    with psycopg.connect(fresh_db) as conn:
        present = conn.execute(
            "SELECT to_regclass('kept') IS NOT NULL, to_regclass('half_done') IS NULL, to_regclass('never') IS NULL"
        ).fetchone()
    assert present == (True, True, True)


@pytest.mark.parametrize("name", ["1_short.sql", "001-dash.sql", "001_Upper.sql"])
def test_badly_named_sql_file_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_description.sql") as caught:
        load_migrations(tmp_path)
    assert caught.value.filename == name


def test_duplicate_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="version 001 is also used"):
        load_migrations(tmp_path)


def test_concurrent_migrators_take_turns(fresh_db: str, tmp_path: Path) -> None:
    # Each file sleeps a little inside its transaction so that the two
    # migrators overlap; without the advisory lock they would both create
    # applied_log and both apply every file.
    for i in range(1, 5):
        write(tmp_path, f"00{i}_step{i}.sql", f"CREATE TABLE step{i} (a int);\nSELECT pg_sleep(0.05);")
    start = threading.Barrier(2)
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with psycopg.connect(fresh_db, autocommit=True) as conn:
                start.wait(timeout=10)
                results[i] = [m.filename for m in migrate(conn, tmp_path)]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"migrator-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert sorted(results[0] + results[1]) == [f"00{i}_step{i}.sql" for i in range(1, 5)]
    assert log(fresh_db) == [f"00{i}_step{i}.sql" for i in range(1, 5)]


def test_journal_is_append_only(journal_db: str) -> None:
    with psycopg.connect(journal_db) as conn:
        conn.execute(
            "INSERT INTO supervision_events (event_id, occurred_at, node_id, node_seq, supervisor, event_type)"
            " VALUES (gen_random_uuid(), now(), 'n1', 1, 'root', 'started')"
        )
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("UPDATE supervision_events SET reason = 'edited'")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM supervision_events")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM supervision_events").fetchone() == (1,)
