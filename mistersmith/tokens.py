"""Tokens and NATS users, the credentials scopes are given to (``mistersmith.scopes``). Pure code.

- ``[[auth.tokens]]``: ``name``, ``token_sha256`` (the hex SHA-256 of the
  token, which itself is never stored), ``scopes``, optional ``agents`` (a
  glob of the agent ids it may touch). ``resolve`` turns the token a request
  presents into its ``Identity``, comparing the SHA-256 of what was presented
  with every configured digest in constant time; ``mint`` makes a new one.
- ``[[auth.nats_users]]``: users of the embedded nats-server, held to their
  scopes by nats-server's own permissions (``nats_permissions``: what the
  scope tables allow, and their own reply inbox only).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from mistersmith.errors import SpecError
from mistersmith.scopes import (
    ALL_SCOPES,
    LEGACY_TOKEN_NAME,
    NATS_SCOPES,
    NATS_SUBSCRIBE,
    SCOPES,
    Identity,
    parse_scopes,
)

__all__ = [
    "RESERVED_NATS_USERS",
    "NatsUserEntry",
    "TokenEntry",
    "mint",
    "masked_tables",
    "mint_nats_user",
    "nats_permissions",
    "nats_users_setting",
    "parse_nats_users",
    "parse_tokens",
    "resolve",
    "sha256_hex",
    "tokens_setting",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def sha256_hex(token: str | bytes) -> str:
    """The hex SHA-256 of a token (what ``token_sha256`` holds)."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One ``[[auth.tokens]]`` entry. ``repr`` shows no digest."""

    name: str
    token_sha256: str
    scopes: frozenset[str]
    agents: str | None = None

    def __repr__(self) -> str:
        return f"TokenEntry(name={self.name!r}, scopes={sorted(self.scopes)!r}, agents={self.agents!r})"

    @property
    def identity(self) -> Identity:
        return Identity(self.name, self.scopes, self.agents)

    def to_table(self, *, mask: bool = False) -> dict[str, object]:
        table: dict[str, object] = {"name": self.name, "token_sha256": "***" if mask else self.token_sha256,
                                    "scopes": sorted(self.scopes, key=SCOPES.index)}
        if self.agents is not None:
            table["agents"] = self.agents
        return table


def _entry(key: str, n: int, table: object) -> TokenEntry:
    where = f"{key}[{n}]"
    if not isinstance(table, Mapping):
        raise SpecError(None, where, table, "use a table with name, token_sha256 and scopes")
    extra = sorted(set(table) - {"name", "token_sha256", "scopes", "agents"})
    if extra:
        raise SpecError(None, f"{where}.{extra[0]}", "***", "use only name, token_sha256, scopes and agents")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(None, f"{where}.name", name, "use 1-64 letters, digits, '_', '.', '@' or '-'")
    digest = table.get("token_sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
        raise SpecError(None, f"{where}.token_sha256", "***",
                        "use the token's SHA-256 as 64 hex digits (`mistersmith token new` prints one)")
    scopes = parse_scopes(f"{where}.scopes", table.get("scopes"))
    agents = table.get("agents")
    if agents is not None and (not isinstance(agents, str) or not agents or len(agents) > 256):
        raise SpecError(None, f"{where}.agents", agents, "use a glob of agent ids, such as 'team-a-*'")
    return TokenEntry(name, digest.lower(), scopes, agents)


def parse_tokens(key: str, value: object) -> tuple[TokenEntry, ...]:
    """``[[auth.tokens]]`` tables (or a JSON-decoded list of them), validated; names and digests unique."""
    if value in (None, "", []):
        return ()
    if not isinstance(value, (list, tuple)):
        raise SpecError(None, key, "***", "use [[auth.tokens]] tables (name, token_sha256, scopes, agents)")
    entries = tuple(_entry(key, n, t) for n, t in enumerate(value))
    for attr in ("name", "token_sha256"):
        seen: set[str] = set()
        for n, e in enumerate(entries):
            if getattr(e, attr) in seen:
                raise SpecError(None, f"{key}[{n}].{attr}", e.name if attr == "name" else "***",
                                f"each token needs its own {attr}")
            seen.add(getattr(e, attr))
    return entries


def resolve(presented: bytes | None, entries: Iterable[TokenEntry], legacy: bytes | None) -> Identity | None:
    """The identity a presented bearer token stands for, or None (no such token).

    Every configured digest (and the legacy token) is compared, in constant
    time, whatever matched first: how long it takes says nothing about which.
    """
    if not presented:
        return None
    digest = hashlib.sha256(presented).digest()
    found: Identity | None = None
    for entry in entries:
        if hmac.compare_digest(digest, bytes.fromhex(entry.token_sha256)):
            found = entry.identity
    if legacy is not None and hmac.compare_digest(presented, legacy):
        found = Identity(LEGACY_TOKEN_NAME, ALL_SCOPES)
    return found


RESERVED_NATS_USERS = frozenset({"mistersmith-node", "mistersmith-client"})
_EXACT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True)
class NatsUserEntry:
    """One ``[[auth.nats_users]]`` entry: a user of the embedded nats-server held to its scopes by
    nats-server's own permissions. ``agents``: one agent id (NATS subjects take no globs). ``repr``
    shows no password."""

    name: str
    password: str
    scopes: frozenset[str]
    agents: str | None = None

    def __repr__(self) -> str:
        return f"NatsUserEntry(name={self.name!r}, scopes={sorted(self.scopes)!r}, agents={self.agents!r})"

    @property
    def inbox_prefix(self) -> str:
        """What the user's client must pass as ``inbox_prefix``: it may read only its own replies."""
        return f"_INBOX.{self.name}"

    def to_table(self, *, mask: bool = False) -> dict[str, object]:
        table: dict[str, object] = {"name": self.name, "password": "***" if mask else self.password,
                                    "scopes": sorted(self.scopes, key=SCOPES.index)}
        if self.agents is not None:
            table["agents"] = self.agents
        return table


