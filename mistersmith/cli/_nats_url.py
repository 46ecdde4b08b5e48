"""``mistersmith nats-url``: the NATS URL of the node serving the data directory.

Read from its ``node.json`` (``nats_url``, written without credentials). The
embedded nats-server requires a user and password: they are in the file
``node.json`` names as ``nats_credentials`` (mode 0600), whose path ``--json``
prints; the password itself is never printed.
"""

from __future__ import annotations

import argparse

from ._errors import unreachable
from ._locate import data_dir, running_node
from ._output import Output
from ._settings import load

__all__ = ["run_nats_url"]


def run_nats_url(args: argparse.Namespace, out: Output) -> int:
    directory = data_dir(load(args))
    info = running_node(directory)
    url = info.get("nats_url")
    if not isinstance(url, str) or not url:
        raise unreachable(f"the node in {directory} wrote no NATS URL in node.json")
    creds = info.get("nats_credentials")
    out.result({"nats_url": url, "nats_credentials": creds if isinstance(creds, str) else None}, url)
    return 0
