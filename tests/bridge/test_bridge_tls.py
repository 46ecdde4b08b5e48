"""NATS over TLS with real certificates (trustme): a nats-server that verifies client certificates,
the node's connection with a CA and a client certificate, and every refusal naming what was wrong."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from _tls_helpers import Pki, tls_server_conf

from mistersmith.bridge import ConnectOptions, NatsUnavailableError, connect
from mistersmith.bridge.tls import client_context
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.embedded.nats_tls import ServerTls
from mistersmith.errors import SpecError

BOUND_S = 15.0  # a refused connection fails within this, never hangs


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[EmbeddedNats]:
    """An 'external' nats-server of its own configuration: TLS only, client certificates verified."""
    with EmbeddedNats(tmp_path_factory.mktemp("tls-nats"), config_text=tls_server_conf(pki)) as server:
        yield server


def _url(server: EmbeddedNats) -> str:
    return f"tls://127.0.0.1:{server.port}"


def _options(url: str, **fields: Path | str | None) -> ConnectOptions:
    return ConnectOptions(servers=(url,), reconnect_base_s=0.05, reconnect_max_s=0.2,
                          **{k: None if v is None else str(v) for k, v in fields.items()})


async def _round_trip(options: ConnectOptions) -> bytes:
    nc, _ = await connect(options)

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    try:
        sub = await nc.subscribe("tls.echo", cb=echo)
        reply = await nc.request("tls.echo", b"over tls", timeout=5)
        await sub.unsubscribe()
        return reply.data
    finally:
        await nc.close()


def _refusal(options: ConnectOptions) -> str:
    started = time.monotonic()
    with pytest.raises(NatsUnavailableError) as caught:
        asyncio.run(_round_trip(options))
    assert time.monotonic() - started < BOUND_S, "a refused TLS connection must fail, not hang"
    return str(caught.value)


def test_a_ca_and_a_client_certificate_connect(tls_server: EmbeddedNats, pki: Pki) -> None:
    options = _options(_url(tls_server), tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
    assert asyncio.run(_round_trip(options)) == b"over tls"


def test_a_nats_url_upgrades_to_tls_with_the_ca(tls_server: EmbeddedNats, pki: Pki) -> None:
    options = _options(tls_server.url, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
    assert asyncio.run(_round_trip(options)) == b"over tls"


def test_the_wrong_ca_names_nats_tls_ca(tls_server: EmbeddedNats, pki: Pki) -> None:
    message = _refusal(_options(_url(tls_server), tls_ca=pki.other_ca, tls_cert=pki.client_cert,
                                tls_key=pki.client_key))
    assert "server's certificate was refused" in message and f"nats.tls_ca ({pki.other_ca})" in message, message


def test_no_ca_says_the_system_cas_do_not_trust_it(tls_server: EmbeddedNats, pki: Pki) -> None:
    message = _refusal(_options(_url(tls_server), tls_cert=pki.client_cert, tls_key=pki.client_key))
    assert "a CA this system trusts (nats.tls_ca is unset)" in message, message


def test_a_missing_client_certificate_names_nats_tls_cert(tls_server: EmbeddedNats, pki: Pki) -> None:
    message = _refusal(_options(_url(tls_server), tls_ca=pki.ca))
    assert "requires a client certificate and none was given" in message and "nats.tls_cert" in message, message


def test_a_client_certificate_of_another_ca_is_refused(tls_server: EmbeddedNats, pki: Pki) -> None:
    message = _refusal(_options(_url(tls_server), tls_ca=pki.ca, tls_cert=pki.stranger_cert,
                                tls_key=pki.stranger_key))
    assert f"nats.tls_cert ({pki.stranger_cert})" in message, message


def test_a_tls_url_never_falls_back_to_plain_text(nats_server: EmbeddedNats, pki: Pki) -> None:
    message = _refusal(_options(f"tls://127.0.0.1:{nats_server.port}", tls_ca=pki.ca, user="u", password="secret"))
    assert "the server does not offer TLS (nothing was sent" in message, message


def test_unreadable_files_name_their_setting(tmp_path: Path, pki: Pki) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(SpecError, match=r"nats\.tls_ca=.*nope\.pem.*readable PEM file"):
        client_context(("tls://h:1",), missing, None, None)
    with pytest.raises(SpecError, match=r"nats\.tls_cert=.*client\.pem.*nats\.tls_key"):
        client_context(("tls://h:1",), str(pki.ca), str(pki.client_cert), str(pki.server_key))  # not its key
    with pytest.raises(SpecError, match=r"nats\.tls_key"):
        client_context(("tls://h:1",), None, str(pki.client_cert), None)
    assert client_context(("nats://h:1",), None, None, None) is None


def test_the_embedded_server_serves_tls_and_verifies_clients(tmp_path: Path, pki: Pki) -> None:
    tls = ServerTls(str(pki.server_cert), str(pki.server_key), str(pki.ca), verify=True)
    with EmbeddedNats(tmp_path / "nats", tls=tls) as server:
        assert server.url == f"tls://127.0.0.1:{server.port}"
        good = _options(server.url, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
        assert asyncio.run(_round_trip(good)) == b"over tls"
        assert "requires a client certificate" in _refusal(_options(server.url, tls_ca=pki.ca))


def test_the_embedded_server_without_verify_takes_any_tls_client(tmp_path: Path, pki: Pki) -> None:
    with EmbeddedNats(tmp_path / "nats", tls=ServerTls(str(pki.server_cert), str(pki.server_key))) as server:
        assert asyncio.run(_round_trip(_options(server.url, tls_ca=pki.ca))) == b"over tls"


def test_the_embedded_servers_bad_files_name_their_setting(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(SpecError, match=r"nats\.embedded_tls_ca=None .* the CA whose client certificates"):
        ServerTls(str(pki.server_cert), str(pki.server_key), verify=True)
    cases = {
        "nats.embedded_tls_cert": ServerTls(str(tmp_path / "none.pem"), str(pki.server_key)),
        "nats.embedded_tls_key": ServerTls(str(pki.server_cert), str(tmp_path / "secret-none.key")),
        "nats.embedded_tls_ca": ServerTls(str(pki.server_cert), str(pki.server_key), str(pki.server_key)),
    }
    for key, tls in cases.items():
        server = EmbeddedNats(tmp_path / key, tls=tls)
        with pytest.raises(SpecError, match=key.replace(".", r"\.")) as caught:
            server.start()
        assert "secret-none" not in str(caught.value), "a key file's path is a secret setting"
        assert not server.running
    mismatched = ServerTls(str(pki.server_cert), str(pki.client_key))
    with pytest.raises(SpecError, match=r"nats\.embedded_tls_cert=.*private key is the PEM file in "
                                        r"nats\.embedded_tls_key"):
        mismatched.check()
