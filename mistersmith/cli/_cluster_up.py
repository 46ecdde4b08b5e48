"""``mistersmith cluster up``: a whole cluster on one machine, for trying it and for tests.

Runs in the main thread, everything in the data directory ``D`` (``--data-dir``,
default ``./.mistersmith-cluster``), which one ``cluster up`` holds at a time
(``D/cluster.lock``):

1. a NATS cluster of ``NATS_SERVERS`` routed nats-servers with clustered
   JetStream (``NatsCluster``, in ``D/nats-<i>``), on free ports of
   127.0.0.1 and **without authentication**: a local development cluster.
   The task streams are created here, once (nodes creating a replicated
   stream at the same moment can time out);
2. one embedded PostgreSQL (``D/postgres``, trust over its unix socket; under
   root it runs as ``pgserver``, so ``D`` is opened to it as a ``Node`` opens
   its data directory);
3. ``--nodes N`` nodes: ``mistersmith serve`` child processes, ``node-<i>``
   (i from 1) in ``D/node-<i>``, their logs in ``D/node-<i>/serve.log``, each
   given the three NATS URLs, the PostgreSQL conninfo and
   ``MISTERSMITH_TASKS_REPLICAS=3``, on a free HTTP port (or ``P + i - 1``
   with ``--http-port-base P``), started together;
4. prints where everything listens (``--json``: one line ``{"event": "ready", ...}``),
   then waits. A node that exits meanwhile is reported (``node_exited``) and
   the rest go on (kill one to watch its agents taken over);
5. on SIGINT or SIGTERM: every node gets SIGTERM (a graceful ``serve`` stop,
   bounded by ``NODE_STOP_S``, then SIGKILL; a second signal kills them at
   once), then PostgreSQL, then NATS. Nothing is left running: the nodes and
   the servers also carry a parent-death signal, for a ``kill -9`` of this
   process.

A start that fails (a server, or a node: its exit code and error line are
reported) stops what was started. Exit codes as ``_errors`` says: 0 after a
graceful stop, 1 if something failed to start or stop, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson

from mistersmith.embedded._process import parent_death_signal
from mistersmith.embedded.nats_cluster import NatsCluster
from mistersmith.embedded.postgres import DataDirUnreachableError, EmbeddedPostgres, let_server_through
from mistersmith.files import hold_lock, make_private_dirs, open_private

from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError, failed, usage
from ._kinds import load_kinds
from ._output import Output
from ._serve import SHUTDOWN_BOUND_S

__all__ = ["ACTIONS", "DEFAULT_DIR", "NATS_SERVERS", "NODE_START_S", "NODE_STOP_S", "add_arguments",
           "run_cluster"]

ACTIONS = ("up",)
DEFAULT_DIR = ".mistersmith-cluster"
NATS_SERVERS = 3
"""Always three: JetStream keeps ``tasks.replicas = 3`` through the loss of one."""
TASKS_REPLICAS = 3
NODE_START_S = 90.0
"""Longest the nodes may take to print their ready line, together."""
NODE_STOP_S = SHUTDOWN_BOUND_S + 10.0
"""Longest the nodes may take to stop after SIGTERM (``serve`` bounds itself at ``SHUTDOWN_BOUND_S``)."""
STREAMS_S = 30.0
"""Longest the task streams may take to be created on the new NATS cluster."""
_POLL_S = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``cluster``'s own arguments (the common ones are added by ``_main``)."""
    parser.add_argument("action", choices=ACTIONS, help="up: start the cluster in the foreground")
    parser.add_argument("--nodes", metavar="N", type=int, default=3, help="how many nodes (default 3)")
    parser.add_argument("--http-port-base", metavar="PORT", type=int,
                        help="node-<i> serves HTTP on PORT+i-1 (default: free ports)")
    parser.add_argument("--kind", metavar="NAME=MODULE:CLASS", action="append",
                        help="register an agent kind on every node (repeatable; as serve --kind)")


@dataclass
class _Node:
    node_id: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    ready: dict[str, Any] | None = None
    error: str = ""
    reported: bool = False  # its exit was reported

    def describe(self) -> dict[str, Any]:
        assert self.ready is not None
        return {"node_id": self.node_id, "pid": self.proc.pid, "http_url": self.ready["http_url"],
                "data_dir": str(self.data_dir), "log": str(self.log_path)}


@dataclass
class _Signals:
    stop: threading.Event = field(default_factory=threading.Event)
    hurry: threading.Event = field(default_factory=threading.Event)  # a second signal: kill the nodes
    reason: str = ""

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.hurry.set()
            return
        self.reason = signal.Signals(signum).name
        self.stop.set()


def _check(args: argparse.Namespace) -> None:
    if args.nodes < 1:
        raise usage(f"cluster up: --nodes {args.nodes}: use 1 or more nodes")
    base = args.http_port_base
    if base is not None and not (1 <= base and base + args.nodes - 1 <= 65535):
        raise usage(f"cluster up: --http-port-base {base}: use a port from 1 to {65536 - args.nodes} "
                    f"(node-{args.nodes} takes {base}+{args.nodes - 1})")
    load_kinds(args.kind or [], use_entry_points=False)  # a bad --kind stops here, before anything starts


