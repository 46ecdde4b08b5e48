"""Pure parts of the CLI: the tree rebuilt from an agent list, journal positions, the TOML that
`config` prints, agent kinds from flags and entry points, one-line errors, state versions among events."""

from __future__ import annotations

import json
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from mistersmith.cli import EXIT_USAGE, CliError
from mistersmith.cli import _kinds
from mistersmith.cli._client import state_text
from mistersmith.cli._journal import event_line, in_time_order, parse_bound, state_line, state_record
from mistersmith.cli._output import Output, table
from mistersmith.cli._settings import settings_text
from mistersmith.cli._tree import render_tree
from mistersmith.config import load_settings
from mistersmith.state.store import StateVersion
from mistersmith.supervisors import EVENT_TYPES, SupervisionEvent


def test_render_tree_draws_nested_supervisors_with_their_policy() -> None:
    tree = {
        "id": "root", "path": "root", "type": "supervisor", "strategy": "one_for_one", "intensity": 3,
        "period_s": 5.0, "state": "running", "children": [
            {"id": "a1", "type": "worker", "kind": "echo", "state": "idle", "restart_count": 0},
            {"id": "pool", "type": "supervisor", "strategy": "simple_one_for_one", "intensity": 10, "period_s": 0.5,
             "state": "running", "children": [
                 {"id": "w1", "type": "worker", "kind": "echo", "state": "busy", "restart_count": 2},
             ]},
        ],
    }
    assert render_tree(tree).splitlines() == [
        "root  supervisor (one_for_one, intensity 3/5s)  running",
        "├── a1  echo  idle",
        "└── pool  supervisor (simple_one_for_one, intensity 10/0.5s)  running",
        "    └── w1  echo  busy  restarts=2",
    ]
    assert render_tree({}) == "(empty)"


def test_replay_columns_line_up_for_every_event_type() -> None:
    at = datetime(2026, 11, 24, 9, 44, 50, 588000, tzinfo=UTC)
    longest = max(EVENT_TYPES, key=len)
    assert len(longest) >= len("intensity_exceeded")

    def line(event_type: str, restarts: int, reason: str | None, agent: str | None = "a1") -> str:
        event = SupervisionEvent(uuid.uuid4(), 12, at, "node-1", "root", agent, "echo", event_type, reason, restarts)
        return event_line(event)

    with_reason = [line(t, 0, "the reason") for t in EVENT_TYPES]
    with_restarts = [line(t, 3, None) for t in EVENT_TYPES]
    supervisor = [line(t, 0, "the reason", agent=None) for t in EVENT_TYPES]
    columns = {row.index("the reason") for row in with_reason + supervisor}
    assert len(columns) == 1, "the reason starts in one column whatever the event type"
    assert {row.index("restarts=3") for row in with_restarts} == columns
    for rows in (with_reason, with_restarts):
        for row, event_type in zip(rows, EVENT_TYPES, strict=True):
            start = row.index(event_type, row.index("a1") + 2)
            assert row[start - 2:start] == "  " and row[start + len(event_type)] == " "
            assert start == rows[0].index(EVENT_TYPES[0], rows[0].index("a1") + 2), "types in one column"
    assert line("restarted", 1, "why").endswith(f"restarted{' ' * (len(longest) - len('restarted'))}  restarts=1  why")


def test_state_versions_go_among_the_events_in_time_order_and_in_their_columns() -> None:
    t0 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)

    def event(seq: int, s: float, event_type: str = "started") -> SupervisionEvent:
        return SupervisionEvent(uuid.uuid4(), seq, t0 + timedelta(seconds=s), "node-1", "root", "a1", "counter",
                                event_type, None, 0)

    def version(n: int, s: float, agent: str = "a1") -> StateVersion:
        return StateVersion(agent, n, 1, {"n": n}, 7, "node-1", t0 + timedelta(seconds=s))

    events = [event(1, 0), event(2, 5, "failed"), event(3, 5, "restarted")]
    versions = [version(2, 4), version(1, 1), version(1, 4, "b2"), version(3, 9)]
    order = [(x.seq, None) if isinstance(x, SupervisionEvent) else (x.agent_id, x.version)
             for x in in_time_order(events, versions)]
    assert order == [(1, None), ("a1", 1), ("a1", 2), ("b2", 1), (2, None), (3, None), ("a1", 3)]
    assert list(in_time_order([], versions[:1])) == versions[:1]
    assert list(in_time_order(events, [])) == events

    line = state_line(version(3, 9))
    type_width = max(map(len, EVENT_TYPES))
    assert line == f"{'':6}  2026-11-24 09:00:09.000Z  node-1  {'a1':<20}  {'state v3':<{type_width}}  (7 B, epoch 1)"
    assert line.index("a1") == event_line(events[0]).index("a1")
    assert line.index("state v3") == event_line(events[0]).index("started")
    record = state_record(version(3, 9))
    assert record["type"] == "state_version" and record["committed_at"] == "2026-11-24T09:00:09+00:00"


def test_state_text_shows_the_facts_then_the_state() -> None:
    doc = {"agent_id": "d1", "version": 4, "epoch": 2, "state": {"n": 1, "names": ["é"]}, "bytes": 23,
           "node_id": "node-1", "committed_at": "2026-11-24T10:00:00.5+01:00"}
    assert state_text(doc).splitlines() == [
        "agent         d1", "version       4", "epoch         2", "bytes         23", "node          node-1",
        "committed_at  2026-11-24 09:00:00.500Z", "state", "{", '  "n": 1,', '  "names": [', '    "é"', "  ]", "}",
    ]
    fresh = state_text({**doc, "version": 0, "epoch": None, "state": {}, "committed_at": None}).splitlines()
    assert "epoch         -" in fresh and "committed_at  never (nothing committed yet)" in fresh and fresh[-1] == "{}"


