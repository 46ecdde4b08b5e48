"""The ``mistersmith`` command: the parser, the dispatch, and what an error looks like.

Every command takes ``--json``, ``--debug``, ``--data-dir`` and ``--config``
(before or after its name) and answers ``--help``. An error is one line on
stderr (``mistersmith: ...``) and an exit code from ``_errors``; ``--debug``
adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, NoReturn

from mistersmith import __version__
from mistersmith.errors import MisterSmithError
from mistersmith.redact import strip_userinfo_in
from mistersmith.supervisors import RESTARTS

from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError, usage
from ._output import Output

__all__ = ["build_parser", "docs_link", "main"]

Handler = Callable[[argparse.Namespace, Output], int]

_EPILOG = """\
exit codes: 0 ok; 1 the operation failed (an error reply, a failed start, a health check not ok);
2 bad usage or configuration; 3 cannot reach the node (or its NATS/PostgreSQL); 130 interrupted.
Settings: flags, then MISTERSMITH_* environment variables, then the --config TOML file, then defaults
(`mistersmith config` shows the result). Docs: {docs}"""


def docs_link() -> str:
    """The CLI reference as installed with the package (the wheel ships ``docs/`` as
    ``mistersmith.docs``), so the link works outside a checkout too."""
    try:
        path = Path(str(files("mistersmith.docs") / "reference" / "cli.md"))
    except ModuleNotFoundError:
        return "docs/reference/cli.md in the source"
    return str(path) if path.is_file() else "docs/reference/cli.md in the source"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("mistersmith").strip()
        message = strip_userinfo_in(message)  # it may quote an argument: a URL's password never shows
        raise usage(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


def _common(parser: argparse.ArgumentParser, *, top: bool, config: bool = True) -> None:
    """The options every command takes; at the top level with their defaults, after a command
    name only if given (``SUPPRESS``), so that either place works."""

    def d(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("common options")
    group.add_argument("--json", action="store_true", default=d(False), help="print JSON (for scripts)")
    group.add_argument("--debug", action="store_true", default=d(False),
                       help="show tracebacks and debug logs on errors")
    group.add_argument("--data-dir", metavar="DIR", default=d(None),
                       help="the node's data directory (env MISTERSMITH_DATA_DIR; default ./.mistersmith)")
    if config:
        group.add_argument("--config", metavar="FILE", default=d(os.environ.get("MISTERSMITH_CONFIG")),
                           help="a TOML settings file (env MISTERSMITH_CONFIG)")


def _nats(parser: argparse.ArgumentParser, timeout_s: float = 10.0) -> None:
    group = parser.add_argument_group("reaching the node")
    group.add_argument("--nats-url", metavar="URL",
                       help="NATS URL(s), comma-separated (env MISTERSMITH_NATS_URL; default: the running node's, "
                            "from DIR/node.json)")
    group.add_argument("--timeout", metavar="SECONDS", type=float, default=timeout_s,
                       help=f"how long to wait for an answer (default {timeout_s:g})")


def _database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", metavar="URL",
                        help="PostgreSQL URL (env MISTERSMITH_DATABASE_URL; default: the embedded server in DIR)")


def _node_settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("node settings (see docs/reference/configuration.md)")
    group.add_argument("--http-host", metavar="HOST", help="HTTP bind address (env MISTERSMITH_HTTP_HOST; default 127.0.0.1)")
    group.add_argument("--http-port", metavar="PORT", help="HTTP port, 0 picks a free one (env MISTERSMITH_HTTP_PORT; default 8080)")
    group.add_argument("--nats-url", metavar="URL", help="NATS URL(s); default: start the embedded nats-server")
    group.add_argument("--database-url", metavar="URL", help="PostgreSQL URL; default: start the embedded PostgreSQL")
    group.add_argument("--node-id", metavar="ID", help="node id (default: kept in DIR/node_id)")
    group.add_argument("--allow-remote-shutdown", action="store_const", const="true",
                       help="let `mistersmith shutdown` (system.control.shutdown over NATS) stop this node")
    group.add_argument("--max-agents", metavar="N", help="agents this node hosts at once, of all kinds (node.max_agents, default 10000)")
    group.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO)")
    group.add_argument("--log-format", metavar="FORMAT", help="pretty or json (default pretty)")


def build_parser() -> argparse.ArgumentParser:
    from ._bench import ALL, run_bench
    from ._client import CLIENT_COMMANDS
    from ._cluster import CLUSTER_COMMANDS
    from ._completion import SHELLS, run_completion
    from ._journal import run_migrate, run_replay
    from ._nats_url import run_nats_url
    from ._psql import run_psql
    from ._send import run_send
    from ._serve import run_serve
    from ._settings import run_config

    epilog = _EPILOG.format(docs=docs_link())
    parser = _Parser(prog="mistersmith", description="Run and drive a MisterSmith node: supervised agents "
                     "over NATS, journaled to PostgreSQL, with an HTTP/MCP shim.", epilog=epilog,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mistersmith {__version__}")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def add(name: str, handler: Handler, help_: str, *, config: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_, epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(sub, top=False, config=config)
        sub.set_defaults(handler=handler)
        return sub

    serve = add("serve", run_serve, "start a node in the foreground (embedded NATS and PostgreSQL by default)")
    _node_settings(serve)
    serve.add_argument("--kind", metavar="MODULE:CLASS", action="append",
                       help="register an agent kind (repeatable; NAME=MODULE:CLASS names it)")
    serve.add_argument("--no-entry-points", action="store_true",
                       help="do not load kinds from the mistersmith.agents entry points")

    config = add("config", run_config, "print the effective configuration (secrets masked)")
    _node_settings(config)
    config.add_argument("--reference", action="store_true",
                        help="print every setting, its environment variable and default (Markdown)")

    spawn = add("spawn", CLIENT_COMMANDS["spawn"], "spawn an agent", config=False)
    spawn.add_argument("kind", metavar="KIND", help="a kind the node serves (echo, a [process.kinds] one, or one given to serve; "
                       "see `mistersmith kinds`)")
    spawn.add_argument("--id", metavar="ID", help="the agent id (default: KIND-<random>)")
    spawn.add_argument("--config", dest="agent_config", metavar="JSON",
                       help="the agent's config: a JSON object, @FILE or - (stdin). The settings file goes "
                            "before the command here: mistersmith --config FILE spawn ...")
    spawn.add_argument("--restart", choices=RESTARTS, help="restart type")
    spawn.add_argument("--durable", action=argparse.BooleanOptionalAction, default=None,
                       help="keep its self.state across restarts (--no-durable: do not; default: the kind "
                            "decides)")
    spawn.add_argument("--node", metavar="NODE", help="spawn on this node (default: any)")
    _nats(spawn)

    send = add("send", run_send, "send a command to an agent and print its result (Ctrl-C cancels it)")
    send.add_argument("agent_id", metavar="ID")
    send.add_argument("command", metavar="COMMAND")
    send.add_argument("payload", metavar="JSON", nargs="?", help="the payload: a JSON object, @FILE or - (stdin)")
    send.add_argument("--tell", action="store_true", help="fire and forget: do not wait for a result")
    send.add_argument("--stream", action="store_true",
                      help="print each progress item as the agent reports it, then the result")
    _nats(send, timeout_s=30.0)

    agents = add("agents", CLIENT_COMMANDS["agents"], "list the agents of every node")
    agents.add_argument("--kind", metavar="KIND", help="only this kind")
    agents.add_argument("--node", metavar="NODE", help="only this node")
    agents.add_argument("--command", metavar="COMMAND", help="only agents that answer this command")
    agents.add_argument("--long", "-l", action="store_true",
                        help="also restarts, mailbox depth and commands (one request per agent)")
    _nats(agents)

    for name, help_ in (("stop", "stop an agent for good"), ("restart", "restart an agent now")):
        sub = add(name, CLIENT_COMMANDS[name], help_)
        sub.add_argument("agent_id", metavar="ID")
        if name == "restart":
            sub.add_argument("--reset-state", action="store_true",
                             help="a durable agent starts again from an empty state, committed as its next version "
                                  "(a fresh start: its earlier versions are dropped)")
        _nats(sub)

    state = add("state", CLIENT_COMMANDS["state"], "print a durable agent's committed state (the last version, "
                "or --version N)")
    state.add_argument("agent_id", metavar="ID")
    state.add_argument("--version", metavar="N", type=int, help="this version, if it is still kept (default: the last)")
    _nats(state)

    tree = add("tree", CLIENT_COMMANDS["tree"], "print the live supervision tree of every node")
    tree.add_argument("--node", metavar="NODE", help="only this node")
    _nats(tree)

    kinds = add("kinds", CLIENT_COMMANDS["kinds"], "list the agent kinds a node serves, with their commands")
    kinds.add_argument("--node", metavar="NODE", help="this node (default: whichever answers)")
    _nats(kinds)

    health = add("health", CLIENT_COMMANDS["health"], "check a node (exit code 1 unless it is ok)")
    health.add_argument("--node", metavar="NODE", help="this node (default: whichever answers)")
    _nats(health)

    shutdown = add("shutdown", CLIENT_COMMANDS["shutdown"],
                   "ask a node to shut down gracefully (it must run with --allow-remote-shutdown)")
    shutdown.add_argument("--node", metavar="NODE", help="this node (default: whichever answers a ping)")
    _nats(shutdown)

    nodes = add("nodes", CLUSTER_COMMANDS["nodes"], "list the cluster's nodes (every node sharing the PostgreSQL): "
                "state, agents, lease")
    _nats(nodes)

    drain = add("drain", CLUSTER_COMMANDS["drain"], "hand every agent of a node to the other nodes (exit code 1 "
                "if some stayed)")
    drain.add_argument("node", metavar="NODE", nargs="?", help="the node (default: the data directory's node)")
    drain.add_argument("--exit", action="store_true",
                       help="then stop the node (it must run with --allow-remote-shutdown)")
    _nats(drain, timeout_s=120.0)

    rebalance = add("rebalance", CLUSTER_COMMANDS["rebalance"], "move agents off a node until none holds more "
                    "than ceil(mean) + 1")
    rebalance.add_argument("node", metavar="NODE", nargs="?",
                           help="the node (default: the data directory's node, else whichever answers)")
    _nats(rebalance, timeout_s=120.0)

    replay = add("replay", run_replay, "print supervision events from the journal (or the tree at a moment)")
    replay.add_argument("--agent", metavar="ID", help="only this agent's events")
    replay.add_argument("--node", metavar="NODE", help="only this node's events")
    replay.add_argument("--type", metavar="TYPE", action="append",
                        help="only these event types (repeatable or comma-separated)")
    replay.add_argument("--trace", metavar="ID", help="only what one request caused: its trace id (32 hex digits)")
    replay.add_argument("--since", metavar="WHEN", help="from a seq, an ISO 8601 time, or a duration ago (10m)")
    replay.add_argument("--until", metavar="WHEN", help="up to a seq or a time (inclusive)")
    replay.add_argument("--limit", metavar="N", type=int, help="stop after N events")
    replay.add_argument("--follow", "-f", action="store_true", help="then keep printing new events (Ctrl-C ends)")
    replay.add_argument("--at", metavar="WHEN", help="print the supervision tree as it was at WHEN instead")
    replay.add_argument("--states", action="store_true",
                        help="also print the durable agents' state versions still kept, in time order")
    _database(replay)

    migrate = add("migrate", run_migrate, "apply the journal's schema migrations")
    _database(migrate)

    from ._audit import add_audit, add_token, run_audit, run_token

    add_audit(add("audit", run_audit, "print the audit trail: every control action from any door, with its actor "
                  "and outcome (admin)"))
    add_token(add("token", run_token, "token new: mint a scoped HTTP/MCP token and print its [[auth.tokens]] entry",
                  config=False))

    psql = add("psql", run_psql, "open the journal's PostgreSQL in psql (the one shipped with the embedded "
               "server); psql's own arguments go after --")
    _database(psql)
    psql.add_argument("psql_args", metavar="-- PSQL_ARGS", nargs=argparse.REMAINDER,
                      help="passed to psql, e.g. -- -c 'select count(*) from supervision_events'")

    from ._cluster_up import add_arguments as cluster_arguments, run_cluster

    cluster_arguments(add("cluster", run_cluster, "cluster up: run a local cluster in the foreground (3 nats-servers, "
                          "one PostgreSQL, --nodes N nodes)"))

    add("nats-url", run_nats_url, "print the running node's NATS URL (--json: and its credentials file)",
        config=False)

    bench = add("bench", run_bench, "run the benchmark suites, side by side with raw pykka")
    bench.add_argument("suite", nargs="?", default=ALL, choices=[*_suite_names(), ALL],
                       help="which suite (default: all)")
    bench.add_argument("--quick", action="store_true", help="small sizes, a few seconds (smoke test; not figures)")
    bench.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin threads for ratio figures")
    bench.add_argument("--quiet", action="store_true", help="no progress display")

    completion = add("completion", run_completion, "print a shell completion script: "
                     "source <(mistersmith completion bash)", config=False)
    completion.add_argument("shell", choices=SHELLS, help="the shell")
    return parser


def _suite_names() -> list[str]:
    from mistersmith.bench import SUITES

    return list(SUITES)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (the console script exits with it)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    out = Output(json_mode="--json" in args_list)
    try:
        try:
            args = build_parser().parse_args(args_list)
        except SystemExit as exc:  # --help, --version
            return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        out = Output(json_mode=args.json)
        debug = args.debug
        if debug and args.command != "serve":  # serve sets up its own logging
            from mistersmith.logs import configure_logging

            configure_logging("DEBUG")
        handler: Handler = args.handler
        return handler(args, out)
    except CliError as exc:
        if debug:
            traceback.print_exc()
        out.error(exc)
        return exc.exit_code
    except MisterSmithError as exc:
        if debug:
            traceback.print_exc()
        exit_code = EXIT_USAGE if exc.code in ("invalid_config", "invalid_spec") else EXIT_FAILED
        out.error(CliError(exc.message, exit_code=exit_code, code=str(exc.code)))
        return exit_code
    except KeyboardInterrupt:
        out.error(CliError("interrupted", exit_code=EXIT_INTERRUPTED, code="interrupted"))
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mistersmith replay | head`: the reader has all it wanted
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        if debug:
            raise
        out.error(CliError(f"unexpected error: {_one_line(exc)} (run with --debug for the traceback)",
                           exit_code=EXIT_FAILED, code="internal"))
        return EXIT_FAILED
