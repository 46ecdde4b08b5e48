"""One vocabulary: every error a MisterSmith class raises has a code from the wire's list
(``envelope.ERROR_CODES``) or is one that never leaves the process (a node that cannot start, the
journal's own failures), and event types are the architecture's."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import mistersmith
from mistersmith.envelope import ERROR_CODES
from mistersmith.errors import MisterSmithError

# Raised in the process only (start-up, configuration, the journal's internals, misuse): never
# an error reply, so never in ERROR_CODES.
LOCAL_ONLY = {
    "blocking_call", "data_dir_locked", "data_dir_unreachable", "database_not_configured", "database_unreachable",
    "embedded_nats", "embedded_postgres", "embedded_server", "fatal", "invalid_config", "journal",
    "migration_checksum", "migration_failed", "spool",
}


def _subclasses(cls: type[MisterSmithError]) -> Iterator[type[MisterSmithError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_class_speaks_the_one_vocabulary() -> None:
    for module in pkgutil.walk_packages(mistersmith.__path__, "mistersmith."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    codes = {cls.code: cls for cls in _subclasses(MisterSmithError)}
    stray = {code: cls.__qualname__ for code, cls in codes.items() if code not in ERROR_CODES and code not in LOCAL_ONLY}
    assert stray == {}, "add the code to envelope.ERROR_CODES (and docs/reference/nats.md) or, if it never " \
                        "leaves the process, to LOCAL_ONLY here"
    assert not LOCAL_ONLY & set(ERROR_CODES)
    assert LOCAL_ONLY <= set(codes), "a local code no class uses any more: drop it"
