"""Credentials and permissions for the embedded nats-server: nobody connects without a password.

A node that starts its own nats-server generates two users, once, into its
data directory (files mode 0600, kept across restarts):

- ``node.json``: the node's own user (``mistersmith-node``), which may publish
  anything, including what only nodes say (``NODE_ONLY``: supervision status,
  task progress and results, node membership, announcements);
- ``client.json``: the user for everyone else (``mistersmith-client``: the
  CLI, examples, your programs), which may do what a client does (spawn,
  command, control, submit tasks, share discoveries, subscribe to anything)
  but not publish on ``NODE_ONLY`` subjects.

Further users, each held to scopes by nats-server's permissions, come from
``[[auth.nats_users]]`` (``authorization_block``'s ``scoped``; ``mistersmith
token new --nats`` mints one). Each file holds ``{"user": ..., "password": ...}``. The CLI reads the client
file of the data directory's node; a program passes the two values to its
NATS client (``nats.connect(url, user=..., password=...)``, ``nats --user
... --password ...``). Pure apart from reading and writing those files.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path

import orjson

from mistersmith.tokens import NatsUserEntry, nats_permissions

__all__ = ["CLIENT_FILE", "NODE_FILE", "NODE_ONLY", "NatsUser", "authorization_block", "node_users"]

NODE_FILE = "node.json"
CLIENT_FILE = "client.json"

NODE_ONLY: tuple[str, ...] = (
    "agents.*.status.>",
    "agents.discovery.announce",
    "system.nodes.>",
    "system.events.>",
    "tasks.*.progress",
    "tasks.*.result",
)
"""Subjects only node credentials may publish on: what subscribers trust as a node's word."""


@dataclass(frozen=True, slots=True)
class NatsUser:
    """One user of the embedded server."""

    user: str
    password: str

    def __repr__(self) -> str:  # never the password, not even in a traceback
        return f"NatsUser(user={self.user!r}, password='***')"

    @classmethod
    def read(cls, path: Path) -> NatsUser:
        """From a credentials file; ``ValueError`` naming the file if it is not one."""
        try:
            raw = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path} is not a credentials file ({exc}); delete it to have new ones made") from None
        if not (isinstance(raw, dict) and isinstance(raw.get("user"), str) and isinstance(raw.get("password"), str)):
            raise ValueError(f"{path} should hold {{\"user\": ..., \"password\": ...}}; delete it to have new ones made")
        return cls(raw["user"], raw["password"])


def _load_or_create(path: Path, user: str) -> NatsUser:
    try:
        return NatsUser.read(path)
    except FileNotFoundError:
        pass
    made = NatsUser(user, secrets.token_urlsafe(24))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps({"user": made.user, "password": made.password}))
    os.chmod(tmp, 0o600)  # whatever the umask or an older file said
    tmp.replace(path)
    return made


def node_users(directory: Path) -> tuple[NatsUser, NatsUser]:
    """The node's and the clients' users, from ``directory`` (made there the first time)."""
    return (_load_or_create(directory / NODE_FILE, "mistersmith-node"),
            _load_or_create(directory / CLIENT_FILE, "mistersmith-client"))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(subjects: Sequence[str]) -> str:
    return "[" + ", ".join(_quoted(s) for s in subjects) + "]"


def authorization_block(node: NatsUser, client: NatsUser, scoped: Sequence[NatsUserEntry] = ()) -> str:
    """The nats-server configuration that requires one of the users, with the clients' limits.

    ``scoped``: the ``[[auth.nats_users]]``, each allowed to publish and subscribe to what its scopes
    name (``mistersmith.tokens.nats_permissions``) and nothing else: nats-server enforces it.
    """
    deny = _list(NODE_ONLY)
    lines = [f"    {{user: {_quoted(node.user)}, password: {_quoted(node.password)}}}",
             f"    {{user: {_quoted(client.user)}, password: {_quoted(client.password)}, "
             f"permissions: {{publish: {{deny: {deny}}}}}}}"]
    for user in scoped:
        allowed = nats_permissions(user)
        # An empty allow list would mean no limit to nats-server: then deny everything instead.
        publish = f"allow: {_list(allowed['publish'])}, deny: {deny}" if allowed["publish"] else 'deny: [">"]'
        lines.append(f"    {{user: {_quoted(user.name)}, password: {_quoted(user.password)}, permissions: {{"
                     f"publish: {{{publish}}}, subscribe: {{allow: {_list(allowed['subscribe'])}}}}}}}")
    return "authorization {\n  users = [\n" + "\n".join(lines) + "\n  ]\n}\n"
