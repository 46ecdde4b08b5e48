"""``takeover.deal`` and ``unit_of``: how lost units are spread over the up nodes. Pure, no I/O."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mistersmith.history import AgentRecord
from mistersmith.journal.takeover import Unit, deal, unit_of

_AT = datetime(2024, 1, 1, tzinfo=timezone.utc)


def record(path: str, *, kind: str = "echo", node: str = "lost") -> AgentRecord:
    supervisor, _, agent_id = path.rpartition("/")
    return AgentRecord(
        node_id=node, supervisor=supervisor, agent_id=agent_id, kind=kind, restart="permanent", spec={},
        desired_state="running", state="running", incarnation=0, reason=None, last_event="started",
        last_seq=1, started_seq=1, updated_at=_AT,
    )


def unit(name: str, agents: int = 1, *, supervisor: bool = False) -> Unit:
    """A unit ``root/<name>``: one agent, or (``supervisor``) a supervisor with ``agents`` children."""
    path = f"root/{name}"
    if not supervisor:
        assert agents in (0, 1)
        return Unit("lost", path, (record(path),) if agents else (), ())
    children = tuple(record(f"{path}/c{i}") for i in range(agents))
    return Unit("lost", path, (record(path, kind="supervisor"), *children), ())


def dealt(result: dict[str, list[Unit]]) -> dict[str, list[str]]:
    return {node: [u.path for u in units] for node, units in result.items()}


def test_unit_of_is_the_top_level_child_of_the_root() -> None:
    assert unit_of(record("root/a1")) == "root/a1"
    assert unit_of(record("root/workers", kind="supervisor")) == "root/workers"
    assert unit_of(record("root/workers/w1")) == "root/workers"
    assert unit_of(record("root/workers/inner/w2")) == "root/workers"


def test_a_unit_counts_its_agents_not_its_supervisors() -> None:
    assert unit("sup", 3, supervisor=True).agents == 3
    assert unit("sup", 0, supervisor=True).agents == 0
    assert unit("a1").agents == 1
    assert unit("gone", 0).agents == 0


def test_nothing_to_deal_gives_every_node_an_empty_share() -> None:
    assert deal([], [("n1", 0, None), ("n2", 4, 10)]) == {"n1": [], "n2": []}


def test_no_node_up_deals_nothing() -> None:
    assert deal([unit("a1")], []) == {}


def test_equal_nodes_take_turns_ties_broken_by_node_id() -> None:
    units = [unit(f"a{i}") for i in range(1, 6)]
    assert dealt(deal(units, [("n2", 0, None), ("n1", 0, None)])) == {
        "n1": ["root/a1", "root/a3", "root/a5"],
        "n2": ["root/a2", "root/a4"],
    }


def test_the_least_loaded_node_is_filled_up_to_the_others_first() -> None:
    units = [unit(f"a{i}") for i in range(1, 7)]
    # n2 takes five to reach n1's 5; the sixth is a tie at 5, which n1 wins by id.
    assert dealt(deal(units, [("n1", 5, None), ("n2", 0, None)])) == {
        "n1": ["root/a6"],
        "n2": ["root/a1", "root/a2", "root/a3", "root/a4", "root/a5"],
    }


def test_load_is_counted_in_agents_so_a_big_unit_weighs_more() -> None:
    units = [unit("big", 4, supervisor=True), unit("a1"), unit("a2"), unit("a3")]
    assert dealt(deal(units, [("n1", 0, None), ("n2", 1, None)])) == {
        "n1": ["root/big"],
        "n2": ["root/a1", "root/a2", "root/a3"],
    }


def test_a_full_node_is_skipped_and_the_next_least_loaded_takes_the_unit() -> None:
    units = [unit("a1"), unit("a2"), unit("a3")]
    # n1 has room for exactly one more agent; after that it is full, although least loaded.
    assert dealt(deal(units, [("n1", 1, 2), ("n2", 3, None)])) == {
        "n1": ["root/a1"],
        "n2": ["root/a2", "root/a3"],
    }


def test_a_unit_larger_than_a_nodes_room_goes_where_it_fits_whole() -> None:
    units = [unit("sup", 3, supervisor=True)]
    assert dealt(deal(units, [("n1", 0, 2), ("n2", 7, 10)])) == {"n1": [], "n2": ["root/sup"]}


def test_a_unit_that_fits_nowhere_is_left_for_the_next_round() -> None:
    units = [unit("sup", 3, supervisor=True), unit("a1")]
    assert dealt(deal(units, [("n1", 4, 5), ("n2", 9, 10)])) == {"n1": ["root/a1"], "n2": []}


def test_every_node_full_deals_nothing_but_units_without_agents() -> None:
    units = [unit("a1"), unit("gone", 0), unit("empty", 0, supervisor=True)]
    # A unit with nothing to respawn still needs a claimer (its ids are released, its rows dropped).
    assert dealt(deal(units, [("n1", 2, 2), ("n2", 3, 3)])) == {"n1": ["root/gone", "root/empty"], "n2": []}


def test_a_node_over_its_limit_takes_nothing() -> None:
    assert dealt(deal([unit("gone", 0)], [("n1", 5, 3), ("n2", 6, None)])) == {"n1": [], "n2": ["root/gone"]}


@pytest.mark.parametrize("order", [0, 1, 2])
def test_the_order_the_nodes_are_listed_in_does_not_matter(order: int) -> None:
    nodes = [("n1", 2, None), ("n2", 0, 3), ("n3", 2, 4)]
    nodes = nodes[order:] + nodes[:order]
    units = [unit(f"a{i}") for i in range(1, 7)]
    assert dealt(deal(units, nodes)) == {
        "n1": ["root/a3", "root/a6"],
        "n2": ["root/a1", "root/a2", "root/a4"],
        "n3": ["root/a5"],
    }


def test_deal_keeps_the_units_order_within_a_share_and_changes_no_input() -> None:
    units = [unit("b"), unit("a"), unit("c")]
    nodes = [("n1", 0, None)]
    before = (list(units), list(nodes))
    result = deal(units, nodes)
    assert [u.path for u in result["n1"]] == ["root/b", "root/a", "root/c"]
    assert result["n1"][0] is units[0]
    assert (units, nodes) == before


def test_each_unit_is_dealt_to_at_most_one_node() -> None:
    units = [unit(f"a{i}") for i in range(20)] + [unit(f"s{i}", i % 4, supervisor=True) for i in range(10)]
    nodes = [("n1", 3, 12), ("n2", 0, 8), ("n3", 5, None), ("n4", 1, 1)]
    result = deal(units, nodes)
    paths = [u.path for share in result.values() for u in share]
    assert len(paths) == len(set(paths))
    for node, agents, limit in nodes:
        if limit is not None:
            assert agents + sum(u.agents for u in result[node]) <= limit, node
