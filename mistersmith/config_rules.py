"""Settings that only make sense together: a certificate and its key, a setting of the embedded
server and the absence of an external one. A pure module, read by ``mistersmith.config``.

``violations(values)`` lists ``(key, allowed)`` for each rule the merged values break: ``key``
is the setting to name in the error, ``allowed`` what to do about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NEEDS", "violations"]

_PAIR = "set {a} and {b} together (the certificate and its private key)"
_EMBEDDED_ONLY = ("unset it, or nats.url: the nats.embedded_* settings apply only to the embedded nats-server, "
                  "which starts when nats.url is empty")

NEEDS: tuple[tuple[str, str, str], ...] = (
    ("nats.tls_cert", "nats.tls_key", _PAIR.format(a="nats.tls_cert", b="nats.tls_key")),
    ("nats.tls_key", "nats.tls_cert", _PAIR.format(a="nats.tls_cert", b="nats.tls_key")),
    ("nats.embedded_tls_cert", "nats.embedded_tls_key",
     _PAIR.format(a="nats.embedded_tls_cert", b="nats.embedded_tls_key")),
    ("nats.embedded_tls_key", "nats.embedded_tls_cert",
     _PAIR.format(a="nats.embedded_tls_cert", b="nats.embedded_tls_key")),
    ("nats.embedded_tls_ca", "nats.embedded_tls_cert", "set nats.embedded_tls_cert and nats.embedded_tls_key too: "
     "the server verifies client certificates over TLS only"),
    ("nats.embedded_tls_verify", "nats.embedded_tls_ca", "set nats.embedded_tls_ca too: the CA whose client "
     "certificates the embedded nats-server accepts"),
    ("nats.embedded_tls_verify", "nats.tls_cert", "set nats.tls_cert and nats.tls_key too: the node connects to "
     "its own nats-server with a client certificate, signed by the CA in nats.embedded_tls_ca"),
    ("database.sslmode", "database.url", "set database.url too: sslmode applies to an external PostgreSQL (the "
     "embedded one is reached over a Unix socket)"),
    ("database.sslrootcert", "database.url", "set database.url too: sslrootcert applies to an external "
     "PostgreSQL (the embedded one is reached over a Unix socket)"),
)
"""``(key, needs, allowed)``: when ``key`` is set, ``needs`` must be set too."""

_EXCLUDES: tuple[tuple[str, str, str], ...] = tuple(
    (key, "nats.url", _EMBEDDED_ONLY)
    for key in ("nats.embedded_tls_cert", "nats.embedded_tls_key", "nats.embedded_tls_ca", "nats.embedded_tls_verify")
)
"""``(key, other, allowed)``: ``key`` and ``other`` cannot both be set."""


def violations(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key, allowed)`` for every rule the settings ``values`` break (a setting is set when it is truthy)."""
    found = [(key, allowed) for key, needs, allowed in NEEDS if values[key] and not values[needs]]
    found += [(key, allowed) for key, other, allowed in _EXCLUDES if values[key] and values[other]]
    return found
