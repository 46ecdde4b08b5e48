"""Settings: flags > environment > file > defaults, each bad value named with its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from mistersmith.config import SETTINGS, ConfigError, ConfigErrors, load_settings


def test_defaults_are_the_designs() -> None:
    s = load_settings()
    assert s["http.host"] == "127.0.0.1" and s["http.port"] == 8080
    assert s["http.request_timeout_s"] == 30.0
    assert s["http.sse_max_streams"] == 1000 and s["http.sse_keepalive_s"] == 30.0
    assert (s["database.pool_max"], s["database.pool_min"]) == (30, 5)
    assert (s["database.connect_timeout_s"], s["database.idle_timeout_s"], s["database.max_lifetime_s"]) == (
        10.0, 300.0, 3600.0)
    assert s["nats.ping_interval_s"] == 30.0
    assert s["node.data_dir"] == ".mistersmith" and s["node.max_agents"] == 10_000
    assert all(src == "default" for src in s.sources.values())


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "mistersmith.toml"
    cfg.write_text('[http]\nport = 9000\nhost = "0.0.0.0"\n[node]\nmax_agents = 3\n')
    env = {"MISTERSMITH_HTTP_PORT": "9100", "MISTERSMITH_NODE_MAX_AGENTS": "4"}
    s = load_settings({"http.port": 9200}, env, cfg)
    assert s["http.port"] == 9200 and s.sources["http.port"] == "the command line"
    assert s["node.max_agents"] == 4 and s.sources["node.max_agents"] == "$MISTERSMITH_NODE_MAX_AGENTS"
    assert s["http.host"] == "0.0.0.0" and s.sources["http.host"] == str(cfg)


def test_design_env_names() -> None:
    env = {
        "MISTERSMITH_DATABASE_URL": "postgresql://u:p@db/x",
        "MISTERSMITH_NATS_URL": "nats://a:4222, nats://b:4222",
        "MISTERSMITH_DATA_DIR": "/tmp/d",
        "MISTERSMITH_HTTP_HOST": "::1",
        "MISTERSMITH_API_TOKEN": "t0k",
    }
    s = load_settings(env=env)
    assert s["database.url"] == "postgresql://u:p@db/x"
    assert s["nats.url"] == ("nats://a:4222", "nats://b:4222")
    assert s["node.data_dir"] == "/tmp/d" and s["http.host"] == "::1" and s["http.api_token"] == "t0k"


def test_secrets_are_masked() -> None:
    s = load_settings(env={"MISTERSMITH_API_TOKEN": "t0k", "MISTERSMITH_DATABASE_URL": "postgresql://x"})
    shown = s.as_dict()
    assert shown["http"]["api_token"] == "***" and shown["database"]["url"] == "***"
    assert shown["nats"]["password"] is None
    assert "t0k" not in repr(shown)


def test_nats_url_is_a_secret_shown_without_its_userinfo() -> None:
    s = load_settings(env={"MISTERSMITH_NATS_URL": "nats://u:pw-1@a:4222,nats://tok-2@b:4222"})
    assert s["nats.url"] == ("nats://u:pw-1@a:4222", "nats://tok-2@b:4222"), "the real URLs are used"
    assert next(x for x in SETTINGS if x.key == "nats.url").secret
    assert s.as_dict()["nats"]["url"] == ["nats://a:4222", "nats://b:4222"]
    assert s.as_dict(mask_secrets=False)["nats"]["url"] == ["nats://u:pw-1@a:4222", "nats://tok-2@b:4222"]


@pytest.mark.parametrize(
    ("flags", "env", "key", "source"),
    [
        ({"http.port": "http"}, {}, "http.port", "the command line"),
        ({}, {"MISTERSMITH_HTTP_PORT": "70000"}, "http.port", "$MISTERSMITH_HTTP_PORT"),
        ({}, {"MISTERSMITH_DATABASE_POOL_MAX": "0"}, "database.pool_max", "$MISTERSMITH_DATABASE_POOL_MAX"),
        ({}, {"MISTERSMITH_LOGGING_FORMAT": "xml"}, "logging.format", "$MISTERSMITH_LOGGING_FORMAT"),
        ({}, {"MISTERSMITH_NODE_RECOVERY": "maybe"}, "node.recovery", "$MISTERSMITH_NODE_RECOVERY"),
        ({}, {"MISTERSMITH_HTTP_REQUEST_TIMEOUT_S": "-1"}, "http.request_timeout_s",
         "$MISTERSMITH_HTTP_REQUEST_TIMEOUT_S"),
    ],
)
def test_bad_values_name_key_source_and_allowed(flags: dict[str, object], env: dict[str, str], key: str,
                                                source: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(flags, env)
    assert err.value.key == key and err.value.source == source
    assert key in str(err.value) and "use" in str(err.value)


def test_bad_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="existing TOML file") as err:
        load_settings(config_file=missing)
    assert f"{missing} was not found" in str(err.value)
    broken = tmp_path / "broken.toml"
    broken.write_text('[http]\nport = 1\nhost = "a\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=broken)
    assert "line 3, column" in str(err.value) and "is not valid TOML" in str(err.value), str(err.value)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[http]\nprot = 1\n")
    with pytest.raises(ConfigError, match="http.prot"):
        load_settings(config_file=unknown)


def test_an_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[http]\nhots = "0.0.0.0"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=path)
    assert err.value.key == "http.hots" and "did you mean http.host?" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean node.max_agents"):
        load_settings({"node.max_agent": 3})


def test_every_error_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text('[http]\nhots = "x"\nport = "eighty"\n[node]\nmax_agents = 0\n')
    with pytest.raises(ConfigErrors) as err:
        load_settings(config_file=path)
    assert sorted(e.key for e in err.value.errors) == ["http.hots", "http.port", "node.max_agents"]
    assert str(err.value).startswith("3 settings are not allowed: ")
    assert err.value.code == "invalid_config"


def test_pool_min_above_max_is_refused() -> None:
    with pytest.raises(ConfigError, match="database.pool_min"):
        load_settings(env={"MISTERSMITH_DATABASE_POOL_MIN": "40"})


def test_secret_values_are_not_echoed_in_errors() -> None:
    assert any(s.secret for s in SETTINGS)
    with pytest.raises(ConfigError) as err:
        load_settings({"http.api_token": 123})
    assert "123" not in str(err.value)


def test_the_edges_configs_take_their_defaults_from_the_settings() -> None:
    from mistersmith.bridge import ConnectOptions
    from mistersmith.config import default
    from mistersmith.journal import PoolConfig

    pool = PoolConfig()
    assert (pool.max_size, pool.min_size, pool.connect_timeout_s, pool.idle_timeout_s, pool.max_lifetime_s) == tuple(
        default(f"database.{name}") for name in
        ("pool_max", "pool_min", "connect_timeout_s", "idle_timeout_s", "max_lifetime_s"))
    assert ConnectOptions().ping_interval_s == default("nats.ping_interval_s")
    with pytest.raises(KeyError):
        default("http.hots")


@pytest.mark.parametrize(("flags", "key", "allowed"), [
    ({"nats.tls_cert": "c.pem"}, "nats.tls_cert", "set nats.tls_cert and nats.tls_key together"),
    ({"nats.tls_key": "/keys/secret.key"}, "nats.tls_key", "set nats.tls_cert and nats.tls_key together"),
    ({"nats.embedded_tls_cert": "s.pem"}, "nats.embedded_tls_cert", "nats.embedded_tls_key together"),
    ({"nats.embedded_tls_ca": "ca.pem"}, "nats.embedded_tls_ca", "set nats.embedded_tls_cert and"),
    ({"nats.embedded_tls_cert": "s.pem", "nats.embedded_tls_key": "s.key", "nats.embedded_tls_ca": "ca.pem",
      "nats.embedded_tls_verify": "true"}, "nats.embedded_tls_verify", "set nats.tls_cert and nats.tls_key too"),
    ({"nats.embedded_tls_cert": "s.pem", "nats.embedded_tls_key": "s.key", "nats.embedded_tls_verify": "yes",
      "nats.tls_cert": "c.pem", "nats.tls_key": "c.key"}, "nats.embedded_tls_verify", "set nats.embedded_tls_ca"),
    ({"nats.embedded_tls_cert": "s.pem", "nats.embedded_tls_key": "s.key", "nats.url": "tls://n:4222"},
     "nats.embedded_tls_cert", "apply only to the embedded nats-server"),
    ({"database.sslmode": "require"}, "database.sslmode", "set database.url too"),
    ({"database.sslrootcert": "/ca.pem"}, "database.sslrootcert", "set database.url too"),
    ({"database.url": "postgresql://h/db", "database.sslmode": "required"}, "database.sslmode",
     "use one of: disable, allow, prefer, require, verify-ca, verify-full"),
    ({"nats.embedded_tls_verify": "maybe"}, "nats.embedded_tls_verify", "use true or false"),
])
def test_tls_and_ssl_settings_that_go_together(flags: dict[str, object], key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags)
    errors = caught.value.errors if isinstance(caught.value, ConfigErrors) else [caught.value]
    found = [e for e in errors if e.key == key]
    assert found and allowed in found[0].allowed, [e.message for e in errors]
    assert "secret.key" not in str(caught.value), "a key file's path is a secret setting"


def test_tls_and_ssl_settings_load_when_complete() -> None:
    settings = load_settings({
        "nats.embedded_tls_cert": "s.pem", "nats.embedded_tls_key": "s.key", "nats.embedded_tls_ca": "ca.pem",
        "nats.embedded_tls_verify": "true", "nats.tls_cert": "c.pem", "nats.tls_key": "c.key",
        "database.url": "postgresql://h/db", "database.sslmode": "verify-full", "database.sslrootcert": "/ca.pem"})
    assert settings["nats.embedded_tls_verify"] is True and settings["database.sslmode"] == "verify-full"
    shown = settings.as_dict()
    assert shown["nats"]["embedded_tls_key"] == shown["nats"]["tls_key"] == "***"
    assert shown["nats"]["embedded_tls_cert"] == "s.pem" and shown["database"]["sslrootcert"] == "/ca.pem"
