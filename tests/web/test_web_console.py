"""``/ui``: the page without a credential, the cookie login (and only on /ui), and the console's JSON API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest
from _web import TOKEN, Served, SseClient, http

from mistersmith.actors import Agent, command


class Crashy(Agent):
    @command
    def crash(self) -> None:
        raise RuntimeError("boom")

    @command
    def add(self, a: int, b: int) -> int:
        return a + b


def _login(served: Served, token: str = TOKEN) -> tuple[int, str]:
    reply = http(served.url, "POST", "/ui/login", b"", {"authorization": f"Bearer {token}"})
    return reply.status, reply.headers.get("set-cookie", "")


def _cookie(served: Served) -> dict[str, str]:
    status, cookie = _login(served)
    assert status == 200
    return {"cookie": cookie.split(";")[0]}


def test_the_page_and_its_files_load_without_a_credential(serve: Callable[..., Served]) -> None:
    served = serve(api_token=TOKEN)
    page = http(served.url, "GET", "/ui")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b"API token" in page.body and b"/ui/static/app.js" in page.body
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in [("app.js", "text/javascript"), ("console.css", "text/css"), ("tree.js", "text/javascript")]:
        reply = http(served.url, "GET", f"/ui/static/{name}")
        assert reply.status == 200 and reply.headers["content-type"].startswith(kind), name
    assert http(served.url, "GET", "/ui/static/console.py").status == 404
    assert http(served.url, "GET", "/ui/static/..%2Fconsole.py").status == 404


def test_login_sets_an_httponly_strict_cookie_for_ui_only(serve: Callable[..., Served]) -> None:
    served = serve(api_token=TOKEN)
    assert _login(served, "wrong-token-0123456789abcdef")[0] == 401
    status, cookie = _login(served)
    assert status == 200
    parts = [p.strip().lower() for p in cookie.split(";")]
    assert parts[0] == f"ms_console={TOKEN}".lower()
    assert "httponly" in parts and "samesite=strict" in parts and "path=/ui" in parts


def test_the_cookie_is_a_credential_on_console_paths_only(serve: Callable[..., Served]) -> None:
    served = serve(api_token=TOKEN)
    assert http(served.url, "GET", "/ui/api/tree").status == 401
    jar = _cookie(served)
    tree = http(served.url, "GET", "/ui/api/tree", headers=jar)
    assert tree.status == 200 and tree.json()["tree"]["id"] == "root"
    assert http(served.url, "GET", "/info", headers=jar).status == 401
    assert http(served.url, "GET", "/cluster", headers=jar).status == 401
    assert http(served.url, "GET", "/ui/api/tree", headers={"cookie": "ms_console=nope"}).status == 401
    # a wrong bearer header is not rescued by a right cookie
    assert http(served.url, "GET", "/ui/api/tree", headers={**jar, "authorization": "Bearer nope"}).status == 401
    assert http(served.url, "POST", "/ui/logout", b"", jar).headers["set-cookie"].startswith('ms_console=""')


def test_the_console_streams_under_ui_with_the_cookie(serve: Callable[..., Served]) -> None:
    served = serve(api_token=TOKEN)
    jar = _cookie(served)

    async def main() -> dict[str, object]:
        client = await SseClient.open(served.url, "", jar, path="/ui/api/events/stream")
        assert client.status == 200
        await client.comment()
        await asyncio.to_thread(served.runtime.spawn, "echo", "e1")
        event = orjson.loads((await client.event())["data"])
        client.close()
        return dict(event)

    assert asyncio.run(main())["agent_id"] == "e1"


def test_agent_page_commands_restart_and_stop(serve: Callable[..., Served]) -> None:
    served = serve()
    served.runtime.register("crashy", Crashy)
    served.runtime.spawn("crashy", "c1")
    page = http(served.url, "GET", "/ui/api/agents/c1").json()
    assert page["agent"]["kind"] == "crashy" and page["state"] is None
    assert page["commands"]["add"]["params"]["a"] == {"required": True, "type": "int"}
    assert [e["event_type"] for e in page["events"]] == ["started"]
    sent = http(served.url, "POST", "/ui/api/agents/c1/command", orjson.dumps({"command": "add", "payload": {"a": 2, "b": 3}}))
    assert sent.status == 200 and sent.json()["result"] == 5
    bad = http(served.url, "POST", "/ui/api/agents/c1/command", orjson.dumps({"command": "nope"}))
    assert bad.status == 400 and bad.json()["error"]["code"] == "unknown_command"
    assert http(served.url, "GET", "/ui/api/agents/ghost").status == 404
    assert http(served.url, "POST", "/ui/api/agents/c1/restart", b"{}").json()["restarted"] is True
    assert http(served.url, "POST", "/ui/api/agents/c1/stop", b"{}").json()["stopped"] is True
    assert http(served.url, "GET", "/ui/api/agents/c1").status == 404


def test_history_tree_at_and_why_did_this_restart(serve: Callable[..., Served]) -> None:
    served = serve()
    served.runtime.register("crashy", Crashy)
    served.runtime.spawn("crashy", "c1")
    before = served.runtime.history()[-1].seq
    restarted = served.runtime.subscribe(agent_id="c1", event_types=["restarted"])
    with pytest.raises(Exception):
        served.runtime.ask("c1", "crash", timeout=5.0)
    assert restarted.get(10.0).event_type == "restarted"
    restarted.close()
    then = http(served.url, "GET", f"/ui/api/tree_at?at={before}").json()
    (node,) = then["nodes"]
    (agent,) = node["tree"]["children"]
    assert (agent["id"], agent["state"], agent["restart_count"]) == ("c1", "running", 0)
    events = http(served.url, "GET", "/ui/api/events?agent_id=c1").json()["events"]
    seq = next(e["seq"] for e in events if e["event_type"] == "restarted")
    chain = http(served.url, "GET", f"/ui/api/why?seq={seq}").json()
    assert chain["failure"]["event_type"] == "failed" and "boom" in chain["failure"]["reason"]
    assert chain["failure"]["trace_id"] is None
    assert chain["window"]["used"] == 1 and chain["window"]["intensity"] == 1000
    assert chain["escalation"] is None
    assert http(served.url, "GET", "/ui/api/why?seq=abc").status == 400


class OtherNodes:
    """A ``RemoteCommands`` port whose cluster has one more node (the tree's ``others``)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.me = "?"  # the served node's own id: its own answer to the scatter must not show twice

    async def remote_trees(self) -> dict[str, object]:
        from mistersmith.bridge.errors import NatsUnavailableError

        if self.fail:
            raise NatsUnavailableError("system.control.tree was not sent", "reconnecting")
        return {"node-b": {"id": "root", "path": "root", "type": "supervisor", "children": [
            {"id": "far", "path": "root/far", "type": "agent", "kind": "echo", "state": "idle", "children": []}]},
                self.me: {"id": "root", "children": []}}


def test_the_tree_shows_every_other_node_of_the_cluster(serve: Callable[..., Served]) -> None:
    nodes = OtherNodes()
    served = serve(api_token=TOKEN, backends={"remote": nodes})
    nodes.me = served.runtime.node_id
    jar = _cookie(served)
    doc = http(served.url, "GET", "/ui/api/tree", headers=jar).json()
    assert doc["others"]["node-b"]["children"][0]["id"] == "far"
    assert list(doc["others"]) == ["node-b"]  # not this node again
    away = serve(api_token=TOKEN, backends={"remote": OtherNodes(fail=True)})
    doc = http(away.url, "GET", "/ui/api/tree", headers=_cookie(away)).json()
    assert doc["others"] == {} and doc["tree"]["id"] == "root"  # NATS away: this node's tree still shows
