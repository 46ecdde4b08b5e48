"""Durable agents: the state an incarnation resumes from, commits after each success, and the
side effects it runs once.

``DurableOptions`` (on the agent's lasting context) say where and how; a
``Durability`` belongs to one incarnation and holds its **epoch**, the version
it last committed and its effect records. The rules:

- ``activate`` (in the incarnation's thread, before ``on_start``) takes a new
  epoch from the store and returns the last committed state (``{}`` the first
  time); a restart with ``state_on_restart="reset"`` clears it instead
  (OTP's fresh start). Either way ``state_restored`` is emitted when a
  committed version was there (``data``: version, bytes, epoch, reset).
- ``commit(state)`` after a handler returned: encode once, and if the bytes
  differ from the last commit, make them the next version, durably, before the
  reply leaves. A commit that fails (``invalid_state``, ``state_too_large``,
  ``unavailable``) fails the command; the agent goes on from ``restore()``,
  its last committed state.
- ``effect(key, fn)`` (``aeffect`` in async code): a recorded key returns its
  recorded outcome (a value, or the ``CommandError`` raised again) and ``fn``
  does not run; otherwise ``fn`` runs and its outcome is recorded durably
  before ``effect`` returns. An async ``fn`` runs on the incarnation's own loop
  (``effect`` refuses to wait for one while that loop runs: ``aeffect`` can).
  If ``fn`` raises anything but ``CommandError``, nothing is recorded. The
  window: a crash after ``fn`` returned and before its record is durable
  runs ``fn`` again in the next incarnation (see docs/concepts.md).
- A write refused because a newer epoch exists (``FencedError``) ends the
  incarnation at once: ``fenced`` is emitted, the caller gets ``fenced`` and
  the supervisor does not restart it. A write whose outcome the store cannot
  tell ends it as a crash, so the next incarnation reads the truth.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from mistersmith import tracing
from mistersmith.errors import CommandError, FencedError, MisterSmithError, SpecError, StateUnavailableError
from mistersmith.state.codec import decode_state, encode_state
from mistersmith.state.store import StateStore

from ._mailbox import Exit

__all__ = ["STATE_ON_RESTART", "DurableMethods", "DurableOptions", "Durability"]

STATE_ON_RESTART = ("keep", "reset")
_KEY_MAX = 256
_USE_AEFFECT = ("effect() cannot wait for an async fn on a running event loop (an async handler or hook); "
                "use `await self.aeffect(key, fn, ...)` there")


@dataclass(frozen=True)
class DurableOptions:
    """How one durable agent keeps its state (from its ``ChildSpec``)."""

    store: StateStore
    node_id: str
    on_restart: str = "keep"
    history: int = 1
    max_bytes: int = 1 << 20
    timeout_s: float = 5.0
    effect_retention_s: float | None = 7 * 24 * 3600.0


class Durability:
    """One incarnation's hold on its durable state (used in that incarnation's thread only)."""

    def __init__(self, agent_id: str, options: DurableOptions, emit: Callable[[str, str | None, dict[str, Any]], None]):
        self.agent_id = agent_id
        self.options = options
        self._emit = emit
        self.epoch = 0
        self.version = 0
        self._committed = b"{}"
        self._effects: dict[str, bytes] = {}
        self.fenced: FencedError | None = None
        self.lost: StateUnavailableError | None = None  # a write whose outcome is unknown

    def activate(self, restarting: bool, reset: bool = False) -> dict[str, Any]:
        """Take a new epoch; the state this incarnation starts from (``reset``: an empty one, asked for)."""
        opts = self.options
        reset = reset or (restarting and opts.on_restart == "reset")
        act = opts.store.activate(self.agent_id, opts.node_id, reset=reset,
                                  effect_retention_s=opts.effect_retention_s, keep=opts.history)
        self.epoch, self.version, self._effects = act.epoch, act.version, dict(act.effects)
        state = decode_state(act.state)
        self._committed = orjson.dumps(state)  # as this process encodes it, so an unchanged state is not re-committed
        if act.version:
            self._emit("state_restored", "reset" if reset else None,
                       {"version": act.version, "bytes": len(self._committed), "epoch": act.epoch, "reset": reset})
        return state

    def restore(self) -> dict[str, Any]:
        """The last committed state, afresh."""
        return decode_state(self._committed)

    def commit(self, state: Any) -> bool:
        """Make ``state`` durable if it changed; True if it did. Raises what the command fails with."""
        data = encode_state(self.agent_id, state, self.options.max_bytes)
        if data == self._committed:
            return False
        opts = self.options
        traced = (tracing.span("state.commit", attributes={"mistersmith.agent_id": self.agent_id,
                                                           "mistersmith.state_version": self.version + 1,
                                                           "mistersmith.state_bytes": len(data)})
                  if tracing.enabled else tracing.OFF)  # a hot path: no attributes built while off
        with traced:
            self._guard(lambda: opts.store.commit(self.agent_id, self.epoch, self.version + 1, data,
                                                  node_id=opts.node_id, keep=opts.history, timeout_s=opts.timeout_s))
        self.version += 1
        self._committed = data
        return True

    def effect(
        self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        wait: Callable[[Awaitable[Any]], Any],
    ) -> Any:
        """``effect`` from sync code: an awaitable ``fn`` result is waited for with ``wait`` (on the
        incarnation's loop); refused on a running loop, where only ``aeffect`` can wait."""
        recorded = self._recorded(key)
        if recorded is not None:
            return _replay(recorded)
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                if asyncio._get_running_loop() is not None:
                    if inspect.iscoroutine(value):
                        value.close()
                    raise SpecError(self.agent_id, "effect", getattr(fn, "__qualname__", fn), _USE_AEFFECT)
                value = wait(value)
        except CommandError as exc:
            self._record(key, {"error": {"code": exc.code, "message": exc.message}})
            raise
        self._record(key, {"value": value})
        return value

    async def aeffect(self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``effect`` for async code: an awaitable ``fn`` result is awaited where the caller runs."""
        recorded = self._recorded(key)
        if recorded is not None:
            return _replay(recorded)
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        except CommandError as exc:
            self._record(key, {"error": {"code": exc.code, "message": exc.message}})
            raise
        self._record(key, {"value": value})
        return value

    def _recorded(self, key: str) -> bytes | None:
        if not isinstance(key, str) or not key or len(key) > _KEY_MAX:
            raise SpecError(self.agent_id, "key", key, f"name an effect with a non-empty str of at most {_KEY_MAX} characters")
        return self._effects.get(key)

    def forget(self, key: str) -> None:
        opts = self.options
        self._guard(lambda: opts.store.forget_effect(self.agent_id, self.epoch, key, timeout_s=opts.timeout_s))
        self._effects.pop(key, None)

    def _record(self, key: str, outcome: dict[str, Any]) -> None:
        data = encode_state(self.agent_id, outcome, None, what=f"effect {key!r} outcome")
        opts = self.options
        self._guard(lambda: opts.store.record_effect(self.agent_id, self.epoch, key, data, timeout_s=opts.timeout_s))
        self._effects[key] = data

    def _guard(self, write: Callable[[], None]) -> None:
        try:
            write()
        except FencedError as exc:
            if self.fenced is None:
                self.fenced = exc
                self._emit("fenced", exc.message, {"epoch": self.epoch})
            raise
        except StateUnavailableError as exc:
            if exc.outcome_unknown:
                self.lost = exc
            raise

    def exit(self) -> Exit | None:
        """How the incarnation must end now, if a write said so."""
        if self.fenced is not None:
            return Exit("fenced", self.fenced.message, self.fenced)
        if self.lost is not None:
            return Exit.crash(f"a state write's outcome is unknown ({self.lost.detail})", self.lost)
        return None


def _replay(recorded: bytes) -> Any:
    outcome = orjson.loads(recorded)
    error = outcome.get("error")
    if error is not None:
        raise CommandError(str(error.get("message", "")), code=str(error.get("code") or "command_error"))
    return outcome.get("value")



class DurableMethods:
    """A mixin of ``Agent``: what a handler calls about its durable state (in its own thread)."""

    if TYPE_CHECKING:
        agent_id: str
        state: dict[str, Any]
        _durable: Durability | None

        def _await_here(self, awaitable: Awaitable[Any]) -> Any: ...

    def commit(self) -> bool:
        """Commit ``self.state`` now, mid-way through a long handler, if it changed; True if it did.

        Returns once the commit is durable. Raises what the command would fail with
        (``InvalidStateError``, ``StateTooLargeError``, ``StateUnavailableError``, ``FencedError``).
        An agent that is not durable has nothing to commit: False.
        """
        return self._durable.commit(self.state) if self._durable is not None else False

    def effect(self, key: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run the side effect ``fn(*args, **kwargs)`` once per ``key`` for this agent, across
        incarnations and nodes; its JSON result is recorded durably before it is returned.

        A key already recorded returns its recorded result and ``fn`` does not run (a
        recorded ``CommandError`` is raised again). If ``fn`` raises anything else nothing
        is recorded and a later call runs it again. Durable agents only. ``fn`` may be async
        when ``effect`` is called from a sync handler (it runs on this incarnation's loop);
        in an async handler or hook use ``await self.aeffect(...)``, as ``effect`` cannot wait
        there (it raises ``SpecError`` saying so).
        """
        with tracing.span("state.effect", attributes={"mistersmith.effect_key": key}):
            return self._durability().effect(key, fn, args, kwargs, self._await_here)

    async def aeffect(self, key: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        """``effect`` for async handlers and hooks: ``await self.aeffect(key, fn, ...)``.

        The same rules; an async ``fn`` is awaited on this incarnation's loop. Recording the
        result is a durable write in this thread, as ``commit()`` is (the loop waits for it).
        """
        with tracing.span("state.effect", attributes={"mistersmith.effect_key": key}):
            return await self._durability().aeffect(key, fn, args, kwargs)

    def _durability(self) -> Durability:
        if self._durable is None:
            raise SpecError(self.agent_id, "durable", False,
                            "effect() needs a durable agent: set durable = True on the kind, or spawn it durable")
        return self._durable

    def forget(self, key: str) -> None:
        """Drop the record of effect ``key``: its ``fn`` runs again the next time it is called."""
        if self._durable is not None:
            self._durable.forget(key)

    def _settle_state(self, expected: MisterSmithError | None) -> tuple[MisterSmithError | None, Exit | None]:
        """After a handler that did not crash: commit what it changed, or (it failed) go back to the
        last commit. Returns the error to reply with, and the exit if the incarnation must end now."""
        durable = self._durable
        assert durable is not None
        if expected is None:
            try:
                durable.commit(self.state)
            except MisterSmithError as exc:
                expected = exc
        if expected is None:
            expected = durable.fenced or durable.lost  # the handler caught a write's refusal
        if expected is not None:
            self.state = durable.restore()  # a failed command changed nothing
        return expected, durable.exit()
