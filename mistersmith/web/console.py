"""``/ui``: the browser console, its login and its JSON API. Thin handlers over the Runtime and ports.

- ``GET /ui`` and ``GET /ui/static/<file>``: the page (plain HTML, CSS and
  JavaScript shipped in the wheel, under ``mistersmith/web/ui``); reachable
  without a credential (it holds nothing secret, and it is the login page).
- ``POST /ui/login`` with ``Authorization: Bearer <token>``: the Guard checks
  the token as on any route; the answer sets it as the ``ms_console`` cookie
  (HttpOnly, SameSite=Strict, Path=/ui, Secure under TLS). The Guard accepts
  that cookie on ``/ui/...`` paths only (``security.credential``).
  ``POST /ui/logout`` clears it.
- ``/ui/api/...``: what the page reads and does (see ``Console.routes``);
  ``/ui/api/events/stream``, ``/ui/api/discoveries/stream`` and
  ``/ui/api/cluster`` are the top-level endpoints, mounted where the cookie goes.

Errors are ``{"error": {"code", "message"}}`` with 400 (bad input), 404 (no
such agent), 503 (not on this node) or 500.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mistersmith import __version__
from mistersmith.errors import MisterSmithError, SpecError, UnknownAgentError
from mistersmith.history.chain import ESCALATIONS, restart_chain
from mistersmith.ports import Timeline

from .backends import Backends
from .config import WebConfig
from .security import UI_COOKIE, UI_PREFIX

__all__ = ["Console", "STATIC"]

_UI = resources.files("mistersmith.web") / "ui"
_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
STATIC = frozenset(p.name for p in _UI.iterdir() if p.is_file() and any(p.name.endswith(x) for x in _TYPES))
_HEADERS = {"cache-control": "no-cache", "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}
_STATUS = {"invalid_spec": 400, "invalid_payload": 400, "unknown_command": 400, "unknown_agent": 404,
           "unavailable": 503}
RECENT_EVENTS = 50
_RECENT_WINDOW = 50_000  # seqs looked back for an agent's recent events


def _error(exc: MisterSmithError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, _STATUS.get(exc.code, 500))


def _int(request: Request, key: str, default: int | None, minimum: int = 0) -> int | None:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise SpecError(None, key, raw, f"use an integer >= {minimum}")
    return int(raw)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise SpecError(None, "body", raw[:80].decode("utf-8", "replace"), "send a JSON object") from exc
    if not isinstance(body, dict):
        raise SpecError(None, "body", body, "send a JSON object")
    return body


def _countdowns(node: dict[str, Any], now: float) -> dict[str, Any]:
    """``restart_in_s`` beside each ``restart_at`` (a monotonic time the browser cannot read)."""
    if "restart_at" in node:
        node["restart_in_s"] = round(max(0.0, float(node["restart_at"]) - now), 3)
    for child in node.get("children", ()):
        _countdowns(child, now)
    return node


def _find(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    if tree.get("path") == path:
        return tree
    for child in tree.get("children", ()):
        found = _find(child, path)
        if found is not None:
            return found
    return None


class Console:
    """The console's routes; ``streams`` are the app's SSE endpoints to mount under ``/ui/api``."""

    def __init__(self, backends: Backends, config: WebConfig, timeline: Timeline,
                 mounted: dict[str, Callable[..., Any]]) -> None:
        self.backends = backends
        self.config = config
        self.timeline = timeline
        self.mounted = mounted

    def routes(self) -> list[BaseRoute]:
        api = f"{UI_PREFIX}/api"
        return [
            Route(UI_PREFIX, self.page, methods=["GET"]),
            Route(f"{UI_PREFIX}/", self.page, methods=["GET"]),
            Route(f"{UI_PREFIX}/static/{{name}}", self.static, methods=["GET"]),
            Route(f"{UI_PREFIX}/login", self.login, methods=["POST"]),
            Route(f"{UI_PREFIX}/logout", self.logout, methods=["POST"]),
            Route(f"{api}/session", self.session, methods=["GET"]),
            Route(f"{api}/tree", self.tree, methods=["GET"]),
            Route(f"{api}/kinds", self.kinds, methods=["GET"]),
            Route(f"{api}/agents/{{agent_id}}", self.agent, methods=["GET"]),
            Route(f"{api}/agents/{{agent_id}}/command", self.command, methods=["POST"]),
            Route(f"{api}/agents/{{agent_id}}/restart", self.restart, methods=["POST"]),
            Route(f"{api}/agents/{{agent_id}}/stop", self.stop, methods=["POST"]),
            Route(f"{api}/events", self.events, methods=["GET"]),
            Route(f"{api}/tree_at", self.tree_at, methods=["GET"]),
            Route(f"{api}/why", self.why, methods=["GET"]),
            *(Route(f"{api}{path}", endpoint, methods=["GET"]) for path, endpoint in self.mounted.items()),
        ]

    # -- the page and the login --------------------------------------------------------

    async def page(self, request: Request) -> Response:
        return await self._file("index.html")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return JSONResponse({"error": {"code": "not_found", "message": f"no console file {name!r}"}}, 404)
        return await self._file(name)

    @staticmethod
    async def _file(name: str) -> Response:
        suffix = name[name.rindex("."):]
        return Response((_UI / name).read_bytes(), media_type=_TYPES[suffix], headers=_HEADERS)

    async def login(self, request: Request) -> Response:
        """The Guard let the bearer token through: keep it in the console's cookie."""
        response = JSONResponse({"ok": True, "auth": "token" if self.config.secured else "none"})
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if self.config.secured and scheme.lower() == "bearer" and token.strip():
            response.set_cookie(UI_COOKIE, token.strip(), path=UI_PREFIX, httponly=True, samesite="strict",
                                secure=self.config.tls)
        return response

    async def logout(self, request: Request) -> Response:
        response = JSONResponse({"ok": True})
        response.delete_cookie(UI_COOKIE, path=UI_PREFIX, httponly=True, samesite="strict", secure=self.config.tls)
        return response

    # -- reading -----------------------------------------------------------------------

    async def session(self, request: Request) -> Response:
        b = self.backends
        return JSONResponse({"node_id": b.runtime.node_id, "version": __version__,
                             "auth": "token" if self.config.secured else "none", "source": self.timeline.source,
                             "discoveries": b.discoveries is not None, "cluster": b.cluster is not None})

    async def tree(self, request: Request) -> Response:
        """This node's tree, and (in a cluster) every other node's as ``others``: ``{node_id: tree}``."""
        runtime, remote = self.backends.runtime, self.backends.remote
        others: dict[str, Any] = {}
        if remote is not None:
            try:
                others = {node: tree for node, tree in (await remote.remote_trees()).items()
                          if node != runtime.node_id}
            except MisterSmithError:  # NATS is away: this node's tree still shows
                others = {}
        return JSONResponse({"node_id": runtime.node_id, "tree": _countdowns(runtime.tree(), runtime.clock.now()),
                             "others": others, "head_seq": await self.timeline.head_seq()})

    async def kinds(self, request: Request) -> Response:
        return JSONResponse({"kinds": self.backends.runtime.kinds()})

    async def agent(self, request: Request) -> Response:
        runtime = self.backends.runtime
        agent_id = request.path_params["agent_id"]
        try:
            agent = runtime.get_agent(agent_id)
        except UnknownAgentError as exc:
            return _error(exc)
        try:
            state: dict[str, Any] | None = await runtime.aget_state(agent_id)
        except UnknownAgentError:
            state = None  # not durable
        head = await self.timeline.head_seq()
        recent = deque(await self.timeline.events(after_seq=max(0, head - _RECENT_WINDOW), agent_id=agent_id,
                                                  limit=_RECENT_WINDOW), maxlen=RECENT_EVENTS)
        kind = runtime.kinds().get(str(agent.get("kind")), {})
        return JSONResponse({"agent": agent, "state": state, "commands": kind.get("commands", {}),
                             "events": list(recent)})

    async def events(self, request: Request) -> Response:
        try:
            after = _int(request, "after_seq", 0)
            limit = _int(request, "limit", 200, minimum=1)
        except SpecError as exc:
            return _error(exc)
        types = [t for t in request.query_params.get("types", "").split(",") if t] or None
        found = await self.timeline.events(after_seq=after or 0, agent_id=request.query_params.get("agent_id") or None,
                                           event_types=types, limit=min(limit or 200, 1000))
        return JSONResponse({"events": found, "head_seq": await self.timeline.head_seq(),
                             "source": self.timeline.source})

    async def tree_at(self, request: Request) -> Response:
        try:
            at = _int(request, "at", None)
        except SpecError as exc:
            return _error(exc)
        return JSONResponse(await self.timeline.tree_at(at))

    async def why(self, request: Request) -> Response:
        """"Why did this restart": the chain that led to event ``seq`` (``mistersmith.history.chain``)."""
        try:
            seq = _int(request, "seq", None, minimum=1)
            if seq is None:
                raise SpecError(None, "seq", None, "name the event, by its seq")
            found = await self.timeline.events(after_seq=seq - 1, limit=1)
            if not found or found[0]["seq"] != seq:
                raise SpecError(None, "seq", seq, "name an event the journal holds")
        except SpecError as exc:
            return _error(exc)
        selected = found[0]
        supervisor = _find_supervisor(await self.timeline.tree_at(seq), selected)
        period_s = supervisor.get("period_s") if supervisor else None
        since = datetime.fromisoformat(selected["occurred_at"]) - timedelta(seconds=float(period_s or 3600))
        agent_events = (await self.timeline.events(agent_id=selected["agent_id"], since=since, limit=5000)
                        if selected.get("agent_id") else [])
        agent_events = [e for e in agent_events if e["seq"] <= seq]
        escalations = [e for e in await self.timeline.events(after_seq=seq - 1, event_types=list(ESCALATIONS), limit=100)
                       if e["supervisor"] == selected["supervisor"]]
        return JSONResponse(restart_chain(selected, agent_events, escalations,
                                          intensity=supervisor.get("intensity") if supervisor else None,
                                          period_s=period_s))

    # -- acting ------------------------------------------------------------------------

    async def command(self, request: Request) -> Response:
        agent_id = request.path_params["agent_id"]
        try:
            body = await _body(request)
            command = body.get("command")
            if not isinstance(command, str) or not command:
                raise SpecError(None, "command", command, "name one of the kind's commands")
            payload = body.get("payload")
            if payload is not None and not isinstance(payload, dict):
                raise SpecError(None, "payload", payload, "send a JSON object (or leave it out)")
            timeout_s = float(body.get("timeout_s", 10.0))
            result = await self.backends.runtime.aask(agent_id, command, payload, timeout=min(timeout_s, 300.0))
        except MisterSmithError as exc:
            return _error(exc)
        return JSONResponse({"agent_id": agent_id, "command": command, "result": result})

    async def restart(self, request: Request) -> Response:
        agent_id = request.path_params["agent_id"]
        try:
            await self.backends.runtime.arestart(agent_id)
            return JSONResponse({"agent_id": agent_id, "restarted": True,
                                 "agent": self.backends.runtime.get_agent(agent_id)})
        except MisterSmithError as exc:
            return _error(exc)

    async def stop(self, request: Request) -> Response:
        agent_id = request.path_params["agent_id"]
        try:
            await self.backends.runtime.astop(agent_id)
        except MisterSmithError as exc:
            return _error(exc)
        return JSONResponse({"agent_id": agent_id, "stopped": True})


def _find_supervisor(snapshot: dict[str, Any], event: dict[str, Any]) -> dict[str, Any] | None:
    """The event's supervisor in a ``tree_at`` answer (its spec: ``intensity``, ``period_s``)."""
    for node in snapshot.get("nodes", ()):
        if node["node_id"] == event.get("node_id"):
            return _find(node["tree"], str(event.get("supervisor")))
    return None
