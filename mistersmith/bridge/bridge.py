"""``Bridge``: one Runtime's agents on one NATS connection.

The bridge is pure asyncio code on the node's event-loop thread. It reaches the
agents only through the Runtime's non-blocking API (``aask``, ``send``,
``aspawn``, ``astop``, ``arestart``, ``list_agents``, ``get_agent``,
``event_stream``) and ties the parts together:

- ``CommandRouter``: ``agents.{id}.commands.*`` per hosted agent;
- ``StatusPublisher``: every supervision event, in order, and heartbeats;
- ``ControlPlane``: ``system.control.*`` (spawn placement, list across nodes...; with an injected
  ``cluster``, the ``ClusterOps`` port, also ``nodes``, ``drain`` and ``rebalance``);
- ``ServiceDirectory`` (``bridge.services``): which agents run where, on ``agents.discovery.announce``/``query``;
- ``Membership``: which nodes share the bus;
- ``TaskQueue`` (``bridge.tasks``): JetStream work queues, served with ``await bridge.tasks.serve(kind)``
  (a node serves every kind it runs, each with a pool of agents: ``task_agents.serve_pools``);
  ``TaskTracker`` (``bridge.task_tracker``): task states, the web's ``Tasks`` port (durable
  through an injected ``task_store``, which the queue's workers write their claims and
  outcomes to, and the tracker trusts over any NATS message);
- ``DiscoveryIngest``: discoveries (shared knowledge) any NATS client publishes on
  ``discoveries.*.*``, handed to an injected ``ingest_discovery`` (the node's discovery hub);
  ``publish_discovery`` sends this node's own.

One task pumps supervision events: an agent is routed before its ``started``
event is published (so whoever sees the event can command it), and events
are published in ``seq`` order. A second task ticks: heartbeats, node
presence, periodic announcements, and forgetting agents that are gone.

With ``replay_history=True`` the pump begins with the runtime's kept events
(``runtime.history()``) emitted before the bridge subscribed, then goes on
with the live ones, each event once and all in ``seq`` order
(``Runtime.event_stream(include_history=True)``: subscribe, then take the
history up to the last seq the bus had delivered, then skip live events up
to it). A node sets it because it recovers its agents before NATS is
connected: their ``started`` and ``recovered`` (or ``recovery_failed``)
events reach ``agents.*.status.>`` once the bridge is up. It is off by
default: a second bridge on the same runtime would publish that history
again.

The bridge does not own the NATS connection or the Runtime: whoever made them
closes them, after ``Bridge.close()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from mistersmith.crossing import EventStream
from mistersmith.discovery import Discovery
from mistersmith.envelope import encode_json
from mistersmith.errors import RestartingError, RuntimeClosedError, SpecError, UnknownAgentError
from mistersmith.ports import ClusterOps, TaskStore
from mistersmith.runtime import Runtime
from mistersmith.supervisors import SupervisionEvent

from . import subjects
from .commands import CommandRouter
from .remote import RemoteAgents
from .connection import ConnectionStats
from .control import ControlPlane
from .control_payloads import parse_filters
from .counters import BridgeCounters
from .ingest import DiscoveryIngest, Ingest
from .lifecycle import TaskSet, cancel_and_wait, unsubscribe_quietly
from .membership import Membership
from .services import ServiceDirectory
from .status import StatusPublisher
from .task_status import TaskTracker
from .tasks import TaskOptions, TaskQueue
from .wire import Wire

__all__ = ["Bridge", "BridgeOptions"]

logger = logging.getLogger("mistersmith.bridge")

_ROUTED_EVENTS = frozenset({"started", "restarted", "recovered", "resumed", "paused"})
_ANNOUNCED_EVENTS = frozenset({"started", "restarted", "recovered"})


def _whole_s(seconds: float) -> int:
    """nats-py's ``flush`` takes whole seconds."""
    return max(1, round(seconds))


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    """The bridge's timings and bounds; every default is stated here once.

    - ``heartbeat_interval_s``: heartbeats and node presence;
    - ``announce_interval_s``: periodic announcements of every agent;
    - ``ask_timeout_s``: how long a request waits for its agent (hung handlers
      are failed sooner by the agent's own ``command_timeout_s``);
    - ``forward_timeout_s``: a control request forwarded to another node;
    - ``gather_timeout_s``: ``list``/``tree``/``query`` wait at most this for every node;
    - ``cluster_timeout_s``: a ``drain`` or ``rebalance`` forwarded to another node (its agents
      must move first; a caller's ``Mistersmith-Timeout`` may shorten it);
    - ``node_expiry_s``: a node not heard from for this long is forgotten
      (default: three heartbeats);
    - ``pending_msgs_limit``: per-subscription client buffer (past it nats-py
      drops and reports a slow consumer, which is counted);
    - ``event_buffer``: supervision events waiting to be published (past it the
      oldest are dropped, counted and logged).
    """

    heartbeat_interval_s: float = 10.0
    announce_interval_s: float = 30.0
    ask_timeout_s: float = 60.0
    forward_timeout_s: float = 5.0
    gather_timeout_s: float = 2.0
    cluster_timeout_s: float = 120.0
    node_expiry_s: float | None = None
    pending_msgs_limit: int = 65_536
    event_buffer: int = 10_000

    def __post_init__(self) -> None:
        for key in ("heartbeat_interval_s", "announce_interval_s", "ask_timeout_s", "forward_timeout_s",
                    "gather_timeout_s", "cluster_timeout_s", "node_expiry_s"):
            value = getattr(self, key)
            if value is None and key == "node_expiry_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise SpecError(None, key, value, "use a number of seconds > 0")
        for key in ("pending_msgs_limit", "event_buffer"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(None, key, value, "use an integer >= 1")

    @property
    def expiry_s(self) -> float:
        return self.node_expiry_s if self.node_expiry_s is not None else 3 * self.heartbeat_interval_s


class Bridge:
    """Makes a Runtime's agents reachable over a NATS connection. Create and use on the event loop."""

    def __init__(
        self,
        runtime: Runtime,
        nc: NATS,
        *,
        options: BridgeOptions | None = None,
        connection_stats: ConnectionStats | None = None,
        shutdown: Callable[[], Awaitable[None]] | None = None,
        task_options: TaskOptions | None = None,
        task_store: TaskStore | None = None,
        ingest_discovery: Ingest | None = None,
        replay_history: bool = False,
        serving: Callable[[], bool] = lambda: True,
        node_facts: Callable[[], dict[str, Any]] = dict,
        cluster: ClusterOps | None = None,
    ) -> None:
        self.runtime = runtime
        self.serving = serving
        self._replay_history = replay_history
        self.nc = nc
        self.remote = RemoteAgents(nc)  # the RemoteCommands port: agents on other nodes
        self.node_id = runtime.node_id
        self.options = options or BridgeOptions()
        self.connection_stats = connection_stats or ConnectionStats()
        self.counters = BridgeCounters()
        self.wire = Wire(nc, self.counters)
        opts = self.options
        self.membership = Membership(self.wire, self.node_id, expiry_s=opts.expiry_s, facts=node_facts)
        self.status = StatusPublisher(self.wire, self.counters, self.node_id)
        self.router = CommandRouter(
            runtime, self.wire, self.counters, control_handler=self._on_agent_control,
            ask_timeout_s=opts.ask_timeout_s, pending_msgs_limit=opts.pending_msgs_limit, serving=serving,
        )
        self.services = ServiceDirectory(runtime, self.wire, self.counters, gather=self._gather, filters=parse_filters)
        self.control = ControlPlane(
            runtime, self.wire, self.counters, self.membership, self.router, self.services.local_agents,
            forward_timeout_s=opts.forward_timeout_s, gather_timeout_s=opts.gather_timeout_s, shutdown=shutdown,
            serving=serving, cluster=cluster, cluster_timeout_s=opts.cluster_timeout_s,
        )
        self.tasks = TaskQueue(runtime, self.wire, task_options, store=task_store)
        self.task_tracker = TaskTracker(self.tasks, self.wire, store=task_store)
        self.ingest = (DiscoveryIngest(self.wire, self.counters, ingest_discovery,
                                       pending_msgs_limit=opts.pending_msgs_limit)
                       if ingest_discovery is not None else None)
        self._stream: EventStream | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._side = TaskSet()
        self._started = False
        self._closed = False

    # -- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe everything and route every agent hosted now; returns once the server has the subscriptions."""
        if self._started:
            return
        self._started = True
        self._stream = self.runtime.event_stream(maxsize=self.options.event_buffer,
                                                 include_history=self._replay_history)
        await self.control.start()
        await self.services.start()
        await self.task_tracker.start()
        if self.ingest is not None:
            await self.ingest.start()
        for info in self.runtime.list_agents():
            await self.router.route(str(info["id"]))
        await self.membership.start()
        await self.nc.flush(timeout=_whole_s(self.options.forward_timeout_s))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pump(self._stream), name="mistersmith-bridge-events"),
            loop.create_task(self._tick(), name="mistersmith-bridge-tick"),
        ]
        logger.info("bridge for node %s started (%d agents routed)", self.node_id, len(self.router.routed()))

    async def close(self) -> None:
        """Say goodbye, unsubscribe and stop the tasks; pending requests are abandoned. Idempotent."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        await self.tasks.close()
        await self.task_tracker.close()
        if self.ingest is not None:
            await self.ingest.close()
        if self._stream is not None:
            self._stream.close()
        await cancel_and_wait([*self._tasks, *self._side], self.options.forward_timeout_s)
        await self.membership.close()
        await self.services.close()
        await self.control.close()
        await self.router.close()
        if self.nc.is_connected:
            try:
                await self.nc.flush(timeout=_whole_s(self.options.forward_timeout_s))
            except Exception as exc:
                logger.warning("bridge close: flush failed: %r", exc)
        logger.info("bridge for node %s closed", self.node_id)

    async def __aenter__(self) -> Bridge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- for library users -----------------------------------------------------------------

    async def route(self, agent_id: str) -> None:
        """Make an agent spawned through the Runtime reachable over NATS now (the event pump does it soon anyway)."""
        self.runtime.get_agent(agent_id)  # UnknownAgentError if not hosted here
        await self.router.route(agent_id)

    async def aspawn(self, kind: str, agent_id: str | None = None, config: Mapping[str, Any] | None = None,
                     **options: Any) -> str:
        """``Runtime.aspawn``, and routed over NATS before it returns: the server has the agent's
        subscriptions (a ``flush`` round trip), so another connection's request finds it at once."""
        new_id = await self.runtime.aspawn(kind, agent_id, config, **options)
        await self.router.route(new_id)
        await self.nc.flush()
        return new_id

    async def publish_discovery(self, discovery: Discovery) -> None:
        """Publish a stored discovery on ``discoveries.{agent_id}.{discovery_type}`` (the hub's
        ``Publish`` port), without its ``source`` (receivers set it themselves; ``Discovery.to_wire``)."""
        await self.wire.publish(discovery.subject, encode_json(discovery.to_wire()))

    def stats(self) -> dict[str, Any]:
        """Counters of the bridge and of its connection (never blocks)."""
        nc = self.nc
        return {
            "node_id": self.node_id,
            "connected": nc.is_connected,
            "reconnecting": nc.is_reconnecting,
            "routed_agents": len(self.router.routed()),
            "nodes": self.membership.known(),
            "events_dropped": self._stream.dropped if self._stream is not None else 0,
            **self.counters.snapshot(),
            **self.connection_stats.snapshot(),
            "msgs_in": nc.stats["in_msgs"],
            "msgs_out": nc.stats["out_msgs"],
            "bytes_in": nc.stats["in_bytes"],
            "bytes_out": nc.stats["out_bytes"],
        }

    async def nats_stats(self) -> dict[str, Any]:
        """The ``NatsStats`` port: the connection's real counters and a measured round trip."""
        rtt_ms: float | None = None
        if self.nc.is_connected:
            start = time.perf_counter()
            try:
                await self.nc.flush(timeout=1)
                rtt_ms = round((time.perf_counter() - start) * 1000, 3)
            except Exception:
                rtt_ms = None
        stats = self.stats()
        server = self.nc.connected_url
        return {
            "connected": stats["connected"],
            "server": server.netloc if server is not None else None,
            "msgs_in": stats["msgs_in"],
            "msgs_out": stats["msgs_out"],
            "bytes_in": stats["bytes_in"],
            "bytes_out": stats["bytes_out"],
            "reconnects": stats["reconnects"],
            "errors": stats["errors"],
            "rtt_ms": rtt_ms,
        }

    # -- internals -----------------------------------------------------------------------

    async def _gather(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        return await self.control.gather(dict(filters))

    async def _on_agent_control(self, msg: Any) -> None:
        await self.control.on_agent_control(msg)

    def _background(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("bridge background task failed")

        self._side.spawn(run())

    async def _pump(self, stream: EventStream) -> None:
        async for event in stream:
            try:
                await self._on_event(event)
            except Exception:
                logger.exception("bridge: handling event %s of %s failed", event.event_type, event.agent_id)

    async def _on_event(self, event: SupervisionEvent) -> None:
        agent_id = event.agent_id
        if agent_id is not None:
            if event.event_type in _ROUTED_EVENTS:
                if self._hosted(agent_id):
                    await self.router.route(agent_id)
            elif event.event_type == "stopped" and not self._hosted(agent_id):
                await self.router.unroute(agent_id)
        await self.status.publish_event(event)
        if agent_id is not None and event.event_type in _ANNOUNCED_EVENTS:
            self._background(self.services.announce(agent_id))

    async def drop_routes(self, agent_ids: list[str]) -> None:
        """Stop answering for these agents here now (a node that lost its lease dropped them)."""
        for agent_id in agent_ids:
            await self.router.unroute(agent_id)

    async def forget_routes(self, agent_ids: list[str], within_s: float = 30.0) -> None:
        """Stop answering here for these agents, handed to another node, as soon as it runs them.

        Until then this node answers them ``restarting`` (the runtime's ``moved``), so a caller
        retries rather than hear nothing. The taker routes an agent before it publishes its
        ``taken_over`` (one connection: NATS keeps that order), so once that event arrives
        here the taker answers and this node can let go; after ``within_s`` it lets go anyway.
        Returns at once; the watching runs in the background."""
        if not agent_ids:
            return
        waiting = set(agent_ids)
        done = asyncio.Event()

        async def on_taken(msg: Msg) -> None:
            agent_id = msg.subject.split(".")[1]
            if agent_id in waiting:
                waiting.discard(agent_id)
                await self.router.unroute(agent_id)
            if not waiting:
                done.set()

        subs = [await self.nc.subscribe(subjects.status(a, "taken_over"), cb=on_taken) for a in agent_ids]
        await self.nc.flush()

        async def let_go() -> None:
            try:
                await asyncio.wait_for(done.wait(), within_s)
            except asyncio.TimeoutError:
                for agent_id in list(waiting):
                    await self.router.unroute(agent_id)
            finally:
                await unsubscribe_quietly(subs, "handoff watch")

        self._background(let_go())

    def _hosted(self, agent_id: str) -> bool:
        try:
            self.runtime.get_agent(agent_id)
        except (UnknownAgentError, RuntimeClosedError):  # closing: nothing is hosted any more
            return False
        except RestartingError:  # handed to another node a moment ago: keep answering `restarting` (the tick
            return True          # unroutes it once list_agents no longer has it)
        return True

    async def _tick(self) -> None:
        opts = self.options
        next_announce = time.monotonic()
        while True:
            agents = self.runtime.list_agents()
            await self.status.heartbeat(agents)
            await self.membership.beat()
            hosted = {str(a["id"]) for a in agents}
            for agent_id in self.router.routed() - hosted:
                if not self.runtime.moving(agent_id):  # a handed agent's route goes once its taker runs it
                    await self.router.unroute(agent_id)
            if time.monotonic() >= next_announce:
                next_announce = time.monotonic() + opts.announce_interval_s
                self._background(self.services.announce_all())
            await asyncio.sleep(opts.heartbeat_interval_s)
