"""The agent kinds a node serves, from its settings: an explicit, least-privilege list.

A node serves ``echo``, every named process kind of its configuration
(``[process.kinds.NAME]``: the operator chose the program) and the kinds it
was given in code or with ``--kind``. It never serves the generic ``process``
kind, whose spawner names the program, unless ``node.allow_arbitrary_process``
is set. ``node.kinds``, when set, is the exact list served. Pure: reads only
what it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from mistersmith.actors import Agent, EchoAgent, ProcessAgent
from mistersmith.config import ConfigError, Settings

__all__ = ["PROCESS_REFUSED", "served_kinds"]

logger = logging.getLogger("mistersmith.kinds")

PROCESS_REFUSED = (
    "the generic process kind runs any program its spawner names, so this node does not serve it; declare a "
    "named kind under [process.kinds.NAME] in the node's config file (its operator picks the command), or set "
    "node.allow_arbitrary_process = true (then anyone who may spawn runs any program as this node's user)"
)
"""What a spawn of ``process`` on a node that does not serve it is told (``invalid_spec``)."""


def served_kinds(settings: Settings, given: Mapping[str, type[Agent]]) -> dict[str, type[Agent]]:
    """The kinds to register, by name; ``ConfigError`` for a ``node.kinds`` entry the node cannot serve."""
    available: dict[str, type[Agent]] = {"echo": EchoAgent}
    for name, kind in settings["process.kinds"].items():
        available[name] = kind.agent_class()
    available.update(given)
    if settings["node.allow_arbitrary_process"]:
        available["process"] = ProcessAgent
        logger.warning("node.allow_arbitrary_process is on: anyone who may spawn agents on this node can run any "
                       "program as its user")
    elif "process" in given:
        logger.warning("the process kind was given in code or with --kind: anyone who may spawn agents on this "
                       "node can run any program as its user")
    wanted: tuple[str, ...] | None = settings["node.kinds"]
    if wanted is None:
        return available
    for name in wanted:
        if name not in available:
            why = "set node.allow_arbitrary_process = true to serve it (read its warning first)" if name == "process" \
                else f"name kinds this node has: {', '.join(sorted(available))}"
            raise ConfigError("node.kinds", settings.sources["node.kinds"], name, why)
    return {name: available[name] for name in wanted}
