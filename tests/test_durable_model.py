"""A model of one durable agent, checked against random sequences of commands, crashes and restarts.

The model is a dict (the committed state), its version and the epoch of the
incarnation that committed it. Every rule does one thing to the real agent and
the same to the model; after each step the agent's own view (``get``) and the
store's (``Runtime.get_state``) must equal the model. Nothing sleeps: after a
crash the rule waits for the ``restarted`` event; the root has no backoff.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from _helpers import WAIT_S
from mistersmith import Agent, AgentFailedError, CommandError, Runtime, SupervisorSpec, command
from mistersmith.state import MemoryStateStore

ROOT = SupervisorSpec("root", intensity=10_000, backoff=None)
AGENT = "m"


class Model(Agent):
    kind = "model"
    durable = True

    @command("add")
    def add(self, k: int) -> None:
        self.state["n"] = self.state.get("n", 0) + k

    @command("append")
    def append(self, v: int) -> None:
        self.state.setdefault("items", []).append(v)

    @command("refuse")
    def refuse(self, k: int) -> None:
        self.state["n"] = self.state.get("n", 0) + k
        self.state.setdefault("items", []).append(-1)
        raise CommandError("refused on purpose", code="refused")

    @command("crash")
    def crash(self, k: int) -> None:
        self.state["n"] = self.state.get("n", 0) + k
        raise RuntimeError("crashed half-way")

    @command("commit_then_crash")
    def commit_then_crash(self, k: int, j: int) -> None:
        self.state["n"] = self.state.get("n", 0) + k
        self.commit()
        self.state["n"] += j
        self.state.setdefault("items", []).append(j)
        raise RuntimeError("crashed after a commit")

    @command("get")
    def get(self) -> dict[str, Any]:
        return dict(orjson.loads(orjson.dumps(self.state)))


def _added(state: dict[str, Any], k: int) -> dict[str, Any]:
    new = orjson.loads(orjson.dumps(state))
    new["n"] = new.get("n", 0) + k
    return dict(new)


class DurableAgentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStateStore()
        self.rt: Runtime | None = None
        self.state: dict[str, Any] = {}  # the model: the last committed state
        self.version = 0
        self.epoch = 0  # the current incarnation's
        self.commit_epoch: int | None = None  # the epoch that committed ``version``

    # -- helpers -----------------------------------------------------------------------

    def _open(self) -> None:
        self.rt = Runtime(root=ROOT, state_store=self.store, kinds={"model": Model})
        self.rt.spawn("model", AGENT)
        self.epoch += 1

    def _ask(self, cmd: str, **payload: Any) -> Any:
        assert self.rt is not None
        return self.rt.ask(AGENT, cmd, payload, timeout=WAIT_S)

    def _committed(self, new: dict[str, Any]) -> None:
        """The agent committed ``new`` (a new version only if it differs)."""
        if new != self.state:
            self.state = new
            self.version += 1
            self.commit_epoch = self.epoch

    def _crash(self, cmd: str, **payload: Any) -> None:
        assert self.rt is not None
        with self.rt.subscribe(agent_id=AGENT, event_types=["restarted"]) as sub:
            with pytest.raises(AgentFailedError):
                self._ask(cmd, **payload)
            sub.get(WAIT_S)
        self.epoch += 1

    # -- rules -------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self._open()

    @rule(k=st.integers(-5, 5))
    def add(self, k: int) -> None:
        self._ask("add", k=k)
        self._committed(_added(self.state, k))

    @rule(v=st.integers(0, 9))
    def append(self, v: int) -> None:
        self._ask("append", v=v)
        new = dict(orjson.loads(orjson.dumps(self.state)))
        new.setdefault("items", []).append(v)
        self._committed(new)

    @rule(k=st.integers(1, 5))
    def refuse(self, k: int) -> None:
        with pytest.raises(CommandError) as info:
            self._ask("refuse", k=k)
        assert info.value.code == "refused"

    @rule(k=st.integers(1, 5))
    def crash(self, k: int) -> None:
        self._crash("crash", k=k)

    @rule(k=st.integers(0, 5), j=st.integers(1, 5))
    def commit_then_crash(self, k: int, j: int) -> None:
        before = self.epoch
        self._crash("commit_then_crash", k=k, j=j)
        new = _added(self.state, k)
        if new != self.state:  # committed by the incarnation that then crashed
            self.state, self.version, self.commit_epoch = new, self.version + 1, before

    @rule()
    def restart_agent(self) -> None:
        assert self.rt is not None
        self.rt.restart(AGENT)
        self.epoch += 1

    @rule()
    def restart_runtime(self) -> None:
        assert self.rt is not None
        self.rt.close()
        self.rt = None
        self._open()

    # -- what must hold after every step ----------------------------------------------

    @invariant()
    def agent_and_store_agree_with_the_model(self) -> None:
        if self.rt is None:
            return
        assert self._ask("get") == self.state
        got = self.rt.get_state(AGENT)
        assert got["state"] == self.state
        assert got["version"] == self.version
        assert got["epoch"] == self.commit_epoch
        assert [v.version for v in self.store.versions(AGENT)] == ([self.version] if self.version else [])

    def teardown(self) -> None:
        if self.rt is not None:
            self.rt.close()
            self.rt = None


DurableAgentMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_durable_agent_matches_the_model = DurableAgentMachine.TestCase
