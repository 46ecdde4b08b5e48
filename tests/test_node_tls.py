"""A node over NATS TLS with real certificates (trustme): its embedded nats-server serving TLS and
verifying client certificates, an external TLS nats-server, and refusals that name the setting."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nats
import pytest
from _tls_helpers import Pki, tls_server_conf

from mistersmith.bridge import NatsUnavailableError
from mistersmith.cli import main
from mistersmith.config import Settings, load_settings
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.node import Node, read_node_file

BOUND_S = 20.0


def _settings(data_dir: Path, database_url: str, **more: Any) -> Settings:
    return load_settings({"node.data_dir": str(data_dir), "http.port": 0, "nats.embedded_port": 0,
                          "database.url": database_url, **more})


def _client_cert(pki: Pki) -> dict[str, str]:
    return {"nats.tls_cert": str(pki.client_cert), "nats.tls_key": str(pki.client_key)}


async def _ping(options: dict[str, Any]) -> dict[str, Any]:
    nc = await nats.connect(**options, allow_reconnect=False)
    try:
        reply = await nc.request("system.control.ping", b"{}", timeout=10)
        answer: dict[str, Any] = json.loads(reply.data)
        return answer
    finally:
        await nc.close()


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_embedded_server_serves_tls_and_the_node_and_cli_use_it(
    node_dir: Path, journal_db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    pki = Pki.make(node_dir / "pki")
    data_dir = node_dir / "node"
    settings = _settings(data_dir, journal_db, **_client_cert(pki), **{
        "nats.embedded_tls_cert": str(pki.server_cert), "nats.embedded_tls_key": str(pki.server_key),
        "nats.embedded_tls_ca": str(pki.ca), "nats.embedded_tls_verify": True})
    with Node(settings) as node:
        assert node.nats_url.startswith("tls://127.0.0.1:")
        assert node.bridge is not None and node.bridge.nc.is_connected
        conf = (data_dir / "nats" / "nats-server.conf").read_text()
        assert "tls {" in conf and "verify: true" in conf
        written = read_node_file(data_dir)
        assert written is not None and written["nats_tls_ca"] == str(pki.ca)
        assert asyncio.run(_ping(node.nats_client_options()))["ok"]
        # the CLI finds the CA in node.json; the client certificate is its own setting
        monkeypatch.setenv("MISTERSMITH_NATS_TLS_CERT", str(pki.client_cert))
        monkeypatch.setenv("MISTERSMITH_NATS_TLS_KEY", str(pki.client_key))
        code, shown = _cli(capsys, "--data-dir", str(data_dir), "agents", "--json")
        assert code == 0, shown
        monkeypatch.delenv("MISTERSMITH_NATS_TLS_CERT")
        monkeypatch.delenv("MISTERSMITH_NATS_TLS_KEY")
        started = time.monotonic()
        code, shown = _cli(capsys, "--data-dir", str(data_dir), "agents", "--json")
        assert code == 3 and "requires a client certificate and none was given" in shown, shown
        assert "nats.tls_cert" in shown and time.monotonic() - started < BOUND_S


def test_a_node_connects_to_an_external_tls_server_with_its_ca_and_certificate(
    node_dir: Path, journal_db: str,
) -> None:
    pki = Pki.make(node_dir / "pki")
    with EmbeddedNats(node_dir / "external", config_text=tls_server_conf(pki, verify=True)) as server:
        url = f"tls://127.0.0.1:{server.port}"
        settings = _settings(node_dir / "node", journal_db, **_client_cert(pki),
                             **{"nats.url": url, "nats.tls_ca": str(pki.ca)})
        with Node(settings) as node:
            assert node.bridge is not None and node.bridge.nc.is_connected
            assert asyncio.run(_ping(node.nats_client_options()))["ok"]
            assert not (node_dir / "node" / "nats").exists(), "no embedded server was started"


@pytest.mark.parametrize(("more", "named"), [
    ({"nats.tls_ca": "OTHER"}, "not signed by the CA in nats.tls_ca"),
    ({"nats.tls_ca": "CA", "nats.tls_cert": None, "nats.tls_key": None}, "requires a client certificate"),
])
def test_a_wrong_ca_or_no_client_certificate_stops_the_node_saying_which(
    node_dir: Path, journal_db: str, more: dict[str, str | None], named: str,
) -> None:
    pki = Pki.make(node_dir / "pki")
    files = {"OTHER": str(pki.other_ca), "CA": str(pki.ca)}
    with EmbeddedNats(node_dir / "external", config_text=tls_server_conf(pki, verify=True)) as server:
        chosen = {**_client_cert(pki), **{k: files.get(v, v) if v else None for k, v in more.items()}}
        settings = _settings(node_dir / "node", journal_db, **{"nats.url": f"tls://127.0.0.1:{server.port}"},
                             **{k: v for k, v in chosen.items() if v is not None})
        node = Node(settings)
        started = time.monotonic()
        with pytest.raises(NatsUnavailableError, match=named):
            node.start()
        assert time.monotonic() - started < BOUND_S, "a refused TLS connection stops the node, never hangs it"
        assert node.runtime is None or node.runtime.closed
