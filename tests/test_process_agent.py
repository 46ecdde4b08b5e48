"""The `process` kind: a CLI run per prompt, failures handled by supervision."""

from __future__ import annotations

from collections.abc import Iterator
import sys
from pathlib import Path

import pytest

from _helpers import exits_within
from mistersmith import (
    AgentFailedError,
    CommandCancelledError,
    ProcessAgent,
    ProcessKind,
    Runtime,
    SpecError,
    SupervisorSpec,
)

FAKE = str(Path(__file__).resolve().parent.parent / "examples" / "bin" / "fake_claude.py")


def cli(*flags: str) -> list[str]:
    return [sys.executable, FAKE, *flags]


@pytest.fixture
def rt() -> Iterator[Runtime]:
    runtime = Runtime(root=SupervisorSpec("root", intensity=50), kinds={"process": ProcessAgent})
    yield runtime
    runtime.close()


def test_prompt_returns_parsed_json(rt: Runtime) -> None:
    a = rt.spawn("process", config={"command": cli()})
    reply = rt.ask(a, "prompt", {"prompt": "hello there"}, timeout=30)
    assert reply["output"] == {"type": "result", "is_error": False, "result": "You said: hello there", "words": 2}


def test_text_output_cwd_and_env(rt: Runtime, tmp_path: Path) -> None:
    script = "import os,sys; sys.stdin.read(); print(os.getcwd(), os.environ['GREETING'])"
    a = rt.spawn("process", config={"command": [sys.executable, "-c", script], "output": "text",
                                    "cwd": str(tmp_path), "env": {"GREETING": "hi"}})
    out = rt.ask(a, "prompt", {"prompt": "x"}, timeout=30)["output"]
    assert out.strip() == f"{tmp_path} hi"


def test_non_zero_exit_is_an_agent_failure_with_stderr(rt: Runtime) -> None:
    a = rt.spawn("process", config={"command": cli("--fail")})
    with rt.subscribe(agent_id=a, event_types=["failed", "restarted"]) as sub:
        with pytest.raises(AgentFailedError) as err:
            rt.ask(a, "prompt", {"prompt": "why"}, timeout=30)
        assert "exited with code 3" in err.value.reason and "cannot answer 'why'" in err.value.reason
        assert sub.get(timeout_s=10).event_type == "failed"
        assert sub.get(timeout_s=10).event_type == "restarted"


def test_bad_json_is_an_agent_failure(rt: Runtime) -> None:
    a = rt.spawn("process", config={"command": cli("--bad-json")})
    with pytest.raises(AgentFailedError, match="invalid JSON"):
        rt.ask(a, "prompt", {"prompt": "x"}, timeout=30)


