"""The bridge's own errors: the NATS connection is not there; a task kind no node serves; no agent for a task."""

from __future__ import annotations

from collections.abc import Iterable

from mistersmith.errors import MisterSmithError, SpecError

__all__ = ["JetStreamUnavailableError", "NatsUnavailableError", "NoTaskAgentError", "UnservedKindError"]


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


class JetStreamUnavailableError(MisterSmithError):
    """The task streams cannot be made: the NATS server has no JetStream, or it did not answer.

    The JetStream error is in ``__cause__``.
    """

    code = "unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"the task streams MS_TASKS and MS_TASKS_DEAD could not be created ({detail}): the task "
                         "queue needs JetStream; enable it on the NATS server (nats-server --jetstream, or a "
                         "jetstream {} block in its config)")
        self.detail = detail


class UnservedKindError(SpecError):
    """No node serves tasks of ``kind`` (``invalid_spec``): its durable consumer does not exist.

    ``served`` are the kinds some node serves (see ``task_streams``).
    """

    def __init__(self, kind: str, served: Iterable[str], key: str = "kind") -> None:
        self.served = tuple(served)
        served_now = f"kinds served: {', '.join(self.served)}" if self.served else "no kind is served yet"
        super().__init__(None, key, kind, f"no node serves tasks of kind {kind!r} ({served_now}); start a node "
                         f"that runs {kind!r}, or submit a kind that is served")
        self.kind = kind


class NoTaskAgentError(MisterSmithError):
    """No agent of ``kind`` can take a task on this node now (``unavailable``); the task is retried."""

    code = "unavailable"

    def __init__(self, kind: str, node_id: str, why: str) -> None:
        super().__init__(f"no {kind!r} agent on {node_id} can take the task: {why}")
        self.kind = kind
        self.node_id = node_id
