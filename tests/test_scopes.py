"""mistersmith.scopes: token entries, resolution by SHA-256, the scope tables, refusals. Pure, no I/O."""

from __future__ import annotations

import hashlib

import pytest

from mistersmith.config import ConfigError, load_settings
from mistersmith.errors import SpecError
from mistersmith.scopes import (
    ALL_SCOPES,
    ANONYMOUS,
    CLI_SCOPES,
    LEGACY_TOKEN_NAME,
    NATS_SCOPES,
    ROUTE_SCOPES,
    SCOPES,
    TOOL_SCOPES,
    Identity,
    agent_refusal,
    parse_scopes,
    route_scope,
    tool_refusal,
)
from mistersmith.tokens import TokenEntry, mint, parse_tokens, resolve, sha256_hex

TOKEN = "t0k3n-for-the-ci-robot-0123456789"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()


def _table(**over: object) -> dict[str, object]:
    return {"name": "ci", "token_sha256": DIGEST, "scopes": ["read", "command"], **over}


def test_an_entry_parses_and_its_repr_shows_no_digest() -> None:
    (entry,) = parse_tokens("auth.tokens", [_table(agents="ci-*")])
    assert entry == TokenEntry("ci", DIGEST, frozenset({"read", "command"}), "ci-*")
    assert DIGEST not in repr(entry)
    assert entry.to_table(mask=True)["token_sha256"] == "***"