def _lock(home: Path) -> IO[str]:
    handle, holder = hold_lock(home / "cluster.lock")  # held while the cluster is up
    if handle is None:
        raise usage(f"another `mistersmith cluster up` ({holder}) is running in {home}; stop it, or pass "
                    "another --data-dir")
    return handle

def _create_streams(urls: list[str]) -> None:
    """The task streams (``tasks.replicas = 3``), made once here: several nodes creating a replicated
    stream at the same moment can wait out the JetStream API's timeout (the losers get no answer)."""
    import asyncio

    import nats

    from mistersmith.bridge.errors import JetStreamUnavailableError
    from mistersmith.bridge.task_streams import ensure_streams

    async def create() -> None:
        nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=-1)
        try:
            deadline = time.monotonic() + STREAMS_S
            while True:
                try:
                    await ensure_streams(nc.jetstream(), TASKS_REPLICAS)
                    return
                except JetStreamUnavailableError as exc:
                    if time.monotonic() > deadline:
                        raise failed(f"the NATS cluster's task streams could not be created within "
                                     f"{STREAMS_S:.0f} s: {exc.message}") from exc
                await asyncio.sleep(_POLL_S)  # JetStream is still settling: ask again
        finally:
            await nc.close()

    asyncio.run(create())


def _serve_command(args: argparse.Namespace, index: int, home: Path, nats_url: str, database_url: str) -> list[str]:
    port = 0 if args.http_port_base is None else args.http_port_base + index - 1
    cmd = [sys.executable, "-m", "mistersmith.cli", "serve", "--json", "--data-dir", str(home / f"node-{index}"),
           "--node-id", f"node-{index}", "--http-port", str(port), "--nats-url", nats_url,
           "--database-url", database_url]
    if args.config:
        cmd += ["--config", args.config]
    if args.debug:
        cmd.append("--debug")
    for spec in args.kind or []:
        cmd += ["--kind", spec]
    return cmd


def _launch(args: argparse.Namespace, index: int, home: Path, nats_url: str, database_url: str,
            lines: queue.Queue[tuple[int, bytes | None]]) -> _Node:
    node_dir = home / f"node-{index}"
    make_private_dirs(node_dir)
    log_path = node_dir / "serve.log"
    env = {**os.environ, "MISTERSMITH_TASKS_REPLICAS": str(TASKS_REPLICAS)}
    with open(log_path, "ab", opener=open_private) as log:
        # Its own session: a Ctrl-C at the terminal reaches us only, and we stop the nodes in order.
        proc = subprocess.Popen(_serve_command(args, index, home, nats_url, database_url), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True,
                                preexec_fn=parent_death_signal(signal.SIGTERM))

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put((index, line))
        lines.put((index, None))

    threading.Thread(target=read, name=f"mistersmith-cluster-node-{index}", daemon=True).start()
    return _Node(f"node-{index}", node_dir, log_path, proc)


def _take(nodes: dict[int, _Node], item: tuple[int, bytes | None]) -> None:
    """One line a node printed (or the end of its output): its ready line, or its error."""
    index, line = item
    node = nodes[index]
    if line is None:  # its output ended: its exit is seen by polling
        return
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return
    if isinstance(doc, dict) and doc.get("event") == "ready" and node.ready is None:
        node.ready = doc
    elif isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        node.error = str(doc["error"].get("message", ""))


def _interrupted(signals: _Signals, what: str) -> CliError:
    return CliError(f"interrupted ({signals.reason}) while {what} started; everything was stopped",
                    exit_code=EXIT_INTERRUPTED, code="interrupted")


def _wait_ready(home: Path, nodes: dict[int, _Node], lines: queue.Queue[tuple[int, bytes | None]],
                signals: _Signals) -> None:
    deadline = time.monotonic() + NODE_START_S
    while any(n.ready is None for n in nodes.values()):
        if signals.stop.is_set():
            raise _interrupted(signals, "the nodes")
        dead = next((n for n in nodes.values() if n.ready is None and n.proc.poll() is not None), None)
        if dead is not None:
            while not lines.empty():  # its error line, if it printed one
                _take(nodes, lines.get_nowait())
            why = dead.error or f"see its log, {dead.log_path}"
            message = f"{dead.node_id} could not start (exit code {dead.proc.returncode}): {why}"
            raise usage(message) if dead.proc.returncode == EXIT_USAGE else failed(message)
        if time.monotonic() > deadline:
            late = ", ".join(n.node_id for n in nodes.values() if n.ready is None)
            raise failed(f"{late} not ready within {NODE_START_S:.0f} s; see {home}/node-*/serve.log")
        try:
            _take(nodes, lines.get(timeout=_POLL_S))
        except queue.Empty:
            pass


