"""The error vocabulary: one base, ``MisterSmithError``, and a few precise subclasses.

This is a leaf module: every layer (actors, supervisors, the node and its edges)
imports it, and it imports nothing from the project.

Each error carries a stable ``code``, the same string that goes on the wire in
``{"ok": false, "error": {"code": ..., "message": ...}}`` replies, plus the
structured values that explain it (the agent id, the limit, the timeout...).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentExistsError",
    "AgentFailedError",
    "BlockingCallError",
    "BreakerOpenError",
    "CommandCancelledError",
    "CommandError",
    "CommandTimeoutError",
    "FatalError",
    "FencedError",
    "InvalidPayloadError",
    "InvalidStateError",
    "MailboxFullError",
    "MisterSmithError",
    "PausedError",
    "PoolFullError",
    "RestartingError",
    "RuntimeClosedError",
    "SpecError",
    "StartError",
    "StateTooLargeError",
    "StateUnavailableError",
    "UnknownAgentError",
    "UnknownCommandError",
]


class MisterSmithError(Exception):
    """Base of every error MisterSmith raises on purpose.

    ``code`` is the wire error code; ``message`` the human sentence.
    """

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of a failed reply."""
        return {"code": self.code, "message": self.message}


class SpecError(MisterSmithError, ValueError):
    """A supervision spec, agent config or call argument has a bad value.

    Names the child (or ``None``), the key, the value and what is allowed.
    """

    code = "invalid_spec"

    def __init__(self, child: str | None, key: str, value: object, allowed: str) -> None:
        where = f"child {child!r}: " if child is not None else ""
        super().__init__(f"{where}{key}={value!r} is not allowed; {allowed}")
        self.child = child
        self.key = key
        self.value = value
        self.allowed = allowed


class UnknownAgentError(MisterSmithError, LookupError):
    """No agent (or supervisor) with this id is hosted here."""

    code = "unknown_agent"

    def __init__(self, agent_id: str, what: str = "agent", *, message: str | None = None) -> None:
        super().__init__(message or f"no {what} {agent_id!r} is running here")
        self.agent_id = agent_id


class AgentExistsError(MisterSmithError):
    """An agent with this id already runs; ids are global."""

    code = "already_exists"

    def __init__(self, agent_id: str, node: str | None = None, node_state: str | None = None) -> None:
        where = ""
        if node is not None:
            where = f" on node {node!r}" + (f" ({node_state}: until it is taken over or released)"
                                           if node_state and node_state != "up" else "")
        super().__init__(f"an agent with id {agent_id!r} already exists{where}; choose another id or omit it")
        self.agent_id = agent_id
        self.node = node


class UnknownCommandError(MisterSmithError):
    """The agent's kind has no command of that name."""

    code = "unknown_command"

    def __init__(self, agent_id: str, command: str, known: list[str]) -> None:
        super().__init__(
            f"agent {agent_id!r} has no command {command!r}; it answers: {', '.join(known)}"
        )
        self.agent_id = agent_id
        self.command = command
        self.known = known


class InvalidPayloadError(MisterSmithError, ValueError):
    """The command payload does not fit the handler's parameters."""

    code = "invalid_payload"

    def __init__(self, command: str, problem: str) -> None:
        super().__init__(f"invalid payload for command {command!r}: {problem}")
        self.command = command
        self.problem = problem


class CommandError(MisterSmithError):
    """An expected, user-facing error raised by a command handler.

    The caller gets an error reply and the agent lives on. Raise it from a
    handler as ``raise CommandError("no such file", code="not_found")``.
    """

    code = "command_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class AgentFailedError(MisterSmithError):
    """The handler crashed (or hung): this incarnation failed, its supervisor decides."""

    code = "agent_failed"

    def __init__(self, agent_id: str, reason: str) -> None:
        super().__init__(f"agent {agent_id!r} failed: {reason}")
        self.agent_id = agent_id
        self.reason = reason


class MailboxFullError(MisterSmithError):
    """The agent's bounded mailbox is full; the message was not queued."""

    code = "mailbox_full"

    def __init__(self, agent_id: str, limit: int) -> None:
        super().__init__(
            f"mailbox of agent {agent_id!r} is full ({limit} messages); retry later or raise mailbox_size"
        )
        self.agent_id = agent_id
        self.limit = limit


class RestartingError(MisterSmithError):
    """The agent is waiting out a restart backoff and does not take commands now."""

    code = "restarting"

    def __init__(self, agent_id: str, retry_after_s: float | None) -> None:
        when = f" in about {retry_after_s:.2f} s" if retry_after_s is not None else ""
        super().__init__(f"agent {agent_id!r} is restarting; retry{when}")
        self.agent_id = agent_id
        self.retry_after_s = retry_after_s


class PausedError(MisterSmithError):
    """The agent is paused: it answers built-ins only until ``resume``."""

    code = "paused"

    def __init__(self, agent_id: str, command: str) -> None:
        super().__init__(
            f"agent {agent_id!r} is paused and rejects {command!r}; send 'resume' first"
        )
        self.agent_id = agent_id
        self.command = command


class PoolFullError(MisterSmithError):
    """The node already runs its maximum number of agents (of all kinds, or of one kind).

    ``setting`` names the limit as a user sets it (``--max-agents / node.max_agents``).
    """

    code = "pool_full"

    def __init__(self, limit: int, setting: str = "max_agents", kind: str | None = None) -> None:
        what = f"{limit} agents of kind {kind!r}" if kind is not None else f"{limit} agents"
        super().__init__(f"this node already runs its limit of {what}; stop one, or raise {setting}")
        self.limit = limit
        self.setting = setting
        self.kind = kind


