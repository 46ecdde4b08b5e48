"""Fault 3 (issue 15): PostgreSQL stopped under load, then started again.

The scenario is ``mistersmith.bench._fault_pg`` (the ``faults`` bench keeps it down 30 s; here a
few seconds). The PostgreSQL is the test's own (``own_pg``), never the session's shared server.
"""

from __future__ import annotations

from pathlib import Path

from mistersmith.bench._fault_pg import PgSizes, stop_postgres_mid_load
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.embedded.postgres import EmbeddedPostgres

SIZES = PgSizes(agents=5, down_s=3.0, spawns=1)


def test_no_event_is_lost_and_each_is_written_once_across_an_outage(
    node_dir: Path, own_nats: EmbeddedNats, own_pg: EmbeddedPostgres,
) -> None:
    result = stop_postgres_mid_load(node_dir, own_pg, own_nats.url, SIZES)
    print(f"\nPostgreSQL stopped under load: {result}")
    assert result.problems() == []
    assert result.events_during_outage > 0
    # a spawn claims its id in PostgreSQL: refused while it is away, with an error that says so
    assert result.spawned_during_outage + len(result.spawn_refusals) == SIZES.spawns
    assert all("unavailable" in r and "PostgreSQL unreachable" in r for r in result.spawn_refusals)
    assert result.journaled >= result.events_seen
