"""``Node``: one whole MisterSmith node, wired from ``Settings``.

The node is where the edges meet (they never import one another): it starts,
in order, the event-loop thread, the embedded nats-server (when no NATS URL
is set), the embedded PostgreSQL (when no database URL is set), the journal
on that database, the state store of durable agents (``PgStateStore``, the same
database), the Runtime with the journal as its event sink, recovery, the
NATS bridge with the discovery hub (discoveries stored in the journal's
``discoveries`` table, published and ingested on ``discoveries.*.*``; task
states in its ``tasks`` table), the task queue (its streams, and every kind
the node runs served by a pool of ``tasks.concurrency`` agents:
``mistersmith.bridge.task_agents``) and the HTTP shim. ``stop()`` undoes it in
reverse: agents first, then the edges, then the embedded servers, each step
bounded. A data directory serves one node at a time (an exclusive lock).

Files: from ``start()`` to ``stop()`` the process's umask is 077, and what the
node writes in its data directory is ``0600``/``0700`` (``mistersmith.files``);
URLs it shows or writes (``node.json``, ``/health``, ``describe()``) carry no
credentials (``mistersmith.redact``), while ``nats_url`` keeps them to connect.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from mistersmith import tracing
from mistersmith.actors import Agent
from mistersmith.bridge import Bridge, TaskOptions, serve_pools
from mistersmith.bridge.connection import ConnectionStats, ConnectOptions, connect
from mistersmith.bridge.tls import client_context
from mistersmith.cluster import Cluster, LeaseConfig
from mistersmith.cluster_ops import ClusterDoor
from mistersmith.config import Settings
from mistersmith.crossing import LoopThread
from mistersmith.data_dir import DataDirLockedError, lock, read_node_file, stored_node_id, write_node_file
from mistersmith.discoveries import DiscoveryHub
from mistersmith.discovery import Discovery
from mistersmith.embedded.nats import EmbeddedNats, port_is_free
from mistersmith.embedded.nats_auth import CLIENT_FILE, NatsUser, authorization_block, node_users
from mistersmith.embedded.nats_tls import ServerTls
from mistersmith.embedded.postgres import EmbeddedPostgres, let_server_through
from mistersmith.files import UMASK, make_private_dirs, write_private
from mistersmith.kinds import PROCESS_REFUSED, served_kinds
from mistersmith.journal import Journal, JournalConfig, PgDiscoveryStore, PgStateStore, PgTaskStore, PoolConfig
from mistersmith.journal.config import with_ssl
from mistersmith.journal.audit import AuditLog
from mistersmith.journal.audit_read import PgAuditTrail
from mistersmith.redact import strip_userinfo
from mistersmith.runtime import Runtime
from mistersmith.timelines import JournalTimeline
from mistersmith.supervisors import SupervisorSpec, tolerant_root
from mistersmith.web.app import build_app
from mistersmith.web.backends import Backends
from mistersmith.web.config import WebConfig
from mistersmith.web.server import HttpServer, listen

__all__ = ["DataDirLockedError", "Node", "read_node_file"]

logger = logging.getLogger("mistersmith.node")

NATS_PORT_FILE = "port"  # in DIR/nats: the embedded nats-server's last port, kept for the next start
_STEP_S = 30.0  # bound on any single start or stop step on the loop


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mistersmith")
    except PackageNotFoundError:
        return "unknown"


class _JournalHistory:
    """The web's ``History`` port over the journal's replay."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    async def replay_events(
        self, *, agent_id: str | None, since: int | datetime | None, event_types: Sequence[str] | None, limit: int
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        replay = self._journal.replay(agent_id=agent_id, since=since, event_types=event_types)
        try:
            async for event in replay:
                out.append(event.to_dict())
                if len(out) >= limit:
                    break
        finally:
            await replay.aclose()  # gives the pooled connection back clean
        return out


