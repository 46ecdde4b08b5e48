"""GET /cluster and the MCP tool list_nodes, over a fake ClusterOps; 503/isError ``unavailable`` without one."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from _fake_cluster import FakeCluster, node_row
from _web import TOKEN, Served, call, http
from jsonschema import Draft202012Validator

from mistersmith.cluster_ops import ClusterUnavailableError
from mistersmith.web import TOOLS

ROWS = [node_row("node-a", agents=2), node_row("node-b", state="draining", agents=0, http_url=None),
        node_row("node-c", state="down", expired=False)]


def test_cluster_lists_every_node_and_who_answered(serve: Callable[..., Served]) -> None:
    served = serve(backends={"cluster": FakeCluster("node-a", ROWS)})
    reply = http(served.url, "GET", "/cluster")
    assert reply.status == 200
    assert reply.json() == {"node_id": served.runtime.node_id, "nodes": ROWS}
    assert "cluster" in http(served.url, "GET", "/info").json()["capabilities"]


def test_list_nodes_tool_is_read_only_and_fits_its_schema(serve: Callable[..., Served]) -> None:
    served = serve(backends={"cluster": FakeCluster("node-a", ROWS)})
    tool = TOOLS["list_nodes"]
    assert tool.read_only and not tool.destructive
    result = call(served, "list_nodes")
    assert result["isError"] is False, result
    structured = result["structuredContent"]
    Draft202012Validator(tool.output_schema).validate(structured)
    assert structured == {"node_id": served.runtime.node_id, "nodes": ROWS}
    assert orjson.loads(result["content"][0]["text"]) == structured
    refused = call(served, "list_nodes", {"node": "node-a"})
    assert refused["isError"] is True and "invalid_arguments" in refused["content"][0]["text"]


def test_without_a_cluster_both_say_unavailable(serve: Callable[..., Served]) -> None:
    served = serve()
    reply = http(served.url, "GET", "/cluster")
    assert reply.status == 503 and reply.json()["error"]["code"] == "unavailable"
    assert "cluster" not in http(served.url, "GET", "/info").json()["capabilities"]
    result = call(served, "list_nodes")
    assert result["isError"] is True
    error = orjson.loads(result["content"][0]["text"])["error"]
    assert error["code"] == "unavailable" and "cluster" in error["message"]


def test_a_database_outage_is_503_unavailable(serve: Callable[..., Served]) -> None:
    outage = ClusterUnavailableError("reading the cluster's nodes", "node-a", "connection refused")
    served = serve(backends={"cluster": FakeCluster("node-a", error=outage)})
    reply = http(served.url, "GET", "/cluster")
    assert reply.status == 503
    assert reply.json()["error"] == {"code": "unavailable", "message": outage.message}
    error = orjson.loads(call(served, "list_nodes")["content"][0]["text"])["error"]
    assert error == {"code": "unavailable", "message": outage.message}


def test_cluster_needs_the_token_when_one_is_set(serve: Callable[..., Served]) -> None:
    served = serve(backends={"cluster": FakeCluster("node-a", ROWS)}, api_token=TOKEN)
    assert http(served.url, "GET", "/cluster").status == 401
    assert http(served.url, "GET", "/cluster", headers=served.auth()).status == 200