@pytest.mark.parametrize(("table", "key", "says"), [
    (_table(scopes=["read", "root"]), "auth.tokens[0].scopes", "root"),
    (_table(scopes=[]), "auth.tokens[0].scopes", "read, command, control, admin"),
    (_table(token_sha256="abc"), "auth.tokens[0].token_sha256", "64 hex digits"),
    (_table(name=""), "auth.tokens[0].name", "letters"),
    (_table(agents=""), "auth.tokens[0].agents", "glob"),
    (_table(token="plain"), "auth.tokens[0].token", "only name"),
    ("ci", "auth.tokens[0]", "a table"),
])
def test_a_bad_entry_names_the_key_and_what_is_allowed(table: object, key: str, says: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_tokens("auth.tokens", [table])
    assert raised.value.key == key
    assert says in raised.value.allowed


def test_names_and_digests_are_unique() -> None:
    with pytest.raises(SpecError, match="its own name"):
        parse_tokens("auth.tokens", [_table(), _table(token_sha256="b" * 64)])
    with pytest.raises(SpecError, match="its own token_sha256"):
        parse_tokens("auth.tokens", [_table(), _table(name="other")])


def test_resolve_finds_the_entry_by_sha256_and_the_legacy_token_has_every_scope() -> None:
    entries = parse_tokens("auth.tokens", [_table(), _table(name="ops", token_sha256="c" * 64, scopes=["admin"])])
    assert resolve(TOKEN.encode(), entries, None) == Identity("ci", frozenset({"read", "command"}))
    assert resolve(b"wrong", entries, None) is None
    assert resolve(None, entries, None) is None
    assert resolve(b"", entries, b"legacy-token-0123456789") is None
    legacy = resolve(b"legacy-token-0123456789", entries, b"legacy-token-0123456789")
    assert legacy == Identity(LEGACY_TOKEN_NAME, ALL_SCOPES)


def test_the_settings_read_tokens_from_toml_and_from_the_environment(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "m.toml"
    path.write_text(f'[[auth.tokens]]\nname = "ci"\ntoken_sha256 = "{DIGEST}"\nscopes = ["read"]\n'
                    f'agents = "ci-*"\n\n[audit]\ncommands = false\n')
    settings = load_settings({}, {}, path)
    assert settings["auth.tokens"] == (TokenEntry("ci", DIGEST, frozenset({"read"}), "ci-*"),)
    assert settings["audit.commands"] is False
    assert settings.as_dict()["auth"]["tokens"] == [
        {"name": "ci", "token_sha256": "***", "scopes": ["read"], "agents": "ci-*"}]
    env = {"MISTERSMITH_AUTH_TOKENS": f'[{{"name": "x", "token_sha256": "{DIGEST}", "scopes": "read,admin"}}]'}
    assert load_settings({}, env)["auth.tokens"][0].scopes == {"read", "admin"}
    with pytest.raises(ConfigError) as raised:
        load_settings({}, {"MISTERSMITH_AUTH_TOKENS": "[{\"name\": \"x\"}]"})
    assert raised.value.key == "auth.tokens" and "token_sha256" in raised.value.allowed


def test_parse_scopes_takes_a_list_or_comma_separated_text() -> None:
    assert parse_scopes("s", "read, control") == {"read", "control"}
    with pytest.raises(SpecError):
        parse_scopes("s", "read,everything")


def test_every_tool_route_command_and_subject_names_a_known_scope() -> None:
    for table in (ROUTE_SCOPES, TOOL_SCOPES, CLI_SCOPES, NATS_SCOPES):
        assert {s for s in table.values() if s is not None} <= set(SCOPES)
    assert route_scope("/health") is None and route_scope("/somewhere/new") == "read"


def test_tool_refusal_names_the_scope() -> None:
    reader = Identity("r", frozenset({"read"}))
    refusal = tool_refusal(reader, "spawn_agent", {"kind": "echo"})
    assert refusal is not None and refusal["code"] == "forbidden" and refusal["scope"] == "control"
    assert "'control'" in str(refusal["message"])
    assert tool_refusal(reader, "list_agents", {}) is None
    assert tool_refusal(reader, "audit_log", {})["scope"] == "admin"  # type: ignore[index]
    assert tool_refusal(reader, "a_tool_added_later", {})["scope"] == "admin"  # type: ignore[index]
    assert tool_refusal(ANONYMOUS, "audit_log", {}) is None


def test_the_agents_glob_holds_a_token_to_its_agents() -> None:
    team = Identity("team", frozenset({"control", "command", "read"}), "team-a-*")
    assert tool_refusal(team, "send_command", {"agent_id": "team-a-1", "command": "x"}) is None
    refused = tool_refusal(team, "stop_agent", {"agent_id": "team-b-1"})
    assert refused is not None and "team-a-*" in str(refused["message"])
    assert tool_refusal(team, "spawn_agent", {"kind": "echo"}) is not None  # it must name the id
    assert tool_refusal(team, "spawn_agent", {"kind": "echo", "agent_id": "team-a-9"}) is None
    assert tool_refusal(team, "list_agents", {}) is None
    assert agent_refusal(team, "team-a-x") is None and agent_refusal(ANONYMOUS, "anything") is None


def test_mint_makes_a_token_that_resolves_to_its_entry() -> None:
    token, entry = mint("robot", ["read", "command"], "ci-*")
    assert len(token) >= 40 and entry.token_sha256 == sha256_hex(token)
    assert resolve(token.encode(), [entry], None) == Identity("robot", frozenset({"read", "command"}), "ci-*")
    with pytest.raises(SpecError):
        mint("robot", ["sudo"])


def test_nats_users_parse_and_map_onto_nats_permissions() -> None:
    from mistersmith.embedded.nats_auth import NatsUser, authorization_block
    from mistersmith.tokens import mint_nats_user, nats_permissions, parse_nats_users

    ops = mint_nats_user("ops", ["read", "command"])
    assert ops.password not in repr(ops)
    allowed = nats_permissions(ops)
    assert "agents.*.commands.*" in allowed["publish"] and "system.control.spawn" not in allowed["publish"]
    assert "agents.*.status.>" in allowed["subscribe"] and "_INBOX.ops.>" in allowed["subscribe"]
    assert "_INBOX.>" not in allowed["subscribe"]
    one = nats_permissions(mint_nats_user("one", ["control", "command"], "a1"))
    assert set(one["publish"]) == {"agents.a1.commands.*", "agents.a1.control.stop", "agents.a1.control.restart",
                                   "agents.a1.control.cancel"}
    for table, says in (({"name": "x", "password": "p" * 20, "scopes": ["read"], "agents": "a-*"}, "not globs"),
                        ({"name": "mistersmith-node", "password": "p" * 20, "scopes": ["read"]}, "not"),
                        ({"name": "x", "password": "short", "scopes": ["read"]}, "16 printable")):
        with pytest.raises(SpecError) as raised:
            parse_nats_users("auth.nats_users", [table])
        assert says in raised.value.allowed
    # an agent-held admin user may publish nothing: deny all (an empty allow list would mean no limit)
    block = authorization_block(NatsUser("n", "p"), NatsUser("c", "q"), [mint_nats_user("a", ["admin"], "a1")])
    assert 'publish: {deny: [">"]}' in block
