"""The control plane: ``system.control.{action}`` (request/reply).

Every node subscribes to ``system.control.*`` in one queue group, so exactly
one node answers each request:

- ``spawn`` ``{"kind", "agent_id"?, "config"?, "restart"?, "supervisor"?, "durable"?, "node"?}``
  spawns on the node that got it, or, when ``node`` names another node,
  forwards to ``system.node.{node}.spawn`` (``unknown_node`` if none answers).
  An ``agent_id`` already hosted on any node is refused (``already_exists``).
  The reply is ``{"agent_id", "node"}``, sent once the agent is routed.
- ``stop``, ``restart``, ``get`` ``{"agent_id"}`` act here if the agent is hosted
  here, else are forwarded to ``agents.{id}.control.{action}``, which only the
  hosting node subscribes to (``unknown_agent`` if nobody answers). ``restart``
  takes ``"reset_state": true`` too: a durable agent starts again from an
  empty state (``invalid_spec`` for one that is not durable).
- ``list`` ``{"kind"?, "node"?, "command"?}`` gathers ``system.nodes.list``
  answers from every known node: ``{"agents", "nodes", "missing"}``.
- ``tree`` ``{"node"?}`` gathers ``system.nodes.tree`` answers (each node's
  ``Runtime.tree()``) the same way: ``{"trees", "nodes", "missing"}``.
- ``state`` ``{"agent_id", "version"?}``: a durable agent's last committed state (or that
  version), read from the state store, so whichever node answers knows it
  (``Runtime.get_state``; ``unknown_agent`` if none is kept).
- ``ping`` ``{"node"?}``: ``{"node", "agents", "uptime_s", "nodes"}``.
- ``shutdown`` ``{"node"}``: only where the node allows it (else ``unauthorized``).
- ``nodes`` ``{}``, ``drain`` ``{"node", "exit"?}``, ``rebalance`` ``{"node"?}``: the cluster
  (``cluster_control``; ``unavailable`` on a node outside one).

Malformed requests get ``invalid_payload``/``invalid_envelope`` replies. Runs
on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from mistersmith.envelope import (
    EnvelopeError,
    Reply,
    decode_command,
    decode_reply,
    encode_exception,
    encode_json,
    encode_ok,
)
from mistersmith.errors import AgentExistsError, MisterSmithError, UnknownAgentError
from mistersmith.ports import ClusterOps
from mistersmith.runtime import Runtime

from . import subjects
from .cluster_control import CLUSTER_ACTIONS, ClusterActions
from .commands import CommandRouter, _caller_timeout_s
from .control_payloads import (
    Refused,
    agent_id_of,
    bad,
    check_cancel,
    check_restart,
    check_spawn,
    check_state,
    matches,
    node_only,
    parse_filters,
)
from .counters import BridgeCounters
from .door import nats_acting
from .gather import gather_nodes
from .membership import Membership
from .lifecycle import TaskSet, unsubscribe_quietly
from .trace import trace_headers
from .wire import Wire

__all__ = ["ControlPlane"]

_CLOSE_S = 5.0

logger = logging.getLogger("mistersmith.bridge.control")

LocalAgents = Callable[[], Awaitable[list[dict[str, Any]]]]
Shutdown = Callable[[], Awaitable[None]]


class ControlPlane:
    """Answers ``system.control.*``, ``system.node.{me}.*``, ``agents.{id}.control.*``,
    ``system.nodes.list`` and ``system.nodes.tree``."""

    def __init__(
        self,
        runtime: Runtime,
        wire: Wire,
        counters: BridgeCounters,
        membership: Membership,
        router: CommandRouter,
        local_agents: LocalAgents,
        *,
        forward_timeout_s: float,
        gather_timeout_s: float,
        shutdown: Shutdown | None,
        serving: Callable[[], bool] = lambda: True,
        cluster: ClusterOps | None = None,
        cluster_timeout_s: float = 120.0,
    ) -> None:
        self.runtime = runtime
        self.serving = serving
        self.node_id = runtime.node_id
        self.wire = wire
        self.counters = counters
        self.membership = membership
        self.router = router
        self.local_agents = local_agents
        self.forward_timeout_s = forward_timeout_s
        self.gather_timeout_s = gather_timeout_s
        self._shutdown = shutdown
        self.cluster = ClusterActions(self.node_id, cluster, self._forward, may_exit=shutdown is not None,
                                      timeout_s=cluster_timeout_s)
        self._started = time.monotonic()
        self._subs: list[Subscription | None] = []
        self._tasks = TaskSet()

    async def start(self) -> None:
        nc = self.wire.nc
        self._subs = [
            await nc.subscribe(subjects.wildcard("control"), queue=subjects.SPAWN_QUEUE, cb=self._on_message),
            await nc.subscribe(subjects.wildcard("node_control", node_id=self.node_id), cb=self._on_message),
            await nc.subscribe(subjects.nodes("list"), cb=self._on_list_scatter),
            await nc.subscribe(subjects.nodes("tree"), cb=self._on_tree_scatter),
        ]

    async def stop_placements(self) -> None:
        """Leave the ``system.control.*`` queue group (a draining node): spawns, lists and pings go
        to the other nodes from now on; this node still answers ``system.node.<id>.*``."""
        if self._subs:
            queue_sub, self._subs[0] = self._subs[0], None
            await unsubscribe_quietly([queue_sub], "control queue group")

    async def close(self) -> None:
        await unsubscribe_quietly(self._subs, "control")
        self._subs.clear()
        await self._tasks.close(_CLOSE_S)

    # -- dispatch ------------------------------------------------------------------

    async def on_agent_control(self, msg: Msg) -> None:
        """``agents.{id}.control.{action}``: the callback the router subscribes per agent."""
        await self._on_message(msg)

    async def _on_message(self, msg: Msg) -> None:
        self.counters.add("control_in")
        self._tasks.spawn(self._handle(msg))

    async def _handle(self, msg: Msg) -> None:
        headers = trace_headers(msg.headers)
        where = subjects.parse_control(msg.subject)  # one of the subjects subscribed above
        action, local = where.action, where.routed  # routed: already at the node it names
        try:
            payload, _ = decode_command(msg.data)
            if where.agent_id is not None:
                if action not in subjects.AGENT_ACTIONS:
                    raise Refused("unknown_command", f"agents.{{id}}.control takes: {', '.join(subjects.AGENT_ACTIONS)}")
                payload = {**payload, "agent_id": where.agent_id}
            waits_s = _caller_timeout_s(msg.headers, self.cluster.timeout_s)  # for a forwarded drain/rebalance
            with nats_acting(msg.headers):  # the audit trail's actor for what the Runtime does now
                reply = await self._act(action, payload, local, waits_s)
        except MisterSmithError as exc:
            if isinstance(exc, EnvelopeError):
                self.counters.add("invalid_in")
            reply = Reply.from_exception(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("control %s failed", msg.subject)
            reply = Reply.from_exception(exc)
        if msg.reply:
            await self.wire.reply(msg, reply, headers)
        else:
            logger.warning("control %s without a reply subject: %r", msg.subject, reply)
        # This node answered ok for itself (on system.control.* or its own node subject): stop now.
        if self._shutdown is not None and (
            (action == "shutdown" and reply.ok and (local or payload.get("node") == self.node_id))
            or self.cluster.exits_after(action, payload, reply, local)
        ):
            with nats_acting(msg.headers):
                self.runtime.record_action("shutdown", self.node_id)
            await self._shutdown()

    async def _act(self, action: str, payload: dict[str, Any], local: bool, timeout_s: float) -> Reply:
        if action == "spawn":
            return await self._spawn(check_spawn(payload), local)
        if action == "cancel":
            agent_id, cid = check_cancel(payload)
            cancelled = await self.runtime.acancel(agent_id, cid)
            return Reply.success({"agent_id": agent_id, "correlation_id": cid, "cancelled": cancelled})
        if action == "restart":
            agent_id, reset_state = check_restart(payload)
            return await self._agent_action(action, agent_id, local, reset_state=reset_state)
        if action in ("stop", "get"):
            return await self._agent_action(action, agent_id_of(payload, action), local)
        if action == "list":
            return Reply.success(await self.gather(parse_filters(payload)))
        if action == "tree":
            return Reply.success(await self.gather_trees(node_only(payload, "tree")))
        if action == "state":
            agent_id, version = check_state(payload)
            return Reply.success(await self.runtime.aget_state(agent_id, version))
        if action == "ping":
            return await self._ping(payload, local)
        if action == "kinds":
            return await self._kinds(payload, local)
        if action == "shutdown":
            return await self._shutdown_node(payload, local)
        if action in CLUSTER_ACTIONS:
            return await self.cluster.act(action, payload, local, timeout_s)
        raise Refused("unknown_command", f"no control action {action!r}; use: {', '.join(subjects.CONTROL_ACTIONS)}")

    # -- forwarding ----------------------------------------------------------------

    async def _forward(self, subject: str, payload: Mapping[str, Any], missing: Refused,
                       timeout_s: float | None = None) -> Reply:
        """The other node's reply, relayed as it answered (waiting ``timeout_s``, default ``forward_timeout_s``)."""
        wait_s = self.forward_timeout_s if timeout_s is None else timeout_s
        try:
            msg = await self.wire.nc.request(subject, encode_json(dict(payload)), timeout=wait_s)
        except NoRespondersError:
            raise missing from None
        except NatsTimeoutError:
            raise Refused("timeout", f"{subject} did not answer within {wait_s:.2f} s") from None
        try:
            return decode_reply(msg.data)
        except EnvelopeError as exc:  # not a MisterSmith node: not the caller's invalid input either
            raise Refused("internal", f"{subject} answered with no valid reply: {exc.problem}") from None

    # -- actions -------------------------------------------------------------------

    async def _spawn(self, spec: dict[str, Any], local: bool) -> Reply:
        if not self.serving():
            raise Refused("unavailable", f"node {self.node_id!r} is not serving now (its cluster lease is lost); "
                                         "retry: another node takes the spawn")
        node = spec.pop("node", None)
        if node is not None and node != self.node_id and not local:
            return await self._forward(subjects.node_control(node, "spawn"), {**spec, "node": node},
                                       Refused("unknown_node", f"no node {node!r} answers on this NATS"))
        agent_id = spec.get("agent_id")
        if agent_id is not None:
            await self._check_unique(agent_id)
        options = {k: spec[k] for k in ("durable", "idle_timeout_s") if spec.get(k) is not None}
        new_id = await self.runtime.aspawn(
            spec["kind"], agent_id, spec.get("config"), spec.get("restart"), spec.get("supervisor") or "root",
            **options,
        )
        await self.router.route(new_id)
        logger.info("spawned %s (%s) over NATS", new_id, spec["kind"], extra={"agent_id": new_id})
        return Reply.success({"agent_id": new_id, "node": self.node_id})

    async def _check_unique(self, agent_id: str) -> None:
        try:
            self.runtime.get_agent(agent_id)
        except UnknownAgentError:
            pass
        else:
            raise AgentExistsError(agent_id)
        try:
            await self.wire.nc.request(subjects.agent_control(agent_id, "get"), b"", timeout=self.forward_timeout_s)
        except NoRespondersError:
            return
        except NatsTimeoutError:
            logger.warning("could not check that agent id %s is free (no answer); spawning anyway", agent_id)
            return
        raise AgentExistsError(agent_id)

    async def _agent_action(self, action: str, agent_id: str, local: bool, *, reset_state: bool = False) -> Reply:
        try:
            self.runtime.get_agent(agent_id)
        except UnknownAgentError:
            if local:
                await self.router.unroute(agent_id)
                raise
            payload: dict[str, Any] = {"agent_id": agent_id, **({"reset_state": True} if reset_state else {})}
            return await self._forward(subjects.agent_control(agent_id, action), payload,
                                       Refused("unknown_agent", f"no node hosts agent {agent_id!r}"))
        if action == "get":
            return Reply.success(self.runtime.get_agent(agent_id))
        if action == "stop":
            await self.runtime.astop(agent_id)
            await self.router.unroute(agent_id)
            return Reply.success({"agent_id": agent_id, "node": self.node_id, "stopped": True})
        await self.runtime.arestart(agent_id, reset_state=reset_state)
        return Reply.success({"agent_id": agent_id, "node": self.node_id, "restarted": True,
                              **({"state_reset": True} if reset_state else {})})

    async def _ping(self, payload: Mapping[str, Any], local: bool) -> Reply:
        node = node_only(payload, "ping")
        if node is not None and node != self.node_id and not local:
            return await self._forward(subjects.node_control(node, "ping"), payload,
                                       Refused("unknown_node", f"no node {node!r} answers on this NATS"))
        return Reply.success({
            "node": self.node_id,
            "agents": len(self.runtime.list_agents()),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "nodes": self.membership.known(),
        })

    async def _kinds(self, payload: Mapping[str, Any], local: bool) -> Reply:
        node = node_only(payload, "kinds")
        if node is not None and node != self.node_id and not local:
            return await self._forward(subjects.node_control(node, "kinds"), payload,
                                       Refused("unknown_node", f"no node {node!r} answers on this NATS"))
        return Reply.success({"node": self.node_id, "kinds": self.runtime.kinds()})

    async def _shutdown_node(self, payload: Mapping[str, Any], local: bool) -> Reply:
        node = payload.get("node")
        if set(payload) - {"node"} or not subjects.is_token(node):
            raise bad('shutdown: name the node, {"node": "<node id>"}')
        assert isinstance(node, str)
        if node != self.node_id and not local:
            return await self._forward(subjects.node_control(node, "shutdown"), payload,
                                       Refused("unknown_node", f"no node {node!r} answers on this NATS"))
        if self._shutdown is None:
            raise Refused("unauthorized", f"node {self.node_id!r} does not allow shutdown over NATS")
        logger.warning("shutdown requested over NATS")
        return Reply.success({"node": self.node_id, "shutting_down": True})

    # -- list across nodes ---------------------------------------------------------

    def _expected(self, node: str | None) -> list[str]:
        """The nodes a gather waits for: every known node, or just ``node`` (known or not)."""
        return self.membership.known() if node is None else [node]

    async def gather(self, filters: Mapping[str, str]) -> dict[str, Any]:
        """Every known node's agents that pass ``filters``: ``{"agents", "nodes", "missing"}``."""
        expected = self._expected(filters.get("node"))
        answers = await gather_nodes(self.wire.nc, subjects.nodes("list"), expected, self.gather_timeout_s)
        agents = [a for answer in answers.values() for a in answer if matches(a, filters)]
        agents.sort(key=lambda a: (str(a.get("id")), str(a.get("node_id"))))
        return {"agents": agents, "nodes": sorted(answers), "missing": sorted(set(expected) - set(answers))}

    async def _on_list_scatter(self, msg: Msg) -> None:
        if msg.reply:
            agents = await self.local_agents()
            await self.wire.publish(msg.reply, encode_ok({"node": self.node_id, "agents": agents}))

    # -- tree across nodes ---------------------------------------------------------

    async def gather_trees(self, node: str | None) -> dict[str, Any]:
        """Every known node's supervision tree, or only ``node``'s: ``{"trees", "nodes", "missing"}``.

        The scatter names ``node``, so the other nodes do not send their trees for nothing.
        """
        expected = self._expected(node)
        asked = encode_json({} if node is None else {"node": node})
        answers = await gather_nodes(self.wire.nc, subjects.nodes("tree"), expected, self.gather_timeout_s,
                                     asked, key="tree")
        if node is not None:
            answers = {n: tree for n, tree in answers.items() if n == node}
        return {"trees": dict(sorted(answers.items())), "nodes": sorted(answers),
                "missing": sorted(set(expected) - set(answers))}

    async def _on_tree_scatter(self, msg: Msg) -> None:
        """``system.nodes.tree``: this node's ``Runtime.tree()``, unless the request names another node."""
        if not msg.reply:
            return
        try:
            asked, _ = decode_command(msg.data)
        except EnvelopeError:
            asked = {}
        if asked.get("node") not in (None, self.node_id):
            return
        try:
            reply = encode_ok({"node": self.node_id, "tree": self.runtime.tree()})
        except Exception as exc:  # a closing runtime: the gatherer logs it and counts this node missing
            logger.warning("system.nodes.tree: %r", exc)
            reply = encode_exception(exc)
        await self.wire.publish(msg.reply, reply)
