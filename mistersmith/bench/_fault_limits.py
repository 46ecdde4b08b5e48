"""Fault 6: the stream limit and the rate limit of a ``serve`` child's HTTP door.

- **Streams:** ``max_streams`` ``/discoveries/stream`` connections are opened
  and held (each answered ``200`` and its ``: connected`` line read); the
  next one must get ``503`` with ``Retry-After``. One client address may hold
  ``http.max_connections_per_client`` (64) connections and spend its token
  bucket, so the streams come from many loopback addresses (``127.0.0.N``:
  many clients, as a real crowd would be).
- **Rate:** one client (one address) sends ``GET /info`` as fast as it can on
  ``connections`` raw keep-alive connections for ``rate_s`` (the figure says
  the rate it reached): what passes the
  per-client bucket (``http.rate_limit_burst`` + ``rate_limit_per_s`` x
  time) is answered, everything else ``429`` with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["LimitResult", "LimitSizes", "limits"]

PER_ADDRESS = 60
"""Streams held per client address: under the per-client connection cap (64) and token burst (200)."""
WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class LimitSizes:
    max_streams: int
    rate_s: float
    connections: int = 16


@dataclass
class LimitResult:
    streams_open: int = 0
    next_status: int = 0
    next_retry_after: str | None = None
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after_missing: int = 0
    requests: int = 0
    rate_per_s: float = 0.0
    allowed_at_most: float = 0.0
    other: list[str] = field(default_factory=list)

    def problems(self, max_streams: int) -> list[str]:
        found = []
        if self.streams_open != max_streams:
            found.append(f"{self.streams_open} of {max_streams} streams opened")
        if self.next_status != 503 or not self.next_retry_after:
            found.append(f"stream {max_streams + 1}: {self.next_status}, Retry-After {self.next_retry_after!r}")
        if self.statuses[200] > self.allowed_at_most:
            found.append(f"{self.statuses[200]} requests passed; the bucket allows {self.allowed_at_most:.0f}")
        if not self.statuses[429] or self.retry_after_missing:
            found.append(f"429s: {self.statuses[429]}, {self.retry_after_missing} without Retry-After")
        if set(self.statuses) - {200, 429}:
            found.append(f"other answers: {dict(self.statuses)}")
        return found


async def _open_stream(host: str, port: int, source: str) -> tuple[int, str | None, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    writer.write(f"GET /discoveries/stream HTTP/1.1\r\nhost: {host}:{port}\r\naccept: text/event-stream\r\n\r\n"
                 .encode())
    await writer.drain()
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if status == 200:
        await asyncio.wait_for(reader.readuntil(b": connected"), WAIT_S)
    return status, headers.get("retry-after"), writer


async def _streams(url: str, sizes: LimitSizes, result: LimitResult) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    writers: list[asyncio.StreamWriter] = []
    try:
        gate = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            async with gate:
                status, _, writer = await _open_stream(host, int(port), f"127.0.{1 + i // PER_ADDRESS // 250}."
                                                                        f"{2 + i // PER_ADDRESS % 250}")
            writers.append(writer)
            if status == 200:
                result.streams_open += 1
            else:
                result.other.append(f"stream {i}: {status}")

        await asyncio.gather(*map(one, range(sizes.max_streams)))
        status, retry_after, writer = await _open_stream(host, int(port), "127.0.0.250")
        writers.append(writer)
        result.next_status, result.next_retry_after = status, retry_after
    finally:
        for writer in writers:
            writer.close()


async def _rate(url: str, sizes: LimitSizes, result: LimitResult, rate_per_s: float, burst: int) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = f"GET /info HTTP/1.1\r\nhost: {host}:{port}\r\n\r\n".encode()
    t0 = time.monotonic()
    end = t0 + sizes.rate_s

    async def worker() -> None:  # a raw keep-alive connection: a client library would be the bottleneck
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=("127.0.0.251", 0))
        try:
            while time.monotonic() < end:
                writer.write(request)
                head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)).decode("latin-1")
                lines = head.split("\r\n")
                status = int(lines[0].split()[1])
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                result.statuses[status] += 1
                if status == 429 and not headers.get("retry-after"):
                    result.retry_after_missing += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(sizes.connections)))
    took = time.monotonic() - t0
    result.requests = sum(result.statuses.values())
    result.rate_per_s = result.requests / took
    result.allowed_at_most = burst + rate_per_s * took + 1


def limits(url: str, sizes: LimitSizes, *, rate_per_s: float = 100.0, burst: int = 200) -> LimitResult:
    """Both checks against the node at ``url`` (its ``http.sse_max_streams`` = ``sizes.max_streams``)."""
    result = LimitResult()
    asyncio.run(_streams(url, sizes, result))
    asyncio.run(_rate(url, sizes, result, rate_per_s, burst))
    return result
