"""Kinds, spawning, stopping and restarting agents: the calls that go through a
supervisor (a request to its mailbox, answered in its thread).

Each blocking call refuses to run on an event loop (``forbid_blocking``) and
names its awaitable twin; the twins share everything but the wait
(``_call`` blocks the caller's thread, ``_acall`` awaits a ``LoopReply``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from mistersmith.actors import Agent, ThreadReply
from mistersmith.crossing import forbid_blocking
from mistersmith.errors import CommandTimeoutError, SpecError
from mistersmith.supervisors import (
    Backoff,
    ChildSpec,
    DropChildren,
    Request,
    Restart,
    RestartChild,
    StartChild,
    Supervisor,
    SupervisorSpec,
    TerminateChild,
    check_id,
)

from ._base import RuntimeBase
from ._commands import queued

__all__ = ["Control"]

_CALL_MARGIN_S = 5.0  # added to a child's own bound when waiting for its supervisor


class Control(RuntimeBase):
    """The Runtime's supervisor-side calls."""

    # -- kinds and spawning -------------------------------------------------------

    def register(self, kind: str, cls: type[Agent]) -> None:
        """Make ``cls`` spawnable under the name ``kind``."""
        check_id(kind, "kind")
        self.system.register(kind, cls)

    def kinds(self) -> dict[str, dict[str, Any]]:
        """Every registered kind: the commands its agents answer, with their parameters.

        ``{kind: {"commands": {cmd: {"params": ..., "more_params": bool}}}}``,
        plus ``"process"`` (its command and what a spawn may override) for a
        named process kind. Reads no agent: a busy one is described too.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, cls in sorted(self.system.kinds.items()):
            info: dict[str, Any] = {"commands": {c: spec.describe() for c, spec in sorted(cls._commands.items())}}
            process_kind = getattr(cls, "process_kind", None)
            if process_kind is not None:
                info["process"] = process_kind.describe()
            out[name] = info
        return out

    def _spawn_request(
        self,
        kind: str | type[Agent] | None,
        agent_id: str | None,
        config: Mapping[str, Any] | None,
        restart: Restart | None,
        supervisor: str,
        options: dict[str, Any],
    ) -> tuple[Supervisor, ChildSpec]:
        self._check_open()
        self.bus.admit()  # a sink that cannot make events durable (a full spool disk) refuses new work
        sup = self.system.supervisor(supervisor)
        template = sup.spec.template
        if template is not None:
            if kind is not None and kind != template.kind:
                raise SpecError(agent_id, "kind", kind, f"supervisor {supervisor!r} only starts {template.kind_name!r}")
            kind = template.kind
        if kind is None:
            raise SpecError(agent_id, "kind", None, "name a registered kind")
        name = kind if isinstance(kind, str) else (kind.kind or kind.__name__)
        if isinstance(kind, str) and kind not in self.system.kinds:
            known = ", ".join(sorted(self.system.kinds)) or "none"
            raise SpecError(agent_id, "kind", kind, self.refused_kinds.get(kind, f"use a registered kind ({known})"))
        if agent_id is None:
            agent_id = f"{name}-{uuid.uuid4().hex[:8]}"
        fields: dict[str, Any] = {"id": agent_id, "kind": kind, **options}
        if config is not None:
            fields["config"] = config
        if restart is not None:
            fields["restart"] = restart
        if template is not None:
            spec = dataclasses.replace(template, **fields)
        else:
            spec = ChildSpec(**fields)
        cls = self.system.resolve(spec)
        cls.check_config(spec.config, spec.id)  # a bad config fails here, before the supervisor
        if "command_timeout_s" not in options:
            own = cls.command_timeout_for(spec.config)
            if own is not None and spec.command_timeout_s is not None and own > spec.command_timeout_s:
                spec = dataclasses.replace(spec, command_timeout_s=own)
        return sup, spec

    def spawn(
        self,
        kind: str | type[Agent] | None,
        agent_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        restart: Restart | None = None,
        supervisor: str = "root",
        *,
        backoff: Backoff | None = None,
        **options: Any,
    ) -> str:
        """Start an agent under ``supervisor`` and return its id once ``on_start`` is done.

        ``options`` are further ``ChildSpec`` fields (``command_timeout_s``,
        ``mailbox_size``, ``shutdown_s``, ``stash_limit``...). Raises
        ``StartError``, ``AgentExistsError`` or ``SpecError``, and a journaled
        runtime's ``SpoolUnwritableError`` (``unavailable``) while its spool's disk is full.
        """
        forbid_blocking("Runtime.spawn()", "await runtime.aspawn(...)")
        if backoff is not None:
            options["backoff"] = backoff
        sup, spec = self._spawn_request(kind, agent_id, config, restart, supervisor, options)
        claimed = self.system.claim_across(str(spec.id))  # here, not in the supervisor: it never waits on PostgreSQL
        info = self._call(sup, StartChild(spec, claimed), spec.start_timeout_s)
        return str(info["id"])

    async def aspawn(
        self,
        kind: str | type[Agent] | None,
        agent_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        restart: Restart | None = None,
        supervisor: str = "root",
        *,
        backoff: Backoff | None = None,
        **options: Any,
    ) -> str:
        """``spawn`` for asyncio programs."""
        if backoff is not None:
            options["backoff"] = backoff
        sup, spec = self._spawn_request(kind, agent_id, config, restart, supervisor, options)
        claimed = self.system.claims_across and await asyncio.to_thread(self.system.claim_across, str(spec.id))
        info = await self._acall(sup, StartChild(spec, claimed), spec.start_timeout_s)
        return str(info["id"])

    def add_supervisor(self, spec: SupervisorSpec, parent: str = "root") -> str:
        """Start a supervisor (and its static children) under ``parent``; returns its path."""
        forbid_blocking("Runtime.add_supervisor()", "await runtime.aadd_supervisor(...)")
        self._check_open()
        sup = self.system.supervisor(parent)
        self._call(sup, StartChild(spec), spec.start_timeout_s * (1 + len(spec.children)))
        return f"{sup.path}/{spec.id}"

    async def aadd_supervisor(self, spec: SupervisorSpec, parent: str = "root") -> str:
        """``add_supervisor`` for asyncio programs."""
        self._check_open()
        sup = self.system.supervisor(parent)
        await self._acall(sup, StartChild(spec), spec.start_timeout_s * (1 + len(spec.children)))
        return f"{sup.path}/{spec.id}"

    # -- stop and restart ---------------------------------------------------------

    def _owner(self, agent_id: str) -> tuple[Supervisor, str, float]:
        """The supervisor of an agent (by id) or of a supervisor (by path), the child id, a time bound."""
        self._check_open()
        child = self.system.agents.get(agent_id)
        if child is None:
            sup = self.system.supervisors.get(agent_id)
            if sup is None or "/" not in agent_id:
                raise self._unknown(agent_id)
            parent, _, child_id = agent_id.rpartition("/")
            return self.system.supervisor(parent), child_id, sup.spec.shutdown_s + sup.spec.start_timeout_s
        bound = child.spec.shutdown_s + child.spec.start_timeout_s
        return self.system.supervisor(child.context.supervisor), agent_id, bound

    def stop(self, agent_id: str) -> None:
        """Stop an agent (by id) or a supervisor (by path) for good, within its ``shutdown_s``, and forget it."""
        forbid_blocking("Runtime.stop()", "await runtime.astop(...)")
        sup, child_id, bound = self._owner(agent_id)
        self._call(sup, TerminateChild(child_id), bound)

    async def astop(self, agent_id: str) -> None:
        sup, child_id, bound = self._owner(agent_id)
        await self._acall(sup, TerminateChild(child_id), bound)

    def restart(self, agent_id: str, *, reset_state: bool = False) -> None:
        """Stop an agent and start a new incarnation now (not counted in the intensity).

        ``reset_state``: a durable agent's new incarnation starts from an empty
        state, committed as the next version, as ``state_on_restart="reset"``
        does (OTP's fresh start: the earlier versions are dropped), and journaled
        as ``state_restored`` with ``reset: true``. ``SpecError`` for an agent
        that is not durable.
        """
        forbid_blocking("Runtime.restart()", "await runtime.arestart(...)")
        sup, child_id, bound = self._owner(agent_id)
        self._call(sup, RestartChild(child_id, reset_state), bound)

    async def arestart(self, agent_id: str, *, reset_state: bool = False) -> None:
        """``restart`` for asyncio programs."""
        sup, child_id, bound = self._owner(agent_id)
        await self._acall(sup, RestartChild(child_id, reset_state), bound)

    def drop_all(self, cause: str) -> list[str]:
        """Stop every child of the root now and forget them here, *keeping them wanted*: their
        ``stopped`` events say ``shutdown: <cause>``, which the journal's registry does not read as
        on purpose, and their ids stay owned by this node. For a node that lost its lease or hands
        its agents over; another node, or this node's recovery, starts them again. Returns their ids."""
        forbid_blocking("Runtime.drop_all()", "await asyncio.to_thread(runtime.drop_all, ...)")
        self._check_open()
        root = self._root
        bound = sum(c.spec.shutdown_s for c in root.children()) or 1.0
        return list(self._call(root, DropChildren(cause), bound))

    def hand_over(self, ids: Collection[str], cause: str, *, retry_after_s: float = 0.5) -> list[str]:
        """Stop these children of the root and forget them here, keeping them wanted, because another
        node is to run them: what their mailboxes hold, and every command to them here for a while
        after (``moved_ttl_s``), is answered ``restarting`` (retry in ``retry_after_s``), so callers
        retry and reach them where they run next. Returns the ids dropped."""
        forbid_blocking("Runtime.hand_over()", "await asyncio.to_thread(runtime.hand_over, ...)")
        self._check_open()
        root = self._root
        until = self.clock.now() + self.moved_ttl_s
        for agent_id in ids:
            self.system.moved[agent_id] = (until, retry_after_s)
        bound = sum(c.spec.shutdown_s for c in root.children() if c.id in set(ids)) or 1.0
        return list(self._call(root, DropChildren(cause, tuple(ids), retry_after_s), bound))

    def moving(self, agent_id: str) -> bool:
        """Whether ``agent_id`` was handed to another node a moment ago (asked here: ``restarting``)."""
        moved = self.system.moved.get(agent_id)
        return moved is not None and moved[0] > self.clock.now()

    def _call(self, sup: Supervisor, message: Request, bound_s: float) -> Any:
        reply = ThreadReply()
        sup.post(message, reply)
        if not reply.wait(bound_s + _CALL_MARGIN_S):
            raise CommandTimeoutError(sup.path, type(message).__name__, bound_s + _CALL_MARGIN_S)
        return reply.result()

    async def _acall(self, sup: Supervisor, message: Request, bound_s: float) -> Any:
        timeout = bound_s + _CALL_MARGIN_S
        return await queued(
            timeout, lambda: CommandTimeoutError(sup.path, type(message).__name__, timeout),
            lambda reply: sup.post(message, reply),
        )