def _nats_user(key: str, n: int, table: object) -> NatsUserEntry:
    where = f"{key}[{n}]"
    if not isinstance(table, Mapping):
        raise SpecError(None, where, table, "use a table with name, password and scopes")
    extra = sorted(set(table) - {"name", "password", "scopes", "agents"})
    if extra:
        raise SpecError(None, f"{where}.{extra[0]}", "***", "use only name, password, scopes and agents")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or "." in name or name in RESERVED_NATS_USERS:
        raise SpecError(None, f"{where}.name", name, "use 1-64 letters, digits, '_', '@' or '-' (no '.'), "
                                                   f"not {' or '.join(sorted(RESERVED_NATS_USERS))}")
    password = table.get("password")
    if not isinstance(password, str) or len(password) < 16 or not password.isprintable() or " " in password \
            or '"' in password or "\\" in password:
        raise SpecError(None, f"{where}.password", "***", "use at least 16 printable characters without spaces, "
                                                         "quotes or backslashes (`mistersmith token new --nats`)")
    scopes = parse_scopes(f"{where}.scopes", table.get("scopes"))
    agents = table.get("agents")
    if agents is not None and (not isinstance(agents, str) or not _EXACT_ID.fullmatch(agents)):
        raise SpecError(None, f"{where}.agents", agents,
                        "use one agent id: NATS permissions match whole subject tokens, not globs")
    return NatsUserEntry(name, password, scopes, agents)


def parse_nats_users(key: str, value: object) -> tuple[NatsUserEntry, ...]:
    """``[[auth.nats_users]]`` tables, validated; names unique."""
    if value in (None, "", []):
        return ()
    if not isinstance(value, (list, tuple)):
        raise SpecError(None, key, "***", "use [[auth.nats_users]] tables (name, password, scopes, agents)")
    users = tuple(_nats_user(key, n, t) for n, t in enumerate(value))
    names = [u.name for u in users]
    for n, name in enumerate(names):
        if name in names[:n]:
            raise SpecError(None, f"{key}[{n}].name", name, "each NATS user needs its own name")
    return users


def nats_permissions(user: NatsUserEntry) -> dict[str, list[str]]:
    """What ``user`` may publish and subscribe to (``NATS_SCOPES``, ``NATS_SUBSCRIBE``), for
    nats-server's ``permissions``. Held to one agent, it keeps only that agent's own subjects."""
    publish = sorted(subject for subject, scope in NATS_SCOPES.items() if scope in user.scopes)
    subscribe = sorted(subject for subject, scope in NATS_SUBSCRIBE.items() if scope in user.scopes)
    if user.agents is not None:
        publish = [p.replace("agents.*.", f"agents.{user.agents}.", 1) for p in publish if p.startswith("agents.*.")]
        subscribe = [p.replace("agents.*.", f"agents.{user.agents}.", 1) for p in subscribe
                     if p.startswith("agents.*.")]
    return {"publish": publish, "subscribe": [*subscribe, f"{user.inbox_prefix}.>"]}


def mint_nats_user(name: str, scopes: Iterable[str], agents: str | None = None) -> NatsUserEntry:
    """A NATS user with a fresh password (``secrets.token_urlsafe(24)``), validated."""
    table: dict[str, object] = {"name": name, "password": secrets.token_urlsafe(24), "scopes": list(scopes)}
    if agents is not None:
        table["agents"] = agents
    return _nats_user("nats_user", 0, table)


def mint(name: str, scopes: Iterable[str], agents: str | None = None) -> tuple[str, TokenEntry]:
    """A fresh token (``secrets.token_urlsafe(32)``) and its ``[[auth.tokens]]`` entry (validated)."""
    token = secrets.token_urlsafe(32)
    table: dict[str, object] = {"name": name, "token_sha256": sha256_hex(token), "scopes": list(scopes)}
    if agents is not None:
        table["agents"] = agents
    return token, _entry("token", 0, table)


def _tables(key: str, raw: object, example: str) -> object:
    """A setting's value: TOML tables as they are, or (from the environment) a JSON list of them."""
    if not isinstance(raw, str):
        return raw
    try:
        return orjson.loads(raw) if raw.strip() else []
    except orjson.JSONDecodeError:
        raise SpecError(None, key, "***", f"use a JSON list of tables, such as {example}") from None


def tokens_setting(key: str, raw: object) -> tuple[TokenEntry, ...]:
    """The ``auth.tokens`` setting (``mistersmith.config``): an error names the entry and its field."""
    try:
        return parse_tokens(key, _tables(key, raw, '[{"name": "ci", "token_sha256": "<64 hex digits>", '
                                                  '"scopes": ["read"]}]'))
    except SpecError as exc:
        raise SpecError(None, key, "***", f"{exc.key}: {exc.allowed}" if exc.key != key else exc.allowed) from None


def nats_users_setting(key: str, raw: object) -> tuple[NatsUserEntry, ...]:
    """The ``auth.nats_users`` setting (``mistersmith.config``)."""
    try:
        return parse_nats_users(key, _tables(key, raw, '[{"name": "ci", "password": "...", "scopes": ["read"]}]'))
    except SpecError as exc:
        raise SpecError(None, key, "***", f"{exc.key}: {exc.allowed}" if exc.key != key else exc.allowed) from None


def masked_tables(entries: tuple[TokenEntry | NatsUserEntry, ...]) -> list[dict[str, object]]:
    """How ``mistersmith config`` shows them: every digest and password as ``***``."""
    return [e.to_table(mask=True) for e in entries]
