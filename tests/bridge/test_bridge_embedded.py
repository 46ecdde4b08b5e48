"""The embedded nats-server: JetStream on, loopback only, free (or preferred) port, clean stop, same port on
restart; never another server on its port taken for it."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import nats
import pytest

from mistersmith.embedded.nats import EmbeddedNats, EmbeddedNatsError, nats_server_binary


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_binary_comes_from_the_wheel() -> None:
    binary = nats_server_binary()
    assert binary.name == "nats-server" and os.access(binary, os.X_OK)


def test_starts_with_jetstream_on_loopback_and_stops_without_orphans(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "data")
    server.start()
    pid = server.pid
    assert pid is not None and server.url.startswith("nats://127.0.0.1:")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"--addr" in cmdline and cmdline[cmdline.index(b"--addr") + 1] == b"127.0.0.1"

    async def account() -> int:
        nc = await nats.connect(server.url)
        try:
            info = await nc.jetstream().account_info()
            return int(info.limits.max_streams)
        finally:
            await nc.close()

    assert isinstance(asyncio.run(account()), int)  # JetStream answers
    assert (tmp_path / "data" / "jetstream").is_dir()
    port = server.port
    server.stop()
    assert not _alive(pid)
    assert not server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    server.start()  # the same port again, so clients reconnect to the same URL
    try:
        assert server.port == port and server.running and server.pid != pid
    finally:
        server.stop()


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = EmbeddedNats(tmp_path, port=busy.getsockname()[1], start_timeout_s=5)
        with pytest.raises(EmbeddedNatsError, match="exited"):
            server.start()
    assert not server.running


def test_another_server_on_the_port_is_never_taken_for_ours(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "first", jetstream=False) as first:
        second = EmbeddedNats(tmp_path / "second", port=first.port, jetstream=False, start_timeout_s=10)
        with pytest.raises(EmbeddedNatsError, match="address already in use"):
            second.start()  # the first one answers on the port, but it is not the second's
        assert not second.running and first.running


def test_a_preferred_port_that_is_taken_falls_back_to_a_free_one(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "first", jetstream=False) as first:  # a server, as another node's would be
        second = EmbeddedNats(tmp_path / "second", port=first.port, jetstream=False, fallback_port=True)
        second.start()
        try:
            assert second.running and second.port != first.port and second.url.endswith(f":{second.port}")

            async def server_name(url: str) -> str:
                nc = await nats.connect(url)
                try:
                    return str(nc._server_info["server_name"])
                finally:
                    await nc.close()

            assert asyncio.run(server_name(second.url)) == second.server_name != first.server_name
        finally:
            second.stop()
