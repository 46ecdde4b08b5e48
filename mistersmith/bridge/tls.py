"""TLS to NATS, from the client's side: the context built from the settings' files, and what a
failed handshake means in the settings' words.

- ``client_context(servers, ca, cert, key)``: ``None`` when nothing asks for TLS (no ``tls://``
  URL, no CA, no client certificate); else a verifying context (the system's CAs, or only
  ``nats.tls_ca``), with the client certificate ``nats.tls_cert``/``nats.tls_key`` when given. A
  file that cannot be read is a ``SpecError`` naming the setting, the path and why.
- ``explain(errors, ca, cert)``: a sentence naming the setting at fault when one of ``errors`` (or
  its cause) is a TLS failure (the server's certificate refused: the wrong CA, or a name it is not
  valid for; a client certificate required or refused; the connection closed right after the
  handshake, which is how a refused client certificate often shows), else ``None``.

``Client``: nats-py's client, refusing a server that does not offer TLS when TLS was asked for
(nats-py itself would go on in plain text), and closing the transport nats-py leaves open when the
first connection fails. Pure apart from reading the PEM files. Used by the node's connection (``bridge.connection``) and
the CLI's (``cli._nats``), so both say the same thing.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from mistersmith.errors import SpecError

__all__ = ["Client", "TlsNotOfferedError", "client_context", "explain"]

# What OpenSSL says when the *server* refused our certificate (or our lack of one).
_CLIENT_CERT_REQUIRED = ("CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE")
_CLIENT_CERT_REFUSED = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "DECRYPT_ERROR",
                        "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED", "UNSUPPORTED_CERTIFICATE")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def client_context(servers: Sequence[str], ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The context for ``servers``, or ``None`` if none of them, nor a CA or certificate, asks for TLS."""
    if not (ca or cert or any(s.startswith("tls://") for s in servers)):
        return None
    if (cert is None) != (key is None):
        missing = "nats.tls_key" if key is None else "nats.tls_cert"
        raise SpecError(None, missing, None, "set nats.tls_cert and nats.tls_key together (the client "
                                             "certificate and its private key)")
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise SpecError(None, "nats.tls_ca", ca, f"name a readable PEM file of CA certificates ({_why(exc)})") \
            from None
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise SpecError(None, "nats.tls_cert", cert, "name a readable PEM certificate whose private key is "
                            f"in nats.tls_key ({_why(exc)})") from None
    return context


class TlsNotOfferedError(NatsError):
    """The server's INFO does not require TLS although TLS was asked for: nats-py would go on in plain text."""


class Client(NATS):
    """nats-py's client, but with ``require_tls`` it refuses a server that does not offer TLS.

    nats-py upgrades to TLS only when the server's INFO says ``tls_required``, whatever the URL's
    scheme or the ``tls`` context given: a ``tls://`` URL to a plain server (or to someone between us
    and it who strips that flag) would send the credentials in the clear. The check runs on the INFO
    of each connection, before anything is sent.
    """

    def __init__(self, *, require_tls: bool = False) -> None:
        super().__init__()
        self.require_tls = require_tls

    async def connect(self, **options: Any) -> None:  # type: ignore[override]
        """nats-py's ``connect``; when the first connection fails, the transport nats-py leaves open is closed."""
        try:
            await super().connect(**options)
        except (NatsError, OSError, TimeoutError):
            transport = getattr(self, "_transport", None)
            if transport is not None:
                transport.close()
            raise

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        if self.require_tls and initial_connection and not info.get("tls_required"):
            raise TlsNotOfferedError("nats: the server does not offer TLS")
        await super()._process_info(info, initial_connection=initial_connection)


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def explain(errors: Sequence[BaseException | None], ca: str | None, cert: str | None, *, tls: bool = True) -> str | None:
    """What a failed connection's errors (the raised one, and those the client reported) mean, naming the
    setting to fix, if TLS was at fault; else ``None``. ``tls``: a TLS context was used."""
    chained = [e for exc in errors for e in _chain(exc)]
    if any(isinstance(e, TlsNotOfferedError) for e in chained):
        return ("TLS: the server does not offer TLS (nothing was sent: it would have gone in plain text); turn "
                "TLS on at the server, or use a nats:// URL and no nats.tls_* settings")
    error = next((e for e in chained if isinstance(e, ssl.SSLError)), None)
    if error is None:
        lost = tls and any(isinstance(e, (ConnectionResetError, BrokenPipeError)) or "connection lost" in str(e).lower()
                           for e in chained)
        if not lost:
            return None
        if cert is None:  # the server's alert was lost in the race with our first write
            return ("TLS: the server closed the connection after the handshake: it requires a client certificate "
                    "and none was given; set nats.tls_cert and nats.tls_key to a certificate signed by a CA the "
                    "server trusts")
        return (f"TLS: the server closed the connection after the handshake: it refused the client certificate in "
                f"nats.tls_cert ({cert}); use one signed by a CA the server trusts (its tls ca_file)")
    return _explain_ssl(error, ca, cert)


def _explain_ssl(error: ssl.SSLError, ca: str | None, cert: str | None) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = error.verify_message or str(error)
        if "hostname" in detail.lower() or "not valid for" in detail.lower():
            return (f"TLS: the server's certificate does not name the host in the NATS URL ({detail}); connect by a "
                    "name or address the certificate holds, or issue it for this one")
        trusted = f"the CA in nats.tls_ca ({ca})" if ca else "a CA this system trusts (nats.tls_ca is unset)"
        return (f"TLS: the server's certificate was refused: it is not signed by {trusted} ({detail}); set "
                "nats.tls_ca to the CA that signed the server's certificate")
    reason = (error.reason or str(error)).upper()
    if any(r in reason for r in _CLIENT_CERT_REQUIRED):
        if cert is None:
            return ("TLS: the server requires a client certificate and none was given; set nats.tls_cert and "
                    "nats.tls_key to a certificate signed by a CA the server trusts")
        return f"TLS: the server did not accept the client certificate in nats.tls_cert ({cert}) ({error.reason})"
    if any(r in reason for r in _CLIENT_CERT_REFUSED):
        given = f"the client certificate in nats.tls_cert ({cert})" if cert else "the connection (no client certificate)"
        return (f"TLS: the server refused {given} ({error.reason}); use a certificate signed by a CA the server "
                "trusts (its tls ca_file)")
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
        return (f"TLS: the server does not speak TLS ({error.reason}); use a nats:// URL and no nats.tls_* "
                "settings, or turn TLS on at the server")
    return f"TLS: the handshake failed ({error.reason or error})"
