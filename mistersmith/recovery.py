"""Recovery, the Runtime's half: carry out a plan, and say what did not come back.

The history plans: ``mistersmith.history.plan.plan_recovery`` reads the
node's registry records and decides by OTP's rules which child slots come back.
``Runtime.recover(plan)`` carries the plan out here, parents before children
(in the calling thread, which blocks), and emits on the runtime's bus:

- ``recovered`` for each respawned slot, after the child's own ``started``;
- ``recovery_failed`` for each slot that could not be respawned: its kind is
  not registered on this node, its ``on_start`` failed, its supervisor did not
  come back... (``reason`` says which; ``data.kind_missing`` is true for the
  first). The journal's registry keeps such a slot as wanted, so the next
  start that serves its kind brings it back;
- ``stopped`` (``not restarted (restart=...)``) for each slot the plan leaves
  by its restart type, so the registry forgets it.

Failures are logged, reported and kept on ``runtime.recovery`` (``health``
turns it into the ``recovery`` component of ``/health``), never raised: a
kind that is no longer registered must not keep the node down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mistersmith.audit import internal
from mistersmith.errors import AgentExistsError, MisterSmithError
from mistersmith.history.plan import RecoveryPlan
from mistersmith.supervisors import Backoff, SupervisorSpec

if TYPE_CHECKING:
    from mistersmith.runtime import Runtime

__all__ = ["NotRecovered", "RecoveryPlan", "RecoveryReport", "RecoverySlot", "execute", "health", "summarize"]

logger = logging.getLogger("mistersmith.recovery")

_AGENT_OPTIONS = ("shutdown_s", "command_timeout_s", "idle_timeout_s", "mailbox_size", "stash_limit",
                  "start_timeout_s", "durable", "state_on_restart", "state_history", "state_max_bytes", "state_timeout_s", "effect_retention_s")


class RecoverySlot(Protocol):
    """One child slot as the history remembers it (``mistersmith.history.AgentRecord`` is one)."""

    @property
    def supervisor(self) -> str: ...
    @property
    def agent_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def restart(self) -> str: ...
    @property
    def spec(self) -> Mapping[str, Any]: ...
    @property
    def desired_state(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def incarnation(self) -> int: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def is_supervisor(self) -> bool: ...
    @property
    def config(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class NotRecovered:
    """A slot the plan wanted back that did not come back; it stays wanted in the journal."""

    path: str
    supervisor: str
    agent_id: str
    kind: str
    reason: str
    kind_missing: bool  # its kind is not registered on this node

    @property
    def label(self) -> str:
        """How a user names it: an agent by its id, a supervisor by its path."""
        return self.path if self.kind == "supervisor" else self.agent_id

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.agent_id, "path": self.path, "supervisor": self.supervisor, "kind": self.kind,
                "reason": self.reason, "kind_missing": self.kind_missing}


@dataclass
class RecoveryReport:
    """What recovery did on one node; ``respawned`` etc. hold child paths."""

    node_id: str
    respawned: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    not_restarted: list[tuple[str, str]] = field(default_factory=list)
    not_recovered: list[NotRecovered] = field(default_factory=list)
    fenced: list[str] = field(default_factory=list)  # another node owns them now

    @property
    def failed(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of each slot not recovered."""
        return [(n.path, n.reason) for n in self.not_recovered]

    @property
    def missing_kinds(self) -> list[str]:
        """The kinds, not registered here, that slots not recovered need."""
        return sorted({n.kind for n in self.not_recovered if n.kind_missing})

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "respawned": list(self.respawned),
            "already_running": list(self.already_running),
            "not_restarted": [list(x) for x in self.not_restarted],
            "failed": [list(x) for x in self.failed],
            "not_recovered": [n.to_dict() for n in self.not_recovered],
            "missing_kinds": self.missing_kinds,
            "fenced": list(self.fenced),
        }


