"""Who a NATS request acts for, in the audit trail (``mistersmith.audit``). Pure code.

NATS does not tell a subscriber which user published a message, so the node
records the door's own name, ``nats``, as the actor (a NATS user of its own
per scope is nats-server's to enforce: ``mistersmith.embedded.nats_auth``).
The CLI says it is the CLI with the ``Mistersmith-Door: cli`` header, which
sets the door (``cli``); the request's ``traceparent`` gives the trace id.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager

from mistersmith.audit import Actor, acting

from .trace import TRACEPARENT, trace_id

__all__ = ["CLI_DOOR", "DOOR_HEADER", "NATS_ACTOR", "nats_acting"]

DOOR_HEADER = "Mistersmith-Door"
CLI_DOOR = "cli"
NATS_ACTOR = "nats"


def nats_acting(headers: Mapping[str, str] | None) -> AbstractContextManager[Actor]:
    """``acting(door, "nats", trace id)`` for a message with these headers."""
    headers = headers or {}
    door = CLI_DOOR if headers.get(DOOR_HEADER) == CLI_DOOR else "nats"
    return acting(door, NATS_ACTOR, trace_id(headers.get(TRACEPARENT)))
