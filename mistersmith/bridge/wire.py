"""Sending on NATS without ever raising into the bridge: failures are counted and logged.

While the connection is down nats-py buffers what is published (up to
``ConnectOptions.pending_size``); past that, or once the connection is closed,
a publish fails. ``Wire`` turns every such failure into a ``publish_failed``
count and a log line naming the subject, so nothing is dropped silently.
Runs on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from mistersmith.envelope import Reply, encode_reply

from .counters import BridgeCounters

__all__ = ["Wire"]

logger = logging.getLogger("mistersmith.bridge")


class Wire:
    """The bridge's one way out: ``publish`` and ``reply``."""

    def __init__(self, nc: NATS, counters: BridgeCounters) -> None:
        self.nc = nc
        self.counters = counters

    async def publish(
        self, subject: str, data: bytes, *, reply: str = "", headers: Mapping[str, str] | None = None
    ) -> bool:
        """Publish; False (counted, logged) if NATS refused it."""
        try:
            await self.nc.publish(subject, data, reply=reply, headers=dict(headers) if headers else None)
        except (NatsError, OSError, ValueError) as exc:
            self.counters.add("publish_failed")
            logger.warning("could not publish on %s: %s: %s", subject, type(exc).__name__, exc)
            return False
        return True

    async def reply(self, msg: Msg, reply: Reply, headers: Mapping[str, str] | None = None) -> bool:
        """Answer ``msg`` on its reply subject with ``reply``, encoded here (``encode_reply``); False if
        it has none (logged) or NATS refused. An error reply sent is counted (``error_replies``)."""
        sent, data = encode_reply(reply)
        if not msg.reply:
            logger.warning("no reply subject on %s; the answer is dropped: %s", msg.subject, data[:200])
            return False
        ok = await self.publish(msg.reply, data, headers=headers)
        if ok:
            self.counters.add("replies_out")
            if not sent.ok:
                self.counters.add("error_replies")
        return ok
