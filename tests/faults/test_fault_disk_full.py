"""Fault 4 (issue 15): the spool's disk full (an injected ENOSPC through the segment writer's ``os``).

The scenario is ``mistersmith.bench._fault_disk`` (the ``faults`` bench runs it bigger). A small
tmpfs needs privileges CI does not have, and ``RLIMIT_FSIZE`` limits one file, not a disk: the
spool's own writer sees ENOSPC instead, and its own retry and recovery code runs.
"""

from __future__ import annotations

from pathlib import Path

from mistersmith.bench._fault_disk import DiskSizes, fill_the_spool_disk

SIZES = DiskSizes(before=5, refused=5)


def test_new_work_is_refused_with_a_clear_error_and_nothing_acknowledged_is_lost(
    node_dir: Path, journal_db: str,
) -> None:
    result = fill_the_spool_disk(node_dir / "node", journal_db, SIZES)
    print(f"\nspool disk full: {result}")
    assert result.problems() == []
    assert result.refused == SIZES.refused and result.writes_refused > 0
    assert "cannot be written (OSError(28, 'No space left on device'))" in result.refusal_message
    assert "new work is refused until it can; free space on its disk" in result.refusal_message
    assert result.refusal_max_ms < 100  # at once, not after sync_timeout_s
    assert result.journaled >= result.emitted >= SIZES.before
