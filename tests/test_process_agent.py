"""The `process` kind: a CLI run per prompt, failures handled by supervision."""

from __future__ import annotations

from collections.abc import Iterator
import sys
from pathlib import Path

import pytest

from _helpers import exits_within
from mistersmith import AgentFailedError, Runtime, StartError, SupervisorSpec

FAKE = str(Path(__file__).resolve().parent.parent / "examples" / "bin" / "fake_claude.py")


def cli(*flags: str) -> list[str]:
    return [sys.executable, FAKE, *flags]


@pytest.fixture
def rt() -> Iterator[Runtime]:
    runtime = Runtime(root=SupervisorSpec("root", intensity=50))
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
def test_bad_config_fails_the_start_clearly(rt: Runtime, config: dict[str, object]) -> None:
    with pytest.raises(StartError, match="is not allowed"):
        rt.spawn("process", config=config)
