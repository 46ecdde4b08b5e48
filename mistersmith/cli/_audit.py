"""``audit`` (the audit trail, read from PostgreSQL) and ``token new`` (a scoped token to configure).

``audit`` reads the ``audit_log`` table directly, as ``replay`` reads the
journal: the database's own credentials are what let it (the ``admin`` scope's
worth). ``token new`` prints a fresh token once, and the ``[[auth.tokens]]``
entry to paste into the node's TOML file, which holds only its SHA-256.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from mistersmith.audit import ACTIONS, DOORS
from mistersmith.errors import SpecError
from mistersmith.journal.audit_read import read_audit
from mistersmith.scopes import SCOPES
from mistersmith.tokens import TokenEntry, mint, mint_nats_user

from ._errors import usage
from ._journal import _reading, parse_bound
from ._locate import database
from ._output import Output
from ._settings import load

__all__ = ["add_audit", "add_token", "audit_line", "entry_toml", "run_audit", "run_token"]


def add_audit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="WHEN", help="from an ISO 8601 time, or a duration ago (10m, 2h, 1d)")
    parser.add_argument("--actor", metavar="NAME", help="only this actor (a token name, nats, library)")
    parser.add_argument("--action", metavar="ACTION", choices=ACTIONS, help=f"only this action ({', '.join(ACTIONS)})")
    parser.add_argument("--door", metavar="DOOR", choices=DOORS, help=f"only this door ({', '.join(DOORS)})")
    parser.add_argument("--limit", metavar="N", type=int, default=1000, help="at most N entries (default 1000)")
    parser.add_argument("--database-url", metavar="URL",
                        help="PostgreSQL URL (env MISTERSMITH_DATABASE_URL; default: the embedded server in DIR)")


def add_token(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="token_action", metavar="ACTION")
    actions.required = True
    new = actions.add_parser("new", help="print a fresh token and its [[auth.tokens]] entry",
                             description="print a fresh token and its [[auth.tokens]] entry")
    new.add_argument("--name", required=True, metavar="NAME", help="the token's name (the audit log's actor)")
    new.add_argument("--scopes", required=True, metavar="SCOPES",
                     help=f"comma-separated, of: {', '.join(SCOPES)}")
    new.add_argument("--agents", metavar="GLOB", help="only agent ids matching this glob (such as 'team-a-*'; "
                     "with --nats: one agent id)")
    new.add_argument("--nats", action="store_true",
                     help="mint a user of the embedded nats-server instead, held to the scopes by its permissions")


def audit_line(entry: dict[str, Any]) -> str:
    """``2026-12-01T14:00:00+00:00  mcp   ops  spawn  a1 (echo)  ok``."""
    target = entry["target"] + (f" ({entry['detail']})" if entry.get("detail") else "")
    trace = f"  trace={entry['trace_id']}" if entry.get("trace_id") else ""
    return (f"{entry['at']}  {entry['door']:<7} {entry['actor']:<16} {entry['action']:<11} {target}  "
            f"{entry['outcome']}{trace}")


def run_audit(args: argparse.Namespace, out: Output) -> int:
    since = parse_bound(args.since, "--since")
    if isinstance(since, int):
        raise usage("--since: use an ISO 8601 time or a duration ago (10m); the audit log has no seq bound")
    if args.limit < 1:
        raise usage("--limit: use a positive number")
    settings = load(args)
    with database(settings) as (conninfo, where), _reading(where):
        entries = read_audit(conninfo, since=since if isinstance(since, datetime) else None, actor=args.actor,
                             action=args.action, door=args.door, limit=args.limit)
    out.result({"entries": entries, "count": len(entries)},
               lambda: "\n".join(audit_line(e) for e in entries) if entries else "no audit entries")
    return 0


def entry_toml(entry: TokenEntry) -> str:
    """The ``[[auth.tokens]]`` table for ``entry``."""
    scopes = ", ".join(f'"{s}"' for s in sorted(entry.scopes, key=SCOPES.index))
    lines = ["[[auth.tokens]]", f'name = "{entry.name}"', f'token_sha256 = "{entry.token_sha256}"',
             f"scopes = [{scopes}]"]
    if entry.agents is not None:
        lines.append('agents = "' + entry.agents.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "\n".join(lines)


def _nats_user(args: argparse.Namespace, out: Output) -> int:
    try:
        user = mint_nats_user(args.name, args.scopes.split(","), args.agents)
    except SpecError as exc:
        raise usage(f"token new --nats: {exc.key.removeprefix('nats_user[0].')}: {exc.allowed}") from None
    table = user.to_table()
    lines = ["[[auth.nats_users]]", f'name = "{user.name}"', f'password = "{user.password}"',
             "scopes = [" + ", ".join(f'"{s}"' for s in sorted(user.scopes, key=SCOPES.index)) + "]"]
    if user.agents is not None:
        lines.append(f'agents = "{user.agents}"')
    toml = "\n".join(lines)
    connect = (f'nats.connect(url, user="{user.name}", password=..., inbox_prefix="{user.inbox_prefix}")')
    out.result({"user": user.name, "password": user.password, "inbox_prefix": user.inbox_prefix, "entry": table,
                "toml": toml},
               f"NATS user {user.name!r} (its password is in the entry: keep the settings file private).\n"
               f"Connect with {connect}: it may read only replies under {user.inbox_prefix}.\n\n"
               f"add this to the node's TOML settings file and restart it (the embedded nats-server):\n\n{toml}")
    return 0


def run_token(args: argparse.Namespace, out: Output) -> int:
    if args.nats:
        return _nats_user(args, out)
    try:
        token, entry = mint(args.name, args.scopes.split(","), args.agents)
    except SpecError as exc:
        raise usage(f"token new: {exc.key.removeprefix('token[0].')}: {exc.allowed}") from None
    toml = entry_toml(entry)
    out.result({"token": token, "entry": entry.to_table(), "toml": toml},
               f"token (shown once; give it to its holder, it is not stored anywhere):\n  {token}\n\n"
               f"add this to the node's TOML settings file:\n\n{toml}")
    return 0
