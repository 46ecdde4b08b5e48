"""``KindPolicy``: what a kind of agent decides before any incarnation exists.

Class-level hooks and limits an ``Agent`` subclass may override: how its spawn
config is checked (``check_config``) and shown (``redact_config``), the
hung-handler bound it wants (``command_timeout_for``), and how many of it a
node runs at once (``pool_size``). Pure: no thread, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = ["KindPolicy"]


class KindPolicy:
    """The base of ``Agent``'s class-level policy (see each member)."""

    pool_size: ClassVar[int | None] = None
    """At most this many agents of the kind at once on a node (``pool_full`` past it); None: no limit
    of its own (the node's ``max_agents`` still applies)."""
    pool_size_setting: ClassVar[str | None] = None
    """How a user raises ``pool_size``, named in the ``pool_full`` error."""
    concurrency: ClassVar[int] = 1
    """How many commands an incarnation runs at once. 1: one at a time, in mailbox order. N > 1: up to N
    at once (``_concurrent``): they start in mailbox order and may finish in any order; meant for
    ``async def`` handlers (a sync one holds the others up while it runs). Not for durable kinds."""
    idle_timeout_s: ClassVar[float | None] = None
    """A command that reports no progress (``self.progress``, a generator's yield) for this long fails
    with ``timeout``; a spawn's ``idle_timeout_s`` overrides it. None: only ``command_timeout_s`` bounds it."""

    @classmethod
    def check_config(cls, config: Mapping[str, Any], child: str | None = None) -> None:
        """Refuse a bad ``config`` when the agent is spawned, before any incarnation exists.

        Runs in the spawning caller's thread (an event loop's included: keep it
        quick, no I/O that waits). Raise ``SpecError`` naming the key; the spawn
        then fails with ``invalid_spec`` and nothing starts. By default every
        config is accepted and ``on_start`` may still refuse it.
        """

    @classmethod
    def command_timeout_for(cls, config: Mapping[str, Any]) -> float | None:
        """The ``command_timeout_s`` an agent with ``config`` gets when its spawner names none
        (None: the default, 30 s). Called where ``check_config`` is, after it."""
        return None

    @classmethod
    def redact_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` as it may be shown: in status replies, events, the journal and logs.

        Runs in whichever thread describes or journals the agent; must not
        raise. By default the config as it is; override to hide secrets (the
        ``process`` kind shows ``env`` values as ``***``).
        """
        return dict(config)
