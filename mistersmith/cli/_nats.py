"""The NATS side of the client commands: one short-lived connection and plain requests.

Speaks the bridge's subjects and reply shapes (``{"ok": true, "result": ...}``
or ``{"ok": false, "error": {"code", "message"}}``) with nats-py, as any other
client would, and turns every outcome into a result or a ``CliError``:

- an error reply: exit code 1, with the node's code and message;
- no responders on an agent's subject: exit code 1 (``unknown_agent``);
- no responders on ``system.control.*``, no connection, no answer in time:
  exit code 3.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from mistersmith.bridge.door import CLI_DOOR, DOOR_HEADER
from mistersmith.bridge.tls import Client, client_context, explain
from mistersmith.bridge.trace import TRACEPARENT, new_traceparent
from mistersmith.config import Settings
from mistersmith.envelope import EnvelopeError, RemoteError, decode_reply, encode_json
from mistersmith.errors import SpecError
from mistersmith.headers import deadline_headers
from mistersmith.redact import strip_userinfo

from ._errors import CliError, failed, unreachable

__all__ = ["connected", "reply_result", "request", "request_headers"]

_CONNECT_TIMEOUT_S = 5.0


def _tls(settings: Settings, urls: tuple[str, ...], ca: str | None) -> ssl.SSLContext | None:
    """``bridge.tls.client_context`` from the settings; ``ca``: the embedded server's CA (node.json), if any."""
    return client_context(urls, settings["nats.tls_ca"] or ca, settings["nats.tls_cert"], settings["nats.tls_key"])


def _shown(urls: tuple[str, ...]) -> str:
    """The servers without credentials (``redact.strip_userinfo``, as everywhere a URL is shown)."""
    return ", ".join(strip_userinfo(u) for u in urls)


@asynccontextmanager
async def connected(
    settings: Settings, urls: tuple[str, ...], timeout_s: float, *, user: str | None = None,
    password: str | None = None, tls_ca: str | None = None,
) -> AsyncIterator[NATS]:
    """A connection to ``urls`` with the configured credentials (or ``user``/``password``, the
    embedded server's client user, and ``tls_ca``, the CA of its certificate), closed after; exit 3
    if none answers (saying what was wrong with TLS, when that was it: ``bridge.tls.explain``)."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    options: dict[str, Any] = {
        "servers": list(urls), "name": "mistersmith-cli", "connect_timeout": min(timeout_s, _CONNECT_TIMEOUT_S),
        "allow_reconnect": False, "max_reconnect_attempts": 1, "reconnect_time_wait": 0.1,
        "error_cb": on_error, "user": user or settings["nats.user"], "password": password or settings["nats.password"],
        "token": settings["nats.token"],
    }
    try:
        tls = _tls(settings, urls, tls_ca)
    except SpecError as exc:
        raise CliError(f"cannot use the NATS TLS files: {exc}", exit_code=2, code="invalid_config") from None
    if tls is not None:
        options["tls"] = tls
    if settings["nats.creds_file"]:
        options["user_credentials"] = settings["nats.creds_file"]
    if settings["nats.nkey_seed_file"]:
        options["nkeys_seed"] = settings["nats.nkey_seed_file"]
    try:
        nc = Client(require_tls=tls is not None)  # never in plain text once TLS is asked for
        await nc.connect(**{k: v for k, v in options.items() if v is not None})
    except (NatsError, OSError, TimeoutError) as exc:
        cause = errors[-1] if errors else exc
        ca, cert = settings["nats.tls_ca"] or tls_ca, settings["nats.tls_cert"]
        why = (explain([exc, *errors], ca, cert, tls=tls is not None) or getattr(cause, "strerror", None)
               or str(cause) or type(cause).__name__)
        raise unreachable(f"cannot reach NATS at {_shown(urls)}: {why}; is `mistersmith serve` running?") from None
    try:
        yield nc
    finally:
        try:
            await nc.close()
        except Exception:  # noqa: S110 - nothing left to do with a connection that will not close
            pass


def request_headers(timeout_s: float, **more: str) -> dict[str, str]:
    """The headers of a CLI request: how long we wait (``mistersmith.headers``: a restart longer than that is
    ``restarting`` at once, and a command is never started once we gave up), a fresh W3C ``traceparent`` (what
    the request causes carries its trace id: ``mistersmith replay --trace``) and that it is the CLI (the audit
    trail's door: ``mistersmith.bridge.door``)."""
    return {**deadline_headers(timeout_s), TRACEPARENT: new_traceparent(), DOOR_HEADER: CLI_DOOR, **more}


def reply_result(data: bytes, subject: str) -> Any:
    """A reply's ``result``; an error reply is exit code 1 with the node's code and message."""
    try:
        return decode_reply(data).unwrap()
    except RemoteError as exc:
        raise failed(f"{exc.code}: {exc.message}", code=exc.code) from None
    except EnvelopeError as exc:
        raise failed(f"the answer on {subject} is not a MisterSmith reply: {exc.message}", code="invalid_reply") from None


async def request(
    nc: NATS, subject: str, payload: Mapping[str, Any] | None, timeout_s: float, *, no_responders: CliError,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Send one request and return the reply's ``result``."""
    try:
        msg = await nc.request(subject, encode_json(dict(payload or {})), timeout=timeout_s,
                               headers=request_headers(timeout_s, **(headers or {})))
    except NoRespondersError:
        raise no_responders from None
    except NatsTimeoutError:
        raise unreachable(f"no answer on {subject} within {timeout_s:g} s (--timeout)") from None
    except NatsError as exc:
        raise unreachable(f"request on {subject} failed: {exc or type(exc).__name__}") from None
    return reply_result(msg.data, subject)
