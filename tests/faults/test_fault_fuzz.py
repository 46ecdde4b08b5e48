"""Fault 5 (issue 15): fuzzed NATS payloads and fuzzed /mcp bodies against a real ``serve`` child.

The scenario is ``mistersmith.bench._fault_fuzz`` (grammar-based hypothesis strategies: valid
JSON-RPC with wrong types, ids past 64 bits, deep nesting, invalid UTF-8, truncated text); the
``faults`` bench sends 10,000 of each, here a few hundred. It builds on
``tests/bridge/test_bridge_fuzz.py`` and ``tests/web/test_web_fuzz.py`` (in-process nodes, value-level
strategies), adding the raw-text grammar, a real child process and its RSS.
"""

from __future__ import annotations

from pathlib import Path

from mistersmith.bench._fault_fuzz import FUZZ_ENV, FuzzSizes, fuzz
from mistersmith.bench._fault_node import ServeChild
from mistersmith.embedded.nats import EmbeddedNats

SIZES = FuzzSizes(nats=300, mcp=300, warmup=100)


def test_fuzzed_payloads_never_crash_the_node_and_every_request_is_answered(
    node_dir: Path, own_nats: EmbeddedNats, journal_db: str,
) -> None:
    node = ServeChild(node_dir, "fault-fuzz", own_nats.url, journal_db, FUZZ_ENV)
    node.start()
    try:
        result = fuzz(node, own_nats.url, SIZES)
    finally:
        node.kill()
    print(f"\nfuzz: {result} (RSS growth {result.rss_growth:.1%}; not asserted at these sizes)")
    assert result.alive
    assert result.nats_unanswered == [] and result.mcp_bad == []
    assert result.nats_sent == SIZES.nats and result.mcp_sent == SIZES.mcp
