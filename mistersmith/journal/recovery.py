"""Recovery: a node restarted with the same ``node_id`` gets its agents back.

Input: the node's rows in the ``agents`` registry (the projection of its
journal, see ``projection.py``), read after the spool's backlog is shipped.
Each child slot is decided by OTP's rules, reading the node's death as the
exit of everything it ran:

- ``desired_state`` ``stopped`` (stopped on purpose, or not restarted): left alone;
- ``temporary``: never restarted;
- ``transient``: restarted only if it did not end normally, that is unless
  the node shut it down cleanly (state ``stopped``); after a crash of the node
  (``kill -9``) it is restarted;
- ``permanent``: restarted;
- a child whose supervisor is not recovered is not either; one that runs
  already (a static child of the new tree, or spawned before recovery) is
  left as it is.

Supervisors come back before their children, and siblings in their original
start order. Each respawn emits ``recovered`` (after the child's own
``started``); each slot not restarted emits ``stopped`` with reason
``not restarted (restart=...)``, so the journal tells where every agent went
and the registry forgets it. Failures are logged and reported, never raised:
a kind that is no longer registered must not keep the node down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mistersmith.errors import MisterSmithError
from mistersmith.supervisors import Backoff, EventBus, SupervisorSpec

from .projection import AgentRecord

__all__ = ["RecoveryPlan", "RecoveryReport", "RecoveryTarget", "plan_recovery", "recover"]

logger = logging.getLogger("mistersmith.journal.recovery")

_AGENT_OPTIONS = ("shutdown_s", "command_timeout_s", "mailbox_size", "stash_limit", "start_timeout_s")


class RecoveryTarget(Protocol):
    """What recovery needs of a ``Runtime`` (the journal does not import the node)."""

    node_id: str
    bus: EventBus

    def tree(self) -> dict[str, Any]: ...

    def add_supervisor(self, spec: SupervisorSpec, parent: str = "root") -> str: ...

    def spawn(
        self, kind: Any, agent_id: str | None = None, config: Mapping[str, Any] | None = None,
        restart: Any = None, supervisor: str = "root", **options: Any,
    ) -> str: ...


@dataclass(frozen=True)
class RecoveryPlan:
    """What to respawn (parents first) and what to leave, with why."""

    respawn: tuple[AgentRecord, ...]
    leave: tuple[tuple[AgentRecord, str], ...]


@dataclass
class RecoveryReport:
    """What recovery did on one node; ``respawned`` etc. hold child paths."""

    node_id: str
    respawned: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    not_restarted: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "respawned": list(self.respawned),
            "already_running": list(self.already_running),
            "not_restarted": [list(x) for x in self.not_restarted],
            "failed": [list(x) for x in self.failed],
        }


def _why_not(record: AgentRecord) -> str | None:
    if record.desired_state != "running":
        return "stopped on purpose"
    if record.restart == "temporary":
        return "not restarted (restart=temporary) after the node restarted"
    if record.restart == "transient" and record.state == "stopped":
        return "not restarted (restart=transient, it was shut down normally) after the node restarted"
    if record.is_supervisor and record.spec.get("strategy") == "simple_one_for_one":
        return "not restarted: a simple_one_for_one supervisor's template is not journaled"
    return None


def plan_recovery(records: Iterable[AgentRecord]) -> RecoveryPlan:
    """Decide, purely from registry records, what comes back (see the module docstring)."""
    ordered = sorted(
        (r for r in records if r.supervisor),  # the root is the new runtime's own
        key=lambda r: (r.path.count("/"), r.started_seq),
    )
    respawn: list[AgentRecord] = []
    leave: list[tuple[AgentRecord, str]] = []
    gone: set[str] = set()
    known = {r.path for r in ordered} | {r.supervisor for r in ordered if r.supervisor.count("/") == 0}
    for record in ordered:
        why = _why_not(record)
        if why is None and record.supervisor not in known:
            why = "its supervisor is not in the registry"
        if why is None and any(record.supervisor == g or record.supervisor.startswith(g + "/") for g in gone):
            why = "its supervisor is not recovered"
        if why is None:
            respawn.append(record)
        else:
            leave.append((record, why))
            if record.is_supervisor:
                gone.add(record.path)
    return RecoveryPlan(tuple(respawn), tuple(leave))


def _running(runtime: RecoveryTarget) -> tuple[set[str], set[str]]:
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


def _respawn(runtime: RecoveryTarget, record: AgentRecord) -> None:
    spec = record.spec
    if record.is_supervisor:
        runtime.add_supervisor(
            SupervisorSpec(
                record.agent_id,
                strategy=spec.get("strategy", "one_for_one"),
                intensity=spec.get("intensity", 1),
                period_s=spec.get("period_s", 5.0),
                restart=record.restart,  # type: ignore[arg-type]
                shutdown_s=spec.get("shutdown_s", 60.0),
                backoff=Backoff(**spec["backoff"]) if spec.get("backoff") else None,
            ),
            parent=record.supervisor,
        )
        return
    options: dict[str, Any] = {k: spec[k] for k in _AGENT_OPTIONS if k in spec}
    if spec.get("backoff"):
        options["backoff"] = Backoff(**spec["backoff"])
    runtime.spawn(
        record.kind, record.agent_id, record.config, record.restart,
        supervisor=record.supervisor, **options,
    )


def recover(runtime: RecoveryTarget, records: Iterable[AgentRecord]) -> RecoveryReport:
    """Respawn what ``plan_recovery`` says into ``runtime``; blocking (call from a plain thread)."""
    plan = plan_recovery(records)
    report = RecoveryReport(runtime.node_id)
    sups, agents = _running(runtime)
    failed: set[str] = set()
    for record in plan.respawn:
        path = record.path
        if record.is_supervisor and path in sups or not record.is_supervisor and record.agent_id in agents:
            report.already_running.append(path)
            continue
        if any(record.supervisor == f or record.supervisor.startswith(f + "/") for f in failed):
            report.failed.append((path, "its supervisor failed to recover"))
            continue
        try:
            _respawn(runtime, record)
        except MisterSmithError as exc:
            failed.add(path)
            report.failed.append((path, exc.message))
            logger.error(
                "recovery of %s failed: %s", path, exc.message,
                extra={"agent_id": record.agent_id, "supervisor": record.supervisor},
            )
            continue
        runtime.bus.emit(
            "recovered", supervisor=record.supervisor, agent_id=record.agent_id, kind=record.kind,
            reason="node restarted",
            data={
                "restart": record.restart,
                "previous_state": record.state,
                "previous_restart_count": record.incarnation,
                "last_seq": record.last_seq,
            },
        )
        report.respawned.append(path)
    for record, why in plan.leave:
        if record.desired_state != "running":
            continue
        report.not_restarted.append((record.path, why))
        if why.startswith("not restarted"):
            runtime.bus.emit(
                "stopped", supervisor=record.supervisor, agent_id=record.agent_id, kind=record.kind,
                reason=why, data={"restart": record.restart, "previous_state": record.state},
            )
    if report.respawned or report.failed:
        logger.info(
            "recovery of node %s: %d respawned, %d not restarted, %d failed", runtime.node_id,
            len(report.respawned), len(report.not_restarted), len(report.failed),
        )
    return report
