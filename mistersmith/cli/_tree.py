"""Supervision trees as text, and a tree rebuilt from an agent list. Pure code.

A tree node is shaped like ``Runtime.tree()`` (what ``system.control.tree``
gathers) and ``TreeSnapshot.tree()``: ``{"id", "path", "type", "kind", "state",
"restart_count", "children"?...}``; a live supervisor also has ``strategy``,
``intensity`` and ``period_s``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["render_tree", "tree_from_agents"]


def _label(node: Mapping[str, Any]) -> str:
    parts = [str(node.get("id"))]
    if node.get("type") == "supervisor":
        policy = [str(node["strategy"])] if node.get("strategy") else []
        intensity, period_s = node.get("intensity"), node.get("period_s")
        if isinstance(intensity, int) and isinstance(period_s, (int, float)):
            policy.append(f"intensity {intensity}/{period_s:g}s")
        parts.append("supervisor" + (f" ({', '.join(policy)})" if policy else ""))
    else:
        parts.append(str(node.get("kind") or "?"))
    if node.get("state"):
        parts.append(str(node["state"]))
    restarts = node.get("restart_count")
    if isinstance(restarts, int) and restarts:
        parts.append(f"restarts={restarts}")
    if node.get("paused"):
        parts.append("paused")
    return "  ".join(parts)


def _lines(node: Mapping[str, Any], prefix: str, out: list[str]) -> None:
    children = list(node.get("children") or ())
    for i, child in enumerate(children):
        last = i == len(children) - 1
        out.append(f"{prefix}{'└── ' if last else '├── '}{_label(child)}")
        _lines(child, prefix + ("    " if last else "│   "), out)


def render_tree(tree: Mapping[str, Any]) -> str:
    """``root  supervisor (one_for_one, intensity 3/5s)  running`` and its children, drawn with box lines."""
    if tree.get("id") is None:
        return "(empty)"
    out = [_label(tree)]
    _lines(tree, "", out)
    return "\n".join(out)


def _supervisor(path: str) -> dict[str, Any]:
    return {"id": path.rpartition("/")[2], "path": path, "type": "supervisor", "kind": "supervisor",
            "state": None, "children": []}


def tree_from_agents(agents: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One tree per node (``{node_id: tree}``) from agent descriptions that name their supervisor path.

    Supervisors appear only on the way to an agent, and without a state (an
    agent list does not describe them).
    """
    trees: dict[str, dict[str, Any]] = {}
    supervisors: dict[tuple[str, str], dict[str, Any]] = {}

    def supervisor(node_id: str, path: str) -> dict[str, Any]:
        key = (node_id, path)
        found = supervisors.get(key)
        if found is not None:
            return found
        made = supervisors[key] = _supervisor(path)
        parent, _, _ = path.rpartition("/")
        if parent:
            supervisor(node_id, parent)["children"].append(made)
        else:
            made["node_id"] = node_id
            trees[node_id] = made
        return made

    for agent in agents:
        node_id = str(agent.get("node_id") or "?")
        supervisor(node_id, str(agent.get("supervisor") or "root"))["children"].append(dict(agent))
    return dict(sorted(trees.items()))