class BreakerOpenError(MisterSmithError):
    """A circuit breaker of the agent (``self.breaker(name)``) refused the call: its dependency failed
    ``failures`` times in a row, and calls go through again only after ``retry_after_s``. The agent lives on."""

    code = "breaker_open"

    def __init__(self, name: str, retry_after_s: float, *, agent_id: str | None = None, failures: int = 0,
                 trial: bool = False) -> None:
        whose = f" of agent {agent_id!r}" if agent_id else ""
        why = "its trial call is still running" if trial else f"after {failures} consecutive failures"
        super().__init__(
            f"breaker {name!r}{whose} is open ({why}); calls are refused for {retry_after_s:.2f} s more: "
            "fall back, or try again after retry_after_s"
        )
        self.name = name
        self.retry_after_s = retry_after_s
        self.agent_id = agent_id
        self.failures = failures


class CommandTimeoutError(MisterSmithError, TimeoutError):
    """No reply arrived within the caller's timeout."""

    code = "timeout"

    def __init__(self, agent_id: str, command: str, timeout_s: float, *, idle: bool = False,
                 expired: bool = False) -> None:
        self.idle = idle
        if expired:
            super().__init__(f"agent {agent_id!r}: the caller's deadline for {command!r} had passed before it "
                             "could start; it was not run (check the caller's clock and timeout)")
        elif idle:
            super().__init__(f"agent {agent_id!r}: command {command!r} reported no progress for "
                             f"idle_timeout_s={timeout_s:g}; raise idle_timeout_s, or have it report progress")
        else:
            super().__init__(f"agent {agent_id!r} did not answer {command!r} within {timeout_s:.2f} s")
        self.agent_id = agent_id
        self.command = command
        self.timeout_s = timeout_s


class CommandCancelledError(MisterSmithError):
    """The command was cancelled by a caller (``Runtime.cancel``, ``agents.<id>.control.cancel``, MCP
    ``notifications/cancelled``, Ctrl-C in ``mistersmith send``) before it finished. The agent lives on."""

    code = "cancelled"

    def __init__(self, agent_id: str, command: str, correlation_id: str | None = None) -> None:
        which = f" (correlation id {correlation_id!r})" if correlation_id else ""
        super().__init__(f"command {command!r} to agent {agent_id!r}{which} was cancelled before it finished")
        self.agent_id = agent_id
        self.command = command
        self.correlation_id = correlation_id


class StartError(MisterSmithError):
    """A child failed to start; the children started before it were stopped again.

    The original exception is in ``__cause__``.
    """

    code = "start_failed"

    def __init__(self, child: str, reason: str) -> None:
        super().__init__(f"child {child!r} failed to start: {reason}")
        self.child = child
        self.reason = reason


class RuntimeClosedError(MisterSmithError):
    """You closed the runtime (or it shut itself down after a fatal error)."""

    code = "closed"

    def __init__(self, message: str = "the runtime is closed; create a new Runtime") -> None:
        super().__init__(message)


class FatalError(MisterSmithError):
    """The root supervisor exceeded its restart intensity; the runtime shut down."""

    code = "fatal"


class BlockingCallError(MisterSmithError, RuntimeError):
    """A blocking call was made on a running asyncio event loop."""

    code = "blocking_call"

    def __init__(self, call: str, instead: str) -> None:
        super().__init__(
            f"{call} blocks, and this thread is running an asyncio event loop; "
            f"use `{instead}` here"
        )
        self.call = call
        self.instead = instead


class InvalidStateError(MisterSmithError, ValueError):
    """A durable agent's state (or an effect's result) does not encode as JSON; nothing was committed.

    ``path`` is where the bad value sits (``state['a'][2]``), ``type_name`` its Python type.
    """

    code = "invalid_state"

    def __init__(self, agent_id: str, path: str, type_name: str, what: str = "state") -> None:
        super().__init__(
            f"agent {agent_id!r}: {path} is not JSON ({type_name}); keep {what} to dicts with str keys, lists, "
            "str, int, float, bool and None (nothing was committed)"
        )
        self.agent_id = agent_id
        self.path = path
        self.type_name = type_name


class StateTooLargeError(MisterSmithError):
    """A durable agent's state encodes larger than its ``state_max_bytes``; nothing was committed."""

    code = "state_too_large"

    def __init__(self, agent_id: str, size: int, limit: int) -> None:
        super().__init__(
            f"agent {agent_id!r}: its state is {size} bytes as JSON, over state_max_bytes={limit}; the command "
            "failed and nothing was committed (keep less in self.state, or raise state_max_bytes)"
        )
        self.agent_id = agent_id
        self.size = size
        self.limit = limit


class StateUnavailableError(MisterSmithError):
    """The state store could not make a commit durable within the bound; nothing was acknowledged.

    The command failed and the agent goes on from its last committed state.
    """

    code = "unavailable"

    def __init__(self, agent_id: str, what: str, detail: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(f"agent {agent_id!r}: {what} is not durable: {detail}; retry once the store is back")
        self.agent_id = agent_id
        self.what = what
        self.detail = detail
        self.outcome_unknown = outcome_unknown  # the store cannot tell whether it was written


class FencedError(MisterSmithError):
    """A newer activation of this durable agent exists (another runtime or node owns it): this one
    may not write, and stops."""

    code = "fenced"

    def __init__(self, agent_id: str, epoch: int) -> None:
        super().__init__(
            f"agent {agent_id!r}: epoch {epoch} is no longer its owner (a newer activation took it over); "
            "this incarnation stopped without writing, so ask the agent again where it runs now"
        )
        self.agent_id = agent_id
        self.epoch = epoch
