"""``replay`` and ``migrate``: commands that read (or set up) the journal's PostgreSQL directly.

They need no running node: with no ``--database-url`` they use the data
directory's embedded PostgreSQL, the running node's if there is one, else
started for the command (see ``_locate.database``). ``replay --states`` also
reads the durable agents' state versions still kept (``agent_states``, through
``PgStateStore``) and prints them among the events, in time order.
"""

from __future__ import annotations

import argparse
import re
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from mistersmith.config import Settings
from mistersmith.errors import StateUnavailableError
from mistersmith.history import Projection, TreeSnapshot
from mistersmith.journal import MigrationError, Replay, ReplayFilter
from mistersmith.journal.config import ssl_hint
from mistersmith.state.store import StateVersion
from mistersmith.supervisors import EVENT_TYPES, SupervisionEvent

from ._errors import EXIT_FAILED, failed, unreachable, usage
from ._locate import database
from ._output import Output, stamp
from ._settings import load
from ._tree import render_tree

__all__ = ["event_line", "in_time_order", "parse_bound", "run_migrate", "run_replay", "state_line", "state_record"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_bound(text: str | None, flag: str) -> int | datetime | None:
    """A journal position: a seq (``42``), a time (ISO 8601; local time if it names no offset)
    or a duration ago (``90s``, ``10m``, ``2h``, ``1d``)."""
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if match:
        return datetime.now(UTC) - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise usage(
            f"{flag} {text!r}: use a journal seq (42), an ISO 8601 time (2025-01-31T12:00:00Z) or a duration ago "
            "(90s, 10m, 2h, 1d)"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


def _types(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    types = tuple(t.strip() for v in values for t in v.split(",") if t.strip())
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise usage(f"--type {unknown[0]!r} is not an event type; use: {', '.join(EVENT_TYPES)}")
    return types


_WHO_WIDTH = 20
_TYPE_WIDTH = max(len(t) for t in EVENT_TYPES)  # the longest event type fits, whatever types are added


def event_line(event: SupervisionEvent) -> str:
    """``    12  2025-01-31 12:00:01.234Z  node-1  a1  restarted  restarts=1  reason``.

    The columns are aligned for every event type: the type column is as wide
    as the longest type, and what follows it (restart count, reason) always
    starts two spaces after it.
    """
    who = event.agent_id if event.agent_id is not None else f"[{event.supervisor or 'root'}]"
    line = (f"{event.seq:>6}  {stamp(event.occurred_at)}  {event.node_id}  {who:<{_WHO_WIDTH}}  "
            f"{event.event_type:<{_TYPE_WIDTH}}")
    if event.restart_count:
        line += f"  restarts={event.restart_count}"
    if event.reason:
        line += f"  {event.reason}"
    if event.trace_id:
        line += f"  trace={event.trace_id}"
    return line.rstrip()


def state_line(version: StateVersion) -> str:
    """``        2025-01-31 12:00:01.240Z  node-1  a1  state v3  (120 B, epoch 2)``: in the event
    columns (no seq: a state version is not a journal event), the node being the one that committed it."""
    what = f"state v{version.version}"
    return (f"{'':>6}  {stamp(version.committed_at)}  {version.node_id}  {version.agent_id:<{_WHO_WIDTH}}  "
            f"{what:<{_TYPE_WIDTH}}  ({version.bytes} B, epoch {version.epoch})")


def state_record(version: StateVersion) -> dict[str, Any]:
    """A state version as ``replay --states --json`` prints it: ``{"type": "state_version", ...}``."""
    return {"type": "state_version", **version.to_dict()}


def in_time_order(
    events: Iterable[SupervisionEvent], versions: Iterable[StateVersion]
) -> Iterator[SupervisionEvent | StateVersion]:
    """The events as they come (journal order), each state version just before the first event
    that occurred after it was committed; those committed after the last event come last."""
    pending = deque(sorted(versions, key=lambda v: (v.committed_at, v.agent_id, v.version)))
    for event in events:
        while pending and pending[0].committed_at < event.occurred_at:
            yield pending.popleft()
        yield event
    yield from pending


def _check_states(args: argparse.Namespace, at: object, since: object, until: object) -> None:
    if at is not None or args.follow:
        raise usage("--states prints the state versions kept among the events; it does not combine with "
                    "--at or --follow")
    for flag, bound in (("--since", since), ("--until", until)):
        if isinstance(bound, int):
            raise usage(f"{flag} {bound} with --states: state versions have no journal seq; bound them with a "
                        "time (2026-11-24T09:00:00Z) or, for --since, a duration ago (10m)")


def _state_versions(
    conninfo: str, where: str, settings: Settings, args: argparse.Namespace, since: object, until: object
) -> list[StateVersion]:
    """The state versions still kept, of ``--agent`` (or every agent), by ``--node``, within the bounds."""
    from mistersmith.journal import PgStateStore

    store = PgStateStore(conninfo, pool_size=1, connect_timeout_s=settings["database.connect_timeout_s"])
    try:
        kept = store.versions(args.agent)
    except psycopg.errors.UndefinedTable:
        raise failed(f"{where} keeps no agent states yet (its schema predates migration 004); run "
                     "`mistersmith migrate`") from None
    except StateUnavailableError as exc:
        raise unreachable(f"cannot read the state versions in {where}: {exc.detail}") from None
    finally:
        store.close()
    return [v for v in kept if (args.node is None or v.node_id == args.node)
            and (not isinstance(since, datetime) or v.committed_at >= since)
            and (not isinstance(until, datetime) or v.committed_at <= until)]


@contextmanager
def _reading(where: str) -> Iterator[None]:
    """Database errors as one line: 3 if it cannot be reached, 1 if the query failed."""
    try:
        yield
    except psycopg.errors.UndefinedTable:
        raise failed(f"{where} has no journal yet (run `mistersmith migrate`, or start a node once)") from None
    except psycopg.OperationalError as exc:
        raise unreachable(f"cannot read {where}: {ssl_hint(str(exc).strip().splitlines()[0])}") from None
    except psycopg.Error as exc:
        raise failed(f"reading {where} failed: {str(exc).strip().splitlines()[0]}") from None


def _tree_at(conninfo: str, at: int | datetime, node_id: str | None) -> TreeSnapshot:
    projection = Projection()
    replay = Replay(conninfo, ReplayFilter(node_id=node_id, until=at))
    for event in replay:
        projection.apply(event)
    return projection.snapshot()


def _print_tree_at(args: argparse.Namespace, out: Output, snap: TreeSnapshot) -> int:
    when = snap.as_of.isoformat() if snap.as_of is not None else None
    if args.agent is not None:
        try:
            record = snap.agent(args.agent, args.node).to_dict()
        except KeyError:
            out.result({"as_of_seq": snap.as_of_seq, "as_of": when, "agent": None},
                       f"agent {args.agent} was not running as of seq {snap.as_of_seq}")
            return EXIT_FAILED
        out.result({"as_of_seq": snap.as_of_seq, "as_of": when, "agent": record},
                   f"as of seq {snap.as_of_seq} ({when}): {record['id']} ({record['kind']}) was {record['state']}, "
                   f"restarts={record['restart_count']}, last event {record['last_event']}")
        return 0
    trees = {node: snap.tree(node) for node in snap.nodes()}
    doc = {"as_of_seq": snap.as_of_seq, "as_of": when, "trees": trees,
           "agents": [r.to_dict() for r in snap.agents()]}

    def human() -> str:
        head = f"as of seq {snap.as_of_seq} ({when or 'an empty journal'})"
        return "\n\n".join([head] + [f"node {n}\n{render_tree(t)}" for n, t in trees.items()])

    out.result(doc, human)
    return 0


def run_replay(args: argparse.Namespace, out: Output) -> int:
    at = parse_bound(args.at, "--at")
    since, until = parse_bound(args.since, "--since"), parse_bound(args.until, "--until")
    types = _types(args.type)
    if at is not None and (args.follow or since is not None or until is not None or types is not None or args.trace):
        raise usage("--at prints the tree at one moment; it does not combine with --follow, --since, --until, "
                    "--type or --trace")
    trace = args.trace.strip().lower() if args.trace else None
    if trace is not None and (len(trace) != 32 or any(c not in "0123456789abcdef" for c in trace)):
        raise usage(f"--trace {args.trace!r}: use a W3C trace id, 32 hex digits (the middle part of a traceparent)")
    if args.limit is not None and args.limit < 1:
        raise usage(f"--limit {args.limit}: use a count >= 1")
    if args.states:
        _check_states(args, at, since, until)
    settings = load(args)
    with database(settings) as (conninfo, where), _reading(where):
        if at is not None:
            return _print_tree_at(args, out, _tree_at(conninfo, at, args.node))
        versions = _state_versions(conninfo, where, settings, args, since, until) if args.states else []
        filters = ReplayFilter(agent_id=args.agent, node_id=args.node, since=since, until=until, event_types=types,
                               trace_id=trace)
        replay = Replay(conninfo, filters, follow=args.follow, poll_s=0.5)
        events = iter(replay)
        count = 0
        try:
            for item in in_time_order(events, versions) if args.states else events:
                if isinstance(item, StateVersion):
                    out.record(state_record(item), state_line(item))
                else:
                    out.record(item.to_dict(), event_line(item))
                count += 1
                if args.limit is not None and count >= args.limit:
                    break
        except KeyboardInterrupt:
            if not args.follow:
                raise
        finally:
            replay.close()
            close = getattr(events, "close", None)
            if close is not None:
                close()
        if count == 0:
            out.note("no events or state versions match" if args.states else "no events match")
    return 0


def run_migrate(args: argparse.Namespace, out: Output) -> int:
    from mistersmith.journal.migrate import applied_migrations, migrate

    settings = load(args)
    with database(settings, create=True) as (conninfo, where), _reading(where):
        try:
            applied = migrate(conninfo)
        except MigrationError as exc:
            raise failed(exc.message, code=str(exc.code)) from None
        with psycopg.connect(conninfo) as conn:
            versions = applied_migrations(conn)
    doc: dict[str, Any] = {
        "database": where,
        "applied": [m.filename for m in applied],
        "versions": [{"version": v, "name": name} for v, (name, _) in sorted(versions.items())],
    }
    latest = max(versions, default=0)
    if applied:
        text = f"applied {', '.join(doc['applied'])} to {where}; the schema is at version {latest}"
    else:
        text = f"the journal schema in {where} is up to date (version {latest})"
    out.result(doc, text)
    return 0