def summarize(entries: Iterable[NotRecovered]) -> list[tuple[list[str], str | None, str]]:
    """``(labels, missing kind or None, why)``: one group per missing kind, then one per other reason."""
    groups: dict[tuple[str | None, str], list[str]] = {}
    for entry in entries:
        key = (entry.kind, f"kind {entry.kind!r} is not registered on this node") if entry.kind_missing \
            else (None, entry.reason)
        groups.setdefault(key, []).append(entry.label)
    ordered = sorted(groups.items(), key=lambda item: item[0][0] is None)  # stable: kinds first
    return [(labels, kind, why) for (kind, why), labels in ordered]


def _running(runtime: Runtime) -> tuple[set[str], set[str]]:
    """The supervisor paths and agent ids the runtime has now."""
    sups: set[str] = set()
    agents: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if node.get("type") == "supervisor":
            sups.add(str(node["path"]))
            for child in node.get("children", []):
                walk(child)
        else:
            agents.add(str(node["id"]))

    walk(runtime.tree())
    return sups, agents


def _respawn(runtime: Runtime, slot: RecoverySlot) -> None:
    with internal():  # the node's own work, in the journal: not an action of anyone's (mistersmith.audit)
        _respawn_slot(runtime, slot)


def _respawn_slot(runtime: Runtime, slot: RecoverySlot) -> None:
    spec = slot.spec
    if slot.is_supervisor:
        runtime.add_supervisor(
            SupervisorSpec(
                slot.agent_id,
                strategy=spec.get("strategy", "one_for_one"),
                intensity=spec.get("intensity", 1),
                period_s=spec.get("period_s", 5.0),
                restart=slot.restart,  # type: ignore[arg-type]
                shutdown_s=spec.get("shutdown_s", 60.0),
                backoff=Backoff(**spec["backoff"]) if spec.get("backoff") else None,
            ),
            parent=slot.supervisor,
        )
        return
    options: dict[str, Any] = {k: spec[k] for k in _AGENT_OPTIONS if k in spec}
    if spec.get("backoff"):
        options["backoff"] = Backoff(**spec["backoff"])
    runtime.spawn(
        slot.kind, slot.agent_id, slot.config, slot.restart,  # type: ignore[arg-type]
        supervisor=slot.supervisor, **options,
    )


def _why_missing(runtime: Runtime, slot: RecoverySlot) -> str | None:
    """Why ``slot``'s kind cannot be spawned here, or None."""
    if slot.is_supervisor or slot.kind in runtime.system.kinds:
        return None
    refused = runtime.refused_kinds.get(slot.kind)
    return f"kind {slot.kind!r} is not registered on this node" + (f" ({refused})" if refused else "")


def _history(slot: RecoverySlot) -> dict[str, Any]:
    return {"restart": slot.restart, "previous_state": slot.state, "previous_restart_count": slot.incarnation,
            "last_seq": slot.last_seq}


def _fail(runtime: Runtime, report: RecoveryReport, slot: RecoverySlot, reason: str) -> None:
    missing = _why_missing(runtime, slot) is not None
    report.not_recovered.append(NotRecovered(slot.path, slot.supervisor, slot.agent_id, slot.kind, reason, missing))
    logger.error("recovery of %s failed: %s", slot.path, reason,
                 extra={"agent_id": slot.agent_id, "supervisor": slot.supervisor, "event_type": "recovery_failed",
                        "reason": reason})
    runtime.bus.emit("recovery_failed", supervisor=slot.supervisor, agent_id=slot.agent_id, kind=slot.kind,
                     reason=reason, data={**_history(slot), "kind_missing": missing})


def _prefetch(runtime: Runtime, agent_ids: list[str]) -> None:
    """Activate many durable agents in one round trip, if the store can (``PgStateStore.prefetch``)."""
    prefetch = getattr(runtime.state_store, "prefetch", None)
    if prefetch is None or not agent_ids:
        return
    try:
        prefetch(agent_ids, runtime.node_id)
    except MisterSmithError as exc:  # each activation then goes on its own
        logger.warning("could not activate %d durable agents at once: %s", len(agent_ids), exc)


