"""Fault 2 (issue 15): the nats-server killed (SIGKILL) and started again under load.

The scenario is ``mistersmith.bench._fault_nats`` (the ``faults`` bench runs it longer); here it
runs short. Real nats-server (the test's own, restarted on its port and store), real PostgreSQL,
a real ``mistersmith serve`` child.
"""

from __future__ import annotations

from pathlib import Path

from mistersmith.bench._fault_nats import RECONNECT_TARGET_S, NatsSizes, kill_nats_mid_load
from mistersmith.embedded.nats import EmbeddedNats

SIZES = NatsSizes(agents=5, before_s=1.0, down_s=2.0, after_s=1.0)


def test_the_node_reconnects_within_5_s_of_the_servers_return_and_no_acked_task_is_lost(
    node_dir: Path, own_nats: EmbeddedNats, journal_db: str,
) -> None:
    result = kill_nats_mid_load(node_dir, own_nats, journal_db, SIZES)
    print(f"\nnats-server kill -9 under load: {result}")
    assert result.problems() == []
    assert result.reconnect_s <= RECONNECT_TARGET_S
    assert result.tasks_acked > 20 and result.tasks_done >= result.tasks_acked
    assert result.node_reconnects >= 1
