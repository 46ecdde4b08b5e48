"""The cluster commands: ``nodes``, ``drain`` and ``rebalance``, over NATS like the other client commands.

- ``nodes``: ``system.control.nodes`` (any node answers: the membership table
  is shared), printed as a table.
- ``drain [NODE] [--exit]`` and ``rebalance [NODE]``: straight to the node's
  own subject, ``system.node.{node}.drain`` / ``.rebalance`` (no responders
  there means no such node). Without ``NODE``: the node of the data directory
  (its ``node.json``), else, for ``rebalance`` only, whichever node answers.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS

from mistersmith.bridge import subjects
from mistersmith.config import Settings

from ._client import _control, _token, _with_nats
from ._errors import EXIT_FAILED, EXIT_OK, unreachable, usage
from ._locate import data_dir, read_node_file
from ._nats import request
from ._output import Output, table

__all__ = ["CLUSTER_COMMANDS", "nodes_text"]


def _when(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _span(seconds: float) -> str:
    """``0.4s``, ``12s``, ``5m``, ``3h``, ``2d``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _row(node: dict[str, Any], now: datetime) -> tuple[Any, ...]:
    seen, until = _when(node.get("last_seen")), _when(node.get("lease_until"))
    last_seen = f"{_span(max(0.0, (now - seen).total_seconds()))} ago" if seen is not None else None
    if node.get("state") == "down":
        lease = None
    elif node.get("expired"):
        lease = "expired"
    else:
        lease = _span(max(0.0, (until - now).total_seconds())) if until is not None else None
    return (node.get("node_id"), node.get("state"), node.get("agents"), node.get("max_agents"), last_seen, lease,
            node.get("http_url"))


def nodes_text(doc: dict[str, Any], now: datetime | None = None) -> str:
    """``mistersmith nodes``: one row per node; times relative to ``now`` (this machine's clock)."""
    nodes: list[dict[str, Any]] = doc.get("nodes") or []
    at = now or datetime.now(UTC)
    text = table(("NODE", "STATE", "AGENTS", "MAX", "LAST SEEN", "LEASE EXPIRES IN", "HTTP URL"),
                 [_row(n, at) for n in nodes])
    up = sum(1 for n in nodes if n.get("state") == "up" and not n.get("expired"))
    return text + f"\n{len(nodes)} node(s), {up} up"


def run_nodes(args: argparse.Namespace, out: Output) -> int:
    doc: dict[str, Any] = _with_nats(args, lambda nc, _: _control(nc, "nodes", {}, args.timeout))
    out.result(doc, lambda: nodes_text(doc))
    return EXIT_OK


def _own_node(settings: Settings) -> str | None:
    """The node id in the data directory's ``node.json``, if a node wrote one."""
    info = read_node_file(data_dir(settings))
    node = info.get("node_id") if info is not None else None
    return node if isinstance(node, str) and node else None


async def _at_node(nc: NATS, node: str, action: str, payload: dict[str, Any], timeout_s: float) -> Any:
    missing = unreachable(f"no node {node!r} answers on this NATS (system.node.{node}.{action}); see "
                          "`mistersmith nodes`")
    return await request(nc, subjects.node_control(node, action), payload, timeout_s, no_responders=missing)


def run_drain(args: argparse.Namespace, out: Output) -> int:
    async def body(nc: NATS, settings: Settings) -> Any:
        node = _token(args.node, "node") or _own_node(settings)
        if node is None:
            raise usage(f"drain: name the node (`mistersmith drain NODE`; see `mistersmith nodes`): no node has "
                        f"written a node.json in {data_dir(settings)}")
        return await _at_node(nc, node, "drain", {"exit": args.exit}, args.timeout)

    doc: dict[str, Any] = _with_nats(args, body)
    kept = doc.get("not_handed_over") or []

    def human() -> str:
        handed = doc.get("handed_over") or []
        lines = [f"node {doc.get('node')} drained: {len(handed)} agent(s) handed over"
                 + (f" ({', '.join(map(str, handed))})" if handed else "")]
        lines += [f"  not handed over: {k.get('id')} ({k.get('reason')})" for k in kept]
        if doc.get("exiting"):
            lines.append(f"node {doc.get('node')} is shutting down")
        return "\n".join(lines)

    out.result(doc, human)
    return EXIT_FAILED if kept else EXIT_OK


def run_rebalance(args: argparse.Namespace, out: Output) -> int:
    async def body(nc: NATS, settings: Settings) -> Any:
        node = _token(args.node, "node") or _own_node(settings)
        if node is None:  # no node here: whichever node answers rebalances itself
            return await _control(nc, "rebalance", {}, args.timeout)
        return await _at_node(nc, node, "rebalance", {}, args.timeout)

    doc: dict[str, Any] = _with_nats(args, body)
    moved = doc.get("moved") or []
    out.result(doc, f"node {doc.get('node')}: moved {len(moved)} agent(s)"
                    + (f" ({', '.join(map(str, moved))})" if moved else "") + f"; target {doc.get('target')}")
    return EXIT_OK


CLUSTER_COMMANDS = {"nodes": run_nodes, "drain": run_drain, "rebalance": run_rebalance}
