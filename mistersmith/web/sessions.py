"""MCP sessions (revision 2025-11-25): made by ``initialize``, named by ``Mcp-Session-Id``.

Bounded: at most ``max_sessions``, the least recently used evicted first, and
any unused for ``idle_s`` forgotten. A forgotten id gets 404, which tells a
client to initialize again. Of the client's ``clientInfo`` a session keeps
only ``name`` and ``version``, each cut to ``CLIENT_INFO_MAX_CHARS``, so a
session costs a few hundred bytes whatever the client sent.
"""

from __future__ import annotations

import collections
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLIENT_INFO_MAX_CHARS", "Session", "SessionStore", "client_summary"]

CLIENT_INFO_MAX_CHARS = 128


def client_summary(client_info: Mapping[str, Any]) -> dict[str, str]:
    """The ``name`` and ``version`` of a ``clientInfo`` (strings only), each at most ``CLIENT_INFO_MAX_CHARS``."""
    return {key: value[:CLIENT_INFO_MAX_CHARS] for key in ("name", "version")
            if isinstance(value := client_info.get(key), str)}


@dataclass(slots=True)
class Session:
    id: str
    protocol_version: str
    client_info: dict[str, str]
    last_used_s: float = field(default=0.0)


class SessionStore:
    """Sessions by id; ``clock`` is injectable (seconds, monotonic)."""

    def __init__(self, max_sessions: int, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_sessions
        self._idle_s = idle_s
        self._clock = clock
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, protocol_version: str, client_info: Mapping[str, Any]) -> Session:
        """A new session; of ``client_info`` it keeps only ``client_summary(client_info)``."""
        now = self._clock()
        self._expire(now)
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)
            self.evicted += 1
        session = Session(secrets.token_urlsafe(24), protocol_version, client_summary(client_info), now)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_used_s > self._idle_s:
            del self._sessions[session_id]
            self.evicted += 1
            return None
        session.last_used_s = now
        self._sessions.move_to_end(session_id)
        return session

    def delete(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def _expire(self, now: float) -> None:
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_used_s <= self._idle_s:
                return
            self._sessions.popitem(last=False)
            self.evicted += 1
