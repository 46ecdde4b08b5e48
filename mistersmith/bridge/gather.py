"""Scatter-gather: one request to every node, the answers of the nodes we expect.

``gather_nodes`` publishes one request on a subject every node subscribes to
(no queue group), with a private inbox as the reply subject, and collects
``{"ok": true, "result": {"node": ..., key: ...}}`` answers (``key`` is
``"agents"`` for ``system.nodes.list``, ``"tree"`` for ``system.nodes.tree``)
until every expected node has answered or ``timeout_s`` has passed. Answers
from nodes not expected are kept too. Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from mistersmith.envelope import EnvelopeError, decode_reply

__all__ = ["gather_nodes"]

logger = logging.getLogger("mistersmith.bridge.gather")


async def gather_nodes(
    nc: NATS, subject: str, expected: Collection[str], timeout_s: float, payload: bytes = b"",
    *, key: str = "agents",
) -> dict[str, Any]:
    """``{node_id: result[key]}`` from every node that answered in time.

    An answer whose ``key`` is not a list (``"agents"``) or an object (any
    other key) is malformed: logged and left out, as if the node had not answered.
    """
    answers: dict[str, Any] = {}
    shape = list if key == "agents" else dict
    waiting = set(expected)
    done = asyncio.Event()

    async def collect(msg: Msg) -> None:
        try:
            result = decode_reply(msg.data).unwrap()
            node, value = result["node"], result[key]
            if not isinstance(value, shape):
                raise TypeError(f"{key} is {type(value).__name__}, not {shape.__name__}")
        except (EnvelopeError, KeyError, TypeError) as exc:
            logger.warning("malformed answer on %s: %s", subject, exc)
            return
        except Exception as exc:  # an error reply
            logger.warning("a node answered %s with an error: %s", subject, exc)
            return
        answers[str(node)] = value
        waiting.discard(node)
        if not waiting:
            done.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(subject, payload, reply=inbox)
        if waiting:
            try:
                await asyncio.wait_for(done.wait(), timeout_s)
            except TimeoutError:
                logger.warning("%s: no answer from %s within %.2f s", subject, sorted(waiting), timeout_s)
    finally:
        await sub.unsubscribe()
    return answers
