"""The PostgreSQL edge (psycopg 3 + psycopg_pool): migrations, event writer, replay, recovery.

``Journal.open(data_dir, JournalConfig(database_url=...))`` gives a node its
journal (the journal starts no server: with no URL set, the node starts a
PostgreSQL of its own and passes its conninfo): pass ``journal.sink`` to
``Runtime(sinks=[...])``, call ``journal.recover(runtime)`` to bring back what
the node ran before, and read history with ``journal.replay(...)`` and
``journal.tree_at(...)``.
"""

from mistersmith.history import AgentRecord, Projection, TreeSnapshot  # re-exported: the journal's API names them
from mistersmith.journal.config import DATABASE_URL_ENV, JournalConfig, PoolConfig
from mistersmith.journal.discoveries import PgDiscoveryStore
from mistersmith.journal.errors import (
    DatabaseNotConfiguredError,
    DatabaseUnreachableError,
    JournalClosedError,
    JournalError,
    MigrationChecksumError,
    MigrationError,
    SpoolError,
    SpoolUnwritableError,
)
from mistersmith.journal.journal import Journal
from mistersmith.journal.migrate import Migration, load_migrations, migrate
from mistersmith.journal.recovery import RecoveryPlan, RecoveryReport, plan_recovery, recover
from mistersmith.journal.replay import Replay, ReplayFilter
from mistersmith.journal.sink import JournalSink
from mistersmith.journal.states import PgStateStore
from mistersmith.journal.tasks import PgTaskStore

__all__ = [
    "DATABASE_URL_ENV",
    "AgentRecord",
    "DatabaseNotConfiguredError",
    "DatabaseUnreachableError",
    "Journal",
    "JournalClosedError",
    "JournalConfig",
    "JournalError",
    "JournalSink",
    "Migration",
    "MigrationChecksumError",
    "MigrationError",
    "PgDiscoveryStore",
    "PgStateStore",
    "PgTaskStore",
    "PoolConfig",
    "Projection",
    "RecoveryPlan",
    "RecoveryReport",
    "Replay",
    "ReplayFilter",
    "SpoolError",
    "SpoolUnwritableError",
    "TreeSnapshot",
    "load_migrations",
    "migrate",
    "plan_recovery",
    "recover",
]
