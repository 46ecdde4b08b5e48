"""Supervision history from the journal: replay events, and the tree as it was at a past moment.

Run 1 starts a node (embedded PostgreSQL in a temporary data directory),
builds a small tree (a ``one_for_all`` supervisor with two workers, plus a
lone agent), crashes a worker (its supervisor restarts both), stops the lone
agent, and stops the node. Run 2 starts the node again on the same data
directory: recovery brings the workers back, and the whole history of both
runs replays from PostgreSQL. Then ``tree_at`` rebuilds the tree as it was
just before the crash, just after it, and at a moment given as a time.

Run it: ``python examples/replay_history.py``. The same from a terminal:
``mistersmith replay``, ``mistersmith replay --agent w1``,
``mistersmith replay --at <seq or time>``.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mistersmith.config import load_settings
from mistersmith.errors import AgentFailedError
from mistersmith.history import TreeSnapshot
from mistersmith.node import Node
from mistersmith.supervisors import SupervisorSpec


def draw(tree: dict[str, Any], depth: int = 0) -> None:
    extra = f" ({tree['strategy']})" if tree.get("strategy") else ""
    print(f"    {'  ' * depth}{tree['id']}: {tree['kind']}{extra} {tree['state']}, restarts={tree['restart_count']}")
    for child in tree.get("children", ()):
        draw(child, depth + 1)


def show(title: str, snapshot: TreeSnapshot, node_id: str) -> None:
    print(f"  {title} (as of seq {snapshot.as_of_seq}):")
    draw(snapshot.tree(node_id))


def run_one(data_dir: Path) -> tuple[int, int, datetime]:
    with Node(load_settings({"node.data_dir": str(data_dir), "http.port": 0})) as node:
        assert node.runtime is not None and node.journal is not None
        rt = node.runtime
        rt.add_supervisor(SupervisorSpec("workers", strategy="one_for_all"))
        rt.spawn("echo", "w1", supervisor="root/workers")
        rt.spawn("echo", "w2", supervisor="root/workers")
        rt.spawn("echo", "lone")
        node.journal.flush(10)
        before_crash = node.journal.tree_at().as_of_seq
        with rt.subscribe(agent_id="w2", event_types=["restarted"]) as restarts:
            try:
                rt.ask("w1", "fail", {"message": "disk full"}, timeout=5)
            except AgentFailedError as exc:
                print(f"run 1: w1 crashed ({exc.reason}); one_for_all restarts w1 and w2")
            restarts.get(10)  # w2 came back too
        rt.stop("lone")
        node.journal.flush(10)
        after_crash = node.journal.tree_at().as_of_seq
        moment = datetime.now(UTC)
        print(f"run 1: the journal holds {node.journal.count()} events; node {node.node_id} stops")
    return before_crash, after_crash, moment


def run_two(data_dir: Path, before_crash: int, after_crash: int, moment: datetime) -> None:
    with Node(load_settings({"node.data_dir": str(data_dir), "http.port": 0})) as node:
        assert node.runtime is not None and node.journal is not None
        journal = node.journal
        journal.flush(10)
        print(f"run 2: node {node.node_id} is back; recovered:",
              sorted(a["id"] for a in node.runtime.list_agents()))

        print("\nevery event, both runs:")
        for event in journal.replay():
            who = event.agent_id if event.agent_id is not None else f"[{event.supervisor or 'root'}]"
            print(f"  #{event.seq:<3} {event.event_type:<18} {who:<8} {event.reason or ''}")

        print("\nw1's failures and restarts only:")
        for event in journal.replay(agent_id="w1", event_types=["failed", "restarted"]):
            print(f"  #{event.seq:<3} {event.occurred_at:%H:%M:%S.%f} {event.event_type} {event.reason or ''}")

        print("\nthe tree at past moments:")
        show("just before the crash", journal.tree_at(before_crash), node.node_id)
        show("after the crash and the stop of 'lone'", journal.tree_at(after_crash), node.node_id)
        show(f"at {moment:%H:%M:%S.%f} (a time, not a seq)", journal.tree_at(moment), node.node_id)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o711)  # under root the embedded PostgreSQL runs as pgserver, which must pass through
        data_dir = Path(tmp) / "node"
        before_crash, after_crash, moment = run_one(data_dir)
        run_two(data_dir, before_crash, after_crash, moment)


if __name__ == "__main__":
    main()
