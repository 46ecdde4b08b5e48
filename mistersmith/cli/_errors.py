"""Exit codes and the one error the command raises on purpose.

Every command exits with one of:

====  ==========================================================================
0     it worked
1     the operation failed: the node (or an agent) answered with an error, the
      node could not start, a health check is not ``ok``
2     bad usage or configuration: an unknown flag, a bad value, a bad config
      file, a data directory already served by another node
3     cannot reach the node: no running node in the data directory, NATS or
      PostgreSQL does not answer
130   interrupted (Ctrl-C) before it finished
====  ==========================================================================
"""

from __future__ import annotations

from mistersmith.errors import MisterSmithError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "CliError"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class CliError(MisterSmithError):
    """What went wrong, in one line, and the exit code that says what kind of wrong.

    ``code`` is the node's wire code for a remote error (``unknown_agent``...)
    or a short name of the local problem (``usage``, ``unreachable``...).
    """

    def __init__(self, message: str, *, exit_code: int, code: str = "error") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code


def usage(message: str) -> CliError:
    return CliError(message, exit_code=EXIT_USAGE, code="usage")


def unreachable(message: str) -> CliError:
    return CliError(message, exit_code=EXIT_UNREACHABLE, code="unreachable")


def failed(message: str, code: str = "failed") -> CliError:
    return CliError(message, exit_code=EXIT_FAILED, code=code)
