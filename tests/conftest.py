"""Shared fixtures. Every test is checked for leaked actor threads and agent event loops."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
from hypothesis import settings as hypothesis_settings

from mistersmith import FakeClock, Runtime
from mistersmith.actors._aio import open_loops
from mistersmith.embedded.nats import EmbeddedNats

# The PostgreSQL fixtures (pg_admin, journal_db, node...), loaded once here for every test module.
pytest_plugins = ["conftest_pg"]

LEAK_GRACE_S = 5.0

# Property tests check behaviour, not speed: on a loaded 2-CPU machine a fine
# example can take longer than hypothesis's default 200 ms deadline.
hypothesis_settings.register_profile("mistersmith", deadline=None)
hypothesis_settings.load_profile("mistersmith")


def _ours(thread: threading.Thread) -> bool:
    return thread.name.startswith("mistersmith-") and thread.is_alive()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail any test that leaves an actor (or clock) thread, a pykka actor or an agent's event loop behind.

    An agent thread's name starts with ``mistersmith-``, and so do the threads of its loop's
    executor (``asyncio.to_thread``); an incarnation closes its loop as it ends."""
    before = {t.ident for t in threading.enumerate() if _ours(t)}
    loops_before = Counter(open_loops())
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    leaked: list[threading.Thread] = []
    while True:
        leaked = [t for t in threading.enumerate() if _ours(t) and t.ident not in before]
        if not leaked or time.monotonic() > deadline:
            break
        leaked[0].join(timeout=0.05)
    actors = pykka.ActorRegistry.get_all()
    pykka.ActorRegistry.stop_all(block=False)
    loops = sorted((Counter(open_loops()) - loops_before).elements())
    assert not leaked, f"leaked threads: {[t.name for t in leaked]}"
    assert not actors, f"leaked pykka actors: {actors}"
    assert not loops, f"agent event loops left open: {loops}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(clock: FakeClock) -> Iterator[Runtime]:
    rt = Runtime(clock=clock)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def real_runtime() -> Iterator[Runtime]:
    rt = Runtime()
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def node_dir() -> Iterator[Path]:
    """A node's data directory outside pytest's basetemp, one the embedded PostgreSQL's user can traverse.

    Under root the embedded PostgreSQL runs as another user (``pgserver``) and
    must traverse the path, and the node never opens a directory it did not
    create: pytest's /tmp/pytest-of-<user> is 0700 (and re-tightened by every
    run), and so is a ``mkdtemp`` until the test that made it opens it (0711).
    """
    home = Path(tempfile.mkdtemp(prefix="ms-node-"))
    home.chmod(0o711)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A server of this test's own (for tests that stop and restart it)."""
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()
