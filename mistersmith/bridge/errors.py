"""The bridge's own error: the NATS connection is not there."""

from __future__ import annotations

from mistersmith.errors import MisterSmithError

__all__ = ["NatsUnavailableError"]


class NatsUnavailableError(MisterSmithError):
    """NATS cannot be reached now; nothing was sent. Retry once it has (re)connected.

    ``what`` is what was not done, ``state`` the connection's state (or the
    last error while connecting); the underlying error is in ``__cause__``.
    """

    code = "unavailable"

    def __init__(self, what: str, state: str) -> None:
        super().__init__(f"{what}: the NATS connection is {state}; retry once it has reconnected")
        self.what = what
        self.state = state
