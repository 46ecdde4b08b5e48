"""Every client command against one `mistersmith serve` (a subprocess): spawn, send, agents, stop,
restart, tree, health, shutdown, replay (with --follow and --at), migrate, config, nats-url, psql;
--help and --json everywhere; errors are one line with the documented exit code."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import HERE, WAIT_S, Served, call, cli_argv, run_cli

from mistersmith.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, build_parser


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    # outside pytest's basetemp and opened (0711), like the ``node_dir`` fixture (the embedded
    # PostgreSQL runs as another user under root and must traverse the path)
    home = Path(tempfile.mkdtemp(prefix="ms-cli-"))
    home.chmod(0o711)
    try:
        with Served(home / "node", "--kind", "greeter=_cli_kinds:Greeter", "--kind", "writer=_cli_kinds:Writer",
                    cwd=HERE) as node:
            yield node
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def ms(served: Served, capsys: pytest.CaptureFixture[str]) -> Any:
    """``ms("spawn", "echo")``: the command against the served node, in this process."""
    return lambda *args: call(capsys, "--data-dir", str(served.data_dir), *args)


def _one_line_error(err: str, *needles: str) -> None:
    assert err.count("\n") == 1 and err.startswith("mistersmith: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_spawn_send_crash_restart_stop(served: Served, ms: Any) -> None:
    spawned = ms("spawn", "echo", "--id", "c1", "--json")
    assert spawned.code == EXIT_OK, spawned.err
    assert spawned.json() == {"agent_id": "c1", "node": served.ready["node_id"]}
    assert ms("send", "c1", "echo", '{"hi": [1, 2]}', "--json").json() == {"hi": [1, 2]}

    crashed = ms("send", "c1", "fail", '{"message": "on purpose"}')
    assert crashed.code == EXIT_FAILED
    _one_line_error(crashed.err, "agent_failed", "on purpose")

    # --follow --limit 1 returns once the restart is in the journal: no sleeping, no polling here
    restarted = ms("replay", "--agent", "c1", "--type", "restarted", "--follow", "--limit", "1", "--json")
    assert restarted.code == EXIT_OK and restarted.lines()[0]["event_type"] == "restarted"
    assert ms("send", "c1", "ping", "--json").json() == {"pong": True, "agent_id": "c1"}

    listed = ms("agents", "--long", "--json").json()
    mine = [a for a in listed["agents"] if a["id"] == "c1"]
    assert len(mine) == 1 and mine[0]["restart_count"] == 1 and mine[0]["node_id"] == served.ready["node_id"]
    assert "c1" in ms("agents").out

    assert ms("restart", "c1").out.startswith("restarted c1")
    assert ms("stop", "c1", "--json").json()["stopped"] is True
    gone = ms("send", "c1", "ping")
    assert gone.code == EXIT_FAILED
    _one_line_error(gone.err, "unknown_agent", "'c1'")


def test_user_kind_from_serve_kind_flag(ms: Any) -> None:
    assert ms("spawn", "greeter", "--id", "g1", "--config", '{"greeting": "Hi"}').code == EXIT_OK
    assert ms("send", "g1", "greet", '{"name": "Ada"}', "--json").json() == {"greeting": "Hi, Ada!"}
    assert "greeter" in [a["kind"] for a in ms("agents", "--kind", "greeter", "--json").json()["agents"]]
    unknown = ms("spawn", "no-such-kind")
    assert unknown.code == EXIT_FAILED
    _one_line_error(unknown.err, "no-such-kind", "greeter")


def test_tree_shows_the_live_supervision_tree(served: Served, ms: Any) -> None:
    ms("spawn", "echo", "--id", "t1")
    ms("send", "t1", "fail")
    ms("replay", "--agent", "t1", "--type", "restarted", "--follow", "--limit", "1")
    doc = ms("tree", "--json").json()
    tree = doc["trees"][served.ready["node_id"]]
    assert tree["id"] == "root" and tree["type"] == "supervisor"
    t1 = next(c for c in tree["children"] if c["id"] == "t1")
    assert t1["kind"] == "echo" and t1["restart_count"] == 1
    text = ms("tree").out
    assert f"node {served.ready['node_id']}" in text and "└── " in text and "t1  echo" in text


def test_health(served: Served, ms: Any) -> None:
    health = ms("health", "--json")
    assert health.code == EXIT_OK, health.out
    doc = health.json()
    assert doc["status"] == "ok" and doc["node"] == served.ready["node_id"]
    assert {"supervisor_tree", "nats", "database"} <= set(doc["http"]["components"])
    assert ms("health").out.startswith(f"node {served.ready['node_id']}: ok")


def test_shutdown_is_refused_unless_the_node_allows_it(served: Served, ms: Any) -> None:
    refused = ms("shutdown")
    assert refused.code == EXIT_FAILED
    _one_line_error(refused.err, "unauthorized")
    assert served.proc is not None and served.proc.poll() is None


def test_replay_prints_every_transition_in_order_and_the_tree_at_a_past_moment(ms: Any) -> None:
    ms("spawn", "echo", "--id", "r1")
    ms("send", "r1", "fail")
    ms("replay", "--agent", "r1", "--type", "restarted", "--follow", "--limit", "1")
    ms("stop", "r1")
    ms("replay", "--agent", "r1", "--type", "stopped", "--follow", "--limit", "1")  # journaled by now
    events = ms("replay", "--agent", "r1", "--json").lines()
    types = [e["event_type"] for e in events]
    assert types[0] == "started" and "failed" in types and "restarted" in types and types[-1] == "stopped"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and all(e["agent_id"] == "r1" for e in events)
    text = ms("replay", "--agent", "r1").out
    assert "restarted" in text and "r1" in text

    failed_at = next(e["seq"] for e in events if e["event_type"] == "failed")
    at_failure = ms("replay", "--at", str(failed_at), "--agent", "r1", "--json").json()
    assert at_failure["agent"]["state"] == "failed" and at_failure["as_of_seq"] == failed_at
    restarted_at = next(e["seq"] for e in events if e["event_type"] == "restarted")
    tree = ms("replay", "--at", str(restarted_at), "--json").json()
    node_tree = next(iter(tree["trees"].values()))
    r1 = next(c for c in node_tree["children"] if c["id"] == "r1")
    assert r1["state"] == "running" and r1["restart_count"] == 1
    assert "r1  echo  running  restarts=1" in ms("replay", "--at", str(restarted_at)).out
    now = ms("replay", "--at", events[-1]["occurred_at"], "--agent", "r1")
    assert now.code == EXIT_FAILED and "was not running" in now.out  # stopped for good by then

    assert ms("replay", "--type", "failed", "--since", "1h", "--json").lines()  # a duration ago works
    assert ms("replay", "--since", str(seqs[-1]), "--json").lines()[0]["seq"] == seqs[-1]


def test_replay_follow_streams_new_events_until_interrupted(served: Served, ms: Any) -> None:
    follow = subprocess.Popen(
        cli_argv("--data-dir", str(served.data_dir), "replay", "--follow", "--agent", "f1", "--json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert ms("spawn", "echo", "--id", "f1").code == EXIT_OK
        assert follow.stdout is not None
        first = json.loads(follow.stdout.readline())  # blocks until the event is journaled and followed
        assert first["agent_id"] == "f1" and first["event_type"] == "started"
        follow.send_signal(signal.SIGINT)
        assert follow.wait(WAIT_S) == EXIT_OK
        assert "Traceback" not in (follow.stderr.read() if follow.stderr else "")
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(WAIT_S)


def test_migrate_is_idempotent_on_the_running_node(ms: Any) -> None:
    done = ms("migrate", "--json")
    assert done.code == EXIT_OK, done.err
    doc = done.json()
    assert doc["applied"] == [] and doc["versions"] and doc["versions"][0]["version"] == 1
    assert "up to date" in ms("migrate").out


def test_config_masks_secrets_and_names_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTERSMITH_API_TOKEN", "s3cret-token")
    (tmp_path / "ms.toml").write_text("[database]\npool_max = 12\n")
    done = call(capsys, "config", "--config", str(tmp_path / "ms.toml"), "--http-port", "9001", "--json")
    assert done.code == EXIT_OK
    assert "s3cret-token" not in done.out
    doc = done.json()
    assert doc["settings"]["http"]["api_token"] == "***"
    assert doc["settings"]["http"]["port"] == 9001 and doc["sources"]["http.port"] == "the command line"
    assert doc["settings"]["database"]["pool_max"] == 12 and doc["sources"]["database.pool_max"] == str(tmp_path / "ms.toml")
    text = call(capsys, "config").out
    assert 'api_token = "***"  # from $MISTERSMITH_API_TOKEN' in text and "s3cret" not in text


def test_every_command_answers_help_and_takes_json(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    names = [a for a in parser._subparsers._group_actions[0].choices]  # type: ignore[union-attr]
    assert {"serve", "config", "spawn", "send", "agents", "stop", "tree", "health", "replay", "migrate",
            "bench"} <= set(names)
    for name in names:
        done = call(capsys, name, "--help")
        assert done.code == EXIT_OK and "--json" in done.out and f"mistersmith {name}" in done.out, name


@pytest.mark.parametrize(("args", "code", "needle"), [
    (("send", "x", "echo", "{not json"), EXIT_USAGE, "payload: not JSON"),
    (("send", "x", "echo", "[1]"), EXIT_USAGE, "use a JSON object"),
    (("spawn", "echo", "--config", "3"), EXIT_USAGE, "--config: use a JSON object"),
    (("replay", "--type", "exploded"), EXIT_USAGE, "not an event type"),
    (("replay", "--since", "yesterday-ish"), EXIT_USAGE, "--since 'yesterday-ish'"),
    (("replay", "--at", "3", "--follow"), EXIT_USAGE, "does not combine"),
    (("spawn",), EXIT_USAGE, "required: KIND"),
    (("nope",), EXIT_USAGE, "invalid choice: 'nope'"),
], ids=["bad-json", "not-object", "bad-config", "bad-type", "bad-since", "at-follow", "no-kind", "no-command"])
def test_usage_errors(ms: Any, args: tuple[str, ...], code: int, needle: str) -> None:
    done = ms(*args)
    assert done.code == code
    _one_line_error(done.err, needle)


def test_no_node_is_exit_code_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (("agents",), ("send", "a", "ping"), ("replay",)):
        done = call(capsys, "--data-dir", str(tmp_path), *args, "--json")
        assert done.code == EXIT_UNREACHABLE, args
        _one_line_error(done.err, str(tmp_path))
        assert done.json()["exit_code"] == EXIT_UNREACHABLE
    (tmp_path / "node.json").write_text(json.dumps({"pid": 2**22 + 12345, "nats_url": "nats://127.0.0.1:1"}))
    stale = call(capsys, "--data-dir", str(tmp_path), "agents")
    assert stale.code == EXIT_UNREACHABLE and "is not running" in stale.err
    refused = call(capsys, "agents", "--nats-url", "nats://127.0.0.1:1")
    assert refused.code == EXIT_UNREACHABLE
    _one_line_error(refused.err, "cannot reach NATS at nats://127.0.0.1:1")


def test_the_console_script_and_bench_progress(tmp_path: Path) -> None:
    version = run_cli("--version")
    assert version.returncode == EXIT_OK and version.stdout.startswith("mistersmith ")
    bench = run_cli("bench", "runtime", "--quick", "--json")
    assert bench.returncode == EXIT_OK, bench.stderr
    doc = json.loads(bench.stdout)
    assert doc["suite"] == "runtime" and {f["key"] for f in doc["figures"]} >= {"ask_p50", "restart_p50"}
    assert "[bench]" in bench.stderr and "runtime done in" in bench.stderr  # the progress display


def test_kinds_lists_each_served_kind_with_its_commands_and_parameters(served: Served, ms: Any) -> None:
    listed = ms("kinds", "--json")
    assert listed.code == EXIT_OK, listed.err
    doc = listed.json()
    assert doc["node"] == served.ready["node_id"]
    assert set(doc["kinds"]) == {"echo", "greeter", "writer"}  # never the generic process kind by default
    assert "echo" in doc["kinds"]["echo"]["commands"]
    text = ms("kinds")
    assert text.code == EXIT_OK and "greeter" in text.out and "ping()" in text.out


def test_nats_url_prints_the_running_nodes_url_and_never_the_password(served: Served, ms: Any) -> None:
    info = json.loads((served.data_dir / "node.json").read_text())
    plain = ms("nats-url")
    assert plain.code == EXIT_OK, plain.err
    assert plain.out == f"{served.ready['nats_url']}\n" == f"{info['nats_url']}\n"
    as_json = ms("nats-url", "--json")
    assert as_json.json() == {"nats_url": info["nats_url"], "nats_credentials": info["nats_credentials"]}
    password = json.loads(Path(info["nats_credentials"]).read_text())["password"]
    assert password not in plain.out + as_json.out


def test_psql_runs_the_wheels_psql_against_the_journal(served: Served) -> None:
    done = run_cli("--data-dir", str(served.data_dir), "psql", "--", "-At", "-c", "select 1", "-c",
                   "select count(*) > 0 from supervision_events", "-c", "show server_version_num")
    assert done.returncode == EXIT_OK, done.stderr
    one, has_events, version = done.stdout.split()
    assert (one, has_events) == ("1", "t") and int(version) >= 180000
    failing = run_cli("--data-dir", str(served.data_dir), "psql", "--", "-c", "select * from nowhere")
    assert failing.returncode != EXIT_OK and "nowhere" in failing.stderr  # psql's own exit code and message


def test_send_stream_prints_each_progress_item_then_the_result(served: Served, ms: Any) -> None:
    assert ms("spawn", "writer", "--id", "wr1").code == EXIT_OK
    streamed = ms("send", "wr1", "write", '{"words": 3}', "--stream")
    assert streamed.code == EXIT_OK, streamed.err
    assert streamed.out.splitlines()[:3] == ["token-0", "token-1", "token-2"]
    assert json.loads("\n".join(streamed.out.splitlines()[3:])) == {"words": 3}
    as_json = ms("send", "wr1", "write", '{"words": 2}', "--stream", "--json")
    lines = [json.loads(line) for line in as_json.out.splitlines()[:2]]
    assert lines == [{"data": "token-0", "done": 1, "total": 2}, {"data": "token-1", "done": 2, "total": 2}]
    missing = ms("send", "nobody", "write", "{}", "--stream")
    assert missing.code == EXIT_FAILED and "unknown_agent" in missing.err


def test_ctrl_c_in_send_cancels_the_command_in_the_agent(served: Served, ms: Any) -> None:
    assert ms("spawn", "writer", "--id", "wr2").code == EXIT_OK
    proc = subprocess.Popen(cli_argv("--data-dir", str(served.data_dir), "send", "wr2", "think", "--stream",
                                     "--timeout", "60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "thinking"  # it runs in the agent now
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT_S)
    assert proc.returncode == 130, err
    assert "cancelled the command in agent wr2" in err
    assert ms("send", "wr2", "ping", "--json").json()["pong"] is True  # the agent is free at once
    got = ms("agents", "--long", "--json").json()
    [wr2] = [a for a in got["agents"] if a["id"] == "wr2"]
    assert wr2["restart_count"] == 0
