"""``ConnectionLimit``: open connections per client address, at most ``per_client`` each.

The server asks ``acquire`` when it accepts a connection and calls ``release``
when that connection ends; a refused connection is closed before anything is
read from it. Everything runs on the server's event loop (no locks).
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["ConnectionLimit"]

logger = logging.getLogger("mistersmith.web.connections")


class ConnectionLimit:
    """Counts per client address; ``refused`` counts the connections turned away."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self.refused = 0
        self._open: dict[str, int] = {}
        self._saturated: set[str] = set()
        self._changed = asyncio.Condition()

    def open(self, client: str) -> int:
        return self._open.get(client, 0)

    def acquire(self, client: str) -> bool:
        """Count one more connection from ``client``, or False when it has ``per_client`` open."""
        count = self._open.get(client, 0)
        if count >= self.per_client:
            self.refused += 1
            if client not in self._saturated:  # once per episode, not once per connection
                self._saturated.add(client)
                logger.warning("client %s has %d connections open (http.max_connections_per_client); closing "
                               "its new ones until some end", client, count)
            return False
        self._open[client] = count + 1
        return True

    async def release(self, client: str) -> None:
        """Count one connection from ``client`` fewer (it ended)."""
        count = self._open.get(client, 0) - 1
        if count > 0:
            self._open[client] = count
        else:
            self._open.pop(client, None)
        self._saturated.discard(client)
        async with self._changed:
            self._changed.notify_all()

    async def wait_open(self, client: str, at_most: int) -> None:
        """Return once ``client`` has at most ``at_most`` connections open."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.open(client) <= at_most)
