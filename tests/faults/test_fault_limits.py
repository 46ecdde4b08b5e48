"""Fault 6 (issue 15): one stream too many gets 503 with Retry-After; a flood from one client gets 429.

The scenario is ``mistersmith.bench._fault_limits``; the ``faults`` bench opens 1,000 streams
(the default ``http.sse_max_streams``) and the 1,001st; here the limit is set to 50. A real
``mistersmith serve`` child, raw sockets and httpx.
"""

from __future__ import annotations

from pathlib import Path

from mistersmith.bench._fault_limits import LimitSizes, limits
from mistersmith.bench._fault_node import ServeChild
from mistersmith.embedded.nats import EmbeddedNats

SIZES = LimitSizes(max_streams=50, rate_s=1.0)


def test_the_stream_past_the_limit_gets_503_and_a_flood_gets_429_with_retry_after(
    node_dir: Path, own_nats: EmbeddedNats, journal_db: str,
) -> None:
    node = ServeChild(node_dir, "fault-limits", own_nats.url, journal_db,
                      {"MISTERSMITH_HTTP_SSE_MAX_STREAMS": str(SIZES.max_streams)})
    node.start()
    try:
        result = limits(node.ready["http_url"], SIZES)
        print(f"\nlimits: {result}")
        assert result.problems(SIZES.max_streams) == []
        assert result.statuses[200] >= 200  # the burst passed
        assert node.http("/health")["status"] in ("ok", "degraded")  # alive, and answering
    finally:
        node.kill()
