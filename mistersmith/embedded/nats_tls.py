"""TLS for the embedded nats-server: its certificate, and the CA whose client certificates it verifies.

Set by ``nats.embedded_tls_cert`` and ``nats.embedded_tls_key`` (PEM files: the server's
certificate chain and its private key), ``nats.embedded_tls_ca`` (the CA bundle that signs the
clients' certificates) and ``nats.embedded_tls_verify`` (then every client, the node itself
included, must present a certificate that CA signed: the node's is ``nats.tls_cert``/``nats.tls_key``).

With them the server's configuration gets a ``tls`` block (``ServerTls.block``), so it accepts
TLS connections only, and its URL is ``tls://127.0.0.1:PORT``: the certificate must be valid for
``127.0.0.1`` (an IP subject alternative name). The node trusts ``nats.tls_ca``, or else
``nats.embedded_tls_ca``, to verify it, and names that CA file in ``node.json``
(``nats_tls_ca``) for the CLI.

``check()`` reads the files once, before the server starts, so a wrong path or a key that does not
match its certificate is a ``SpecError`` naming the setting, not a server that will not start.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from mistersmith.errors import SpecError

__all__ = ["ServerTls"]


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The embedded server's TLS files; ``verify``: require and verify client certificates (against ``ca_file``)."""

    cert_file: str
    key_file: str
    ca_file: str | None = None
    verify: bool = False
    handshake_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if self.verify and not self.ca_file:
            raise SpecError(None, "nats.embedded_tls_ca", None, "set it with nats.embedded_tls_verify: the CA "
                                                                "whose client certificates the server accepts")

    @classmethod
    def from_settings(cls, settings: Any) -> ServerTls | None:
        """From a ``mistersmith.config.Settings``; ``None`` when ``nats.embedded_tls_cert`` is unset."""
        cert, key = settings["nats.embedded_tls_cert"], settings["nats.embedded_tls_key"]
        if cert is None:
            return None
        return cls(cert, key, settings["nats.embedded_tls_ca"], settings["nats.embedded_tls_verify"])

    def check(self) -> None:
        """Read the files as the server will; a ``SpecError`` naming the setting if one is unusable."""
        files = {"nats.embedded_tls_cert": self.cert_file, "nats.embedded_tls_key": self.key_file,
                 "nats.embedded_tls_ca": self.ca_file}
        for key, path in files.items():
            try:
                if path:
                    open(path, "rb").close()  # noqa: SIM115 - only whether it can be read
            except OSError as exc:
                shown = "***" if key.endswith("_key") else path  # a key's path is a secret setting
                raise SpecError(None, key, shown, f"name a readable PEM file ({_why(exc)})") from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise SpecError(None, "nats.embedded_tls_cert", self.cert_file, "name a PEM certificate (chain) whose "
                            f"private key is the PEM file in nats.embedded_tls_key ({_why(exc)})") from None
        if self.ca_file:
            try:
                context.load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise SpecError(None, "nats.embedded_tls_ca", self.ca_file,
                                f"name a PEM file of CA certificates ({_why(exc)})") from None

    def block(self) -> str:
        """The ``tls { ... }`` block of the server's configuration."""
        lines = [f"    cert_file: {_quoted(self.cert_file)}", f"    key_file: {_quoted(self.key_file)}"]
        if self.ca_file:
            lines.append(f"    ca_file: {_quoted(self.ca_file)}")
        lines += [f"    verify: {'true' if self.verify else 'false'}", f"    timeout: {self.handshake_timeout_s:g}"]
        return "tls {\n" + "\n".join(lines) + "\n}\n"
