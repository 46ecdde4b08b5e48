"""Log lines carry the structured fields, in JSON or pretty form."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from mistersmith.logs import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in ("mistersmith", "pykka")}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def test_json_lines_carry_structured_fields(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    logging.getLogger("mistersmith.agent").warning(
        "agent %s crashed", "a1", extra={"agent_id": "a1", "supervisor": "root", "event_type": "failed"})
    logging.getLogger("mistersmith.agent").debug("hidden below INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = orjson.loads(lines[0])
    assert record["message"] == "agent a1 crashed" and record["level"] == "WARNING"
    assert (record["agent_id"], record["supervisor"], record["event_type"]) == ("a1", "root", "failed")


def test_pretty_lines_show_fields_and_tracebacks(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", "pretty", out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("mistersmith.x").exception("failed", extra={"trace_id": "abc"})
    text = out.getvalue()
    assert "ERROR" in text and "failed" in text and "trace_id=abc" in text and "ValueError: boom" in text
