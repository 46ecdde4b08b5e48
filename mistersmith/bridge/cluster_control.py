"""The cluster on the control plane: ``nodes``, ``drain`` and ``rebalance``.

They act through the ``ClusterOps`` port the node hands the bridge; a bridge
without one (a node outside a cluster) answers each ``unavailable``.

- ``system.control.nodes`` ``{}``: ``{"nodes": [...]}``, every node's
  membership row (``ClusterOps.nodes``). Any node answers: the table is shared.
- ``system.control.drain`` ``{"node", "exit"?}``: drains the node named, here
  or forwarded to ``system.node.{node}.drain``. ``node`` is required: the
  queue group hands the request to an arbitrary node. On
  ``system.node.{me}.drain`` the body is ``{"exit"?}`` (a ``node`` there must
  be this one). The reply is ``ClusterOps.drain``'s, sent once each agent
  handed over runs elsewhere.
- ``system.control.rebalance`` ``{"node"?}``: the node named, here or
  forwarded to ``system.node.{node}.rebalance``; without ``node``, the node
  that got the request rebalances itself. ``{"node", "moved", "target"}``.
- ``exit: true`` stops the drained node once its reply is sent (the bridge's
  ``shutdown`` callback, as ``system.control.shutdown`` does), so it needs
  what a remote shutdown needs: a node that does not allow one refuses at
  once (``unauthorized``), before it drains anything.

A forwarded ``drain`` or ``rebalance`` waits for the other node at most
``timeout_s`` (or the caller's ``Mistersmith-Timeout``, if shorter): the
drained node takes as long as its agents take to move. Runs on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mistersmith.envelope import Reply
from mistersmith.ports import ClusterOps

from . import subjects
from .control_payloads import Refused, bad, check_drain, empty_only, node_only

__all__ = ["CLUSTER_ACTIONS", "ClusterActions"]

CLUSTER_ACTIONS: tuple[str, ...] = ("nodes", "drain", "rebalance")

Forward = Callable[[str, Mapping[str, Any], Refused, float], Awaitable[Reply]]
"""``(subject, payload, refusal if no one answers, timeout_s)``: the other node's reply, relayed."""


class ClusterActions:
    """``nodes``, ``drain`` and ``rebalance`` for one node's control plane."""

    def __init__(self, node_id: str, cluster: ClusterOps | None, forward: Forward, *, may_exit: bool,
                 timeout_s: float) -> None:
        self.node_id = node_id
        self.cluster = cluster
        self._forward = forward
        self._may_exit = may_exit
        self.timeout_s = timeout_s

    def _need(self) -> ClusterOps:
        if self.cluster is None:
            raise Refused("unavailable", f"node {self.node_id!r} is not in a cluster (it runs without one), so it "
                                         "has no nodes, drain or rebalance")
        return self.cluster

    async def act(self, action: str, payload: Mapping[str, Any], local: bool, caller_timeout_s: float) -> Reply:
        """Answer ``action`` (one of ``CLUSTER_ACTIONS``). ``local``: it came on this node's own subject."""
        if action == "nodes":
            empty_only(payload, "nodes")
            return Reply.success({"nodes": await self._need().nodes()})
        if action == "drain":
            return await self._drain(payload, local, caller_timeout_s)
        node = node_only(payload, "rebalance")
        if node is not None and node != self.node_id and not local:
            return await self._to(node, "rebalance", {}, caller_timeout_s)
        if local and node not in (None, self.node_id):
            raise bad(f"rebalance: system.node.{self.node_id}.rebalance got node={node!r}; send it to "
                      f"system.node.{node}.rebalance")
        return Reply.success(await self._need().rebalance())

    async def _drain(self, payload: Mapping[str, Any], local: bool, caller_timeout_s: float) -> Reply:
        node, exit_ = check_drain(payload)
        if node is None and not local:
            raise bad('drain: name the node to drain, {"node": "<node id>", "exit"?: true|false}: '
                      "system.control.* reaches an arbitrary node (or send {} to system.node.<node id>.drain)")
        if local and node not in (None, self.node_id):
            raise bad(f"drain: system.node.{self.node_id}.drain got node={node!r}; send it to "
                      f"system.node.{node}.drain")
        if node is not None and node != self.node_id:
            return await self._to(node, "drain", {"exit": exit_}, caller_timeout_s)
        cluster = self._need()
        if exit_ and not self._may_exit:
            raise Refused("unauthorized", f"node {self.node_id!r} does not allow shutdown over NATS, so it will not "
                                          "drain and exit; drain it without exit (then stop it yourself), or run "
                                          "it with nats.allow_remote_shutdown (--allow-remote-shutdown)")
        return Reply.success(await cluster.drain(exit=exit_))

    async def _to(self, node: str, action: str, payload: Mapping[str, Any], caller_timeout_s: float) -> Reply:
        return await self._forward(subjects.node_control(node, action), payload,
                                   Refused("unknown_node", f"no node {node!r} answers on this NATS"),
                                   min(caller_timeout_s, self.timeout_s))

    def exits_after(self, action: str, payload: Mapping[str, Any], reply: Reply, local: bool) -> bool:
        """Whether this node drained itself with ``exit`` (the reply says ``exiting``) and now stops."""
        if action != "drain" or not reply.ok or not isinstance(reply.result, dict):
            return False
        mine = local or payload.get("node") == self.node_id
        return mine and self._may_exit and reply.result.get("exiting") is True
