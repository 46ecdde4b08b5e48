"""Scopes over NATS are nats-server's own permissions: on a node's embedded server, each
[[auth.nats_users]] user may publish and subscribe to what its scopes name, and nothing else."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from mistersmith.config import load_settings
from mistersmith.node import Node
from mistersmith.scopes import NATS_SCOPES, NATS_SUBSCRIBE, SCOPES
from mistersmith.tokens import NatsUserEntry, mint_nats_user

READER = mint_nats_user("reader", ["read"])
COMMANDER = mint_nats_user("commander", ["command"])
CONTROLLER = mint_nats_user("controller", ["control", "read"])
ONE_AGENT = mint_nats_user("one-agent", ["command"], "a1")
BY_SCOPE = {scope: mint_nats_user(f"only-{scope}", [scope]) for scope in SCOPES}

# By hand, from issue 15 (not from mistersmith.scopes), so that a wrong table fails here.
EXPECTED_PUBLISH = {
    "agents.*.commands.*": "command", "agents.*.control.get": "read", "agents.*.control.stop": "control",
    "agents.*.control.restart": "control", "agents.*.control.cancel": "control",
    **{f"system.control.{a}": "control" for a in ("spawn", "stop", "restart", "drain", "rebalance")},
    **{f"system.control.{a}": "read" for a in ("get", "list", "tree", "state", "ping", "kinds", "nodes")},
    "system.control.shutdown": "admin",
    **{f"system.node.*.{a}": "control" for a in ("spawn", "drain", "rebalance")},
    "system.node.*.ping": "read", "system.node.*.kinds": "read", "system.node.*.shutdown": "admin",
    "agents.discovery.query": "read", "discoveries.*.*": "command", "tasks.*.queue.*": "command",
}
EXPECTED_SUBSCRIBE = {"agents.*.status.>": "read", "system.events.>": "read", "system.nodes.*": "read",
                      "discoveries.>": "read", "tasks.*.progress": "read", "tasks.*.result": "read"}


def _concrete(pattern: str) -> str:
    return ".".join({"*": "x"}.get(t, t) for t in pattern.split("."))


class _As:
    """A connection as one user; its permission violations, as the client reports them (in order)."""

    def __init__(self, node: Node, user: NatsUserEntry) -> None:
        self.node, self.user = node, user
        self.errors: asyncio.Queue[str] = asyncio.Queue()
        self.nc: Client | None = None

    async def __aenter__(self) -> _As:
        async def collect(exc: Exception) -> None:
            self.errors.put_nowait(str(exc).lower())

        self.nc = await nats.connect(self.node.nats_url, user=self.user.name, password=self.user.password,
                                     inbox_prefix=self.user.inbox_prefix, error_cb=collect, allow_reconnect=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.nc is not None
        await self.nc.close()
        assert self.errors.empty(), "a violation nobody expected"

    async def _violation(self) -> str:
        return await asyncio.wait_for(self.errors.get(), 10)  # the server's -ERR, reported by the client

    async def publishes(self, subject: str) -> bool:
        """Allowed: a flush round trip after the PUB brings no violation (-ERR would precede the PONG)."""
        assert self.nc is not None
        await self.nc.publish(subject, b"!")
        await self.nc.flush(5)
        await asyncio.sleep(0)  # let a reported error's callback task run (a yield, not a wait for time)
        return self.errors.empty()

    async def refused_publish(self, subject: str) -> bool:
        assert self.nc is not None
        await self.nc.publish(subject, b"!")
        error = await self._violation()
        return "permissions violation" in error and f'publish to "{subject.lower()}"' in error

    async def request(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.nc is not None
        reply = await self.nc.request(subject, json.dumps(body).encode(), timeout=10)
        answer: dict[str, Any] = json.loads(reply.data)
        return answer

    async def refused_subscribe(self, subject: str) -> bool:
        assert self.nc is not None
        await self.nc.subscribe(subject)
        error = await self._violation()
        return "permissions violation" in error and f'subscription to "{subject.lower()}"' in error

    async def subscribes(self, subject: str) -> bool:
        """Allowed: a flush round trip after the SUB brings no violation (-ERR would precede the PONG)."""
        assert self.nc is not None
        await self.nc.subscribe(subject)
        await self.nc.flush(5)
        await asyncio.sleep(0)  # let a reported error's callback task run (a yield, not a wait for time)
        return self.errors.empty()


def test_the_hand_written_expectations_match_the_tables() -> None:
    assert dict(NATS_SCOPES) == EXPECTED_PUBLISH
    assert dict(NATS_SUBSCRIBE) == EXPECTED_SUBSCRIBE


def test_nats_users_get_exactly_their_scopes(node_dir: Path, journal_db: str) -> None:
    users = [u.to_table() for u in (READER, COMMANDER, CONTROLLER, ONE_AGENT, *BY_SCOPE.values())]
    settings = load_settings({"node.data_dir": str(node_dir), "http.port": 0, "nats.embedded_port": 0,
                              "database.url": journal_db, "auth.nats_users": users})
    with Node(settings) as node:
        async def scenario() -> None:
            async with _As(node, CONTROLLER) as controller:
                spawned = await controller.request("system.control.spawn", {"kind": "echo", "agent_id": "a1"})
                assert spawned["ok"] is True, spawned
                assert (await controller.request("system.control.list", {}))["ok"] is True
                assert await controller.refused_publish("agents.a1.commands.echo")  # no command scope
                assert await controller.refused_publish("system.control.shutdown")  # no admin scope
            async with _As(node, COMMANDER) as commander:
                assert (await commander.request("agents.a1.commands.echo", {"hi": 1}))["result"] == {"hi": 1}
                assert await commander.refused_publish("system.control.spawn")
                assert await commander.refused_subscribe("agents.*.status.>")  # no read scope
            async with _As(node, READER) as reader:
                assert await reader.subscribes("agents.*.status.>")
                assert (await reader.request("system.control.get", {"agent_id": "a1"}))["ok"] is True
                assert await reader.refused_publish("agents.a1.commands.echo")
                assert await reader.refused_publish("agents.a1.status.started")  # what only nodes say
                assert await reader.refused_subscribe("_INBOX.commander.>")  # others' replies
            async with _As(node, ONE_AGENT) as one:
                assert (await one.request("agents.a1.commands.echo", {}))["ok"] is True
                assert await one.refused_publish("agents.a2.commands.echo")
            # every subject x every scope: a body no node acts on ("!"), so an allowed publish does nothing
            for scope, user in BY_SCOPE.items():
                async with _As(node, user) as conn:
                    for pattern, needed in EXPECTED_PUBLISH.items():
                        subject = _concrete(pattern)
                        if needed == scope:
                            assert await conn.publishes(subject), (scope, subject)
                        else:
                            assert await conn.refused_publish(subject), (scope, subject)
                    for subject, needed in EXPECTED_SUBSCRIBE.items():
                        if needed == scope:
                            assert await conn.subscribes(subject), (scope, subject)
                        else:
                            assert await conn.refused_subscribe(subject), (scope, subject)

        asyncio.run(scenario())
