"""Credentials in the NATS URL and the API token are used, never shown: not in /health (which needs no
token), node.json, ``describe()`` (the serve banner and ready line), or the logs."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

import pytest

from mistersmith.cli._serve import _ready_text
from mistersmith.config import load_settings
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.node import Node, read_node_file

PASSWORD = "pa55-in-the-url-0123"
TOKEN = "api-token-never-shown-4567"


def test_nats_url_credentials_and_the_token_are_never_shown(
    node_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with EmbeddedNats(node_dir / "external-nats", args=("--user", "ms", "--pass", PASSWORD)) as nats_server:
        bare = f"nats://127.0.0.1:{nats_server.port}"
        url = f"nats://ms:{PASSWORD}@127.0.0.1:{nats_server.port}"
        settings = load_settings({"node.data_dir": str(node_dir / "data"), "http.port": 0, "nats.url": url},
                                 {"MISTERSMITH_API_TOKEN": TOKEN})
        with Node(settings) as node:
            assert node.nats_url == url, "the real URL is what the node connects with"
            assert node.http is not None and node.bridge is not None and node.bridge.nc.is_connected
            with urllib.request.urlopen(node.http.url + "/health", timeout=10) as resp:
                health = json.loads(resp.read())
            node_file = read_node_file(node_dir / "data")
            where = node.describe()
            banner = _ready_text(where, settings, ["echo"])
    assert health["components"]["nats"] == {"status": "ok", "url": bare}
    assert node_file is not None and node_file["nats_url"] == bare and where["nats_url"] == bare
    assert f"NATS      {bare}" in banner
    for shown in (json.dumps(health), json.dumps(node_file), json.dumps(where), banner, caplog.text):
        assert PASSWORD not in shown and TOKEN not in shown
