"""The envelope codec: strict envelopes, plain command payloads, reply shapes. Pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistersmith.envelope import (
    ENVELOPE_FIELDS,
    ERROR_CODES,
    Envelope,
    EnvelopeError,
    RemoteError,
    Reply,
    decode_command,
    decode_envelope,
    decode_reply,
    encode_error,
    encode_exception,
    encode_ok,
    encode_reply,
)
from mistersmith.errors import MailboxFullError


def _wire(**fields: Any) -> dict[str, Any]:
    base = {"id": "m1", "type": "command", "ts": "2026-01-02T03:04:05+00:00", "source": "cli",
            "target": "a1", "correlation_id": None, "payload": {"x": 1}}
    base.update(fields)
    return base


def test_round_trip() -> None:
    env = Envelope(type="started", payload={"a": [1, 2]}, source="n1", target="a1", correlation_id="c1")
    back = decode_envelope(env.encode())
    assert back == env
    assert list(orjson.loads(env.encode())) == list(ENVELOPE_FIELDS)


def test_optional_fields_may_be_left_out() -> None:
    env = decode_envelope(orjson.dumps({"id": "m", "type": "t", "ts": "2026-01-02T03:04:05Z", "payload": {}}))
    assert env.source is None and env.target is None and env.correlation_id is None
    assert env.ts == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"extra": 1}, "extra"),
        ({"id": ""}, "id"),
        ({"id": "has space"}, "id"),
        ({"id": 7}, "id"),
        ({"type": "a b"}, "type"),
        ({"type": "x" * 65}, "type"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": "2026-01-02T03:04:05"}, "ts"),  # no offset
        ({"ts": 1700000000}, "ts"),
        ({"source": 3}, "source"),
        ({"target": ""}, "target"),
        ({"correlation_id": ["c"]}, "correlation_id"),
        ({"payload": [1]}, "payload"),
        ({"payload": None}, "payload"),
    ],
)
def test_strict_validation_names_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_envelope(orjson.dumps(_wire(**fields)))
    assert info.value.field == field
    assert info.value.code == "invalid_envelope"
    assert field in info.value.message


def test_missing_required_field() -> None:
    raw = _wire()
    del raw["ts"]
    with pytest.raises(EnvelopeError, match="'ts'.*required"):
        decode_envelope(orjson.dumps(raw))


@pytest.mark.parametrize("body", [b"not json", b"{", b'{"a": NaN}', b"\xff\xfe"])
def test_not_json(body: bytes) -> None:
    with pytest.raises(EnvelopeError, match="not JSON") as info:
        decode_command(body)
    assert info.value.code == "invalid_envelope"


def test_command_bodies() -> None:
    assert decode_command(b"") == ({}, None)
    assert decode_command(b"{}") == ({}, None)
    assert decode_command(b'{"x": 1, "id": "i"}') == ({"x": 1, "id": "i"}, None)  # a plain payload
    payload, env = decode_command(orjson.dumps(_wire()))
    assert payload == {"x": 1} and env is not None and env.id == "m1"


@pytest.mark.parametrize("body", [b"[1]", b"3", b'"s"', b"null", b"true"])
def test_a_command_payload_must_be_an_object(body: bytes) -> None:
    with pytest.raises(EnvelopeError, match="JSON object") as info:
        decode_command(body)
    assert info.value.code == "invalid_payload"


def test_an_envelope_on_a_command_subject_is_a_command() -> None:
    with pytest.raises(EnvelopeError, match="'type'"):
        decode_command(orjson.dumps(_wire(type="started")))
    with pytest.raises(EnvelopeError, match="'ts'"):  # envelope-shaped: validated strictly
        decode_command(orjson.dumps(_wire(ts="soon")))


def test_replies() -> None:
    assert orjson.loads(encode_ok({"a": 1})) == {"ok": True, "result": {"a": 1}}
    assert decode_reply(encode_ok([1, None])).unwrap() == [1, None]
    err = decode_reply(encode_error("timeout", "too slow"))
    assert not err.ok and err.error is not None
    with pytest.raises(RemoteError) as info:
        err.unwrap()
    assert (info.value.code, info.value.message) == ("timeout", "too slow")


def test_exceptions_become_error_replies_with_their_code() -> None:
    reply = orjson.loads(encode_exception(MailboxFullError("a1", 10)))
    assert reply["ok"] is False and reply["error"]["code"] == "mailbox_full"
    assert "a1" in reply["error"]["message"]
    assert orjson.loads(encode_exception(KeyError("k")))["error"]["code"] == "internal"


def test_a_result_that_is_not_json_is_an_error_reply() -> None:
    reply = orjson.loads(encode_ok({"s": {1, 2}}))
    assert reply == {"ok": False, "error": {"code": "invalid_result", "message": reply["error"]["message"]}}


def test_replies_are_values_encoded_at_the_edge() -> None:
    ok, data = encode_reply(Reply.success({"a": 1}))
    assert ok == Reply(True, {"a": 1}) and data == encode_ok({"a": 1}) and decode_reply(data) == ok
    failure = Reply.failure("timeout", "too slow")
    sent, data = encode_reply(failure)
    assert sent is failure and data == encode_error("timeout", "too slow")
    assert decode_reply(data).error is not None
    assert Reply.from_exception(MailboxFullError("a1", 10)).error.code == "mailbox_full"  # type: ignore[union-attr]
    assert Reply.from_exception(KeyError("k")).error.code == "internal"  # type: ignore[union-attr]
    sent, data = encode_reply(Reply.success({"s": {1, 2}}))  # what is sent says it failed
    assert not sent.ok and sent.error is not None and sent.error.code == "invalid_result"
    assert decode_reply(data).error.code == "invalid_result"  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        Reply(False)
    with pytest.raises(ValueError):
        Reply(True, 1, RemoteError("x", "y"))


def test_the_issue_codes_are_all_known() -> None:
    for code in ("invalid_envelope", "unknown_command", "invalid_payload", "agent_failed", "mailbox_full",
                 "restarting", "paused", "timeout", "pool_full", "unauthorized"):
        assert code in ERROR_CODES


@pytest.mark.parametrize("body", [b"{}", b'{"ok": "yes"}', b'{"ok": true}', b'{"ok": false, "error": "x"}',
                                  b'{"ok": false, "error": {"code": 1, "message": "m"}}', b'{"ok": true, "result": 1, "x": 2}'])
def test_malformed_replies(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode_reply(body)


# -- fuzz: the codec never fails in any other way ----------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), json_values.map(orjson.dumps),
                 st.dictionaries(st.sampled_from(ENVELOPE_FIELDS), json_values).map(orjson.dumps)))
def test_fuzz_decoders_only_raise_envelope_errors(body: bytes) -> None:
    for decode in (decode_command, decode_envelope, decode_reply):
        try:
            decode(body)
        except EnvelopeError as exc:
            assert exc.code in ("invalid_envelope", "invalid_payload")
            assert exc.message


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_fuzz_every_result_gets_a_valid_reply(result: Any) -> None:
    reply = decode_reply(encode_ok(result))
    assert reply.ok and reply.result == result or not reply.ok and reply.error is not None