def test_parse_bound_takes_seqs_times_and_durations() -> None:
    assert parse_bound("42", "--since") == 42
    assert parse_bound("2026-01-02T03:04:05Z", "--since") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    local = parse_bound("2026-01-02T03:04:05", "--at")
    assert isinstance(local, datetime) and local.tzinfo is not None  # no offset: local time
    ago = parse_bound("10m", "--since")
    assert isinstance(ago, datetime)
    assert abs((datetime.now(UTC) - ago) - timedelta(minutes=10)) < timedelta(seconds=5)
    with pytest.raises(CliError) as bad:
        parse_bound("last tuesday", "--since")
    assert bad.value.exit_code == EXIT_USAGE and "--since 'last tuesday'" in bad.value.message


def test_config_output_is_a_valid_config_file(tmp_path: Path) -> None:
    settings = load_settings({"http.port": "9001", "http.cors_origins": "https://a.example,https://b.example"},
                             {"MISTERSMITH_API_TOKEN": "s3cr3t-value"})
    text = settings_text(settings)
    assert "s3cr3t-value" not in text and "# port" not in text
    (tmp_path / "again.toml").write_text(text)
    tomllib.loads(text)
    again = load_settings({}, {}, tmp_path / "again.toml")
    for key in ("http.port", "http.cors_origins", "node.max_agents", "database.pool_max", "logging.format"):
        assert again[key] == settings[key], key


def test_kinds_from_flags_and_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [EntryPoint("hello", "_cli_kinds:Greeter", _kinds.ENTRY_POINT_GROUP)]

    def entry_points(*, group: str) -> list[EntryPoint]:
        return points if group == _kinds.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(_kinds, "entry_points", entry_points)
    kinds = _kinds.load_kinds(["_cli_kinds:Greeter", "polite=_cli_kinds:Greeter"])
    assert set(kinds) == {"hello", "greeter", "polite"}
    assert _kinds.load_kinds([], use_entry_points=False) == {}
    for spec, needle in (("no_colon", "use module:Class"), ("_cli_kinds:Nope", "has no 'Nope'"),
                         ("json:dumps", "not an Agent subclass"), ("bad name=_cli_kinds:Greeter", "kind name")):
        with pytest.raises(CliError) as bad:
            _kinds.load_kinds([spec], use_entry_points=False)
        assert bad.value.exit_code == EXIT_USAGE and needle in bad.value.message, spec
    points[:] = [EntryPoint("broken", "no_such_module_here:X", _kinds.ENTRY_POINT_GROUP)]
    with pytest.raises(CliError, match="entry point mistersmith.agents:broken"):
        _kinds.load_kinds([])


def test_errors_are_one_line_even_when_the_message_is_not(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(json_mode=True)
    out.error(CliError("first line\n  second line", exit_code=3, code="unreachable"))
    captured = capsys.readouterr()
    assert captured.err == "mistersmith: first line second line\n"
    doc: dict[str, Any] = json.loads(captured.out)
    assert doc == {"error": {"code": "unreachable", "message": "first line second line"}, "exit_code": 3}
    assert table(("A", "B"), [(1, None)]).splitlines() == ["A  B", "-  -", "1  -"]


def test_a_mistersmith_toml_in_the_working_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from mistersmith.cli._settings import load

    (tmp_path / "mistersmith.toml").write_text('[node]\nmax_agents = 7\n[process.kinds.tool]\ncommand = ["tool", "-x"]\n')
    monkeypatch.chdir(tmp_path)
    settings = load(argparse.Namespace(config=None))
    assert settings["node.max_agents"] == 7 and settings.config_file == str(tmp_path / "mistersmith.toml")
    assert settings["process.kinds"]["tool"].command == ("tool", "-x")
    text = settings_text(settings)
    (tmp_path / "again.toml").write_text(text)
    assert load_settings({}, {}, tmp_path / "again.toml")["process.kinds"]["tool"].command == ("tool", "-x")
    monkeypatch.chdir(tmp_path / "..")
    assert load(argparse.Namespace(config=None)).config_file is None


def test_the_serve_banner_names_agents_not_recovered_with_what_to_do() -> None:
    from mistersmith.cli._serve import _ready_text
    from mistersmith.recovery import NotRecovered

    lost = [
        NotRecovered("root/a1", "root", "a1", "greeter", "kind 'greeter' is not registered on this node", True),
        NotRecovered("root/w", "root", "w", "supervisor", "child 'w': strategy='x' is not allowed", False),
        NotRecovered("root/w/a2", "root/w", "a2", "greeter", "its supervisor root/w was not recovered", True),
        NotRecovered("root/p1", "root", "p1", "process", "kind 'process' is not registered on this node", True),
        NotRecovered("root/a3", "root", "a3", "flaky", "on_start raised RuntimeError: no", False),
    ]
    where = {"node_id": "n1", "http_url": "http://127.0.0.1:1", "nats_url": "nats://127.0.0.1:2",
             "data_dir": "/d"}
    lines = _ready_text(where, load_settings({}), ["echo"], lost).splitlines()
    assert [line for line in lines if "not recovered" in line] == [
        "  not recovered  a1, a2 (kind 'greeter' is not served: start with --kind greeter=MODULE:CLASS, or "
        "declare [process.kinds.greeter] in the config file)",
        "  not recovered  p1 (the generic process kind is not served: set node.allow_arbitrary_process = true)",
        "  not recovered  root/w (child 'w': strategy='x' is not allowed)",
        "  not recovered  a3 (on_start raised RuntimeError: no)",
    ]
    assert "not recovered" not in _ready_text(where, load_settings({}), ["echo"])
