"""A whole node restarted without a kind its agents need, then with it (real nats-server and PostgreSQL).

- The agents it cannot recover are reported: ``/health`` (``recovery``: degraded, ids, missing kinds),
  ``mistersmith health`` and the serve banner; a ``recovery_failed`` event is journaled and published.
- They stay wanted: the next start with the kind brings them back.
- Recovery runs before the bridge connects, yet a watcher on ``agents.*.status.>`` that was connected
  all along sees each recovery event (``started``, ``recovered``, ``recovery_failed``) exactly once, in
  ``seq`` order. The nats-server is the test's own, so it outlives the node's restarts.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from mistersmith import Agent, command
from mistersmith.cli import EXIT_FAILED, main
from mistersmith.cli._serve import _ready_text
from mistersmith.config import Settings, load_settings
from mistersmith.crossing import LoopThread
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.envelope import decode_envelope
from mistersmith.node import Node

WAIT_S = 30.0
RECOVERY_EVENTS = ("started", "recovered", "recovery_failed")


class Greeter(Agent):
    kind = "greeter"

    @command("greet")
    def greet(self, name: str) -> dict[str, str]:
        return {"greeting": f"Hello, {name}!"}


class Watcher:
    """A NATS client on a loop thread of its own, recording every supervision event on agents.*.status.>."""

    def __init__(self, url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._loop = LoopThread("mistersmith-test-watcher")
        try:
            self._nc: NATS = self._loop.run(self._connect(url), WAIT_S)
        except BaseException:
            self._loop.stop()
            raise

    async def _connect(self, url: str) -> NATS:
        nc = await nats.connect(url)
        await nc.subscribe("agents.*.status.>", cb=self._on_message)
        await nc.flush()
        return nc

    async def _on_message(self, msg: Msg) -> None:
        envelope = decode_envelope(msg.data)
        if envelope.type in RECOVERY_EVENTS:
            assert msg.subject == f"agents.{envelope.payload['agent_id']}.status.{envelope.type}"
            with self._cond:
                self.events.append(dict(envelope.payload))
                self._cond.notify_all()

    def wait_for(self, *wanted: tuple[str, str]) -> bool:
        """Until each ``(agent_id, event_type)`` has been seen (since the last ``take``)."""
        def seen() -> bool:
            got = {(e["agent_id"], e["event_type"]) for e in self.events}
            return all(w in got for w in wanted)

        with self._cond:
            return self._cond.wait_for(seen, WAIT_S)

    def take(self) -> list[tuple[str, str, int]]:
        """``(agent_id, event_type, seq)`` of everything the server had sent so far, then forget them."""
        self._loop.run(self._nc.flush(), WAIT_S)  # a round trip: whatever the server had for us arrived
        with self._cond:
            taken = [(e["agent_id"], e["event_type"], e["seq"]) for e in self.events]
            self.events.clear()
        return taken

    def close(self) -> None:
        try:
            self._loop.run(self._nc.close(), WAIT_S)
        finally:
            self._loop.stop()


@pytest.fixture
def watcher(own_nats: EmbeddedNats) -> Iterator[Watcher]:
    made = Watcher(own_nats.url)
    try:
        yield made
    finally:
        made.close()


def _settings(data_dir: Path, nats_url: str, database_url: str) -> Settings:
    return load_settings({"node.data_dir": str(data_dir), "http.port": 0, "nats.url": nats_url,
                          "database.url": database_url})


def _health(node: Node) -> dict[str, Any]:
    assert node.http is not None
    with urllib.request.urlopen(node.http.url + "/health", timeout=10) as resp:
        report: dict[str, Any] = json.loads(resp.read())
    return report


def _recovery_history(node: Node) -> list[tuple[str, str, int]]:
    assert node.runtime is not None
    return [(str(e.agent_id), e.event_type, e.seq) for e in node.runtime.history(event_types=RECOVERY_EVENTS)]


def test_agents_of_a_kind_not_served_are_reported_kept_and_come_back_and_nats_sees_it_all_once(
    node_dir: Path, own_nats: EmbeddedNats, watcher: Watcher, journal_db: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _settings(node_dir, own_nats.url, journal_db)
    with Node(settings, kinds={"greeter": Greeter}) as first:
        assert first.runtime is not None
        first.runtime.spawn("greeter", "g1")
        first.runtime.spawn("echo", "e1")
        assert watcher.wait_for(("g1", "started"), ("e1", "started"))
    watcher.take()  # the first run's live events: not the point here
    # -- restarted without --kind greeter -------------------------------------------------
    second = Node(_settings(node_dir, own_nats.url, journal_db)).start()
    try:
        assert second.runtime is not None and second.journal is not None
        assert {a["id"] for a in second.runtime.list_agents()} == {"e1"}, "g1 is absent"
        health = _health(second)
        assert health["status"] == "degraded"
        recovery = health["components"]["recovery"]
        assert recovery["status"] == "degraded" and recovery["missing_kinds"] == ["greeter"]
        assert [(n["id"], n["kind"]) for n in recovery["not_recovered"]] == [("g1", "greeter")]

        code = main(["--data-dir", str(node_dir), "health"])
        out = capsys.readouterr().out
        assert code == EXIT_FAILED and f"node {second.node_id}: degraded" in out
        assert "recovery" in out and "not recovered: g1 (kind 'greeter' is not registered on this node)" in out

        assert second.runtime.recovery is not None
        banner = _ready_text(second.describe(), second.settings, sorted(second.runtime.kinds()),
                             second.runtime.recovery.not_recovered)
        assert "  not recovered  g1 (kind 'greeter' is not served: start with --kind greeter=MODULE:CLASS" in banner

        assert second.journal.flush(10)
        journaled = list(second.journal.replay(event_types=["recovery_failed"]))
        assert [(e.agent_id, e.kind, e.data["kind_missing"]) for e in journaled] == [("g1", "greeter", True)]

        assert watcher.wait_for(("e1", "recovered"), ("g1", "recovery_failed"))
        expected = _recovery_history(second)
        assert [(a, t) for a, t, _ in expected if a != "root"] == [
            ("g1", "recovery_failed"), ("e1", "started"), ("e1", "recovered")]  # in start order
    finally:
        second.stop()
    assert watcher.take() == expected, "each once, in seq order, published although NATS came up after recovery"

    # -- and with it again --------------------------------------------------------------------
    with Node(_settings(node_dir, own_nats.url, journal_db), kinds={"greeter": Greeter}) as third:
        assert third.runtime is not None
        assert {a["id"] for a in third.runtime.list_agents()} == {"g1", "e1"}
        assert third.runtime.ask("g1", "greet", {"name": "Ada"}, timeout=10) == {"greeting": "Hello, Ada!"}
        assert _health(third)["components"]["recovery"] == {"status": "ok", "recovered": 2}
        assert watcher.wait_for(("g1", "recovered"), ("e1", "recovered"))
        expected = _recovery_history(third)
        assert sorted((a, t) for a, t, _ in expected if a != "root") == [
            ("e1", "recovered"), ("e1", "started"), ("g1", "recovered"), ("g1", "started")]
    assert watcher.take() == expected
