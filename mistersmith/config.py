"""Node settings: flags, then ``MISTERSMITH_*`` environment variables, then a
TOML file, then the defaults (stated once, in ``SETTINGS`` below).

A pure module: ``load_settings`` reads only what it is given. A bad value is
refused with a ``ConfigError`` that names the setting, where the value came
from, the value, and what is allowed.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mistersmith import checks, config_rules
from mistersmith.actors import ProcessKind
from mistersmith.supervisors import DEFAULTS
from mistersmith.errors import MisterSmithError, SpecError
from mistersmith.ids import ID_RULE, is_id
from mistersmith.redact import strip_userinfo
from mistersmith.scopes import SCOPES
from mistersmith.tokens import masked_tables, nats_users_setting, tokens_setting

__all__ = ["SETTINGS", "ConfigError", "ConfigErrors", "Setting", "Settings", "default", "load_settings"]


class ConfigError(MisterSmithError):
    """A setting has a bad value (or the config file cannot be read)."""

    code = "invalid_config"

    def __init__(self, key: str, source: str, value: object, allowed: str) -> None:
        super().__init__(f"{key}={value!r} (from {source}) is not allowed; {allowed}")
        self.key = key
        self.source = source
        self.value = value
        self.allowed = allowed




class ConfigErrors(ConfigError):
    """Several settings are wrong at once; ``errors`` holds each ``ConfigError``."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.key, first.source, first.value, first.allowed)
        self.errors = list(errors)
        self.message = f"{len(errors)} settings are not allowed: " + "; ".join(e.message for e in errors)
        self.args = (self.message,)


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")  # libpq's
_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def _text(key: str, value: object) -> str:
    return checks.text(key, value)


def _opt_text(key: str, value: object) -> str | None:
    return None if value in (None, "") else checks.text(key, value)


def _whole(value: object) -> object:
    """Text (from the environment or a flag) read as an integer when it is one; anything else as it is."""
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    return value


