"""Connection options: validation, reconnect backoff, settings, and auth against a real server."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from mistersmith.bridge import ConnectOptions, NatsUnavailableError, connect, reconnect_delay_s
from mistersmith.config import load_settings
from mistersmith.embedded.nats import EmbeddedNats
from mistersmith.errors import SpecError


def test_defaults_follow_the_design() -> None:
    options = ConnectOptions()
    assert options.ping_interval_s == 30.0
    assert options.max_reconnect_attempts == -1  # never go deaf for good


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"servers": ()}, "servers"),
        ({"servers": ("localhost:4222",)}, "servers"),
        ({"ping_interval_s": 0}, "ping_interval_s"),
        ({"reconnect_base_s": 2.0, "reconnect_max_s": 1.0}, "reconnect_max_s"),
        ({"max_reconnect_attempts": 0}, "max_reconnect_attempts"),
        ({"password": "p"}, "password"),
        ({"tls_cert": "c.pem"}, "tls_cert"),
    ],
)
def test_bad_options_name_the_key(fields: dict[str, object], key: str) -> None:
    with pytest.raises(SpecError, match=key):
        ConnectOptions(**fields)  # type: ignore[arg-type]


def test_reconnect_backoff_is_exponential_capped_and_jittered() -> None:
    options = ConnectOptions(reconnect_base_s=0.25, reconnect_max_s=8.0, reconnect_jitter=0.0)
    assert [reconnect_delay_s(n, options) for n in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert reconnect_delay_s(10_000, options) == 8.0
    jittered = ConnectOptions(reconnect_jitter=0.2)
    delays = {reconnect_delay_s(3, jittered, random.Random(seed)) for seed in range(20)}
    assert len(delays) > 1 and all(1.6 <= d <= 2.4 for d in delays)


def test_from_settings() -> None:
    settings = load_settings(env={"MISTERSMITH_NATS_URL": "nats://a:1,nats://b:2", "MISTERSMITH_NATS_USER": "u",
                                  "MISTERSMITH_NATS_PASSWORD": "p"})
    options = ConnectOptions.from_settings(settings)
    assert options.servers == ("nats://a:1", "nats://b:2") and options.user == "u" and options.password == "p"
    assert options.ping_interval_s == 30.0
    embedded = ConnectOptions.from_settings(load_settings(env={}), servers=("nats://127.0.0.1:5",))
    assert embedded.servers == ("nats://127.0.0.1:5",)


def test_user_password_and_token_auth(tmp_path: Path) -> None:
    async def attempt(url: str, **auth: str) -> bool:
        try:
            nc, _ = await connect(ConnectOptions(servers=(url,), reconnect_base_s=0.01, **auth))
        except NatsUnavailableError as exc:
            assert exc.code == "unavailable" and "could not connect" in exc.message
            return False
        try:
            await nc.flush()
            return nc.is_connected
        finally:
            await nc.close()

    with EmbeddedNats(tmp_path / "up", jetstream=False, args=["--user", "ms", "--pass", "s3cret"]) as server:
        assert asyncio.run(attempt(server.url, user="ms", password="s3cret"))
        assert not asyncio.run(attempt(server.url, user="ms", password="wrong"))
    with EmbeddedNats(tmp_path / "tok", jetstream=False, args=["--auth", "t0ken"]) as server:
        assert asyncio.run(attempt(server.url, token="t0ken"))
        assert not asyncio.run(attempt(server.url, token="nope"))


def test_an_unreachable_server_fails_fast_and_clearly(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path, jetstream=False)  # never started: nothing listens on its port

    async def attempt() -> None:
        await connect(ConnectOptions(servers=(server.url,), reconnect_base_s=0.01, initial_connect_retries=2))

    with pytest.raises(NatsUnavailableError, match=r"could not connect to nats://127\.0\.0\.1:\d+ \(gave up after 2 retries\)"):
        asyncio.run(attempt())