class Node:
    """A Runtime plus its edges. ``start()`` then ``stop()``, or use ``with Node(settings) as node``."""

    def __init__(
        self,
        settings: Settings,
        *,
        kinds: Mapping[str, type[Agent]] | None = None,
        root: SupervisorSpec | None = None,
        on_shutdown_request: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = Path(settings["node.data_dir"]).expanduser().resolve()
        self._kinds = dict(kinds or {})
        self._root = root
        self._on_shutdown_request = on_shutdown_request
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._lock_file: IO[str] | None = None
        self._http_socket: socket.socket | None = None  # bound early (see _start); the HTTP server's once it serves
        self._umask: int | None = None  # the process's umask before start, restored by stop
        self.loop: LoopThread | None = None
        self.runtime: Runtime | None = None
        self.journal: Journal | None = None
        self.audit: AuditLog | None = None  # the audit trail's writer (audit_log)
        self.states: PgStateStore | None = None  # durable agents' state store, in the journal's database
        self.cluster: Cluster | None = None  # membership lease, agent ids and takeover on the same database
        self._left = False  # handed everything over on stop: mark this node down at once
        self.postgres: EmbeddedPostgres | None = None  # the embedded server, when no database URL is set
        self.bridge: Bridge | None = None
        self.discoveries: DiscoveryHub | None = None
        self.http: HttpServer | None = None
        self.nats_url = ""
        self.nats_credentials: str | None = None  # the clients' credentials file of the embedded server
        self.nats_tls_ca: str | None = None  # the CA of the embedded server's certificate, when it serves TLS
        self.node_id = ""

    # -- start ------------------------------------------------------------------

    def start(self) -> Node:
        """Start every part in order; on a failure, stop what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        s = self.settings
        kinds = served_kinds(s, self._kinds)  # a bad node.kinds stops the node before anything starts
        if tracing.configure(s["tracing.exporter"]):  # off by default (and then it costs nothing)
            self._undo.append(("tracing", tracing.shutdown))
        if self._umask is None:
            self._umask = os.umask(UMASK)  # while the node runs, what it creates is its user's alone
        created = make_private_dirs(self.data_dir)
        if not s["database.url"]:
            let_server_through(created)  # under root the embedded PostgreSQL's user must reach DIR/postgres
        self._lock_file = lock(self.data_dir)  # held for the node's life
        # Bound now, handed to the HTTP server last: a port in use stops the node before anything starts.
        self._http_socket = listen(s["http.host"], s["http.port"])
        self.node_id = s["node.id"] or stored_node_id(self.data_dir)
        loop = self.loop = LoopThread("mistersmith-loop")
        self._undo.append(("event loop", loop.stop))

        urls = s["nats.url"]
        own_user: dict[str, str] = {}
        if not urls:
            # Our own server requires a password: a node user, and one for clients (nats_auth).
            credentials = self.data_dir / "nats" / "credentials"
            node_user, client_user = node_users(credentials)
            tls = ServerTls.from_settings(s)  # nats.embedded_tls_*: TLS only, tls://127.0.0.1:PORT
            embedded = EmbeddedNats(self.data_dir / "nats", port=self._nats_port(), fallback_port=True, tls=tls,
                                    config_text=authorization_block(node_user, client_user, s["auth.nats_users"]))
            embedded.start()
            self._undo.append(("embedded nats-server", embedded.stop))
            write_private(self.data_dir / "nats" / NATS_PORT_FILE, f"{embedded.port}\n".encode())
            urls = (embedded.url,)
            own_user = {"user": node_user.user, "password": node_user.password}
            self.nats_credentials = str(credentials / CLIENT_FILE)
            if tls is not None:  # the CA that signed its certificate: the node's, and the CLI's (node.json)
                self.nats_tls_ca = ca = s["nats.tls_ca"] or tls.ca_file
                if ca:
                    own_user["tls_ca"] = ca
        self.nats_url = ",".join(urls)

        journal_config = JournalConfig(
            database_url=with_ssl(s["database.url"], s["database.sslmode"], s["database.sslrootcert"]),
            recover=s["node.recovery"],
            pool=PoolConfig(
                max_size=s["database.pool_max"], min_size=s["database.pool_min"],
                connect_timeout_s=s["database.connect_timeout_s"],
                idle_timeout_s=s["database.idle_timeout_s"], max_lifetime_s=s["database.max_lifetime_s"],
            ),
        )
        if journal_config.resolved_database_url() is None:  # nor $MISTERSMITH_DATABASE_URL
            postgres = self.postgres = EmbeddedPostgres(self.data_dir / "postgres")
            postgres.start()
            self._undo.append(("embedded PostgreSQL", postgres.stop))
            journal_config = replace(journal_config, database_url=postgres.conninfo())
        journal = self.journal = Journal.open(self.data_dir, journal_config, loop=loop)
        self._undo.append(("journal", journal.close))
        # The audit trail (migrated by the journal too): its own write-ahead spool, shipped to audit_log.
        audit = self.audit = AuditLog(self.data_dir / "audit", journal.conninfo, retention_s=s["audit.retention_s"],
                                      record_commands=s["audit.commands"], fsync=journal_config.spool_fsync,
                                      connect_timeout_s=s["database.connect_timeout_s"]).open()
        self._undo.append(("audit log", audit.close))
        # Durable agents' state, effects and epochs: in the same database (migrated by the journal).
        states = self.states = PgStateStore(journal.conninfo, connect_timeout_s=s["database.connect_timeout_s"])
        self._undo.append(("state store", states.close))
        # Membership and agent ids across every node on this database (leases, takeover).
        cluster = self.cluster = Cluster(
            journal.conninfo, self.node_id, version=_version(),
            config=LeaseConfig(s["cluster.node_lease_s"], s["cluster.heartbeat_s"], s["cluster.lease_margin_s"]),
        )

        # A node serves remote clients: one crash-looping agent must not take it
        # down. Agents back off (Akka) and the root tolerates many restarts.
        root = self._root or tolerant_root(
            intensity=s["node.root_intensity"], period_s=s["node.root_period_s"],
            backoff_max_s=s["node.restart_backoff_max_s"],
        )
        runtime = self.runtime = Runtime(
            node_id=self.node_id, root=root, kinds=kinds, sinks=[journal.sink],
            max_agents=s["node.max_agents"], default_kinds=False, refused_kinds={"process": PROCESS_REFUSED},
            max_agents_setting="--max-agents / node.max_agents", state_store=states, owners=cluster.owners,
        )
        runtime.audit = audit  # every door's control actions, recorded (mistersmith.audit)
        self._undo.append(("agents", runtime.close))
        cluster.attach(runtime, facts=self._cluster_facts,
                       recover=lambda: journal.recover(runtime) if s["node.recovery"] else None)
        cluster.start()  # the lease is held before recovery claims any id
        self._undo.append(("cluster membership", lambda: cluster.stop(leave=self._left)))
        if s["node.recovery"]:
            report = journal.recover(runtime)
            logger.info("recovery: %s", report)

        stats = ConnectionStats()
        options = ConnectOptions.from_settings(s, tuple(urls), name=self.node_id, **own_user)
        nc, _ = loop.run(connect(options, stats), _STEP_S)
        self._undo.append(("nats connection", lambda: loop.run(nc.close(), _STEP_S)))
        remote_shutdown = self._shutdown_requested if s["nats.allow_remote_shutdown"] else None

        async def ingest(discovery: Discovery) -> object:
            return await hub.ingest(discovery)

        door = ClusterDoor(cluster, record=runtime.record_action)  # nodes, drain, rebalance for the doors; drain's exit: remote_shutdown
        # Recovery ran before NATS was up: replay_history publishes its events now, once and in order.
        bridge = self.bridge = Bridge(runtime, nc, connection_stats=stats, shutdown=remote_shutdown,
                                      task_options=TaskOptions(max_in_flight=s["tasks.concurrency"],
                                                               replicas=s["tasks.replicas"]),
                                      task_store=PgTaskStore(journal.pool), ingest_discovery=ingest,
                                      replay_history=True, serving=cluster.valid, cluster=door,
                                      node_facts=lambda: {**self._cluster_facts(), "state": cluster.lease.state,
                                                          "run_id": cluster.lease.run_id})
        hub = self.discoveries = DiscoveryHub(store=PgDiscoveryStore(journal.pool, self.node_id),
                                              publish=bridge.publish_discovery)
        loop.run(hub.start(), _STEP_S)
        loop.run(bridge.start(), _STEP_S)
        cluster.connect_edges(flush=journal.flush, stop_placements=lambda: loop.run(bridge.control.stop_placements(), _STEP_S),
                              unroute=lambda ids: loop.run(bridge.forget_routes(ids), _STEP_S),
                              drop_routes=lambda ids: loop.run(bridge.drop_routes(ids), _STEP_S))
        self._undo.append(("nats bridge", lambda: loop.run(bridge.close(), _STEP_S)))
        loop.run(serve_pools(bridge.tasks, kinds), _STEP_S)  # the streams, then a worker per kind

        backends = Backends(
            runtime, history=_JournalHistory(journal), discoveries=hub, tasks=bridge.task_tracker, nats=bridge,
            cluster=door, timeline=JournalTimeline(journal), audit=PgAuditTrail(journal.pool), remote=bridge.remote,
            health={"nats": self._nats_health, "database": self._database_health},
        )
        web = WebConfig.from_env(
            {}, host=s["http.host"], port=s["http.port"], api_token=s["http.api_token"], tokens=s["auth.tokens"],
            allow_insecure=s["http.allow_insecure"], cors_origins=s["http.cors_origins"],
            max_body_bytes=s["http.max_body_bytes"], rate_per_s=s["http.rate_limit_per_s"],
            rate_burst=s["http.rate_limit_burst"], request_timeout_s=s["http.request_timeout_s"],
            max_streams=s["http.sse_max_streams"], keepalive_s=s["http.sse_keepalive_s"],
            allowed_hosts=s["http.allowed_hosts"], header_timeout_s=s["http.header_timeout_s"],
            max_connections_per_client=s["http.max_connections_per_client"],
            max_sessions=s["http.mcp_max_sessions"], session_idle_s=s["http.mcp_session_idle_s"],
            tls_cert=s["http.tls_cert"], tls_key=s["http.tls_key"],
        )
        http = self.http = HttpServer(build_app(backends, web))
        loop.run(http.start(self._http_socket), _STEP_S)
        self._undo.append(("http server", lambda: loop.run(http.stop(), _STEP_S)))
        self._write_node_file()

    def _nats_port(self) -> int | None:
        """The embedded nats-server's port: ``nats.embedded_port`` if free, else the one it used last
        (``DIR/nats/port``) if free, else None (a free one); 0 configured: None."""
        configured: int = self.settings["nats.embedded_port"]
        if configured == 0:
            return None
        try:
            last: int | None = int((self.data_dir / "nats" / NATS_PORT_FILE).read_text())
        except (OSError, ValueError):
            last = None
        for port in (configured, last):
            if port and port_is_free(port):
                return int(port)
        return None

    def _write_node_file(self) -> None:
        assert self.http is not None and self.journal is not None
        info = {
            "pid": os.getpid(), "node_id": self.node_id, "http_url": self.http.url,
            "nats_url": strip_userinfo(self.nats_url),
            "nats_credentials": self.nats_credentials,
            "nats_tls_ca": self.nats_tls_ca,
            "database": self._database_kind(),
        }
        written = write_node_file(self.data_dir, info)
        self._undo.append(("node file", lambda: written.unlink(missing_ok=True)))

    def _cluster_facts(self) -> dict[str, Any]:
        """What this node's lease reports each round (read in the lease thread)."""
        runtime = self.runtime
        return {"agents": len(runtime.system.agents) if runtime is not None else 0,
                "http_url": self.http.url if self.http is not None else None,
                "nats_url": strip_userinfo(self.nats_url) or None, "max_agents": self.settings["node.max_agents"]}

    def nats_client_options(self) -> dict[str, Any]:
        """``nats.connect(**options)`` for a client of this node's NATS: the servers and, for the
        embedded server, its client user (which may not publish what only nodes say)."""
        options: dict[str, Any] = {"servers": self.nats_url.split(",")}
        if self.nats_credentials is not None:
            client = NatsUser.read(Path(self.nats_credentials))
            options.update(user=client.user, password=client.password)
        tls = client_context(options["servers"], self.settings["nats.tls_ca"] or self.nats_tls_ca,
                             self.settings["nats.tls_cert"], self.settings["nats.tls_key"])
        if tls is not None:
            options["tls"] = tls
        return options

    # -- health (on the loop) ------------------------------------------------------------

    async def _nats_health(self) -> dict[str, Any]:
        connected = self.bridge is not None and self.bridge.nc.is_connected
        return {"status": "ok" if connected else "down", "url": strip_userinfo(self.nats_url)}

    async def _database_health(self) -> dict[str, Any]:
        assert self.journal is not None
        stats = self.journal.stats()
        writer = stats["writer"]
        # Events keep flowing into the durable spool during an outage: degraded, not down. A spool that
        # cannot write (its disk is full) refuses new work: degraded too, and it says why.
        spool_error = stats["spool"].get("last_error")
        return {"status": "ok" if writer["pg_connected"] and not spool_error else "degraded", "writer": writer,
                "backlog_events": stats["spool"].get("backlog_events"), "spool_error": spool_error,
                "database": self._database_kind()}

    def _database_kind(self) -> str:
        return "embedded" if self.postgres is not None else "external"

    async def _shutdown_requested(self) -> None:
        if self._on_shutdown_request is not None:
            self._on_shutdown_request()

    # -- stop -------------------------------------------------------------------------

    def _hand_over_on_stop(self) -> None:
        """``cluster.handoff_on_stop``: drain before stopping, and leave the cluster then."""
        cluster, runtime = self.cluster, self.runtime
        if not self.settings["cluster.handoff_on_stop"] or cluster is None or runtime is None or runtime.closed:
            return
        try:
            report = cluster.drain()
            self._left = not report["not_handed_over"]
            logger.info("handed over %d agent(s) before stopping; not handed over: %s", len(report["handed_over"]),
                        report["not_handed_over"] or "none")
        except Exception:
            logger.exception("handing the agents over before stopping failed; stopping anyway")

    def stop(self) -> None:
        """Stop the agents first, then the rest in reverse start order (edges, then embedded
        servers); every step is bounded, and a failing one is logged and passed. One INFO line
        then says what stopped (``stopped: agents; ...; embedded PostgreSQL; embedded nats-server; ...``)."""
        self._hand_over_on_stop()
        steps = list(reversed(self._undo))
        self._undo.clear()
        steps.sort(key=lambda step: step[0] != "agents")  # stable: agents first, the rest in reverse
        stopped: list[str] = []
        for what, undo in steps:
            try:
                undo()
                stopped.append(what)
            except Exception:
                logger.exception("stopping the %s failed; going on", what)
        if stopped:
            logger.info("stopped: %s", "; ".join(stopped))
        if self._http_socket is not None:
            self._http_socket.close()  # if the HTTP server never took it over; harmless if it did
            self._http_socket = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        if self._umask is not None:
            os.umask(self._umask)
            self._umask = None

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """Where everything listens."""
        return {
            "node_id": self.node_id,
            "data_dir": str(self.data_dir),
            "http_url": self.http.url if self.http is not None else None,
            "nats_url": strip_userinfo(self.nats_url),
            "nats_credentials": self.nats_credentials,
            "database": "embedded PostgreSQL in the data directory"
            if self.postgres is not None else "external PostgreSQL",
        }