def _real(value: object) -> object:
    """Text read as a number when it is one; anything else as it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _port(key: str, value: object) -> int:
    return checks.port(key, _whole(value))


def _count(key: str, value: object) -> int:
    return checks.count(key, _whole(value))


def _seconds(key: str, value: object) -> float:
    return checks.seconds(key, _real(value))


def _rate(key: str, value: object) -> float:
    return checks.number(key, _real(value))


def _flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise SpecError(None, key, value, "use true or false")


def _urls(key: str, value: object) -> tuple[str, ...] | None:
    if value in (None, "", []):
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(u, str) and u.strip() for u in items):
        raise SpecError(None, key, value, "use a URL or a comma-separated list of URLs")
    return tuple(u.strip() for u in items)


def _sslmode(key: str, value: object) -> str | None:
    return None if value in (None, "") else checks.choice(key, value, _SSLMODES)


def _choice(*allowed: str) -> Callable[[str, object], str]:
    def parse(key: str, value: object) -> str:
        return checks.choice(key, value, allowed)

    return parse


def _origins(key: str, value: object) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(o, str) for o in items):
        raise SpecError(None, key, value, "use a comma-separated list of origins")
    return tuple(o.strip() for o in items if o.strip())


def _names(key: str, value: object) -> tuple[str, ...] | None:
    if value in (None, "", []):
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(n, str) and n.strip() for n in items):
        raise SpecError(None, key, value, "use a comma-separated list of kind names")
    return tuple(n.strip() for n in items)


def _process_kinds(key: str, raw: object) -> dict[str, ProcessKind]:
    value = raw
    if isinstance(value, str):  # from the environment: a JSON object
        try:
            value = orjson.loads(value) if value.strip() else {}
        except orjson.JSONDecodeError:
            raise SpecError(None, key, raw,
                            'use a JSON object of tables, such as {"claude": {"command": ["claude"]}}') from None
    if not isinstance(value, Mapping):
        raise SpecError(None, key, raw, "use [process.kinds.NAME] tables")
    kinds: dict[str, ProcessKind] = {}
    for name, table in value.items():
        if not is_id(name):
            raise SpecError(None, key, raw, f"kind name {name!r}: {ID_RULE}")
        try:
            kinds[name] = ProcessKind.from_table(name, table)
        except SpecError as exc:
            raise SpecError(None, key, raw, str(exc)) from None
    return kinds


@dataclass(frozen=True)
class Setting:
    """One setting: its dotted key (``section.name``), default, parser, env name, secrecy.

    ``parse(key, raw)`` returns the value, or raises a ``SpecError`` saying
    what is allowed (see ``mistersmith.checks``). A secret shows as ``***``,
    or as ``shown(value)`` when that is given (a URL without its credentials).
    """

    key: str
    default: Any
    parse: Callable[[str, object], Any]
    env: str
    secret: bool = False
    help: str = ""
    shown: Callable[[Any], Any] | None = None


def _s(key: str, default: Any, parse: Callable[[str, object], Any], help: str, *, env: str | None = None,
       secret: bool = False, shown: Callable[[Any], Any] | None = None) -> Setting:
    name = env or "MISTERSMITH_" + key.replace(".", "_").upper()
    return Setting(key, default, parse, name, secret, help, shown)


def _urls_shown(urls: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(strip_userinfo(u) for u in urls)


# Every node default, stated once (the design's values where it gives them). The
# edges' typed configs (WebConfig, PoolConfig, ConnectOptions) take theirs from
# here with ``default(key)``: the edges import the core, never the other way.
SETTINGS: tuple[Setting, ...] = (
    _s("node.id", None, _opt_text, "node id; the same id on restart recovers its agents", env="MISTERSMITH_NODE_ID"),
    _s("node.data_dir", ".mistersmith", _text, "data directory (embedded servers, spool, lock)",
       env="MISTERSMITH_DATA_DIR"),
    _s("node.max_agents", 10_000, _count, "agents one node hosts at once, of all kinds (pool_full past it; "
       "each process kind has its own max_agents too)"),
    _s("node.recovery", True, _flag, "respawn this node's agents from the journal at start"),
    _s("node.root_intensity", DEFAULTS.root_intensity, _count, "restarts the root supervisor tolerates per period before the node stops"),
    _s("node.root_period_s", DEFAULTS.root_period_s, _seconds, "the root supervisor's intensity window"),
    _s("node.restart_backoff_max_s", DEFAULTS.backoff_max_s, _seconds,
       f"restart backoff cap for agents (it starts at {DEFAULTS.backoff_min_s} s)"),
    _s("node.kinds", None, _names, "the agent kinds this node serves, comma-separated (empty: echo, the "
       "[process.kinds] ones and those given with --kind)"),
    _s("node.allow_arbitrary_process", False, _flag, "serve the generic process kind, whose spawner picks the "
       "command: anyone who may spawn can run any program as this node's user"),
    _s("process.kinds", {}, _process_kinds, "named process kinds, [process.kinds.NAME] tables with command = "
       "[...] (the operator picks the program; a spawn may set only the kind's overridable fields)"),
    _s("http.host", "127.0.0.1", _text, "HTTP bind address"),
    _s("http.port", 8080, _port, "HTTP port (0 picks a free one)"),
    _s("http.request_timeout_s", 30.0, _seconds, "HTTP request timeout"),
    _s("http.sse_max_streams", 1000, _count, "concurrent SSE streams at most"),
    _s("http.sse_keepalive_s", 30.0, _seconds, "SSE keep-alive comment interval"),
    _s("http.api_token", None, _opt_text, "bearer token for every route but /health",
       env="MISTERSMITH_API_TOKEN", secret=True),
    _s("http.allow_insecure", False, _flag, "allow a non-loopback bind without a token"),
    _s("http.cors_origins", (), _origins, "allowed CORS origins (CORS is off when empty)"),
    _s("http.max_body_bytes", 1_048_576, _count, "request body size limit"),
    _s("http.rate_limit_per_s", 100.0, _rate, "per-client token-bucket refill rate"),
    _s("http.rate_limit_burst", 200, _count, "per-client token-bucket size"),
    _s("http.allowed_hosts", (), _origins, "Host header values (name, name:port, or * for any) answered besides "
       "localhost, 127.0.0.1, [::1] and http.host; others get 421 on every route but /health"),
    _s("http.header_timeout_s", 10.0, _seconds, "time a connection may go without a complete request head "
       "(slow headers, idle keep-alive, TLS handshake)"),
    _s("http.max_connections_per_client", 64, _count, "open connections per client address; more are closed"),
    _s("http.mcp_max_sessions", 1000, _count, "MCP sessions kept (the least recently used go first)"),
    _s("http.mcp_session_idle_s", 600.0, _seconds, "an MCP session unused this long is forgotten"),
    _s("http.tls_cert", None, _opt_text, "PEM certificate (chain) file; with http.tls_key the node serves HTTPS"),
    _s("http.tls_key", None, _opt_text, "PEM private key file for http.tls_cert", secret=True),
    _s("auth.tokens", (), tokens_setting, "scoped bearer tokens, [[auth.tokens]] tables: name, token_sha256 (hex SHA-256 "
       f"of the token, never the token), scopes (of {', '.join(SCOPES)}), agents (optional glob of agent ids); "
       "`mistersmith token new` prints one", secret=True, shown=masked_tables),
    _s("auth.nats_users", (), nats_users_setting, "users of the embedded nats-server held to scopes by its own "
       "permissions, [[auth.nats_users]] tables: name, password, scopes, agents (optional: one agent id); "
       "`mistersmith token new --nats` prints one", secret=True, shown=masked_tables),
    _s("audit.retention_s", 7_776_000.0, _seconds, "how long audit_log entries are kept (90 days; pruned hourly "
       "by the database's clock)"),
    _s("audit.commands", True, _flag, "record command sends in the audit log too (control actions always are)"),
    _s("cluster.node_lease_s", 5.0, _seconds, "a node's membership lease in PostgreSQL; past it (by the database's "
       "clock) the node is down and survivors take its agents over"),
    _s("cluster.heartbeat_s", 1.0, _seconds, "how often a node renews its lease"),
    _s("cluster.lease_margin_s", 1.0, _seconds, "a node that could not renew its lease stops serving this long "
       "before the lease could expire"),
    _s("cluster.handoff_on_stop", False, _flag, "on SIGTERM, hand every agent to other nodes first (a drain)"),
    _s("database.url", None, _opt_text, "PostgreSQL URL; empty starts the embedded server",
       env="MISTERSMITH_DATABASE_URL", secret=True),
    _s("database.sslmode", None, _sslmode, "libpq sslmode for database.url (disable, allow, prefer, require, "
       "verify-ca, verify-full); set, it wins over the URL's own"),
    _s("database.sslrootcert", None, _opt_text, "libpq sslrootcert for database.url: the PEM CA file that signed "
       "the server's certificate (or system); set, it wins over the URL's own"),
    _s("database.pool_max", 30, _count, "pool max connections"),
    _s("database.pool_min", 5, _count, "pool min connections"),
    _s("database.connect_timeout_s", 10.0, _seconds, "connect timeout"),
    _s("database.idle_timeout_s", 300.0, _seconds, "idle connection timeout"),
    _s("database.max_lifetime_s", 3600.0, _seconds, "connection max lifetime"),
    _s("nats.url", None, _urls, "NATS URL(s), comma-separated; empty starts the embedded server",
       env="MISTERSMITH_NATS_URL", secret=True, shown=_urls_shown),
    _s("nats.embedded_port", 4222, _port, "the embedded nats-server's port (0 picks a free one); when it is "
       "taken, the port this data directory's server used last, else a free one (node.json says which)"),
    _s("nats.ping_interval_s", 30.0, _seconds, "NATS ping interval"),
    _s("nats.allow_remote_shutdown", False, _flag, "let system.control.shutdown over NATS stop this node"),
    _s("nats.user", None, _opt_text, "NATS user"),
    _s("nats.password", None, _opt_text, "NATS password", secret=True),
    _s("nats.token", None, _opt_text, "NATS token", secret=True),
    _s("nats.creds_file", None, _opt_text, "NATS credentials file"),
    _s("nats.nkey_seed_file", None, _opt_text, "NATS nkey seed file"),
    _s("nats.tls_ca", None, _opt_text, "PEM CA bundle that signed the NATS server's certificate (tls:// URLs; "
       "unset: the system's CAs, or for the embedded server nats.embedded_tls_ca)"),
    _s("nats.tls_cert", None, _opt_text, "PEM client certificate shown to a NATS server that verifies clients "
       "(with nats.tls_key)"),
    _s("nats.tls_key", None, _opt_text, "PEM private key file of nats.tls_cert", secret=True),
    _s("nats.embedded_tls_cert", None, _opt_text, "PEM certificate (chain) of the embedded nats-server, valid for "
       "127.0.0.1; with nats.embedded_tls_key it serves TLS only, at tls://127.0.0.1:PORT"),
    _s("nats.embedded_tls_key", None, _opt_text, "PEM private key file of nats.embedded_tls_cert", secret=True),
    _s("nats.embedded_tls_ca", None, _opt_text, "PEM CA bundle the embedded nats-server checks client certificates "
       "against (the node trusts it for the server's certificate too, unless nats.tls_ca is set)"),
    _s("nats.embedded_tls_verify", False, _flag, "the embedded nats-server requires from every client, the node "
       "included (nats.tls_cert), a certificate signed by nats.embedded_tls_ca"),
    _s("tasks.concurrency", 4, _count, "tasks of one kind this node runs at once; it serves every kind it runs, "
       "each task on an agent of its pool (task-KIND-..., under supervisor tasks, up to this many per kind)"),
    _s("tasks.replicas", 1, _count, "replicas of the task streams (up to the NATS cluster's size: 3 keeps every "
       "task through the loss of one nats-server)"),
    _s("tracing.exporter", "none", _choice("none", "console", "otlp"), "OpenTelemetry traces: none (off, unless "
       "OTEL_EXPORTER_OTLP_ENDPOINT is set: then otlp), console (print spans, for local debugging) or otlp "
       "(http/protobuf, configured by the standard OTEL_EXPORTER_OTLP_* variables)"),
    _s("logging.level", "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "log level"),
    _s("logging.format", "pretty", _choice("pretty", "json"), "log format"),
)
_BY_KEY = {s.key: s for s in SETTINGS}


def default(key: str) -> Any:
    """The default of the setting ``key`` (``KeyError`` for an unknown key)."""
    return _BY_KEY[key].default


class Settings:
    """The effective settings. Read them as ``settings["http.port"]``."""

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str], config_file: str | None = None) -> None:
        self._values = dict(values)
        self.sources = dict(sources)
        self.config_file = config_file  # the TOML file read, if any

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def as_dict(self, *, mask_secrets: bool = True) -> dict[str, Any]:
        """Nested ``{section: {name: value}}``; secrets show as ``***`` (or their ``shown`` form) unless unset."""
        out: dict[str, dict[str, Any]] = {}
        for setting in SETTINGS:
            section, name = setting.key.split(".", 1)
            value = self._values[setting.key]
            if mask_secrets and setting.secret and value is not None:
                value = setting.shown(value) if setting.shown is not None else "***"
            if isinstance(value, tuple):
                value = list(value)
            if setting.key in ("auth.tokens", "auth.nats_users") and not (mask_secrets and value):
                value = [e.to_table() for e in value]
            if setting.key == "process.kinds":
                value = {name: kind.to_table() for name, kind in value.items()}
            out.setdefault(section, {})[name] = value
        return out


def _suggest(key: str) -> str:
    """``use known settings`` with the nearest one first (``http.hots`` -> ``http.host``)."""
    near = difflib.get_close_matches(key, list(_BY_KEY), n=1, cutoff=0.6)
    if near:
        return f"did you mean {near[0]}? (`mistersmith config --reference` lists every setting)"
    return "use a known setting (`mistersmith config --reference` lists them)"


def _toml_problem(exc: tomllib.TOMLDecodeError) -> str:
    """The TOML parser's message in plain words: where, then what."""
    text = str(exc)
    where = _TOML_AT.search(text)
    what = _TOML_AT.sub("", text).strip().rstrip(".")
    if where is None:
        return f"it is not valid TOML ({what}); fix the TOML"
    return (f"line {where.group(1)}, column {where.group(2)} is not valid TOML ({what[:1].lower()}{what[1:]}); "
            "fix the TOML there")


