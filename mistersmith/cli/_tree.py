"""Supervision trees as text. Pure code.

A tree node is shaped like ``Runtime.tree()`` (what ``system.control.tree``
gathers) and ``TreeSnapshot.tree()``: ``{"id", "path", "type", "kind", "state",
"restart_count", "children"?...}``; a live supervisor also has ``strategy``,
``intensity`` and ``period_s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_tree"]


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
