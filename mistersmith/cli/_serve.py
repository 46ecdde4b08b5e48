"""``mistersmith serve``: one whole node in the foreground until Ctrl-C or SIGTERM.

Runs in the main thread:

1. settings (flags > ``MISTERSMITH_*`` > ``--config`` file > defaults) and logging;
2. user kinds (``--kind``, the ``mistersmith.agents`` entry points);
3. ``Node.start()``: embedded nats-server and PostgreSQL when no URLs are set,
   journal, Runtime, recovery, NATS bridge, HTTP; a data directory already
   served by another node, or (under root) one the embedded PostgreSQL's user
   cannot reach, is refused (exit code 2);
4. prints where everything listens (stdout; with ``--json`` one JSON line,
   ``{"event": "ready", ...}``, and ``{"event": "stopped", ...}`` at the end)
   and waits;
5. on SIGINT or SIGTERM (or ``system.control.shutdown`` over NATS), ``Node.stop()``:
   agents, then edges, then embedded servers, each step bounded, the whole
   bounded by ``SHUTDOWN_BOUND_S``; past it, or on a second signal, the
   process exits at once (the embedded servers die with it: they carry a
   parent-death signal).

Signals that arrive while the node starts are held until it is up, then
acted on, so a start is never torn down half way by a signal handler.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from mistersmith.config import Settings
from mistersmith.errors import MisterSmithError
from mistersmith.logs import configure_logging
from mistersmith.recovery import NotRecovered, summarize
from mistersmith.redact import strip_userinfo

from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, failed, usage
from ._kinds import load_kinds
from ._output import Output
from ._settings import load

__all__ = ["SHUTDOWN_BOUND_S", "run_serve"]

logger = logging.getLogger("mistersmith.cli.serve")

SHUTDOWN_BOUND_S = 60.0
"""Longest a graceful shutdown may take before the process exits anyway."""

_POLL_S = 0.5


class _Stop:
    """Why and when to stop; set from signal handlers, the NATS control plane or a fatal error."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set():
            logger.error("%s again: exiting now, without a graceful shutdown", name)
            _exit_now(EXIT_INTERRUPTED)
        logger.info("%s: shutting down (a second one exits at once)", name)
        self.request(name)


