"""Durable agents from the command line, against one `mistersmith serve` (a subprocess) that serves
the durable `counter` kind: `spawn --durable`, `state` (the last version, `--version N`, errors) and
`replay --states` (the versions kept, among the events in time order)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import HERE, Served, call

from mistersmith.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mistersmith.cli._locate import embedded_conninfo
from mistersmith.journal import PgStateStore


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    # outside pytest's basetemp and opened (0711): the embedded PostgreSQL may run as another user
    home = Path(tempfile.mkdtemp(prefix="ms-cli-states-"))
    home.chmod(0o711)
    try:
        with Served(home / "node", "--kind", "counter=_cli_kinds:Counter", cwd=HERE) as node:
            yield node
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def ms(served: Served, capsys: pytest.CaptureFixture[str]) -> Any:
    """``ms("state", "d1")``: the command against the served node, in this process."""
    return lambda *args: call(capsys, "--data-dir", str(served.data_dir), *args)


def _one_line_error(err: str, *needles: str) -> None:
    assert err.count("\n") == 1 and err.startswith("mistersmith: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_state_shows_version_0_then_each_commit_and_refuses_a_pruned_version(served: Served, ms: Any) -> None:
    node = served.ready["node_id"]
    assert ms("spawn", "counter", "--id", "d1").code == EXIT_OK
    fresh = ms("state", "d1", "--json")
    assert fresh.code == EXIT_OK, fresh.err
    assert fresh.json() == {"agent_id": "d1", "version": 0, "epoch": None, "state": {}, "bytes": 2, "node_id": node,
                            "committed_at": None}

    assert ms("send", "d1", "add", '{"k": 2}', "--json").json() == 2
    first = ms("state", "d1", "--json").json()
    assert (first["agent_id"], first["version"], first["state"], first["node_id"]) == ("d1", 1, {"n": 2}, node)
    assert first["epoch"] >= 1 and first["bytes"] == len(b'{"n":2}') and first["committed_at"]
    text = ms("state", "d1")
    assert text.code == EXIT_OK
    lines = text.out.splitlines()
    assert lines[:2] == ["agent         d1", "version       1"] and f"node          {node}" in lines
    assert lines[lines.index("state") + 1:] == ["{", '  "n": 2', "}"]

    assert ms("send", "d1", "add", '{"k": 3}').code == EXIT_OK
    assert ms("state", "d1", "--json").json()["state"] == {"n": 5}
    assert ms("state", "d1", "--version", "2", "--json").json()["version"] == 2
    pruned = ms("state", "d1", "--version", "1")  # the kind keeps one version (state_history=1)
    assert pruned.code == EXIT_FAILED
    _one_line_error(pruned.err, "unknown_agent", "no state version 1", "'d1'")


def test_spawn_durable_and_no_durable_override_the_kind(ms: Any) -> None:
    assert ms("spawn", "echo", "--id", "e-durable", "--durable").code == EXIT_OK
    assert ms("state", "e-durable", "--json").json()["version"] == 0
    assert ms("spawn", "counter", "--id", "d-plain", "--no-durable", "--json").json()["agent_id"] == "d-plain"
    assert ms("send", "d-plain", "add", "--json").json() == 1
    plain = ms("state", "d-plain")
    assert plain.code == EXIT_FAILED
    _one_line_error(plain.err, "unknown_agent", "'d-plain'", "is it durable?")


def test_state_of_an_unknown_agent_is_a_clear_error(ms: Any) -> None:
    unknown = ms("state", "nobody", "--json")
    assert unknown.code == EXIT_FAILED
    _one_line_error(unknown.err, "unknown_agent", "no committed state of agent 'nobody'")
    assert unknown.json()["error"]["code"] == "unknown_agent" and unknown.json()["exit_code"] == EXIT_FAILED
    negative = ms("state", "nobody", "--version", "-1")
    assert negative.code == EXIT_USAGE
    _one_line_error(negative.err, "--version -1")


def test_replay_states_shows_the_versions_kept_among_the_events(served: Served, ms: Any) -> None:
    assert ms("spawn", "echo", "--id", "sm1").code == EXIT_OK  # `started` is journaled before this returns
    conninfo = embedded_conninfo(served.data_dir)
    assert conninfo is not None
    store = PgStateStore(conninfo)
    node = served.ready["node_id"]
    try:  # versions written as a node's store writes them, for an agent with events and one without
        for agent, where in (("sm1", node), ("sm-other", "node-other")):
            epoch = store.activate(agent, where).epoch
            store.commit(agent, epoch, 1, b'{"n":1}', node_id=where, keep=2)
            store.commit(agent, epoch, 2, b'{"n":22}', node_id=where, keep=2)
    finally:
        store.close()
    assert ms("stop", "sm1").code == EXIT_OK
    ms("replay", "--agent", "sm1", "--type", "stopped", "--follow", "--limit", "1")  # journaled by now

    records = ms("replay", "--agent", "sm1", "--states", "--json").lines()
    kinds = [r.get("event_type") or f"{r['type']} v{r['version']}" for r in records]
    assert kinds == ["started", "state_version v1", "state_version v2", "stopped"]
    v2 = records[2]
    assert v2 == {"type": "state_version", "agent_id": "sm1", "version": 2, "epoch": v2["epoch"], "state": {"n": 22},
                  "bytes": 8, "node_id": node, "committed_at": v2["committed_at"]}
    assert records[0]["occurred_at"] <= records[1]["committed_at"] <= v2["committed_at"] <= records[3]["occurred_at"]

    text = ms("replay", "--agent", "sm1", "--states").out.splitlines()
    assert len(text) == 4 and "state v2" in text[2] and text[2].endswith(f"(8 B, epoch {v2['epoch']})")
    assert text[2].index(f"{node}  sm1 ") == text[0].index(f"{node}  sm1 ")  # in the event columns
    assert "sm1" not in ms("replay", "--agent", "sm-other", "--states").out

    limited = ms("replay", "--agent", "sm1", "--states", "--limit", "2", "--json").lines()
    assert [r.get("event_type", r.get("type")) for r in limited] == ["started", "state_version"]
    assert all("event_type" in r for r in ms("replay", "--agent", "sm1", "--json").lines())  # events only
    everyone = ms("replay", "--states", "--json").lines()
    assert {(a, v) for a in ("sm1", "sm-other") for v in (1, 2)} <= {
        (r["agent_id"], r["version"]) for r in everyone if r.get("type") == "state_version"}
    other = ms("replay", "--states", "--node", "node-other", "--json").lines()
    assert [(r["agent_id"], r["version"]) for r in other] == [("sm-other", 1), ("sm-other", 2)]


@pytest.mark.parametrize(("args", "needle"), [
    (("--follow",), "does not combine"),
    (("--at", "3"), "does not combine"),
    (("--since", "3"), "--since 3 with --states: state versions have no journal seq"),
], ids=["follow", "at", "seq-bound"])
def test_replay_states_refuses_what_it_cannot_do(ms: Any, args: tuple[str, ...], needle: str) -> None:
    done = ms("replay", "--states", *args)
    assert done.code == EXIT_USAGE
    _one_line_error(done.err, needle)


def test_replay_states_shows_what_a_durable_agent_of_the_node_committed(served: Served, ms: Any) -> None:
    assert ms("spawn", "counter", "--id", "d-replay").code == EXIT_OK
    for k in (1, 2):
        assert ms("send", "d-replay", "add", json.dumps({"k": k})).code == EXIT_OK  # committed before the reply
    records = ms("replay", "--agent", "d-replay", "--states", "--json").lines()
    assert records[0]["event_type"] == "started"
    versions = [r for r in records if r.get("type") == "state_version"]
    assert [(v["version"], v["state"], v["node_id"]) for v in versions] == [(2, {"n": 3}, served.ready["node_id"])]
    assert ms("state", "d-replay", "--json").json()["committed_at"] == versions[0]["committed_at"]


def test_restart_reset_state_starts_a_durable_agent_again_from_nothing(served: Served, ms: Any) -> None:
    assert ms("spawn", "counter", "--id", "d-reset").code == EXIT_OK
    assert ms("send", "d-reset", "add", '{"k": 4}', "--json").json() == 4
    reset = ms("restart", "d-reset", "--reset-state")
    assert reset.code == EXIT_OK, reset.err
    assert reset.out.startswith("restarted d-reset") and "its state reset" in reset.out
    after = ms("state", "d-reset", "--json").json()
    assert (after["version"], after["state"]) == (2, {})  # the reset is committed, in PostgreSQL
    assert ms("send", "d-reset", "add", '{"k": 1}', "--json").json() == 1

    assert ms("spawn", "counter", "--id", "d-no", "--no-durable").code == EXIT_OK
    refused = ms("restart", "d-no", "--reset-state")
    assert refused.code == EXIT_FAILED
    _one_line_error(refused.err, "invalid_spec", "not durable")
