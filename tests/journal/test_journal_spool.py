"""The write-ahead spool: durability waits, group commit, torn tails, segments, the lock."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mistersmith.journal.errors import JournalClosedError, SpoolError
from mistersmith.journal.spool import HEADER, Spool, SpoolPosition


def opened(path: Path, **options: int) -> Spool:
    spool = Spool(path, **options)  # type: ignore[arg-type]
    spool.open()
    return spool


def read_all(spool: Spool, pos: SpoolPosition | None = None) -> tuple[list[bytes], SpoolPosition]:
    pos = pos if pos is not None else spool.shipped_position
    out: list[bytes] = []
    while True:
        records, _, new_pos, _ = spool.read(pos, 1000, 1 << 20)
        if new_pos == pos:
            return out, pos
        out.extend(records)
        pos = new_pos


def test_append_is_durable_when_waited_for(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    try:
        tickets = [spool.append(f"line {i}\n".encode()) for i in range(5)]
        assert spool.wait_durable(tickets[-1], 5.0)
        records, _ = read_all(spool)
        assert records == [f"line {i}\n".encode() for i in range(5)]
        segment = tmp_path / "000000000001.spool"
        assert segment.stat().st_size == sum(HEADER.size + len(r) for r in records)
    finally:
        spool.close()


def test_group_commit_covers_many_appends_per_fsync(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    start = threading.Barrier(8)

    def emit(n: int) -> None:
        start.wait(5)
        for i in range(200):
            assert spool.wait_durable(spool.append(f"{n}-{i}\n".encode()), 5.0)

    threads = [threading.Thread(target=emit, args=(n,), name=f"emitter-{n}") for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stats = spool.stats()
        assert stats["records_durable"] == 1600
        assert stats["fsync_groups"] < 1600, "concurrent appends share fsyncs"
        records, _ = read_all(spool)
        for n in range(8):  # each emitter's records stay in its order
            mine = [r for r in records if r.startswith(f"{n}-".encode())]
            assert mine == [f"{n}-{i}\n".encode() for i in range(200)]
    finally:
        spool.close()


@pytest.mark.parametrize("tail", [b"\x10\x00", HEADER.pack(50, 0) + b"partial", HEADER.pack(4, 1234) + b"bad!"])
def test_torn_tail_is_dropped_on_open(tmp_path: Path, tail: bytes) -> None:
    spool = opened(tmp_path)
    spool.wait_durable(spool.append(b"kept 1\n"), 5)
    spool.wait_durable(spool.append(b"kept 2\n"), 5)
    spool.close()
    segment = tmp_path / "000000000001.spool"
    good_size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(tail)
    spool = opened(tmp_path)
    try:
        assert spool.stats()["torn_bytes_dropped"] == len(tail)
        assert segment.stat().st_size == good_size
        assert spool.stats()["backlog_events"] == 2
        assert spool.wait_durable(spool.append(b"after\n"), 5)
        assert read_all(spool)[0] == [b"kept 1\n", b"kept 2\n", b"after\n"]
    finally:
        spool.close()


def test_segments_rotate_and_shipped_ones_are_deleted(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=64)
    try:
        for i in range(10):
            spool.wait_durable(spool.append(f"record number {i:02d}\n".encode()), 5)
        assert len(list(tmp_path.glob("*.spool"))) > 3
        records, end = read_all(spool)
        assert len(records) == 10
        spool.commit(end, 10, spool.stats()["backlog_bytes"])
        assert spool.stats()["backlog_events"] == 0
        remaining = sorted(p.name for p in tmp_path.glob("*.spool"))
        assert remaining and all(int(name[:12]) >= end.segment for name in remaining)
    finally:
        spool.close()


def test_checkpoint_survives_reopen_and_backlog_is_counted(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    for i in range(6):
        spool.wait_durable(spool.append(f"r{i}\n".encode()), 5)
    records, _, pos, nbytes = spool.read(spool.shipped_position, 4, 1 << 20)
    assert records == [b"r0\n", b"r1\n", b"r2\n", b"r3\n"]
    spool.commit(pos, len(records), nbytes)
    spool.close()
    spool = opened(tmp_path)
    try:
        assert spool.shipped_position == pos
        assert spool.stats()["backlog_events"] == 2
        assert read_all(spool)[0] == [b"r4\n", b"r5\n"]
    finally:
        spool.close()


def test_one_process_per_spool(tmp_path: Path) -> None:
    first = opened(tmp_path)
    try:
        with pytest.raises(SpoolError) as caught:
            opened(tmp_path)
        assert str(os.getpid()) in caught.value.detail
    finally:
        first.close()
    opened(tmp_path).close()  # released on close


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    ticket = spool.append(b"last\n")
    spool.close()
    assert spool.wait_durable(ticket, 1), "close writes what was queued"
    with pytest.raises(JournalClosedError):
        spool.append(b"too late\n")


def test_reads_come_from_memory_while_they_can_and_from_disk_after(tmp_path: Path) -> None:
    spool = opened(tmp_path, recent_max=3)
    try:
        for i in range(10):
            spool.wait_durable(spool.append(f"r{i}\n".encode(), meta=i), 5)
        records: list[bytes] = []
        metas: list[object] = []
        pos = spool.shipped_position
        while True:
            got, got_metas, new_pos, _ = spool.read(pos, 4, 1 << 20)
            if new_pos == pos:
                break
            records += got
            metas += got_metas
            pos = new_pos
        assert records == [f"r{i}\n".encode() for i in range(10)]
        assert metas == [None] * 7 + [7, 8, 9], "the last recent_max records come with their meta, from memory"
        again, again_metas, _, _ = spool.read(spool.shipped_position, 100, 1 << 20)
        assert again == records and again_metas == [None] * 10, "reading does not consume: the file serves it"
    finally:
        spool.close()


def test_records_can_be_encoded_by_the_writing_thread(tmp_path: Path) -> None:
    spool = opened(tmp_path, encode=lambda n: f"event {n}\n".encode())  # type: ignore[arg-type]
    try:
        tickets = [spool.append(None, meta=n) for n in range(3)] + [spool.append(b"ready made\n", meta="x")]
        assert spool.wait_durable(tickets[-1], 5.0)
        records, metas, _, _ = spool.read(spool.shipped_position, 10, 1 << 20)
        assert records == [b"event 0\n", b"event 1\n", b"event 2\n", b"ready made\n"]
        assert metas == [0, 1, 2, "x"]
    finally:
        spool.close()
    plain = opened(tmp_path / "plain")
    try:
        with pytest.raises(TypeError, match="encode="):
            plain.append(None, meta=1)
    finally:
        plain.close()


def test_spool_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Library use (a Journal without a Node, which sets no umask): segments, checkpoint and lock are 0600."""
    previous = os.umask(0o022)
    try:
        spool = opened(tmp_path / "journal", segment_bytes=64)
        try:
            for i in range(4):  # > segment_bytes: a rotation makes a second segment
                spool.wait_durable(spool.append(f"record {i:040d}\n".encode()), 5)
            records, _, pos, nbytes = spool.read(spool.shipped_position, 2, 1 << 20)
            spool.commit(pos, len(records), nbytes)
        finally:
            spool.close()
    finally:
        os.umask(previous)
    files = sorted(p.name for p in (tmp_path / "journal").iterdir())
    assert "LOCK" in files and "shipped.pos" in files and len([f for f in files if f.endswith(".spool")]) >= 2
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "journal").iterdir()} == {
        name: oct(0o600) for name in files}
    assert (tmp_path / "journal").stat().st_mode & 0o777 == 0o700
