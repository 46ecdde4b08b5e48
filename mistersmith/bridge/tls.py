"""TLS to NATS, from the client's side: the context built from the settings' files, and what a
failed handshake means in the settings' words.

- ``client_context(servers, ca, cert, key)``: ``None`` when nothing asks for TLS (no ``tls://``
  URL, no CA, no client certificate); else a verifying context (the system's CAs, or only
  ``nats.tls_ca``), with the client certificate ``nats.tls_cert``/``nats.tls_key`` when given. A
  file that cannot be read is a ``SpecError`` naming the setting, the path and why.
- ``explain(exc, ca, cert)``: a sentence naming the setting at fault when ``exc`` (or its cause) is
  a TLS failure (the server's certificate refused: the wrong CA, or a name it is not valid for; a
  client certificate required or refused), else ``None``.

Pure apart from reading the PEM files. Used by the node's connection (``bridge.connection``) and
the CLI's (``cli._nats``), so both say the same thing.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from mistersmith.errors import SpecError

__all__ = ["client_context", "explain"]

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


def _tls_error(exc: BaseException | None) -> ssl.SSLError | None:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def explain(exc: BaseException | None, ca: str | None, cert: str | None) -> str | None:
    """What a failed connection's TLS error means (naming the setting to fix), or ``None`` if it is none."""
    error = _tls_error(exc)
    if error is None:
        return None
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
