"""``AgentState``: where an agent is in its life, and the built-in commands every agent answers."""

from __future__ import annotations

import enum

__all__ = ["BUILTIN_COMMANDS", "AgentState"]

BUILTIN_COMMANDS = frozenset({"status", "ping", "pause", "resume"})


class AgentState(enum.StrEnum):
    """Where an agent is in its life. Read it any time; it never blocks."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    RESTARTING = "restarting"  # between incarnations, while a backoff runs
