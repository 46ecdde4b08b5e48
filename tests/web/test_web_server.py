"""The server's connections: the header timeout, the per-client connection cap, TLS, and the
warning for a token served without TLS."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from http.client import HTTPSConnection
from pathlib import Path

import pytest
from _web import TOKEN, Served, http

from mistersmith.errors import SpecError
from mistersmith.web import WebConfig

HEALTH = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


def _host_port(served: Served) -> tuple[str, int]:
    host, port = served.url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


async def _connect(served: Served, source: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = _host_port(served)
    return await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)


async def _served(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Send a keep-alive request and read its whole reply: True when the connection is being served."""
    writer.write(HEALTH)
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
    except asyncio.IncompleteReadError:
        return False
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await asyncio.wait_for(reader.readexactly(length), 10.0)
    return head.startswith(b"HTTP/1.1 200")


async def _closed_within(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """What the server sends before it closes the connection (raises TimeoutError if it does not)."""
    return await asyncio.wait_for(reader.read(), timeout_s)


# -- the header timeout ---------------------------------------------------------------------


def test_a_slow_headers_client_is_closed_within_the_header_timeout(serve: Callable[..., Served]) -> None:
    served = serve(header_timeout_s=0.5)

    async def main() -> tuple[bytes, float]:
        reader, writer = await _connect(served)
        started = time.monotonic()
        writer.write(b"GET /info HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")  # and nothing more
        await writer.drain()
        try:
            return await _closed_within(reader, 5.0), time.monotonic() - started  # Hypercorn's old bound: 75 s
        finally:
            writer.close()

    sent, took_s = asyncio.run(main())
    assert sent == b"" and took_s < 5.0
    assert http(served.url, "GET", "/health").status == 200


def test_an_idle_keep_alive_connection_is_closed_within_the_header_timeout(serve: Callable[..., Served]) -> None:
    served = serve(header_timeout_s=0.5)

    async def main() -> bytes:
        reader, writer = await _connect(served)
        try:
            assert await _served(reader, writer)
            return await _closed_within(reader, 5.0)
        finally:
            writer.close()

    assert asyncio.run(main()) == b""


def test_a_stream_and_a_long_request_outlive_the_header_timeout(serve: Callable[..., Served]) -> None:
    from _web import SseClient, rpc

    served = serve(header_timeout_s=0.3, keepalive_s=0.4)

    async def stream() -> list[str]:
        client = await SseClient.open(served.url)
        try:
            return [await client.comment(), await client.comment(), await client.comment()]  # ~0.8 s
        finally:
            client.close()

    assert asyncio.run(stream()) == ["connected", "keepalive", "keepalive"]
    served.runtime.spawn("echo", "slow")
    reply = rpc(served, "tools/call", {"name": "send_command", "arguments": {
        "agent_id": "slow", "command": "hang", "payload": {"seconds": 0.8}}})
    assert reply.status == 200, reply.body
    assert reply.json()["result"]["structuredContent"]["result"]["hung_s"] == 0.8, reply.body


# -- connections per client -------------------------------------------------------------------


def test_connections_past_the_per_client_cap_are_closed(serve: Callable[..., Served]) -> None:
    served = serve(max_connections_per_client=3)
    limit = served.server.connections

    async def main() -> None:
        held = [await _connect(served) for _ in range(3)]
        for reader, writer in held:
            assert await _served(reader, writer)  # accepted and counted
        reader, writer = await _connect(served)
        assert await _closed_within(reader, 5.0) == b""  # the fourth: closed before a byte is read
        writer.close()
        other = await _connect(served, source="127.0.0.2")  # another client address is not affected
        assert await _served(*other)
        other[1].close()
        held[0][1].close()
        await asyncio.to_thread(served.run, limit.wait_open("127.0.0.1", 2), 5.0)  # the server saw it end
        again = await _connect(served)  # a slot is free again
        assert await _served(*again)
        for _, w in [*held[1:], again]:
            w.close()

    asyncio.run(main())
    assert limit.refused == 1
    assert 'mistersmith_http_refused_total{reason="connections"}' in served.app.metrics.render()


# -- TLS ----------------------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
        return str(cert), str(key)
    import ipaddress

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(cert), str(key)


def test_tls_serves_https(serve: Callable[..., Served], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    served = serve(tls_cert=cert, tls_key=key, api_token=TOKEN)
    assert served.url.startswith("https://127.0.0.1:")
    host, port = _host_port(served)
    connection = HTTPSConnection(host, port, timeout=10,
                                             context=ssl.create_default_context(cafile=cert))
    try:
        connection.request("GET", "/health")
        health = connection.getresponse()
        assert health.status == 200 and b'"status"' in health.read()
        connection.request("GET", "/info", headers={"authorization": f"Bearer {TOKEN}"})
        info = connection.getresponse()  # the same TLS connection, kept alive
        assert info.status == 200 and b'"auth":"bearer"' in info.read()
    finally:
        connection.close()

    async def plain() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(HEALTH)
        try:
            return await _closed_within(reader, 5.0)
        finally:
            writer.close()

    assert not asyncio.run(plain()).startswith(b"HTTP/1.1 200")  # no plain HTTP on a TLS port


def test_tls_cert_and_key_go_together_and_must_load(serve: Callable[..., Served], tmp_path: Path) -> None:
    with pytest.raises(SpecError) as alone:
        WebConfig(tls_cert="cert.pem")
    assert alone.value.key == "tls_key" and "together" in alone.value.allowed
    with pytest.raises(SpecError) as other:
        WebConfig(tls_key="key.pem")
    assert other.value.key == "tls_cert"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(SpecError) as unloadable:
        serve(tls_cert=str(garbage), tls_key=str(garbage))
    assert unloadable.value.key == "tls_cert" and str(garbage) in unloadable.value.allowed


# -- a token over plain HTTP ---------------------------------------------------------------------


def test_a_token_over_plain_http_on_a_public_bind_is_a_warning(serve: Callable[..., Served], tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mistersmith.web.server")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "mistersmith.web.server" and r.levelno == logging.WARNING]

    serve(host="127.0.0.1", api_token=TOKEN)
    assert warnings() == []  # loopback: nothing crosses a network
    cert, key = _self_signed(tmp_path)
    serve(host="0.0.0.0", api_token=TOKEN, tls_cert=cert, tls_key=key)
    assert warnings() == []
    public = serve(host="0.0.0.0", api_token=TOKEN)
    [warning] = warnings()
    assert public.url in warning and "plain HTTP" in warning
    assert "http.tls_cert" in warning and "http.tls_key" in warning and "reverse proxy" in warning
