"""Fault 1 (issue 15): ``kill -9`` of the node in the middle of acknowledged NATS commands.

The scenario is ``mistersmith.bench._fault_kill`` (the ``faults`` bench runs it at the issue's
sizes, 10,000 commands to 50 agents); here it runs small. Real nats-server, real PostgreSQL, a
real ``mistersmith serve`` child killed with SIGKILL and started again on its data directory.
"""

from __future__ import annotations

from pathlib import Path

from mistersmith.bench._fault_kill import KillSizes, kill_node_mid_load
from mistersmith.embedded.nats import EmbeddedNats

SIZES = KillSizes(commands=600, agents=10, fail_every=10)


def test_kill_9_mid_load_loses_no_published_event_and_no_acked_commit_and_every_agent_is_back(
    node_dir: Path, own_nats: EmbeddedNats, journal_db: str,
) -> None:
    result = kill_node_mid_load(node_dir, own_nats.url, journal_db, SIZES)
    print(f"\nkill -9 mid load: {result}")
    assert result.problems() == []
    assert result.acked >= SIZES.commands
    assert result.events_seen > SIZES.commands // SIZES.fail_every  # failed + restarted per fail, and more
    assert result.recovered == SIZES.agents
    assert result.outcomes["agent_failed"] > 0
