"""The bridge's counters: what went through and what went wrong, never silently."""

from __future__ import annotations

__all__ = ["BridgeCounters"]


class BridgeCounters:
    """Named counts, touched only on the event-loop thread (no lock needed)."""

    NAMES = (
        "requests_in",
        "tells_in",
        "replies_out",
        "error_replies",
        "invalid_in",
        "tells_refused",
        "events_published",
        "heartbeats_published",
        "announces_published",
        "control_in",
        "publish_failed",
        "events_dropped",
        "discoveries_in",
        "discoveries_invalid",
        "discoveries_failed",
        "task_results_rejected",
        "streams_in",  # requests that asked for their progress (MS-Stream: 1)
        "progress_out",  # progress items sent on a streaming request's inbox
        "expired_in",  # requests whose caller's MS-Deadline had passed on arrival: never started
        "not_serving",  # commands (and late replies) dropped while this node may not serve: its lease is lost
    )

    def __init__(self) -> None:
        self._values = dict.fromkeys(self.NAMES, 0)

    def add(self, name: str, delta: int = 1) -> None:
        self._values[name] += delta

    def get(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        return dict(self._values)