def _exit_now(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _watchdog(bound_s: float) -> threading.Timer:
    def expire() -> None:
        logger.error("shutdown took more than %.0f s; exiting now", bound_s)
        _exit_now(EXIT_FAILED)

    timer = threading.Timer(bound_s, expire)
    timer.name = "mistersmith-cli-shutdown-watchdog"
    timer.daemon = True
    return timer


def _kind_hint(kind: str) -> str:
    if kind == "process":
        return "the generic process kind is not served: set node.allow_arbitrary_process = true"
    return (f"kind {kind!r} is not served: start with --kind {kind}=MODULE:CLASS, or declare "
            f"[process.kinds.{kind}] in the config file")


def _not_recovered_lines(entries: Sequence[NotRecovered]) -> list[str]:
    """The banner's lines for agents recovery could not bring back (the journal keeps them wanted)."""
    lines = [f"  not recovered  {', '.join(labels)} ({_kind_hint(kind) if kind is not None else why})"
             for labels, kind, why in summarize(entries)]
    if lines:
        lines.append("            they stay wanted: the next start that can run them brings them back")
    return lines


def _ready_text(where: dict[str, Any], settings: Settings, kinds: list[str],
                not_recovered: Sequence[NotRecovered] = ()) -> str:
    nats = strip_userinfo(where["nats_url"]) + ("  (embedded nats-server)" if not settings["nats.url"] else "")
    database = f"embedded PostgreSQL in {where['data_dir']}/postgres" if not settings["database.url"] else (
        "external PostgreSQL (database.url)")
    lines = [
        f"MisterSmith node {where['node_id']} is up (pid {os.getpid()})",
        f"  HTTP      {where['http_url']}  (MCP: {where['http_url']}/mcp, health: {where['http_url']}/health)",
        f"  NATS      {nats}",
        *([f"            user and password in {where['nats_credentials']} (the CLI reads it)"]
          if where.get("nats_credentials") else []),
        f"  database  {database}",
        f"  data dir  {where['data_dir']}",
        f"  config    {settings.config_file or 'no file (defaults, environment and flags)'}",
        f"  kinds     {', '.join(kinds)}",
        *_not_recovered_lines(not_recovered),
        "Stop with Ctrl-C (or SIGTERM).",
        *_next_steps(where, settings, kinds),
    ]
    return "\n".join(lines)


def _next_steps(where: dict[str, Any], settings: Settings, kinds: list[str]) -> list[str]:
    """What to try next, from another terminal (with ``--data-dir`` unless it is the default)."""
    default_dir = settings.sources.get("node.data_dir", "default") == "default"
    here = "" if default_dir else f" --data-dir {shlex.quote(str(where['data_dir']))}"
    if "echo" in kinds:
        steps = [f"mistersmith spawn echo --id a1{here}", f"mistersmith send a1 echo '{{\"hi\": 1}}'{here}"]
    else:
        steps = [f"mistersmith kinds{here}"]
    from ._main import docs_link

    return ["", f"Try, from another terminal{' in this directory' if default_dir else ''}:",
            *(f"  {step}" for step in [*steps, f"mistersmith tree{here}"]),
            f"then the tour in README.md (\"A 30-second tour\"); docs: {docs_link()}"]


def run_serve(args: argparse.Namespace, out: Output) -> int:
    settings = load(args)
    configure_logging("DEBUG" if args.debug else settings["logging.level"], settings["logging.format"])
    kinds = load_kinds(args.kind or [], use_entry_points=not args.no_entry_points)

    from mistersmith.node import DataDirLockedError, Node
    from mistersmith.web.config import is_loopback

    host = settings["http.host"]
    if not is_loopback(host) and not settings["http.api_token"] and not settings["http.allow_insecure"]:
        raise usage(f"http.host={host!r} (from {settings.sources['http.host']}) is not a loopback address: set "
                    "MISTERSMITH_API_TOKEN (http.api_token) to require a bearer token, or http.allow_insecure=true "
                    "to serve it unauthenticated")

    stop = _Stop()
    previous = {sig: signal.signal(sig, stop.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    node = Node(settings, kinds=kinds, on_shutdown_request=lambda: stop.request("shutdown requested over NATS"))
    try:
        try:
            node.start()
        except DataDirLockedError as exc:
            raise usage(exc.message) from None
        except MisterSmithError as exc:
            if exc.code in ("invalid_spec", "invalid_config", "data_dir_unreachable"):
                raise usage(f"the node could not start: {exc.message}") from exc
            raise failed(f"the node could not start: {exc.message}") from exc
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise usage(f"the node could not start: {settings['http.host']}:{settings['http.port']} is in use "
                            "by another program; pass another --http-port (0 picks a free one)") from exc
            raise failed(f"the node could not start: {exc}") from exc
        where = node.describe()
        assert node.runtime is not None
        registered = sorted(node.runtime.kinds())
        lost = node.runtime.recovery.not_recovered if node.runtime.recovery is not None else []
        out.record({"event": "ready", "pid": os.getpid(), **where, "kinds": registered,
                    "config_file": settings.config_file, "not_recovered": [n.to_dict() for n in lost]},
                   _ready_text(where, settings, registered, lost))
        code = EXIT_OK
        while not stop.event.wait(_POLL_S):
            if node.runtime.closed:
                stop.request("the runtime shut down after a fatal error")
                code = EXIT_FAILED
        logger.info("stopping (%s)", stop.reason)
    finally:
        stop.request("start failed")
        watchdog = _watchdog(SHUTDOWN_BOUND_S)
        watchdog.start()
        try:
            node.stop()
        finally:
            watchdog.cancel()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    out.record({"event": "stopped", "node_id": node.node_id, "reason": stop.reason},
               f"node {node.node_id} stopped ({stop.reason})")
    return code
