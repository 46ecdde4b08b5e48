"""URLs as shown: never with the credentials in their userinfo."""

from __future__ import annotations

import pytest

from mistersmith.redact import strip_userinfo


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://user:pass@nats.internal:4222", "nats://nats.internal:4222"),
        ("tls://s3cr3t-token@nats-1:4222", "tls://nats-1:4222"),
        ("nats://user:p@ss/w#rd@host:4222", "nats://host:4222"),  # an unescaped password goes whole
        ("user:pass@host:4222", "host:4222"),  # no scheme
        ("nats://a:1@h1:4222,nats://h2:4222,nats://b:2@h3:4222", "nats://h1:4222,nats://h2:4222,nats://h3:4222"),
        ("", ""),
    ],
)
def test_userinfo_is_stripped(url: str, shown: str) -> None:
    assert strip_userinfo(url) == shown
    assert strip_userinfo(shown) == shown, "idempotent"


def test_strip_userinfo_in_a_message() -> None:
    from mistersmith.redact import strip_userinfo_in

    message = "invalid choice: 'nats://ms:pa/ss@h:4222' (or postgresql://u:p@db/x, tls://tok@n:1)"
    assert strip_userinfo_in(message) == "invalid choice: 'nats://h:4222' (or postgresql://db/x, tls://n:1)"
    assert strip_userinfo_in("no url here: a@b") == "no url here: a@b"