def _read_file(path: Path, problems: list[ConfigError]) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("--config", "the command line", str(path),
                          f"{path} was not found; name an existing TOML file") from None
    except IsADirectoryError:
        raise ConfigError("--config", "the command line", str(path), f"{path} is a directory; name a TOML file") \
            from None
    except UnicodeDecodeError:
        raise ConfigError("--config", str(path), str(path), "it is not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", str(path), str(path), _toml_problem(exc)) from None
    flat: dict[str, Any] = {}
    for section, table in raw.items():
        if not isinstance(table, dict):
            problems.append(ConfigError(section, str(path), table, f"put settings in [section] tables, such as "
                                        f"[{section.split('.')[0] or 'node'}]"))
            continue
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in _BY_KEY:
                problems.append(ConfigError(key, str(path), value, _suggest(key)))
                continue
            flat[key] = value
    return flat


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Merge flags > environment > file > defaults, validating every value.

    ``flags`` maps dotted keys to values given on the command line (None means
    not given); ``env`` is usually ``os.environ``. Every problem is reported
    at once: one ``ConfigError``, or ``ConfigErrors`` holding them all.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = env or {}
    problems: list[ConfigError] = []
    from_file = _read_file(Path(config_file), problems) if config_file is not None else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.key in flags:
            raw, source = flags[setting.key], "the command line"
        elif setting.env in env:
            raw, source = env[setting.env], f"${setting.env}"
        elif setting.key in from_file:
            raw, source = from_file[setting.key], str(config_file)
        else:
            values[setting.key], sources[setting.key] = setting.default, "default"
            continue
        try:
            values[setting.key] = setting.parse(setting.key, raw)
        except ValueError as exc:  # a SpecError (mistersmith.checks), saying what is allowed
            shown = "***" if setting.secret else raw
            problems.append(ConfigError(setting.key, source, shown, exc.allowed if isinstance(exc, SpecError)
                                        else str(exc)))
            values[setting.key] = setting.default
        sources[setting.key] = source
    for key in flags:
        if key not in _BY_KEY:
            problems.append(ConfigError(key, "the command line", flags[key], _suggest(key)))
    if values["database.pool_min"] > values["database.pool_max"]:
        problems.append(ConfigError("database.pool_min", sources["database.pool_min"], values["database.pool_min"],
                                    f"use a value <= database.pool_max ({values['database.pool_max']})"))
    lease, beat, margin = (values[f"cluster.{k}"] for k in ("node_lease_s", "heartbeat_s", "lease_margin_s"))
    if not 0 < beat < lease - margin:
        problems.append(ConfigError("cluster.heartbeat_s", sources["cluster.heartbeat_s"], beat,
                                    f"use a value below cluster.node_lease_s - cluster.lease_margin_s ({lease - margin})"))
    for key, allowed in config_rules.violations(values):  # settings that go together
        setting = _BY_KEY[key]
        problems.append(ConfigError(key, sources[key], "***" if setting.secret else values[key], allowed))
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigErrors(problems)
    return Settings(values, sources, None if config_file is None else str(config_file))