def _stop_nodes(nodes: dict[int, _Node], signals: _Signals) -> dict[str, int | None]:
    """SIGTERM to every node, then wait (bounded), then SIGKILL: each one's exit code (None: killed by us)."""
    for node in nodes.values():
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + NODE_STOP_S
    codes: dict[str, int | None] = {}
    for node in nodes.values():
        while node.proc.poll() is None and not signals.hurry.is_set() and time.monotonic() < deadline:
            try:
                node.proc.wait(_POLL_S)
            except subprocess.TimeoutExpired:
                pass
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()
            codes[node.node_id] = None
        else:
            codes[node.node_id] = node.proc.returncode
    return codes


def _ready_text(home: Path, nats: NatsCluster, postgres: EmbeddedPostgres, nodes: list[_Node]) -> str:
    urls = ",".join(nats.urls)
    width = max(len(n.node_id) for n in nodes)
    rows = [f"  {n.node_id.ljust(width)}  {n.describe()['http_url']}  pid {n.proc.pid}  log {n.log_path}"
            for n in nodes]
    return "\n".join([
        f"MisterSmith cluster is up in {home} (pid {os.getpid()}): {len(nodes)} node(s), "
        f"{NATS_SERVERS} nats-servers, 1 PostgreSQL",
        f"  NATS      {urls}",
        f"            routed, JetStream replicated (tasks.replicas = {TASKS_REPLICAS}); 127.0.0.1 only, "
        "no authentication: for local use",
        f"  database  {postgres.conninfo()}",
        f"            embedded PostgreSQL in {home}/postgres (trust over its unix socket)",
        *rows,
        "Stop with Ctrl-C (or SIGTERM): the nodes first, then PostgreSQL and NATS.",
        "",
        "Try, from another terminal:",
        f"  export MISTERSMITH_NATS_URL={urls}",
        "  mistersmith spawn echo --id a1 && mistersmith send a1 echo '{\"hi\": 1}'",
        "  mistersmith agents",
        "  kill -9 <a node's pid>   # its agents are taken over by the others within seconds",
        f"  mistersmith replay --type taken_over --database-url '{postgres.conninfo()}'",
    ])


def run_cluster(args: argparse.Namespace, out: Output) -> int:
    _check(args)
    home = Path(args.data_dir or DEFAULT_DIR).expanduser().resolve()
    let_server_through(make_private_dirs(home))  # under root the embedded PostgreSQL's user must reach D/postgres
    lock = _lock(home)
    signals = _Signals()
    previous = {sig: signal.signal(sig, signals.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    nats: NatsCluster | None = None
    postgres: EmbeddedPostgres | None = None
    nodes: dict[int, _Node] = {}
    stopped: dict[str, int | None] = {}
    try:
        out.note(f"starting {NATS_SERVERS} nats-servers and PostgreSQL in {home} ...")
        nats = NatsCluster(home, size=NATS_SERVERS)
        nats.start()
        _create_streams(nats.urls)
        postgres = EmbeddedPostgres(home / "postgres")
        try:
            postgres.start()
        except DataDirUnreachableError as exc:
            raise usage(f"cluster up: {exc.message}") from exc
        if signals.stop.is_set():
            raise _interrupted(signals, "the servers")
        out.note(f"starting {args.nodes} node(s) ...")
        lines: queue.Queue[tuple[int, bytes | None]] = queue.Queue()
        nats_url, database_url = ",".join(nats.urls), postgres.conninfo()
        for i in range(1, args.nodes + 1):
            nodes[i] = _launch(args, i, home, nats_url, database_url, lines)
        _wait_ready(home, nodes, lines, signals)
        listed = list(nodes.values())
        out.record({"event": "ready", "pid": os.getpid(), "data_dir": str(home), "nats_urls": nats.urls,
                    "nats_url": nats_url, "nats_auth": False, "nats_pids": [s.pid for s in nats.servers],
                    "database_url": database_url, "postgres_pid": postgres.pid, "tasks_replicas": TASKS_REPLICAS,
                    "nodes": [n.describe() for n in listed]},
                   _ready_text(home, nats, postgres, listed))
        while not signals.stop.is_set():
            try:
                _take(nodes, lines.get(timeout=_POLL_S))
            except queue.Empty:
                pass
            for node in listed:
                if not node.reported and node.proc.poll() is not None:
                    node.reported = True
                    out.record({"event": "node_exited", "node_id": node.node_id, "pid": node.proc.pid,
                                "exit_code": node.proc.returncode},
                               f"{node.node_id} (pid {node.proc.pid}) exited with {node.proc.returncode}; "
                               "the others go on")
    finally:
        signals.stop.set()
        gone = {n.node_id for n in nodes.values() if n.reported}
        stopped = {k: v for k, v in _stop_nodes(nodes, signals).items() if k not in gone}
        if postgres is not None:
            postgres.stop()
        if nats is not None:
            nats.stop()
        lock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    graceful = all(code == EXIT_OK for code in stopped.values())
    how = ", ".join(f"{k} {'killed' if v is None else f'exit {v}'}" for k, v in stopped.items())
    out.record({"event": "stopped", "reason": signals.reason, "nodes": stopped},
               f"cluster stopped ({signals.reason}): {how or 'no node was running'}")
    return EXIT_OK if graceful else EXIT_FAILED
