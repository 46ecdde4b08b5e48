"""Real certificates for the TLS tests, made by trustme in the test's directory.

``Pki.make(directory)`` writes a CA, a server certificate valid for 127.0.0.1 and localhost, a
client certificate that CA signed, and a second CA (the wrong one) with a client certificate of its own.
``tls_server_conf`` is a nats-server configuration serving TLS with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server's and the client's certificates
    server_cert: Path  # the server's certificate chain
    server_key: Path
    client_cert: Path  # the client's certificate (chain)
    client_key: Path
    other_ca: Path  # a CA that signed nothing here but the stranger's certificate
    stranger_cert: Path  # a client certificate the other CA signed
    stranger_key: Path

    @classmethod
    def make(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        ca, other = trustme.CA(), trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client, stranger = ca.issue_cert("mistersmith-node"), other.issue_cert("stranger")
        pki = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                  directory / "client.pem", directory / "client.key", directory / "other-ca.pem",
                  directory / "stranger.pem", directory / "stranger.key")
        stranger.private_key_and_cert_chain_pem.write_to_path(str(pki.stranger_cert))
        stranger.private_key_pem.write_to_path(str(pki.stranger_key))
        ca.cert_pem.write_to_path(str(pki.ca))
        other.cert_pem.write_to_path(str(pki.other_ca))
        server.private_key_pem.write_to_path(str(pki.server_key))
        client.private_key_pem.write_to_path(str(pki.client_key))
        for i, blob in enumerate(server.cert_chain_pems):
            blob.write_to_path(str(pki.server_cert), append=i > 0)
        for i, blob in enumerate(client.cert_chain_pems):
            blob.write_to_path(str(pki.client_cert), append=i > 0)
        return pki


def tls_server_conf(pki: Pki, *, verify: bool = True) -> str:
    """A nats-server ``tls`` block: its certificate, and (``verify``) client certificates required."""
    return (f'tls {{\n  cert_file: "{pki.server_cert}"\n  key_file: "{pki.server_key}"\n  ca_file: "{pki.ca}"\n'
            f"  verify: {'true' if verify else 'false'}\n  timeout: 2\n}}\n")
