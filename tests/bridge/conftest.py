"""Fixtures of the bridge tests: one real nats-server (JetStream on) for the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _bridge_helpers import WAIT_S, BridgeNode

from mistersmith.embedded.nats import EmbeddedNats


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real nats-server on a free loopback port, its store in a temporary directory."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def node(nats_server: EmbeddedNats) -> Iterator[BridgeNode]:
    n = BridgeNode(nats_server.url)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def pair(nats_server: EmbeddedNats) -> Iterator[tuple[BridgeNode, BridgeNode]]:
    """Two nodes (``node-a``, ``node-b``) on the module's server, each knowing the other."""
    a = BridgeNode(nats_server.url, node_id="node-a")
    try:
        b = BridgeNode(nats_server.url, node_id="node-b")
    except BaseException:
        a.close()
        raise
    try:
        both = {"node-a", "node-b"}
        assert a.bridge is not None and b.bridge is not None
        assert a.run(a.bridge.membership.wait_for(both, WAIT_S))
        assert b.run(b.bridge.membership.wait_for(both, WAIT_S))
        yield a, b
    finally:
        b.close()
        a.close()