def test_timeout_kills_the_whole_process_group(rt: Runtime, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    a = rt.spawn("process", config={"command": cli("--hang"), "timeout_s": 1.0, "env": {"PIDFILE": str(pidfile)}})
    with pytest.raises(AgentFailedError) as err:
        rt.ask(a, "prompt", {"prompt": "x"}, timeout=30)
    assert "timed out after 1.0 s" in err.value.reason and "thinking very hard" in err.value.reason
    program, grandchild = (int(p) for p in pidfile.read_text().split())
    assert exits_within(program, 10), "the program must be killed"
    assert exits_within(grandchild, 10), "its grandchild (same process group) must be killed too"


@pytest.mark.parametrize(
    "config",
    [{}, {"command": []}, {"command": [1]}, {"command": "x", "output": "xml"}, {"command": "x", "timeout_s": 0},
     {"command": "x", "cwd": "/no/such/dir"}, {"command": "x", "env": {"A": 1}}],
)
def test_bad_config_is_refused_at_spawn_clearly(rt: Runtime, config: dict[str, object]) -> None:
    with pytest.raises(SpecError, match="is not allowed") as err:
        rt.spawn("process", config=config)
    assert err.value.code == "invalid_spec"
    assert rt.list_agents() == []


# -- least privilege: the command comes from code or the operator, never a spawn ---------


def test_a_bare_runtime_refuses_the_generic_process_kind_naming_what_to_do() -> None:
    with Runtime() as runtime:
        with pytest.raises(SpecError) as err:
            runtime.spawn("process", config={"command": ["sh", "-c", "id"]})
        assert err.value.code == "invalid_spec"
        assert "ProcessAgent" in str(err.value) and "ProcessKind" in str(err.value)
        assert "process" not in runtime.kinds()


def test_a_program_not_on_path_is_refused_at_spawn_naming_it_and_the_path(rt: Runtime) -> None:
    with pytest.raises(SpecError) as err:
        rt.spawn("process", config={"command": ["no-such-program-xyz", "-p"], "env": {"PATH": "/nowhere"}})
    assert "no-such-program-xyz" in str(err.value) and "PATH=/nowhere" in str(err.value)
    assert rt.list_agents() == []


def test_a_program_that_disappears_later_fails_naming_it(rt: Runtime, tmp_path: Path) -> None:
    program = tmp_path / "vanishing"
    program.write_text(f"#!{sys.executable}\nimport sys; sys.stdin.read(); print('{{}}')\n")
    program.chmod(0o755)
    a = rt.spawn("process", config={"command": [str(program)]})
    assert rt.ask(a, "prompt", {"prompt": "x"}, timeout=30)["output"] == {}
    program.unlink()
    with pytest.raises(AgentFailedError) as err:
        rt.ask(a, "prompt", {"prompt": "x"}, timeout=30)
    assert str(program) in err.value.reason


def test_the_program_gets_an_allowlisted_environment_only(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTERSMITH_API_TOKEN", "tok-secret-0123456789abcdef")
    monkeypatch.setenv("MS_TEST_SHARED", "shared-value")
    script = "import json,os,sys; sys.stdin.read(); print(json.dumps(dict(os.environ)))"
    a = rt.spawn("process", config={"command": [sys.executable, "-c", script], "env": {"OWN": "mine"}})
    seen = rt.ask(a, "prompt", {"prompt": "x"}, timeout=30)["output"]
    assert "MISTERSMITH_API_TOKEN" not in seen and "MS_TEST_SHARED" not in seen
    assert seen["OWN"] == "mine" and "PATH" in seen
    b = rt.spawn("process", config={"command": [sys.executable, "-c", script], "inherit_env": ["MS_TEST_SHARED"]})
    seen = rt.ask(b, "prompt", {"prompt": "x"}, timeout=30)["output"]
    assert seen.get("MS_TEST_SHARED") == "shared-value" and "MISTERSMITH_API_TOKEN" not in seen


def test_env_values_are_redacted_in_status_and_events(rt: Runtime) -> None:
    a = rt.spawn("process", config={"command": cli(), "env": {"API_KEY": "sk-very-secret"}})
    assert rt.get_agent(a)["config"]["env"] == {"API_KEY": "***"}
    assert "sk-very-secret" not in repr(rt.list_agents()) + repr(rt.tree())
    started = rt.events.events(agent_id=a, event_types=["started"])
    assert started and started[0].data["config"]["env"] == {"API_KEY": "***"}
    assert "sk-very-secret" not in repr([e.to_dict() for e in rt.events.events()])
    # ... while the program itself still gets the value
    script = "import os,sys; sys.stdin.read(); print(os.environ['API_KEY'])"
    b = rt.spawn("process", config={"command": [sys.executable, "-c", script], "output": "text",
                                    "env": {"API_KEY": "sk-very-secret"}})
    assert rt.ask(b, "prompt", {"prompt": "x"}, timeout=30)["output"].strip() == "sk-very-secret"


def test_a_redacted_env_value_is_refused_not_used(rt: Runtime) -> None:
    with pytest.raises(SpecError, match=r"config\.env\.API_KEY"):
        rt.spawn("process", config={"command": cli(), "env": {"API_KEY": "***"}})


# -- named kinds (ProcessKind) ---------------------------------------------------------


def _kind(**fields: object) -> ProcessKind:
    script = "import json,sys; print(json.dumps({'argv': sys.argv[1:], 'stdin': sys.stdin.read()}))"
    return ProcessKind(**{"name": "tool", "command": [sys.executable, "-c", script, "fixed-arg"], **fields})  # type: ignore[arg-type]


def test_a_configured_kind_runs_its_configured_command_only() -> None:
    kind = _kind(overridable=("prompt_template",))
    with Runtime(kinds={"tool": kind.agent_class()}) as runtime:
        a = runtime.spawn("tool")
        out = runtime.ask(a, "prompt", {"prompt": "hi"}, timeout=30)["output"]
        assert out == {"argv": ["fixed-arg"], "stdin": "hi"}
        b = runtime.spawn("tool", config={"prompt_template": "Q: {prompt}"})
        assert runtime.ask(b, "prompt", {"prompt": "hi"}, timeout=30)["output"]["stdin"] == "Q: hi"
        for bad in ({"command": ["sh", "-c", "id"]}, {"env": {"LD_PRELOAD": "/tmp/x.so"}},
                    {"inherit_env": ["MISTERSMITH_API_TOKEN"]}, {"timeout_s": 1}):
            with pytest.raises(SpecError) as err:
                runtime.spawn("tool", config=bad)
            assert err.value.code == "invalid_spec" and "process.kinds.tool.overridable" in str(err.value)
        assert sorted(x["id"] for x in runtime.list_agents()) == sorted([a, b])


@pytest.mark.parametrize(
    ("fields", "key"),
    [({"command": "claude -p"}, "command"), ({"command": []}, "command"), ({"overridable": ("command",)}, "overridable"),
     ({"overridable": ("env",)}, "overridable"), ({"timeout_s": 0}, "timeout_s"), ({"output": "xml"}, "output"),
     ({"prompt_template": "no placeholder"}, "prompt_template"), ({"env": {"A": 1}}, "env")],
)
def test_a_bad_kind_is_refused_naming_its_key(fields: dict[str, object], key: str) -> None:
    with pytest.raises(SpecError, match=rf"process\.kinds\.tool\.{key}"):
        _kind(**fields)


def test_a_kind_from_a_config_table_refuses_unknown_keys() -> None:
    with pytest.raises(SpecError, match=r"process\.kinds\.claude\.comand"):
        ProcessKind.from_table("claude", {"comand": ["claude"]})
    kind = ProcessKind.from_table("claude", {"command": ["claude", "-p"], "overridable": ["prompt_template"]})
    assert kind.command == ("claude", "-p") and kind.overridable == ("prompt_template",)


def test_the_watchdog_waits_longer_than_the_programs_own_timeout(rt: Runtime) -> None:
    a = rt.spawn("process", config={"command": cli(), "timeout_s": 120})
    assert rt.system.agents[a].spec.command_timeout_s == 130.0  # type: ignore[union-attr]
    b = rt.spawn("process", config={"command": cli(), "timeout_s": 120}, command_timeout_s=5.0)
    assert rt.system.agents[b].spec.command_timeout_s == 5.0  # type: ignore[union-attr]  # the spawner's word


def test_jsonl_output_streams_each_line_as_progress_and_the_result_line_is_the_result(rt: Runtime) -> None:
    a = rt.spawn("process", config={"command": cli("--stream-json"), "output": "jsonl"})
    stream = rt.ask_stream(a, "prompt", {"prompt": "three little words"}, timeout=30)
    items = [p.data for p in stream]
    assert items == [{"type": "assistant", "text": w, "index": i} for i, w in enumerate(["three", "little", "words"])]
    reply = stream.result()
    assert reply["output"] == {"type": "result", "is_error": False, "result": "You said: three little words",
                               "words": 3}


def test_jsonl_without_a_result_line_answers_the_last_line(rt: Runtime) -> None:
    script = "import sys; sys.stdin.read(); print('{\"n\": 1}'); print('{\"n\": 2}')"
    a = rt.spawn("process", config={"command": [sys.executable, "-c", script], "output": "jsonl"})
    assert rt.ask(a, "prompt", {"prompt": "x"}, timeout=30)["output"] == {"n": 2}


def test_cancelling_a_jsonl_prompt_kills_the_whole_process_group_and_the_agent_lives(
    rt: Runtime, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pids"
    a = rt.spawn("process", config={"command": cli("--stream-json", "--hang"), "output": "jsonl",
                                    "env": {"PIDFILE": str(pidfile)}})
    stream = rt.ask_stream(a, "prompt", {"prompt": "think hard"}, timeout=30, correlation_id="p1")
    assert next(iter(stream)).data["text"] == "think"  # it runs, and has said something
    assert rt.cancel(a, "p1") is True
    with pytest.raises(CommandCancelledError):
        stream.result()
    program, grandchild = (int(p) for p in pidfile.read_text().split())
    assert exits_within(program, 10), "the program must be killed"
    assert exits_within(grandchild, 10), "its grandchild (same process group) must be killed too"
    assert rt.ask(a, "ping", timeout=10)["pong"] is True
    assert rt.get_agent(a)["restart_count"] == 0
