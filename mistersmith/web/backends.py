"""``Backends``: what the web shim calls: the Runtime and the optional ports.

Also the one health computation that ``/health`` and the ``system_health``
tool share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mistersmith.errors import MisterSmithError
from mistersmith.ports import (
    AuditTrail,
    ClusterOps,
    ComponentCheck,
    Discoveries,
    History,
    NatsStats,
    RemoteCommands,
    Tasks,
    Timeline,
)
from mistersmith.recovery import health as recovery_health
from mistersmith.runtime import Runtime

__all__ = ["Backends", "UnavailableError", "check_health"]

HEALTH_CHECK_TIMEOUT_S = 2.0


class UnavailableError(MisterSmithError):
    """This node was not given the component a call needs (no NATS, no journal...)."""

    code = "unavailable"

    def __init__(self, what: str, needs: str) -> None:
        super().__init__(f"{what} is not available on this node: it runs without {needs}")
        self.what = what
        self.needs = needs


@dataclass(frozen=True)
class Backends:
    """The Runtime, plus whatever the node wired in (``None``: not on this node).

    ``health`` maps component names (``nats``, ``database``) to probes; the
    supervisor tree and the last recovery (``recovery``: ``degraded`` while
    agents it could not bring back are missing) are always checked, from the
    Runtime. (``/info`` lists the NATS subjects from ``mistersmith.subjects``,
    the one definition, however the app was built.)
    """

    runtime: Runtime
    history: History | None = None
    discoveries: Discoveries | None = None
    tasks: Tasks | None = None
    nats: NatsStats | None = None
    cluster: ClusterOps | None = None
    timeline: Timeline | None = None  # the journal's; None: the Runtime's memory (/events/stream, /ui)
    audit: AuditTrail | None = None
    remote: RemoteCommands | None = None  # agents on other nodes, over NATS (the bridge)
    health: Mapping[str, ComponentCheck] = field(default_factory=dict)

    def need_discoveries(self) -> Discoveries:
        if self.discoveries is None:
            raise UnavailableError("discovery sharing", "a discovery hub")
        return self.discoveries

    def need_tasks(self) -> Tasks:
        if self.tasks is None:
            raise UnavailableError("the task queue", "the NATS bridge")
        return self.tasks

    def need_audit(self) -> AuditTrail:
        if self.audit is None:
            raise UnavailableError("the audit trail", "a journal")
        return self.audit

    def need_cluster(self) -> ClusterOps:
        if self.cluster is None:
            raise UnavailableError("the cluster's membership", "a cluster (nodes sharing a PostgreSQL)")
        return self.cluster


async def _probe(check: ComponentCheck) -> dict[str, Any]:
    try:
        report = dict(await asyncio.wait_for(check(), HEALTH_CHECK_TIMEOUT_S))
    except TimeoutError:
        return {"status": "down", "error": f"no answer within {HEALTH_CHECK_TIMEOUT_S:.1f} s"}
    except Exception as exc:
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"}
    if report.get("status") not in ("ok", "degraded", "down"):
        report["status"] = "down"
    return report


def _tree(runtime: Runtime) -> dict[str, Any]:
    if runtime.closed:
        reason = runtime.fatal_error.message if runtime.fatal_error is not None else "the runtime is closed"
        return {"status": "down", "error": reason}
    stats = runtime.stats()
    return {"status": "ok", "agents": stats["agents"], "root": runtime.tree().get("state", "running")}


async def check_health(backends: Backends) -> dict[str, Any]:
    """``{"status": "ok"|"degraded"|"down", "components": {...}}``; unwired components say ``disabled``."""
    components: dict[str, dict[str, Any]] = {"supervisor_tree": _tree(backends.runtime),
                                             "recovery": recovery_health(backends.runtime)}
    names = sorted(backends.health)
    reports = await asyncio.gather(*(_probe(backends.health[n]) for n in names))
    components.update(zip(names, reports, strict=True))
    for name in ("nats", "database"):
        components.setdefault(name, {"status": "disabled"})
    states = {c["status"] for c in components.values()}
    status = "down" if "down" in states else "degraded" if "degraded" in states else "ok"
    return {"status": status, "node_id": backends.runtime.node_id, "components": components}
