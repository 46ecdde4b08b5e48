"""Journal lines: encode/decode round trips (pure), and PostgreSQL's COPY accepts them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg import sql
from hypothesis import given, settings
from hypothesis import strategies as st

from mistersmith.journal.codec import COLUMNS, JournalLine, decode_line, encode_line, event_from_row
from mistersmith.journal.replay import ReplayFilter
from mistersmith.supervisors import EVENT_TYPES, SupervisionEvent

TRICKY = ["plain", "tab\there", "new\nline", "cr\rhere", "back\\slash", "\\N", "\\.", "ünïcødé ✓", "", "'quote\"", "a\\tb"]


def event(**fields: Any) -> SupervisionEvent:
    base: dict[str, Any] = dict(
        event_id=uuid.uuid4(), seq=7, occurred_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        node_id="n1", supervisor="root/workers", agent_id="a1", kind="echo", event_type="failed",
        reason="boom", restart_count=2, data={"command": "fail", "n": 1.5, "nested": {"x": [1, None, True]}},
    )
    base.update(fields)
    return SupervisionEvent(**base)


def test_round_trip_keeps_every_field() -> None:
    original = event()
    line = encode_line(original)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.count(b"\t") == len(COLUMNS) - 1
    assert decode_line(line) == original
    assert decode_line(line, seq=99).seq == 99


def test_journal_line_gives_the_canonical_event_id_whichever_form_was_spooled() -> None:
    original = event()
    line = encode_line(original)
    assert JournalLine(line).event_id == str(original.event_id)
    hyphenated = line.replace(original.event_id.hex.encode(), str(original.event_id).encode(), 1)  # older spools
    assert JournalLine(hyphenated).event_id == str(original.event_id)
    assert decode_line(hyphenated) == original


def test_none_fields_are_copy_nulls() -> None:
    original = event(agent_id=None, kind=None, reason=None, data={})
    line = encode_line(original)
    assert line.split(b"\t")[5] == b"\\N"
    assert decode_line(line) == original


def test_tricky_text_round_trips() -> None:
    for text in TRICKY:
        original = event(reason=text, supervisor=f"root/{text}", data={"why": text, text: [text]})
        assert decode_line(encode_line(original)) == original, text


def test_nul_is_replaced_not_fatal() -> None:
    decoded = decode_line(encode_line(event(reason="a\x00b", data={"k": "c\x00d"})))
    assert decoded.reason == "a\ufffdb"
    assert decoded.data == {"k": "c\ufffdd"}


def test_unencodable_data_degrades_to_strings() -> None:
    marker = object()
    decoded = decode_line(encode_line(event(data={"obj": marker, "set": {1}})))
    assert decoded.data == {"obj": str(marker), "set": [1]}


texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
events = st.builds(
    SupervisionEvent,
    event_id=st.uuids(),
    seq=st.integers(1, 2**62),
    occurred_at=st.datetimes(timezones=st.just(UTC)) | st.datetimes(timezones=st.just(timezone(timedelta(hours=5)))),
    node_id=texts,
    supervisor=texts,
    agent_id=st.none() | texts,
    kind=st.none() | texts,
    event_type=st.sampled_from(EVENT_TYPES),
    reason=st.none() | texts,
    restart_count=st.integers(0, 2**31 - 1),
    data=st.dictionaries(texts, json_values, max_size=5),
)


@given(events)
@settings(max_examples=300, deadline=None)
def test_any_event_round_trips(original: SupervisionEvent) -> None:
    assert decode_line(encode_line(original)) == original


def test_postgresql_copy_reads_what_we_write(journal_db: str) -> None:
    originals = [event(reason=t, supervisor=f"root/{t}", data={"why": t}) for t in TRICKY]
    originals.append(event(agent_id=None, kind=None, reason=None, data={}))
    with psycopg.connect(journal_db) as conn:
        with conn.cursor() as cur:
            columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
            with cur.copy(sql.SQL("COPY supervision_events ({}) FROM STDIN").format(columns)) as copy:
                copy.write(b"".join(encode_line(e) for e in originals))
        conn.commit()
        query, params = ReplayFilter().query()
        back = [event_from_row(row) for row in conn.execute(query, params)]
    assert [(e.event_id, e.reason, e.supervisor, dict(e.data), e.occurred_at) for e in back] == [
        (e.event_id, e.reason, e.supervisor, dict(e.data), e.occurred_at) for e in originals
    ]
