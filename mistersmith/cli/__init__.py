"""The ``mistersmith`` command line: ``serve`` a node, drive it over NATS, read its journal.

``main(argv)`` runs one command and returns its exit code (see ``_errors``
for what each code means). The commands live one per concept in the private
modules: ``_serve``, ``_client`` (over NATS), ``_journal`` (``replay`` and
``migrate``), ``_psql``, ``_nats_url``, ``_completion``, ``_bench``,
``_settings`` (``config``), ``_cluster_up`` (``cluster up``).
"""

from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from ._main import build_parser, main

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "main",
]