def _fenced(runtime: Runtime, report: RecoveryReport, slot: RecoverySlot, exc: AgentExistsError) -> None:
    why = f"fenced: node {exc.node} owns it now"
    report.fenced.append(slot.path)
    logger.warning("not recovering %s: %s", slot.path, why, extra={"agent_id": slot.agent_id})
    for event_type in ("fenced", "stopped"):
        runtime.bus.emit(event_type, supervisor=slot.supervisor, agent_id=slot.agent_id, kind=slot.kind,
                         reason=why, data={"owner": exc.node, "restart": slot.restart})


def execute(
    runtime: Runtime,
    plan: RecoveryPlan,
    *,
    event_type: str = "recovered",
    reason: str = "node restarted",
    data: Mapping[str, Mapping[str, Any]] | None = None,
) -> RecoveryReport:
    """Respawn what ``plan`` says into ``runtime`` (see the module docstring); blocking.

    ``event_type``/``reason``: what each respawned slot's event says (a takeover says
    ``taken_over``); ``data``: more event data by agent id (``from_node``, ``epoch``...).
    A slot whose id another node owns now is not this node's any more: ``fenced`` and
    ``stopped`` (``fenced: ...``) are emitted, so the registry forgets it here.
    """
    report = RecoveryReport(runtime.node_id)
    sups, agents = _running(runtime)
    _prefetch(runtime, [s.agent_id for s in plan.respawn if s.spec.get("durable") and s.agent_id not in agents])
    failed: set[str] = set()
    for slot in plan.respawn:
        path = slot.path
        if slot.is_supervisor and path in sups or not slot.is_supervisor and slot.agent_id in agents:
            report.already_running.append(path)
            continue
        lost = next((f for f in failed if slot.supervisor == f or slot.supervisor.startswith(f + "/")), None)
        why = f"its supervisor {lost} was not recovered" if lost is not None else _why_missing(runtime, slot)
        if why is None:
            try:
                _respawn(runtime, slot)
            except AgentExistsError as exc:
                if exc.node is not None and exc.node != runtime.node_id:
                    _fenced(runtime, report, slot, exc)
                    continue
                why = exc.message
            except MisterSmithError as exc:
                why = exc.message
        if why is not None:
            failed.add(path)
            _fail(runtime, report, slot, why)
            continue
        runtime.bus.emit(event_type, supervisor=slot.supervisor, agent_id=slot.agent_id, kind=slot.kind,
                         reason=reason, data={**_history(slot), **((data or {}).get(slot.agent_id) or {})})
        report.respawned.append(path)
    for slot, why in plan.leave:
        if slot.desired_state != "running":
            continue
        report.not_restarted.append((slot.path, why))
        if why.startswith("not restarted"):
            runtime.bus.emit(
                "stopped", supervisor=slot.supervisor, agent_id=slot.agent_id, kind=slot.kind,
                reason=why, data={"restart": slot.restart, "previous_state": slot.state},
            )
    if report.respawned or report.not_recovered:
        logger.info("%s on node %s: %d respawned, %d not restarted, %d not recovered", event_type, runtime.node_id,
                    len(report.respawned), len(report.not_restarted), len(report.not_recovered))
    for labels, _, why in summarize(report.not_recovered):
        logger.warning("not recovered: %s (%s); the journal keeps them wanted, so a start that can run them "
                       "brings them back", ", ".join(labels), why)
    return report


def health(runtime: Runtime) -> dict[str, Any]:
    """The ``recovery`` component of ``/health``: ``degraded`` while a slot the last recovery
    could not bring back is still not running; ``disabled`` if the runtime never recovered."""
    report = runtime.recovery
    if report is None:
        return {"status": "disabled"}
    system = runtime.system
    missing = [n for n in report.not_recovered
               if (n.path not in system.supervisors if n.kind == "supervisor" else n.agent_id not in system.agents)]
    out: dict[str, Any] = {"status": "degraded" if missing else "ok", "recovered": len(report.respawned)}
    if missing:
        out["not_recovered"] = [n.to_dict() for n in missing]
        out["missing_kinds"] = sorted({n.kind for n in missing if n.kind_missing})
        out["detail"] = "not recovered: " + "; ".join(
            f"{', '.join(labels)} ({why})" for labels, _, why in summarize(missing))
    return out
